"""What the admin page does to users and peers, without any Panel.

Every action goes through :class:`~pacsdash.access.Accounts` (the same calls
as ``pacsdash users ...`` and ``pacsdash modalities ...``, so the same rules:
passwords of at least ``MIN_PASSWORD_LENGTH`` characters, valid names and AE titles, never the last admin), after
asking again whether the acting user is still an admin at that moment. Each
change is logged with who made it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from pacsdash.access import AccountError, Accounts, Role, confirmed_password
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
    """

    accounts: Accounts
    still_admin: Callable[[], bool]
    actor: str
    calling_aet: str = "PACSDASH"
    echo: Callable[..., int] = field(default=echo)

    def _check(self) -> None:
        if not self.still_admin():
            raise Refused("you are no longer an admin: nothing was changed")

    def _done(self, message: str) -> str:
        LOGGER.info("%s (by admin %s, in the admin page)", message, self.actor)
        return message

    # -- users -------------------------------------------------------------------
    def add_user(self, name: str, role: Role | str, password: str, again: str) -> str:
        """Create a user (``pacsdash users add``)."""
        self._check()
        user = self.accounts.add_user(name.strip(), role, confirmed_password(password, again))
        return self._done(f"added user {user.name} ({user.role.value})")

    def set_role(self, name: str, role: Role | str) -> str:
        """Change a user's role (not the last admin's)."""
        self._check()
        self.accounts.set_role(name, role)
        return self._done(f"user {name} is now {Role.parse(role).value}")

    def reset_password(self, name: str, password: str, again: str) -> str:
        """Give a user a new password (``pacsdash users passwd``)."""
        self._check()
        self.accounts.set_password(name, confirmed_password(password, again))
        return self._done(f"changed the password of {name}")

    def remove_user(self, name: str) -> str:
        """Delete a user (``pacsdash users remove``; not the last admin)."""
        self._check()
        self.accounts.remove_user(name)
        return self._done(f"removed user {name}")

    # -- peers -------------------------------------------------------------------
    def add_peer(self, name: str, aet: str, host: str, port: int, allow: list[str]) -> str:
        """Register a DICOM peer (``pacsdash modalities add``)."""
        self._check()
        peer = self.accounts.add_modality(name.strip(), aet, host.strip(), port, list(allow))
        return self._done(f"added peer {peer.name}: {describe(peer)}")

    def edit_peer(self, name: str, aet: str, host: str, port: int, allow: list[str]) -> str:
        """Change a registered peer's AE title, address and permissions."""
        self._check()
        peer = self.accounts.update_modality(name.strip(), aet, host.strip(), port, list(allow))
        return self._done(f"changed peer {peer.name}: {describe(peer)}")

    def remove_peer(self, name: str) -> str:
        """Forget a registered peer (``pacsdash modalities remove``)."""
        self._check()
        self.accounts.remove_modality(name)
        return self._done(f"removed peer {name}")

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
    """``AET@host:port may store,find`` for messages."""
    return f"{peer.aet}@{peer.host}:{peer.port} may {','.join(peer.allow) or 'nothing'}"
