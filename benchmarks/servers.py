"""Start, probe and stop the three receivers under test, each in a fresh folder.

Every server is a context manager: call ``start()`` inside the ``with`` block;
leaving the block stops the process (SIGTERM, then SIGKILL if it hangs) and
removes its folder, also on errors.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.common import (
    CLIENT_AET,
    CLIENT_PORT,
    LOOPBACK,
    ORTHANC,
    ORTHANC_DICOMWEB,
    ORTHANC_PG_INDEX,
    PACSDASH,
    PROJECT,
    BenchError,
    Skipped,
    count_files,
    dcmtk_env,
    descendants,
    free_port,
    process_cpu_seconds,
    stop_process,
    tail,
    wait_until,
)
from benchmarks.machine import source_state
from pacsdash.config import set_server_option

START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
#: ``pacsdash import`` using no CPU for this long is taken to hang.
IMPORT_STALL = 120.0
#: HTTP Basic credentials the benchmark uses on both servers' DICOMweb.
WEB_USER, WEB_PASSWORD = "bench", "bench-password"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def reap_orphans(pids: list[int], grace: float = 5.0) -> int:
    """SIGKILL those of ``pids`` (children of a server we started) still alive after ``grace`` s; return how many."""
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(left)


def http_get(url: str, timeout: float = HTTP_TIMEOUT, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET (with HTTP Basic ``auth`` if given); status 0 if nothing answers."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


class Server:
    """A receiver process in its own temporary folder."""

    name = "server"
    label = "server"
    aet = "ANY-SCP"

    def __init__(self, tmp_root: Path, keep: bool = False) -> None:
        tmp_root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=tmp_root))
        self.keep = keep
        self.proc: subprocess.Popen | None = None
        self.dicom_port = 0
        self.log_path = self.folder / "server.log"
        self._log = None
        #: Warning and error lines of the log, collected when the server stops.
        self.issues: list[str] = []
        self.exit_code: int | None = None
        #: Which code the server ran (pacsdash only: commit and uncommitted changes).
        self.source = ""
        #: Set when the process did not stop cleanly on SIGTERM.
        self.stop_note = ""
        self.stop_seconds: float | None = None
        self.issues_extra: list[str] = []

    @property
    def pid(self) -> int:
        """Process id of the server (the process whose RSS is measured)."""
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.folder, env=env)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.proc.returncode}:\n{tail(self.log_path)}")

    def start(self) -> None:
        """Start the process and return once it accepts associations."""
        raise NotImplementedError

    def stored_count(self) -> int:
        """How many instances the server holds now."""
        raise NotImplementedError

    def log_issues(self) -> list[str]:
        """Warning and error lines of the server's log."""
        return []

    def stop(self) -> None:
        """Stop the process and close the log (the folder is removed by ``__exit__``)."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                children = descendants(self.proc.pid)
                started = time.monotonic()
                self.exit_code = stop_process(self.proc, STOP_TIMEOUT)
                left = reap_orphans(children)
                if left:
                    print(f"  note: {self.name} left {left} child process(es) running; killed them", file=sys.stderr)
                    self.issues_extra.append(f"[benchmark] {self.name} left {left} child process(es) running after "
                                             "it exited; the benchmark killed them")
                if self.exit_code == -9:
                    self.stop_note = (f"[benchmark] {self.name} did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM; "
                                      "killed with SIGKILL")
                elif self.exit_code not in (0, -15):
                    self.stop_note = f"[benchmark] {self.name} exited with code {self.exit_code} after SIGTERM"
                else:
                    self.stop_seconds = round(time.monotonic() - started, 2)
                if self.stop_note:
                    print(f"  note: {self.stop_note}", file=sys.stderr)
            elif self.proc is not None and self.exit_code is None:
                self.exit_code = self.proc.returncode
                self.stop_note = f"[benchmark] {self.name} had exited by itself with code {self.exit_code}"
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            self.issues = self.issues_extra + self.log_issues()

    def __enter__(self) -> Server:
        """Own the folder; call :meth:`start` inside the block (after any setup)."""
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if not self.keep:
                shutil.rmtree(self.folder, ignore_errors=True)


#: Expected warnings of a fresh benchmark home, left out of the report.
BENIGN_PACSDASH = ("no users yet: add one", "Host wildcard '*' will allow connections")


class PacsdashServer(Server):
    """``pacsdash serve`` on loopback with ports chosen by the OS."""

    name = "pacsdash"
    label = "pacsdash"
    aet = "PACSDASH"

    def __init__(self, tmp_root: Path, keep: bool = False) -> None:
        super().__init__(tmp_root, keep)
        self.home = self.folder / "home"
        self.http_port = 0
        self.server_pid = 0
        self.prepared = False
        #: Extra environment variables of ``pacsdash serve`` (e.g. ``PACSDASH_TRAFFIC=off``).
        self.env: dict[str, str] = {}

    @property
    def pid(self) -> int:
        """The serving process, as published in ``server.json``."""
        return self.server_pid or super().pid

    def _env(self) -> dict[str, str] | None:
        """Environment of every ``pacsdash`` process of this home (None: the benchmark's own)."""
        return {**os.environ, **self.env} if self.env else None

    def configure(self) -> None:
        """Write the home's config before any command opens it (the default home needs nothing)."""

    def _configure_once(self) -> None:
        if not getattr(self, "_configured", False):
            self.configure()
            self._configured = True

    def _cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        result = subprocess.run([str(PACSDASH), *args], capture_output=True, text=True, timeout=timeout,
                                cwd=self.folder, stdin=subprocess.DEVNULL, env=self._env())
        if result.returncode != 0:
            lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
            raise BenchError(f"pacsdash {args[0]} failed (exit {result.returncode}): {lines[-1] if lines else 'no output'}")
        return result

    def prepare(self) -> None:
        """Register the benchmark client so that it may C-FIND, and let any peer
        C-STORE as Orthanc's default does (once per home)."""
        if not self.prepared:
            self._configure_once()
            self._cli("modalities", "add", "bench", "--home", str(self.home), "--aet", CLIENT_AET,
                      "--host", LOOPBACK, "--port", str(CLIENT_PORT))
            set_server_option(self.home, "accept_unknown_store", True)
            self.prepared = True

    def add_user(self, name: str = WEB_USER, password: str = WEB_PASSWORD, role: str = "admin") -> None:
        """``pacsdash users add`` into the home (before or while the server runs)."""
        self._configure_once()
        result = subprocess.run([str(PACSDASH), "users", "add", name, "--role", role, "--password-stdin",
                                 "--home", str(self.home)], input=password + "\n", capture_output=True, text=True,
                                timeout=60, cwd=self.folder, env=self._env())
        if result.returncode != 0:
            lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
            raise BenchError(f"pacsdash users add failed (exit {result.returncode}): {lines[-1] if lines else ''}")

    @property
    def base_url(self) -> str:
        """Root of the HTTP server (dashboard, ``/dicom-web``, ``/api``)."""
        return f"http://{LOOPBACK}:{self.http_port}"

    def import_offline(self, folders: list[Path], timeout: float, stall: float = IMPORT_STALL) -> str:
        """``pacsdash import`` into the home before the server starts; its summary line.

        An import that uses no CPU for ``stall`` seconds (it hangs) is stopped and reported as such.
        """
        self.prepare()
        argv = [str(PACSDASH), "import", "--home", str(self.home), *map(str, folders)]
        out_path, err_path = self.folder / "import.out", self.folder / "import.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.folder,
                                    env=self._env())
        started = last_change = time.monotonic()
        last_cpu = -1.0
        try:
            while proc.poll() is None:
                now = time.monotonic()
                cpu = process_cpu_seconds(proc.pid)
                if cpu != last_cpu:
                    last_cpu, last_change = cpu, now
                elif now - last_change > stall:
                    stored = count_files(self.home / "store", ".dcm")
                    raise BenchError(f"pacsdash import hung: no CPU time used for {stall:.0f} s ({stored} files in the "
                                     f"store, {now - started:.0f} s after it started); stopped by the benchmark")
                if now - started > timeout:
                    raise BenchError(f"pacsdash import did not finish within {timeout:.0f} s")
                time.sleep(1.0)
        finally:
            stop_process(proc, 10)
        output = out_path.read_text(errors="replace").strip()
        if proc.returncode != 0:
            lines = [ln.strip() for ln in err_path.read_text(errors="replace").splitlines() if ln.strip()]
            raise BenchError(f"pacsdash import failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
        return output.splitlines()[-1] if output else ""

    def start(self) -> None:
        if not PACSDASH.exists():
            raise Skipped(f"{PACSDASH} not found")
        self.prepare()
        (self.home / "run" / "server.json").unlink(missing_ok=True)  # a restart: not the last run's ports
        self._spawn([str(PACSDASH), "serve", "--home", str(self.home), "--host", LOOPBACK, "--http-port", "0",
                     "--dicom-port", "0", "--aet", self.aet], env=self._env())
        info_path = self.home / "run" / "server.json"

        def ready() -> bool:
            self._check_alive()
            try:
                info = json.loads(info_path.read_text())
                self.http_port, self.dicom_port = int(info["http_port"]), int(info["dicom_port"])
                self.server_pid = int(info.get("pid") or self.proc.pid)
            except (OSError, ValueError, KeyError, TypeError):
                return False
            return http_get(f"http://{LOOPBACK}:{self.http_port}/api/health", timeout=2)[0] == 200

        wait_until(ready, START_TIMEOUT, "pacsdash to answer /api/health", interval=0.2)
        self.source = source_state()

    def stored_count(self) -> int:
        return count_files(self.home / "store", ".dcm")

    def log_issues(self) -> list[str]:
        lines: list[str] = []
        for path in (self.log_path, *sorted((self.home / "logs").glob("*.log*"))):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            lines += [
                ln for ln in text.splitlines()
                if re.search(r" (WARNING|ERROR|CRITICAL) |^(WARNING|ERROR|CRITICAL):|Traceback", ln) and not any(b in ln for b in BENIGN_PACSDASH)
            ]
        return list(dict.fromkeys(lines))  # the log file and standard error hold the same lines


PG_NOTES = (
    "pacsdash-pg: pacsdash serve with [index] url = a fresh database on a throwaway PostgreSQL {version} (Debian's "
    "binaries, loopback TCP, PostgreSQL's durability defaults: fsync, synchronous_commit and full_page_writes on, "
    "shared_buffers 128 MB) and [storage] url = s3://bucket/archive on moto's S3 server (endpoint_url on loopback; "
    "one moto process per server). moto is a Python S3 emulator, so the S3 figures are a lower bound of what MinIO "
    "or AWS S3 would give. orthanc-pg: Orthanc 1.10.1 with Debian's orthanc-postgresql index plugin "
    "(libOrthancPostgreSQLIndex, EnableIndex true, EnableStorage false: files in its storage folder as for "
    "orthanc; plugin defaults otherwise, IndexConnectionsCount 1, Lock true) on the same PostgreSQL server, its own "
    "database. The PostgreSQL server and moto are children of the benchmark: their CPU time counts as the "
    "measurement's own, not as other processes' load."
)


class PacsdashPgServer(PacsdashServer):
    """``pacsdash serve`` with its index in a fresh PostgreSQL database and its files in a bucket on moto."""

    name = "pacsdash-pg"
    label = "pacsdash PostgreSQL + S3"
    bucket = "pacsdash-bench"
    prefix = "archive"

    def __init__(self, tmp_root: Path, keep: bool = False) -> None:
        super().__init__(tmp_root, keep)
        self.tmp_root = tmp_root
        self.database = ""
        self.moto = None

    def configure(self) -> None:
        from benchmarks import backends
        from pacsdash.config import set_option

        cluster = backends.postgres(self.tmp_root)
        self.database = cluster.create_database("bench_pacsdash")
        self.index_url = cluster.url(self.database)
        self.moto = backends.MotoS3(self.folder)
        self.moto.create_bucket(self.bucket)
        self.env.update(backends.S3_ENV)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        set_option(self.home, "index", "url", self.index_url)
        set_option(self.home, "storage", "url", f"s3://{self.bucket}/{self.prefix}")
        set_option(self.home, "storage", "endpoint_url", self.moto.endpoint_url)
        set_option(self.home, "storage", "region", backends.REGION)

    def _env(self) -> dict[str, str] | None:
        from benchmarks import backends

        return {**backends.s3_env(), **self.env}

    def stored_count(self) -> int:
        if self.moto is None:
            return 0
        return self.moto.count_objects(self.bucket, self.prefix, ".dcm")

    def __exit__(self, *exc: object) -> None:
        from benchmarks import backends

        try:
            super().__exit__(*exc)
        finally:
            if self.moto is not None:
                self.moto.stop()
            if self.database and backends.current() is not None and not self.keep:
                backends.current().drop_database(self.database)


ORTHANC_CONFIG_NOTES = (
    "Orthanc 1.10.1 defaults kept: SyncStorageArea true (fsync of stored files), StorageAccessOnFind "
    "\"Always\", MaximumPduLength 16384, DicomThreadsCount 4, SQLite index; HTTP and DICOM listen on all "
    "interfaces (1.10.1 has no bind-address option), RemoteAccessAllowed false limits HTTP to loopback."
)


ORTHANC_DICOMWEB_NOTES = (
    "Orthanc's DICOMweb plugin (Debian orthanc-dicomweb 1.7) with its defaults but Root /dicom-web/: "
    "StudiesMetadata and SeriesMetadata \"Full\" (metadata read from the stored files); Orthanc with "
    "KeepAlive and TcpNoDelay on, HTTP Basic auth with one registered user (as pacsdash checks its users)."
)


class OrthancServer(Server):
    """Orthanc with its own configuration, Nagle off; no plugins unless ``dicomweb``."""

    name = "orthanc"
    label = "Orthanc"
    aet = "ORTHANC"

    def __init__(self, tmp_root: Path, keep: bool = False, dicomweb: bool = False) -> None:
        super().__init__(tmp_root, keep)
        self.http_port = 0
        #: Load the DICOMweb plugin at /dicom-web/ and ask for HTTP Basic auth.
        self.dicomweb = dicomweb

    @property
    def base_url(self) -> str:
        """Root of Orthanc's HTTP server."""
        return f"http://{LOOPBACK}:{self.http_port}"

    def _auth(self) -> tuple[str, str] | None:
        return (WEB_USER, WEB_PASSWORD) if self.dicomweb else None

    def start(self) -> None:
        if not ORTHANC.exists():
            raise Skipped(f"{ORTHANC} not found")
        self.http_port, self.dicom_port = free_port(), free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [],
            "DicomModalities": {"bench": [CLIENT_AET, LOOPBACK, CLIENT_PORT]},
        }
        if self.dicomweb:
            if not ORTHANC_DICOMWEB.exists():
                raise Skipped(f"{ORTHANC_DICOMWEB} not found (Debian package orthanc-dicomweb)")
            config.update({
                "Plugins": [str(ORTHANC_DICOMWEB)],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                "AuthenticationEnabled": True,
                "RegisteredUsers": {WEB_USER: WEB_PASSWORD},
                "KeepAlive": True,
                "TcpNoDelay": True,
            })
        self.extend_config(config)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn([str(ORTHANC), str(path)], env=dcmtk_env())

        def ready() -> bool:
            self._check_alive()
            return http_get(f"http://{LOOPBACK}:{self.http_port}/system", timeout=2, auth=self._auth())[0] == 200

        wait_until(ready, START_TIMEOUT, "Orthanc to answer /system", interval=0.2)
        if self.dicomweb:
            status, _ = http_get(f"{self.base_url}/dicom-web/studies?limit=1", auth=self._auth())
            if status != 200:
                raise BenchError(f"Orthanc's DICOMweb plugin answered {status} at /dicom-web/studies; see {self.log_path}")

    def extend_config(self, config: dict) -> None:
        """Change Orthanc's config before it is written (the default Orthanc: nothing)."""

    def stored_count(self) -> int:
        status, body = http_get(f"http://{LOOPBACK}:{self.http_port}/statistics", auth=self._auth())
        if status != 200:
            raise BenchError(f"Orthanc /statistics answered {status}")
        return int(json.loads(body)["CountInstances"])

    def log_issues(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        # Orthanc logs its normal start-up at level W; only E lines are problems.
        return [ln for ln in text.splitlines() if re.match(r"^E\d{4} ", ln)]


class OrthancPgServer(OrthancServer):
    """Orthanc with Debian's PostgreSQL index plugin, its index in a fresh database of the run's PostgreSQL."""

    name = "orthanc-pg"
    label = "Orthanc PostgreSQL"

    def __init__(self, tmp_root: Path, keep: bool = False, dicomweb: bool = False) -> None:
        super().__init__(tmp_root, keep, dicomweb)
        self.tmp_root = tmp_root
        self.database = ""

    def extend_config(self, config: dict) -> None:
        from benchmarks import backends

        if not ORTHANC_PG_INDEX.exists():
            raise Skipped(f"{ORTHANC_PG_INDEX} not found (Debian package orthanc-postgresql)")
        cluster = backends.postgres(self.tmp_root)
        self.database = cluster.create_database("bench_orthanc")
        config["Plugins"] = [*config["Plugins"], str(ORTHANC_PG_INDEX)]
        config["PostgreSQL"] = {"EnableIndex": True, "EnableStorage": False, "Host": LOOPBACK, "Port": cluster.port,
                                "Database": self.database, "Username": backends.PG_USER, "Password": ""}

    def __exit__(self, *exc: object) -> None:
        from benchmarks import backends

        try:
            super().__exit__(*exc)
        finally:
            if self.database and backends.current() is not None and not self.keep:
                backends.current().drop_database(self.database)


class BareServer(Server):
    """:mod:`benchmarks.bare_scp` in a subprocess: pynetdicom writing files, nothing else."""

    name = "bare"
    label = "bare pynetdicom"
    aet = "BARE"

    def start(self) -> None:
        port_file = self.folder / "port"
        self._spawn([sys.executable, "-m", "benchmarks.bare_scp", "--out", str(self.folder / "received"),
                     "--port-file", str(port_file), "--aet", self.aet],
                    env={**os.environ, "PYTHONPATH": str(PROJECT)})

        def ready() -> bool:
            self._check_alive()
            try:
                self.dicom_port = int(port_file.read_text())
            except (OSError, ValueError):
                return False
            return True

        wait_until(ready, START_TIMEOUT, "the bare receiver to listen")

    def stored_count(self) -> int:
        return count_files(self.folder / "received", ".dcm")

    def log_issues(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if "Traceback" in ln or "Error" in ln]


SERVERS: dict[str, type[Server]] = {"pacsdash": PacsdashServer, "orthanc": OrthancServer, "bare": BareServer,
                                    "pacsdash-pg": PacsdashPgServer, "orthanc-pg": OrthancPgServer}
#: The pacsdash servers and the Orthancs (C-FIND, DICOMweb, scale).
PACSDASH_NAMES = ("pacsdash", "pacsdash-pg")
ORTHANC_NAMES = ("orthanc", "orthanc-pg")
