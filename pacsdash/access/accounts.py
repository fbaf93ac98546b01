"""Users and registered DICOM peers, in a SQLite file beside the index.

The server keeps the DuckDB index open for writing, and DuckDB lets only one
process do that; users and peers live apart, in SQLite in WAL mode, so that
``pacsdash users ...`` and ``pacsdash modalities ...`` work whether or not the
server runs, and the server sees a change at the next request or association.
"""

from __future__ import annotations

import fcntl
import secrets
import sqlite3
import threading
from contextlib import closing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pacsdash.access.passwords import hash_password, verify_password
from pacsdash.access.roles import Role
from pacsdash.config import RETRIEVE_ACTIONS, ConfigError, ModalitySettings, check_aet, check_allow, check_labels, check_port

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    session_stamp TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS modalities (
    name TEXT PRIMARY KEY,
    aet TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    allow TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT ''
);
"""
#: Columns added since the first release: (table, column, definition), added
#: to an older file when it is opened (:func:`_add_columns`).
_ADDED_COLUMNS = (
    ("users", "labels", "TEXT NOT NULL DEFAULT ''"),
    ("modalities", "labels", "TEXT NOT NULL DEFAULT ''"),
)
MAX_NAME = 64
#: The shortest password a user may be given (when it is set or changed; a
#: shorter one set before this rule keeps working until it is changed).
MIN_PASSWORD_LENGTH = 10
#: SQL condition, checked in the same statement as the change: the row is not
#: the only admin (so no change, from any process, leaves the server without one).
_NOT_LAST_ADMIN = "(role != 'admin' OR (SELECT count(*) FROM users WHERE role = 'admin') > 1)"


def new_session_stamp() -> str:
    """A random, unguessable session stamp (128 bits, hex)."""
    return secrets.token_hex(16)


def _add_session_stamps(con: sqlite3.Connection) -> None:
    """Give a users table from before session stamps its column, and every
    user a stamp (their older cookies, which carry none, are refused)."""
    columns = {row[1] for row in con.execute("PRAGMA table_info(users)")}
    if "session_stamp" not in columns:
        try:
            con.execute("ALTER TABLE users ADD COLUMN session_stamp TEXT NOT NULL DEFAULT ''")
        except sqlite3.OperationalError:  # another process added it just now
            pass
    con.execute("UPDATE users SET session_stamp = lower(hex(randomblob(16))) WHERE session_stamp = ''")


def _add_columns(con: sqlite3.Connection) -> None:
    """Give tables from an older accounts file the columns of :data:`_ADDED_COLUMNS`
    (a user or peer without labels sees every study, as before labels)."""
    for table, column, definition in _ADDED_COLUMNS:
        if column in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
            continue
        try:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        except sqlite3.OperationalError:  # another process added it just now
            if column not in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
                raise


def _joined(labels: tuple[str, ...]) -> str:
    """Labels as stored: joined by commas (a label holds none, see :data:`pacsdash.config.LABEL`)."""
    return ",".join(labels)


def _split(stored: str) -> tuple[str, ...]:
    return tuple(label for label in stored.split(",") if label)


def checked_labels(labels: str | Iterable[str] | None, where: str = "--labels") -> tuple[str, ...]:
    """Labels (a list, or comma-separated text) if each is a valid study label, without repeats; else raise."""
    if labels is None:
        return ()
    try:
        return check_labels(labels if isinstance(labels, str) else list(labels), where)
    except ConfigError as exc:
        raise AccountError(str(exc)) from None


class AccountError(ValueError):
    """A user or peer cannot be added, changed or removed; the message says why."""


@dataclass(frozen=True)
class User:
    """A person or script that may log in over HTTP."""

    name: str
    role: Role
    #: Study labels this user is restricted to (empty: every study).
    labels: tuple[str, ...] = ()


#: Names the server gives callers that are no user (the command line's token, auth off).
RESERVED_NAMES = frozenset({"local-cli", "anonymous"})


def check_user_name(name: str) -> str:
    """Return ``name`` if it is an acceptable user name, else raise."""
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError(
            f"user name {name[:80]!r} must be 1 to {MAX_NAME} letters, digits or . _ - @"
        )
    if name.lower() in RESERVED_NAMES:
        raise AccountError(f"user name {name!r} is reserved: the server calls the command line or "
                           "an unauthenticated caller so")
    return name


def check_password(password: str) -> str:
    """Return ``password`` if it may be set, else raise (at least :data:`MIN_PASSWORD_LENGTH` characters)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long"
                           f" (got {len(password)})")
    return password


def confirmed_password(password: str, again: str) -> str:
    """``password`` if it was typed the same twice (the CLI's prompt, the admin page's form)."""
    if password != again:
        raise AccountError("the passwords differ")
    return password


class Accounts:
    """Users and CLI-registered peers, shared by the server and the CLI."""

    def __init__(self, path: Path, configured: tuple[ModalitySettings, ...] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.configured = configured
        self._local = threading.local()
        # Switching to WAL and creating the schema take locks SQLite may refuse
        # at once (SQLITE_BUSY with no busy wait) while another process does the
        # same: the DICOM worker processes all open this file as they start.
        # One process at a time, then, through a lock file beside it.
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with closing(self._connect()) as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)  # leaves an older file's tables as they are:
                    _add_columns(con)  # they get the newer columns here
                    _add_session_stamps(con)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("PRAGMA synchronous=FULL")
        return con

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
        return con

    # -- users ---------------------------------------------------------------
    def add_user(self, name: str, role: Role | str, password: str,
                 labels: str | Iterable[str] | None = ()) -> User:
        """Create a user; the password (at least :data:`MIN_PASSWORD_LENGTH`
        characters) is stored only as a salted hash. ``labels`` restrict the
        user to studies having one of them (none: every study)."""
        check_user_name(name)
        role = Role.parse(role)
        labels = checked_labels(labels)
        check_password(password)
        try:
            self._con().execute(
                "INSERT INTO users (name, role, password_hash, session_stamp, labels) VALUES (?, ?, ?, ?, ?)",
                (name, role.value, hash_password(password), new_session_stamp(), _joined(labels)),
            )
        except sqlite3.IntegrityError:
            raise AccountError(f"user {name!r} exists already") from None
        return User(name, role, labels)

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's password (at least :data:`MIN_PASSWORD_LENGTH` characters)."""
        check_password(password)
        cur = self._con().execute("UPDATE users SET password_hash = ?, session_stamp = ? WHERE name = ?",
                                  (hash_password(password), new_session_stamp(), name))
        if cur.rowcount == 0:
            raise AccountError(f"no user named {name!r}")

    def set_role(self, name: str, role: Role | str) -> None:
        """Change a user's role; the last admin cannot be demoted."""
        role = Role.parse(role)
        cur = self._con().execute(
            f"UPDATE users SET role = ?, session_stamp = ? WHERE name = ? AND (? = 'admin' OR {_NOT_LAST_ADMIN})",
            (role.value, new_session_stamp(), name, role.value),
        )
        if cur.rowcount == 0:
            self._why_unchanged(name, f"demoted to {role.value}")

    def set_labels(self, name: str, labels: str | Iterable[str] | None) -> bool:
        """Restrict a user to studies having one of ``labels`` (none: every
        study); True if that changed them, which ends the user's dashboard
        sessions as a new role does."""
        labels = _joined(checked_labels(labels))
        cur = self._con().execute("UPDATE users SET labels = ?, session_stamp = ? WHERE name = ? AND labels != ?",
                                  (labels, new_session_stamp(), name, labels))
        if cur.rowcount == 0 and self.credential_stamp(name) is None:
            raise AccountError(f"no user named {name!r}")
        return cur.rowcount > 0

    def remove_user(self, name: str) -> None:
        """Delete a user; the last admin cannot be removed."""
        cur = self._con().execute(f"DELETE FROM users WHERE name = ? AND {_NOT_LAST_ADMIN}", (name,))
        if cur.rowcount == 0:
            self._why_unchanged(name, "removed")

    def _why_unchanged(self, name: str, what: str) -> None:
        """Raise the reason a guarded change of ``name`` touched no row."""
        if self.credential_stamp(name) is None:
            raise AccountError(f"no user named {name!r}")
        raise AccountError(f"{name!r} is the last admin and cannot be {what}; make another user admin first")

    def session_stamp(self, name: str) -> str | None:
        """The stamp every dashboard session of ``name`` carries in its signed
        cookie (None if there is no such user). A new one is drawn when the
        user is added, changes password, role or labels, or logs out
        (:meth:`revoke_sessions`), so older cookies stop working at once; a
        user removed and added again gets a new one too."""
        row = self._con().execute("SELECT session_stamp FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None or not row[0] else str(row[0])

    def revoke_sessions(self, name: str) -> None:
        """End every dashboard session of ``name`` (logout): its cookies no longer match."""
        self._con().execute("UPDATE users SET session_stamp = ? WHERE name = ?", (new_session_stamp(), name))

    def users(self) -> list[User]:
        """Every user, by name."""
        rows = self._con().execute("SELECT name, role, labels FROM users ORDER BY name").fetchall()
        return [User(name, Role(role), _split(labels)) for name, role, labels in rows]

    def user(self, name: str) -> User | None:
        """The user called ``name`` with their role and labels now (None if there is none)."""
        row = self._con().execute("SELECT role, labels FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else User(name, Role(row[0]), _split(row[1]))

    def credential_stamp(self, name: str) -> tuple[str, str] | None:
        """The user's role and password hash (None if there is no such user).

        Lets a cache of verified credentials notice a changed password, role
        or a removed user at once.
        """
        row = self._con().execute("SELECT role, password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (constant-time check)."""
        row = self._con().execute("SELECT role, password_hash, labels FROM users WHERE name = ?",
                                  (name,)).fetchone()
        if row is None:
            verify_password(password, None)  # same work whether or not the user exists
            return None
        role, stored, labels = row
        return User(name, Role(role), _split(labels)) if verify_password(password, stored) else None

    # -- modalities ----------------------------------------------------------
    def add_modality(self, name: str, aet: str, host: str, port: int, allow: str | list[str] | None = None,
                     labels: str | Iterable[str] | None = ()) -> ModalitySettings:
        """Register a DICOM peer; ``labels`` restrict it to studies having one of them (none: every study)."""
        peer = self._checked_modality(name, aet, host, port, allow, labels)
        try:
            self._con().execute(
                "INSERT INTO modalities (name, aet, host, port, allow, labels) VALUES (?, ?, ?, ?, ?, ?)",
                (peer.name, peer.aet, peer.host, peer.port, ",".join(peer.allow), _joined(peer.labels)),
            )
        except sqlite3.IntegrityError:
            raise AccountError(f"modality {name!r} exists already") from None
        return peer

    def update_modality(self, name: str, aet: str, host: str, port: int,
                        allow: str | list[str] | None = None,
                        labels: str | Iterable[str] | None = None) -> ModalitySettings:
        """Change a CLI-registered peer's AE title, address, permissions and
        (unless ``labels`` is None) labels, checked as when added."""
        peer = self._checked_modality(name, aet, host, port, allow, labels)
        cur = self._con().execute(
            "UPDATE modalities SET aet = ?, host = ?, port = ?, allow = ?, labels = coalesce(?, labels) WHERE name = ?",
            (peer.aet, peer.host, peer.port, ",".join(peer.allow), None if labels is None else _joined(peer.labels),
             peer.name),
        )
        if cur.rowcount == 0:
            raise AccountError(f"no modality named {name!r}")
        return self.modality(peer.name) or peer

    def set_modality_labels(self, name: str, labels: str | Iterable[str] | None) -> bool:
        """Restrict a CLI-registered peer to studies having one of ``labels``
        (none: every study); True if that changed them."""
        if any(m.name == name for m in self.configured):
            raise AccountError(f"modality {name!r} is defined in pacsdash.toml; change it there")
        labels = _joined(checked_labels(labels))
        cur = self._con().execute("UPDATE modalities SET labels = ? WHERE name = ? AND labels != ?",
                                  (labels, name, labels))
        if cur.rowcount == 0 and self.modality(name) is None:
            raise AccountError(f"no modality named {name!r}")
        return cur.rowcount > 0

    def _checked_modality(self, name: str, aet: str, host: str, port: int,
                          allow: str | list[str] | None,
                          labels: str | Iterable[str] | None = ()) -> ModalitySettings:
        """The peer as given, if every value is acceptable and it is not one of pacsdash.toml's."""
        if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "._-" for c in name):
            raise AccountError(f"modality name {name[:80]!r} must be 1 to {MAX_NAME} letters, digits or . _ -")
        if any(m.name == name for m in self.configured):
            raise AccountError(f"modality {name!r} is defined in pacsdash.toml; change it there")
        try:
            peer = ModalitySettings(
                name=name,
                aet=check_aet(aet, "--aet"),
                host=host,
                port=check_port(port, "--port", allow_zero=False),
                allow=check_allow(list(RETRIEVE_ACTIONS) if allow is None else allow, "--allow"),
                labels=checked_labels(labels),
            )
        except ConfigError as exc:
            raise AccountError(str(exc)) from None
        if not host or any(c.isspace() for c in host):
            raise AccountError(f"host {host!r} is not a host name or address")
        return peer

    def remove_modality(self, name: str) -> None:
        """Forget a CLI-registered peer."""
        if any(m.name == name for m in self.configured):
            raise AccountError(f"modality {name!r} is defined in pacsdash.toml; remove it there")
        cur = self._con().execute("DELETE FROM modalities WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise AccountError(f"no modality named {name!r}")

    def modalities(self) -> list[ModalitySettings]:
        """Peers from the config file, then those added with the CLI."""
        rows = self._con().execute(
            "SELECT name, aet, host, port, allow, labels FROM modalities ORDER BY name").fetchall()
        added = [
            ModalitySettings(name, aet, host, port, tuple(a for a in allow.split(",") if a), _split(labels))
            for name, aet, host, port, allow, labels in rows
        ]
        return list(self.configured) + added

    def modality_by_aet(self, aet: str) -> ModalitySettings | None:
        """The registered peer with AE title ``aet`` (first one wins)."""
        aet = aet.strip()
        for peer in self.modalities():
            if peer.aet == aet:
                return peer
        return None

    def modality(self, name: str) -> ModalitySettings | None:
        """The registered peer called ``name``."""
        for peer in self.modalities():
            if peer.name == name:
                return peer
        return None
