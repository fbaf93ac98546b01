"""Audit entries of changes to users and peers (action ``user_change``).

Every add, removal, new role, new password or new labels of a user, and
every peer added, edited or removed, from the admin page or the command
line, leaves one entry in the archive's audit trail (PS3.15 A.5.3.11
Security Alert, "User Security Attributes Changed"): who made it, from
where, the user or peer it changed (``details["user"]``), what changed
(``details["change"]``), the new values that are not secret, and how it went.
A password never appears in an entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pacsdash.archive.records import ActionRecord

ACTION = "user_change"
#: What a change did (``details["change"]``).
CHANGES = ("add", "remove", "role", "password", "labels", "peer_add", "peer_edit", "peer_remove")
#: The details an entry may carry beside ``user`` and ``change`` (never a password).
DETAIL_KEYS = ("role", "labels", "aet", "host", "port", "allow", "error")
#: The prefix of the command line's actors (``cli:LOGIN``), the only ones ``POST /api/local/audit`` takes.
CLI_PREFIX = "cli:"
MAX_TEXT = 256


class BadChange(ValueError):
    """A description of a change that cannot be recorded; the message says which part."""


def _detail(key: str, value: Any) -> Any:
    """A detail value, checked: text, a whole number, or a list of texts."""
    if isinstance(value, bool) or not isinstance(value, (str, int, list, tuple)):
        raise BadChange(f"detail {key!r} must be text, a number or a list of texts")
    if isinstance(value, (list, tuple)):
        if len(value) > 100 or not all(isinstance(v, str) and len(v) <= MAX_TEXT for v in value):
            raise BadChange(f"detail {key!r} must be at most 100 texts of at most {MAX_TEXT} characters")
        return list(value)
    if isinstance(value, str) and len(value) > 1000:
        raise BadChange(f"detail {key!r} is longer than 1000 characters")
    return value


def user_change(actor: str, user: str, change: str, ok: bool = True, address: str = "",
                **details: Any) -> ActionRecord:
    """The audit entry of one change to user (or peer) ``user`` by ``actor``.

    Parameters
    ----------
    actor
        Who made it: the admin's user name, or ``cli:LOGIN`` from the command line.
    change
        One of :data:`CHANGES`.
    ok
        Whether it was made (False: refused, with ``error=`` the reason).
    details
        New values among :data:`DETAIL_KEYS` (never a password).
    """
    from pacsdash.archive.records import ActionRecord

    if change not in CHANGES:
        raise BadChange(f"change must be one of {', '.join(CHANGES)}, got {str(change)[:40]!r}")
    if not isinstance(actor, str) or not actor or len(actor) > MAX_TEXT:
        raise BadChange(f"actor must be text of 1 to {MAX_TEXT} characters")
    if not isinstance(user, str) or len(user) > MAX_TEXT:
        raise BadChange(f"user must be text of at most {MAX_TEXT} characters")
    unknown = set(details) - set(DETAIL_KEYS)
    if unknown:
        raise BadChange(f"unknown detail(s) {', '.join(sorted(unknown))[:200]}; known: {', '.join(DETAIL_KEYS)}")
    checked = {key: _detail(key, value) for key, value in details.items() if value is not None}
    return ActionRecord(actor=actor, action=ACTION, studies=[], address=str(address)[:64],
                        outcome="success" if ok else "failure",
                        details={"user": user, "change": change, **checked})


def as_json(record: ActionRecord) -> dict[str, Any]:
    """What the command line posts to ``POST /api/local/audit`` for ``record``."""
    details = dict(record.details)
    return {"actor": record.actor, "user": details.pop("user"), "change": details.pop("change"),
            "ok": record.outcome == "success", "details": details}


def from_json(body: Any, address: str = "") -> ActionRecord:
    """The entry the command line posted (:func:`as_json`); its actor must be ``cli:...``.

    Raises
    ------
    BadChange
        Saying what is wrong with ``body``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("details", {}), dict):
        raise BadChange('the body must be {"actor", "user", "change", "ok", "details": {...}}')
    actor = body.get("actor")
    if not isinstance(actor, str) or not actor.startswith(CLI_PREFIX):
        raise BadChange(f"actor must be the command line's, {CLI_PREFIX}LOGIN")
    ok = body.get("ok", True)
    if not isinstance(ok, bool):
        raise BadChange('"ok" must be true or false')
    return user_change(actor, body.get("user"), body.get("change"), ok, address, **body.get("details", {}))
