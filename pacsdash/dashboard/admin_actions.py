"""What the admin page does to users and peers, without any Panel.

Every action goes through :class:`~pacsdash.access.Accounts` (the same calls
as ``pacsdash users ...`` and ``pacsdash modalities ...``, so the same rules:
passwords of at least ``MIN_PASSWORD_LENGTH`` characters, valid names and AE titles, never the last admin), after
asking again whether the acting user is still an admin at that moment. Each
change is logged with who made it, and put in the audit trail as a
``user_change`` entry (:mod:`pacsdash.access.changes`), refused ones too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pacsdash.access import AccountError, Accounts, Role, changes, checked_labels, confirmed_password
from pacsdash.config import ModalitySettings
from pacsdash.dimse.scu import AssociationFailed, echo

LOGGER = logging.getLogger("pacsdash.admin")
#: Seconds an echo waits for the peer (connection, association, response).
ECHO_TIMEOUT = 10.0


class Refused(PermissionError):
    """The acting user is no longer an admin (removed or demoted since the page opened)."""


@dataclass(frozen=True)
class EchoResult:
    """The outcome of one C-ECHO (PS3.7 9.1.5) to a registered peer."""

    peer: ModalitySettings
    ok: bool
    message: str
    seconds: float = 0.0


@dataclass
class AdminActions:
    """One admin session's actions on users and peers.

    Parameters
    ----------
    accounts
        The server's users and peers.
    still_admin
        Asked before every action: whether the acting user is an admin now.
    actor
        Who acts, for the log.
    calling_aet
        Our AE title in a C-ECHO (the server's own).
    echo
        The C-ECHO SCU, ``echo(host, port, called_aet, calling_aet, timeout) -> status``.
    archive
        Where changes are recorded (its ``record(ActionRecord)``); None records none.
    address
        The admin's address, for the audit trail.
    """

    accounts: Accounts
    still_admin: Callable[[], bool]
    actor: str
    calling_aet: str = "PACSDASH"
    echo: Callable[..., int] = field(default=echo)
    archive: Any = None
    address: str = ""

    def _check(self) -> None:
        if not self.still_admin():
            raise Refused("you are no longer an admin: nothing was changed")

    def _done(self, message: str) -> str:
        LOGGER.info("%s (by admin %s, in the admin page)", message, self.actor)
        return message

    def _change(self, user: str, change: str, do: Callable[[], str], **details: Any) -> str:
        """Do a change (if still admin) and record it, or its refusal, in the audit trail."""
        self._check()
        try:
            message = do()
        except (AccountError, ValueError) as exc:
            self._audit(user, change, False, error=str(exc), **details)
            raise
        self._audit(user, change, True, **details)
        return self._done(message)

    def _audit(self, user: str, change: str, ok: bool, **details: Any) -> None:
        """One ``user_change`` entry; a failure to write it is logged, the change stands."""
        if self.archive is None:
            return
        try:
            self.archive.record(changes.user_change(self.actor, user, change, ok, self.address, **details))
        except Exception:
            LOGGER.exception("audit: could not record the %s of %s by admin %s", change, user, self.actor)

    # -- users -------------------------------------------------------------------
    def add_user(self, name: str, role: Role | str, password: str, again: str, labels: str | list[str] = "") -> str:
        """Create a user (``pacsdash users add``), restricted to ``labels`` if any."""
        name = name.strip()

        def add() -> str:
            user = self.accounts.add_user(name, role, confirmed_password(password, again), labels)
            return f"added user {user.name} ({user.role.value}{restriction(user.labels)})"

        return self._change(name, "add", add, role=str(getattr(role, "value", role)), labels=as_listed(labels))

    def set_role(self, name: str, role: Role | str) -> str:
        """Change a user's role (not the last admin's)."""
        def change() -> str:
            self.accounts.set_role(name, role)
            return f"user {name} is now {Role.parse(role).value}"

        return self._change(name, "role", change, role=str(getattr(role, "value", role)))

    def set_labels(self, name: str, labels: str | list[str]) -> str:
        """Restrict a user to studies having one of ``labels`` (none: every study)."""
        def change() -> str:
            changed = self.accounts.set_labels(name, labels)
            user = self.accounts.user(name)
            now = user.labels if user is not None else ()
            return (f"user {name} now sees {sees(now)}" if changed
                    else f"user {name} already saw {sees(now)}: nothing changed")

        return self._change(name, "labels", change, labels=as_listed(labels))

    def reset_password(self, name: str, password: str, again: str) -> str:
        """Give a user a new password (``pacsdash users passwd``)."""
        def change() -> str:
            self.accounts.set_password(name, confirmed_password(password, again))
            return f"changed the password of {name}"

        return self._change(name, "password", change)

    def remove_user(self, name: str) -> str:
        """Delete a user (``pacsdash users remove``; not the last admin)."""
        def remove() -> str:
            self.accounts.remove_user(name)
            return f"removed user {name}"

        return self._change(name, "remove", remove)

    # -- peers -------------------------------------------------------------------
    def add_peer(self, name: str, aet: str, host: str, port: int, allow: list[str],
                 labels: str | list[str] = "") -> str:
        """Register a DICOM peer (``pacsdash modalities add``), restricted to ``labels`` if any."""
        name, host = name.strip(), host.strip()

        def add() -> str:
            peer = self.accounts.add_modality(name, aet, host, port, list(allow), labels)
            return f"added peer {peer.name}: {describe(peer)}"

        return self._change(name, "peer_add", add, aet=aet, host=host, port=port, allow=list(allow),
                            labels=as_listed(labels))

    def edit_peer(self, name: str, aet: str, host: str, port: int, allow: list[str],
                  labels: str | list[str] = "") -> str:
        """Change a registered peer's AE title, address, permissions and labels."""
        name, host = name.strip(), host.strip()

        def edit() -> str:
            peer = self.accounts.update_modality(name, aet, host, port, list(allow), labels)
            return f"changed peer {peer.name}: {describe(peer)}"

        return self._change(name, "peer_edit", edit, aet=aet, host=host, port=port, allow=list(allow),
                            labels=as_listed(labels))

    def remove_peer(self, name: str) -> str:
        """Forget a registered peer (``pacsdash modalities remove``)."""
        def remove() -> str:
            self.accounts.remove_modality(name)
            return f"removed peer {name}"

        return self._change(name, "peer_remove", remove)

    def echo_peer(self, name: str) -> EchoResult:
        """C-ECHO a registered peer at its host, port and AE title; never raises for the peer's sake."""
        self._check()
        peer = self.accounts.modality(name)
        if peer is None:
            raise AccountError(f"no modality named {name!r}")
        where = f"{peer.aet}@{peer.host}:{peer.port}"
        start = time.monotonic()
        try:
            status = self.echo(peer.host, peer.port, peer.aet, self.calling_aet, timeout=ECHO_TIMEOUT)
        except (AssociationFailed, OSError) as exc:
            result = EchoResult(peer, False, f"C-ECHO {where} failed: {exc}", time.monotonic() - start)
        else:
            seconds = time.monotonic() - start
            outcome = "success" if status == 0 else "failed"
            result = EchoResult(peer, status == 0,
                                f"C-ECHO {where}: {outcome} (status 0x{status:04X}) in {seconds * 1000:.0f} ms",
                                seconds)
        LOGGER.info("%s (by admin %s, in the admin page)", result.message, self.actor)
        return result


def describe(peer: ModalitySettings) -> str:
    """``AET@host:port may store,find`` (``, only studies labelled a, b``) for messages."""
    return f"{peer.aet}@{peer.host}:{peer.port} may {','.join(peer.allow) or 'nothing'}{restriction(peer.labels)}"


def as_listed(labels: str | list[str]) -> list[str] | str:
    """Labels as the audit trail lists them: checked, or as typed when they are not valid."""
    try:
        return list(checked_labels(labels))
    except AccountError:
        return labels if isinstance(labels, str) else ",".join(map(str, labels))


def sees(labels: tuple[str, ...]) -> str:
    """What a user or peer with ``labels`` sees, in words."""
    return f"only studies labelled {', '.join(labels)}" if labels else "every study"


def restriction(labels: tuple[str, ...]) -> str:
    """``, only studies labelled a, b`` for messages, or nothing for no labels."""
    return f", {sees(labels)}" if labels else ""
