"""The shared back ends of the ``-pg`` server variants: a throwaway PostgreSQL and moto's S3 server.

The same way the tests start them (``tests/pg.py``, ``tests/s3.py``), without pytest:

- :class:`Postgres`: Debian's binaries (``/usr/lib/postgresql/<newest>/bin``), ``initdb`` into a folder of
  the run and ``postgres`` on 127.0.0.1 on a free port, trust authentication, as the ``postgres`` user when
  the benchmark runs as root (PostgreSQL refuses root). Unlike the tests' cluster it keeps PostgreSQL's
  durability defaults (``fsync``, ``synchronous_commit``, ``full_page_writes`` on): the index's commits cost
  what they would in production. One cluster per run (:func:`postgres`), started on first use and stopped by
  :func:`shutdown`; every server gets a database of its own, dropped when it stops. The postmaster is a child
  of the benchmark process, so its CPU time counts as the measurement's, not as other processes' load.
- :class:`MotoS3`: ``python -m moto.server`` on 127.0.0.1, one per server (its objects live in moto's
  memory, freed when it stops), with test credentials (:data:`S3_ENV`), never the machine's own. moto is a
  Python S3 emulator: what S3 costs here is a lower bound of what MinIO or AWS would give.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import LOOPBACK, BenchError, Skipped, free_port, stop_process, tail, wait_until

#: The cluster's superuser the benchmark connects as (trust authentication on loopback).
PG_USER = "postgres"
#: Credentials moto accepts (any would do), and nothing of the machine's own AWS set-up.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench-access-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/pacsdash-bench-aws-credentials",
    "AWS_CONFIG_FILE": "/nonexistent/pacsdash-bench-aws-config",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Variables of the machine's AWS set-up that must not reach the servers.
S3_ENV_DROPPED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
REGION = "us-east-1"
START_TIMEOUT = 120.0


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and postgres, or None."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        folder = Path(initdb).parent
        version = folder.parent.name
        if (folder / "postgres").exists() and version.replace(".", "").isdigit():
            found.append((tuple(int(p) for p in version.split(".")), folder))
    return max(found)[1] if found else None


def s3_env() -> dict[str, str]:
    """This process's environment with the benchmark's S3 credentials (and no other AWS set-up)."""
    env = {k: v for k, v in os.environ.items() if k not in S3_ENV_DROPPED}
    return {**env, **S3_ENV}


class Postgres:
    """A running throwaway cluster (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        folder = postgres_bin()
        if folder is None:
            raise Skipped("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb missing; Debian: postgresql)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise Skipped("psycopg is not installed (pip install -e .)") from None
        self.bin = folder
        self.version = folder.parent.name
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="postgres-", dir=root))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses root: run it as postgres, in a folder postgres owns
            runuser = shutil.which("runuser")
            if runuser is None:
                raise Skipped("running as root needs runuser to start PostgreSQL as the postgres user")
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        self._names = itertools.count()
        init = subprocess.run([*self.as_user, str(folder / "initdb"), "-D", str(self.data), "-U", PG_USER,
                               "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
                              capture_output=True, text=True, timeout=300)
        if init.returncode:
            raise BenchError(f"initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.as_user, str(folder / "postgres"), "-D", str(self.data), "-c", f"listen_addresses={LOOPBACK}",
             "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=200"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self._ready, START_TIMEOUT, "PostgreSQL to accept connections", interval=0.2)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        import psycopg

        if self.proc.poll() is not None:
            raise BenchError(f"PostgreSQL exited with code {self.proc.returncode}:\n{tail(self.log_path)}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str) -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown of the postmaster (SIGINT), then remove the cluster's folder."""
        try:
            if self.proc.poll() is None:
                try:
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGINT)
                    self.proc.wait(timeout=60)
                except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                    stop_process(self.proc, 30)
        finally:
            self._log.close()
            shutil.rmtree(self.root, ignore_errors=True)


_postgres: Postgres | None = None


def postgres(tmp_root: Path) -> Postgres:
    """The run's cluster, started on first use under ``tmp_root``."""
    global _postgres
    if _postgres is None:
        _postgres = Postgres(tmp_root)
        atexit.register(shutdown)
    return _postgres


def current() -> Postgres | None:
    """The run's cluster if it was started."""
    return _postgres


def shutdown() -> None:
    """Stop the run's cluster, if one was started."""
    global _postgres
    if _postgres is not None:
        cluster, _postgres = _postgres, None
        cluster.stop()


class MotoS3:
    """moto's S3 server on loopback, for one server under test; :meth:`stop` frees what it holds."""

    def __init__(self, folder: Path) -> None:
        try:
            import boto3  # noqa: F401
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise Skipped(f"moto's server mode is not installed ({exc}); pip install -e '.[test]'") from None
        self.port = free_port()
        self.endpoint_url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = folder / "moto.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=s3_env())
        try:
            wait_until(self._ready, START_TIMEOUT, "moto's S3 server to answer", interval=0.2)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise BenchError(f"moto exited with code {self.proc.returncode}:\n{tail(self.log_path)}")
        try:
            self.client().list_buckets()
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        return True

    def client(self):
        import boto3

        return boto3.session.Session(aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"]).client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def count_objects(self, bucket: str, prefix: str, suffix: str = "") -> int:
        """Objects under ``prefix/`` whose names end in ``suffix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        return sum(1 for page in pages for item in page.get("Contents", []) if item["Key"].endswith(suffix))

    def stop(self) -> None:
        try:
            stop_process(self.proc, 15)
        finally:
            self._log.close()
