"""Users and registered DICOM peers: a SQLite file beside the index, or PostgreSQL.

The server keeps the DuckDB index open for writing, and DuckDB lets only one
process do that; users and peers live apart, in SQLite in WAL mode, so that
``pacsdash users ...`` and ``pacsdash modalities ...`` work whether or not the
server runs, and the server sees a change at the next request or association.

When the index is in PostgreSQL (``[index] url``), users and peers are there
too, in the same database (tables ``pacsdash_users`` and
``pacsdash_modalities``), so that several servers sharing that database (issue
16) share them: a user added, a password changed or a peer removed through one
is seen by the others at their next request or association. Which one a home
uses is chosen in one place, :func:`pacsdash.access.factory.open_accounts`.

One :class:`Accounts` serves both: its statements are written once, with ``?``
for each bound value and ``{users}``/``{modalities}`` for the tables, and a
small adapter (:class:`_SQLite`, :class:`_Postgres`) runs them, creates and
migrates its schema, and turns a duplicate name into :class:`_Duplicate`.
"""

from __future__ import annotations

import fcntl
import functools
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsdash.access.passwords import hash_password, verify_password
from pacsdash.access.roles import Role
from pacsdash.config import RETRIEVE_ACTIONS, ConfigError, ModalitySettings, check_aet, check_allow, check_labels, check_port

#: PostgreSQL's accounts tables: the index's database holds other tables, hence the prefix.
POSTGRES_TABLES = {"users": "pacsdash_users", "modalities": "pacsdash_modalities"}
#: Key of the advisory lock PostgreSQL's accounts schema is created under, and
#: every guarded change made under (any constant; "pacsacct" in ASCII).
POSTGRES_LOCK = 0x7061637361636374
#: Connections an :class:`Accounts` on PostgreSQL keeps at most (each is a short statement).
POSTGRES_POOL_SIZE = 4

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
_NOT_LAST_ADMIN = "(role != 'admin' OR (SELECT count(*) FROM {users} WHERE role = 'admin') > 1)"


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


def is_postgresql_url(where: Path | str) -> bool:
    """Whether ``where`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


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


class _Duplicate(Exception):
    """An insert met a row of the same name (either database's integrity error)."""


@dataclass(frozen=True)
class _Result:
    """What one statement returned: its rows (none for a change) and how many rows it changed."""

    rows: list[tuple]
    rowcount: int

    def one(self) -> tuple | None:
        return self.rows[0] if self.rows else None


class _SQLite:
    """The accounts in a SQLite file (WAL), a connection per thread."""

    tables = {"users": "users", "modalities": "modalities"}

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = str(self.path)
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

    def execute(self, sql: str, params: Sequence[Any] = (), guarded: bool = False) -> _Result:
        """Run one statement (autocommit). ``guarded`` needs nothing here: SQLite
        writes one statement at a time, reading the rows as they are then."""
        try:
            cur = self._con().execute(sql, params)
        except sqlite3.IntegrityError:
            raise _Duplicate from None
        return _Result(cur.fetchall(), cur.rowcount)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's memory goes)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            con.close()


class _Postgres:
    """The accounts in PostgreSQL, beside the index (see the module's docstring).

    A pool of autocommit connections; statements written with ``?`` get
    psycopg's ``%s`` once each (:func:`pacsdash.archive.pg_index.pyformat`).
    The tables are created, and later columns added, in one transaction holding
    an advisory lock, so several servers (or a server and ``users add``)
    starting at once neither race nor see half a schema; ``users add`` may run
    before the first ``serve``.
    """

    tables = POSTGRES_TABLES

    def __init__(self, url: str, pool_size: int = POSTGRES_POOL_SIZE) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        from pacsdash.archive.pg_index import _without_secrets, check_url

        try:
            check_url(url)
        except ValueError as exc:
            raise ConfigError(f"[index] url: {exc}") from None
        self.name = _without_secrets(url)
        try:  # once, so that a refusal (no such database, a wrong password) is said now and as it is
            psycopg.connect(url, connect_timeout=30, application_name="pacsdash").close()
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(
                f"[index] url: cannot reach the users and peers in {self.name}: {reason} (is PostgreSQL running "
                "there, does the database exist, and is the password in PGPASSWORD or the password file "
                "(PGPASSFILE)?)") from None
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="pacsdash-accounts",
                                    kwargs={"autocommit": True, "application_name": "pacsdash"})
        try:
            self._pool.open(wait=True, timeout=30)
        except PoolTimeout:
            self._pool.close()
            raise ConfigError(
                f"[index] url: cannot reach the users and peers in {self.name} within 30 s: is PostgreSQL running "
                "there, does the database exist, and is the password in PGPASSWORD or the password file "
                "(PGPASSFILE)?") from None
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [POSTGRES_LOCK])
                for statement in _POSTGRES_SCHEMA:
                    cur.execute(statement.format_map(self.tables))
                for table, column, definition in _ADDED_COLUMNS:
                    cur.execute(f"ALTER TABLE {self.tables[table]} ADD COLUMN IF NOT EXISTS {column} {definition}")
        except BaseException:
            self._pool.close()
            raise

    def execute(self, sql: str, params: Sequence[Any] = (), guarded: bool = False) -> _Result:
        """Run one statement; ``guarded``: in a transaction holding the accounts'
        advisory lock, so that a condition on other rows (the last admin) reads
        them after every other guarded change has committed. (READ COMMITTED
        alone would let two servers each demote one of two admins, each
        statement seeing the other admin still there.)"""
        import psycopg

        from pacsdash.archive.pg_index import pyformat

        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                if guarded:
                    with conn.transaction():
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", [POSTGRES_LOCK])
                        cur.execute(pyformat(sql), list(params))
                        return _Result(cur.fetchall() if cur.description else [], cur.rowcount)
                cur.execute(pyformat(sql), list(params))
                return _Result(cur.fetchall() if cur.description else [], cur.rowcount)
        except psycopg.errors.UniqueViolation:
            raise _Duplicate from None

    def close(self) -> None:
        self._pool.close()


#: PostgreSQL's accounts tables (``{users}``, ``{modalities}``: :data:`POSTGRES_TABLES`),
#: as SQLite's :data:`_SCHEMA` but for the types.
_POSTGRES_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {users} (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        session_stamp TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS {modalities} (
        name TEXT PRIMARY KEY,
        aet TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        allow TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT ''
    )""",
)


@functools.lru_cache(maxsize=256)
def _statement(sql: str, users: str, modalities: str) -> str:
    """``sql`` with its ``{users}`` and ``{modalities}`` tables named."""
    return sql.format(users=users, modalities=modalities)


class Accounts:
    """Users and CLI-registered peers, shared by the server and the CLI.

    Parameters
    ----------
    where
        The SQLite file (a path), or a ``postgresql://`` URL: the database
        of a PostgreSQL index, shared by every server using it. A home's
        accounts are opened by :func:`pacsdash.access.factory.open_accounts`.
    configured
        The peers of pacsdash.toml's ``[modalities]``: listed first, and not
        changed here.
    """

    def __init__(self, where: Path | str, configured: tuple[ModalitySettings, ...] = ()) -> None:
        self.configured = configured
        if is_postgresql_url(where):
            self.path: Path | None = None
            self._db: _SQLite | _Postgres = _Postgres(str(where))
        else:
            self.path = Path(where)
            self._db = _SQLite(self.path)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "postgresql" if isinstance(self._db, _Postgres) else "sqlite"

    def close(self) -> None:
        """Let go of the database (PostgreSQL: the pool's connections)."""
        self._db.close()

    def _run(self, sql: str, params: Sequence[Any] = (), guarded: bool = False) -> _Result:
        """One statement written with ``?`` and ``{users}``/``{modalities}``, on this backend."""
        tables = self._db.tables
        return self._db.execute(_statement(sql, tables["users"], tables["modalities"]), params, guarded)

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
            self._run(
                "INSERT INTO {users} (name, role, password_hash, session_stamp, labels) VALUES (?, ?, ?, ?, ?)",
                (name, role.value, hash_password(password), new_session_stamp(), _joined(labels)),
            )
        except _Duplicate:
            raise AccountError(f"user {name!r} exists already") from None
        return User(name, role, labels)

    def set_password(self, name: str, password: str) -> None:
        """Replace a user's password (at least :data:`MIN_PASSWORD_LENGTH` characters)."""
        check_password(password)
        cur = self._run("UPDATE {users} SET password_hash = ?, session_stamp = ? WHERE name = ?",
                                  (hash_password(password), new_session_stamp(), name))
        if cur.rowcount == 0:
            raise AccountError(f"no user named {name!r}")

    def set_role(self, name: str, role: Role | str) -> None:
        """Change a user's role; the last admin cannot be demoted."""
        role = Role.parse(role)
        cur = self._run(
            f"UPDATE {{users}} SET role = ?, session_stamp = ? WHERE name = ? AND (? = 'admin' OR {_NOT_LAST_ADMIN})",
            (role.value, new_session_stamp(), name, role.value), guarded=True,
        )
        if cur.rowcount == 0:
            self._why_unchanged(name, f"demoted to {role.value}")

    def set_labels(self, name: str, labels: str | Iterable[str] | None) -> bool:
        """Restrict a user to studies having one of ``labels`` (none: every
        study); True if that changed them, which ends the user's dashboard
        sessions as a new role does."""
        labels = _joined(checked_labels(labels))
        cur = self._run("UPDATE {users} SET labels = ?, session_stamp = ? WHERE name = ? AND labels != ?",
                                  (labels, new_session_stamp(), name, labels))
        if cur.rowcount == 0 and self.credential_stamp(name) is None:
            raise AccountError(f"no user named {name!r}")
        return cur.rowcount > 0

    def remove_user(self, name: str) -> None:
        """Delete a user; the last admin cannot be removed."""
        cur = self._run(f"DELETE FROM {{users}} WHERE name = ? AND {_NOT_LAST_ADMIN}", (name,), guarded=True)
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
        row = self._run("SELECT session_stamp FROM {users} WHERE name = ?", (name,)).one()
        return None if row is None or not row[0] else str(row[0])

    def revoke_sessions(self, name: str) -> None:
        """End every dashboard session of ``name`` (logout): its cookies no longer match."""
        self._run("UPDATE {users} SET session_stamp = ? WHERE name = ?", (new_session_stamp(), name))

    def users(self) -> list[User]:
        """Every user, by name."""
        rows = self._run("SELECT name, role, labels FROM {users} ORDER BY name").rows
        return [User(name, Role(role), _split(labels)) for name, role, labels in rows]

    def user(self, name: str) -> User | None:
        """The user called ``name`` with their role and labels now (None if there is none)."""
        row = self._run("SELECT role, labels FROM {users} WHERE name = ?", (name,)).one()
        return None if row is None else User(name, Role(row[0]), _split(row[1]))

    def credential_stamp(self, name: str) -> tuple[str, str] | None:
        """The user's role and password hash (None if there is no such user).

        Lets a cache of verified credentials notice a changed password, role
        or a removed user at once.
        """
        row = self._run("SELECT role, password_hash FROM {users} WHERE name = ?", (name,)).one()
        return None if row is None else (row[0], row[1])

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (constant-time check)."""
        row = self._run("SELECT role, password_hash, labels FROM {users} WHERE name = ?", (name,)).one()
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
            self._run(
                "INSERT INTO {modalities} (name, aet, host, port, allow, labels) VALUES (?, ?, ?, ?, ?, ?)",
                (peer.name, peer.aet, peer.host, peer.port, ",".join(peer.allow), _joined(peer.labels)),
            )
        except _Duplicate:
            raise AccountError(f"modality {name!r} exists already") from None
        return peer

    def update_modality(self, name: str, aet: str, host: str, port: int,
                        allow: str | list[str] | None = None,
                        labels: str | Iterable[str] | None = None) -> ModalitySettings:
        """Change a CLI-registered peer's AE title, address, permissions and
        (unless ``labels`` is None) labels, checked as when added."""
        peer = self._checked_modality(name, aet, host, port, allow, labels)
        cur = self._run(
            "UPDATE {modalities} SET aet = ?, host = ?, port = ?, allow = ?, labels = coalesce(?, labels) WHERE name = ?",
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
        cur = self._run("UPDATE {modalities} SET labels = ? WHERE name = ? AND labels != ?",
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
        cur = self._run("DELETE FROM {modalities} WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise AccountError(f"no modality named {name!r}")

    def modalities(self) -> list[ModalitySettings]:
        """Peers from the config file, then those added with the CLI."""
        rows = self._run("SELECT name, aet, host, port, allow, labels FROM {modalities} ORDER BY name").rows
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


def copy_accounts(source: Accounts, target: Accounts) -> tuple[list[str], list[str]]:
    """Copy every user (hash, role, labels, session stamp: logins go on) and
    CLI-registered peer of ``source`` that ``target`` lacks, e.g. a home's
    SQLite file into the PostgreSQL database it moves to; a name ``target``
    has already keeps ``target``'s row. Returns the names copied and those kept."""
    copied: list[str] = []
    kept: list[str] = []
    users = source._run("SELECT name, role, password_hash, session_stamp, labels FROM {users} ORDER BY name").rows
    for row in users:
        done = target._run("INSERT INTO {users} (name, role, password_hash, session_stamp, labels) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING", row).rowcount
        (copied if done else kept).append(str(row[0]))
    peers = source._run("SELECT name, aet, host, port, allow, labels FROM {modalities} ORDER BY name").rows
    for row in peers:
        done = target._run("INSERT INTO {modalities} (name, aet, host, port, allow, labels) "
                           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING", row).rowcount
        (copied if done else kept).append(str(row[0]))
    return copied, kept
