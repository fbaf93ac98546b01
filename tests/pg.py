"""A throwaway PostgreSQL for the index tests: Debian's binaries, loopback, a free port.

:func:`postgres_server` (session-scoped, registered in ``tests/conftest.py``)
runs ``initdb`` into a temporary data directory and starts the server on
127.0.0.1 with trust authentication and no durability (``fsync=off``: the
data is thrown away). PostgreSQL refuses to run as root: when the tests do
(CI does), ``initdb`` and ``pg_ctl`` run as the ``postgres`` user, who owns
the data directory. Each test (or module) gets its own database from
:meth:`PostgresServer.new_database`.

Missing binaries skip the PostgreSQL side of the tests with the reason; in CI
(``CI`` set) they fail instead: ``.ci/run`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: The cluster's superuser the tests connect as (trust authentication on loopback).
SUPERUSER = "postgres"


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl, or None."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        folder = Path(initdb).parent
        version = folder.parent.name
        if (folder / "pg_ctl").exists() and version.replace(".", "").isdigit():
            found.append((tuple(int(p) for p in version.split(".")), folder))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway cluster."""

    port: int
    data: Path
    bin: Path
    as_user: list[str]
    _names: itertools.count = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"pacsdash_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: .ci/run installs Debian's postgresql)")
    pytest.skip(reason)


def start_server() -> PostgresServer:
    """initdb and start a cluster on a free loopback port (see the module's docstring)."""
    folder = postgres_bin()
    if folder is None:
        _unavailable("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb missing)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e .)")
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="pacsdash-pg-")
    data = Path(root) / "data"
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as postgres, in a folder postgres owns
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root needs runuser to start PostgreSQL as the postgres user")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    init = subprocess.run(
        [*as_user, str(folder / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, timeout=300)
    if init.returncode:
        pytest.fail(f"initdb failed: {init.stderr or init.stdout}")
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{root}' "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    start = subprocess.run(
        [*as_user, str(folder / "pg_ctl"), "-D", str(data), "-l", str(Path(root) / "log"), "-o", options,
         "-w", "-t", "120", "start"],
        capture_output=True, text=True, timeout=180)
    server = PostgresServer(port, data, folder, as_user)
    if start.returncode:
        log = (Path(root) / "log").read_text(errors="replace") if (Path(root) / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {start.stderr or start.stdout}\n{log}")
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL for the session (skipped, or failed in CI, when not installed)."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data.parent, ignore_errors=True)


# -- archives on either index, for the tests run against both ----------------------------
#: The index backends the archive tests run against (``index_backend``).
BACKENDS = ("duckdb", "postgresql")


@dataclass
class ArchiveHome:
    """Where a test's archive lives: a folder (files, journal) and its index,
    a DuckDB file or a PostgreSQL database of its own; :meth:`open` may be
    called again (a restart)."""

    backend: str
    folder: Path
    url: str | None = None

    def open(self, label_rules=()):
        from pacsdash.archive import Archive

        if self.url is None:
            return Archive.open_home(self.folder / "store", self.folder / "index.duckdb", label_rules)
        from pacsdash.archive.pg_index import PostgresIndex
        from pacsdash.archive.store import LocalStore

        index = PostgresIndex(self.url)
        try:
            return Archive.open_index(LocalStore(self.folder / "store"), index, self.folder / "index.journal",
                                      label_rules)
        except BaseException:
            index.close()
            raise


def archive_home(backend: str, folder: Path, request) -> ArchiveHome:
    """An :class:`ArchiveHome` in ``folder`` on ``backend`` (PostgreSQL: a new database of the session's server)."""
    if backend == "duckdb":
        return ArchiveHome(backend, folder)
    server = request.getfixturevalue("postgres_server")
    return ArchiveHome(backend, folder, server.new_database())


def rows(archive, sql: str, params=None) -> list:
    """Every row of one read statement on an archive's index, either backend (written with ``?``)."""
    index = archive._index  # noqa: SLF001 - the index behind the read-after-write wrapper
    archive.wait_indexed()
    if index.dialect.name == "postgresql":
        return [tuple(r) for r in index._read(sql, params)]  # noqa: SLF001
    return index._cursor().execute(sql, params or []).fetchall()  # noqa: SLF001


@contextlib.contextmanager
def index_cursor(archive, commit: bool = True):
    """A cursor of an archive's index in a transaction, committed at the end or (``commit=False``) rolled back."""
    index = archive._index  # noqa: SLF001
    archive.wait_indexed()
    if index.dialect.name == "postgresql":
        from pacsdash.archive.pg_index import _Cursor

        with index._pool.connection() as conn, conn.transaction(force_rollback=not commit), \
                conn.cursor() as cur:  # noqa: SLF001
            yield _Cursor(cur)
        return
    cursor = index._cursor()  # noqa: SLF001
    cursor.execute("BEGIN TRANSACTION")
    try:
        yield cursor
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT" if commit else "ROLLBACK")
