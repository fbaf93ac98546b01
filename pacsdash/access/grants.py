"""Who may do what, and to which studies: one decision for every door.

A :class:`Grant` is what one caller holds: the actions it may ask
(:class:`~pacsdash.access.roles.Action`) and the studies it may touch (its
:class:`~pacsdash.archive.query.Scope`, from its labels). The doors build it
here from what they know of the caller (a logged-in user, a registered DICOM
peer, the local command line) and ask it, so that the HTTP handlers, the
dashboard and the DICOM node decide alike:

- a user's actions are their role's (CONTRACT.md "Users and peers");
- a registered peer's are its ``allow`` list, each DIMSE service standing for
  the action it is: C-STORE uploads, C-FIND searches, C-GET downloads, C-MOVE
  sends (to a registered destination); an unregistered caller may store only
  when ``[server] accept_unknown_store`` says so (C-ECHO is anyone's);
- both see only the studies holding one of their labels, when they have any.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pacsdash.access.roles import Action, Role
from pacsdash.archive.query import Scope

#: The action each DIMSE service (as ``[modalities.NAME] allow`` names them) is.
SERVICE_ACTIONS: dict[str, Action] = {"store": Action.UPLOAD, "find": Action.SEARCH, "get": Action.DOWNLOAD,
                                      "move": Action.SEND}


@dataclass(frozen=True)
class Grant:
    """What one caller may do, and on which studies."""

    #: The user name or calling AE title, as the audit trail names it.
    name: str
    #: ``user``, ``peer`` or ``local`` (the command line on the server's machine).
    kind: str
    actions: frozenset[Action]
    #: The studies it may see and act on (None: every study).
    scope: Scope | None = None

    def may(self, action: Action) -> bool:
        """Whether this caller may ``action`` (on the studies of its scope)."""
        return action in self.actions

    def may_service(self, service: str) -> bool:
        """Whether this peer may ask a DIMSE ``store``/``find``/``move``/``get``."""
        return SERVICE_ACTIONS[service] in self.actions


def role_actions(role: Role) -> frozenset[Action]:
    """Every action ``role`` may ask."""
    return frozenset(action for action in Action if role.may(action))


def for_role(name: str, role: Role, labels: Iterable[str] = (), kind: str = "user") -> Grant:
    """A user's grant: their role's actions, on the studies of their labels."""
    return Grant(name, kind, role_actions(role), Scope.of(labels))


def for_peer(aet: str, peer: object | None, accept_unknown_store: bool) -> Grant:
    """A DICOM caller's grant: a registered peer's ``allow`` list and labels
    (:class:`~pacsdash.config.ModalitySettings`), else store only if unknown
    stores are accepted, and no study to see."""
    if peer is None:
        actions = frozenset({Action.UPLOAD}) if accept_unknown_store else frozenset()
        return Grant(aet, "peer", actions, Scope(frozenset()))
    allow: tuple[str, ...] = getattr(peer, "allow")
    labels: tuple[str, ...] = getattr(peer, "labels", ())
    return Grant(aet, "peer", frozenset(SERVICE_ACTIONS[a] for a in allow), Scope.of(labels))
