"""Soak test: parallel C-STORE, STOW-RS, QIDO-RS, WADO-RS and dashboard sessions
against one ``pacsdash serve`` while it is killed with SIGKILL at random times.

Usage (from the project folder)::

    .venv/bin/python -m benchmarks.soak                       # 3 minutes, 3 kills
    .venv/bin/python -m benchmarks.soak --minutes 10 --kills 8 --json /tmp/soak.json

The server runs on one home with fixed loopback ports, in its own process
group. At random times (while it is up) the whole group, DICOM worker
processes included, gets SIGKILL; the server is started again on the same
home and ports, and the time from the new process's start to (a) a C-ECHO
being answered on the DICOM port and (b) ``/login`` answering 200 is measured.
Clients keep going through the outages, counting failures, 5xx answers and
hangs (a request taking :data:`HANG_S` or more) instead of stopping.

An instance is *acknowledged* when its C-STORE got status 0x0000 or its
STOW-RS answer (200 or 202) lists it in ReferencedSOPSequence. At the end the
server is stopped with SIGTERM, started once more, and every acknowledged
instance is fetched over WADO-RS and compared byte for byte (the data set
after the file meta) with what was sent; *lost* counts those missing or
different (must be 0).

Writes ``benchmarks/results/soak-DATE-COMMIT.json`` and ``.md`` (or
``--json PATH`` and PATH with ``.md``) and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import logging
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from pydicom import dcmwrite
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from benchmarks.common import (
    CLIENT_AET,
    LOOPBACK,
    PACSDASH,
    RESULTS_DIR,
    WORK_DIR,
    BenchError,
    descendants,
    free_port,
    read_tree_rss_kb,
    tail,
)
from benchmarks.datasets import _instance
from benchmarks.dicomweb import split_multipart
from benchmarks.machine import machine_info, source_state
from benchmarks.servers import WEB_PASSWORD, WEB_USER, PacsdashServer, reap_orphans
from pacsdash.demo.generate import PREFIX, _study

#: A request (or one C-STORE, or an association being set up) taking this long is a hang.
HANG_S = 30.0
#: Longest wait for a started server to answer C-ECHO and /login.
READY_TIMEOUT = 120.0
#: How often the readiness probes try while a server starts.
PROBE_INTERVAL = 0.02
#: Targets of issue 15: DICOM port accepting within 1 s of the start, the dashboard within 3 s.
TARGET_DICOM_S, TARGET_DASHBOARD_S = 1.0, 3.0
#: Pause of a client after a failure (the server is probably down).
BACKOFF_S = 0.25
#: Rows and columns of the generated CT instances (small: the soak is about survival, not bandwidth).
IMAGE_SIZE = 64
RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
KINDS = ("c-store", "stow-rs", "qido-rs", "wado-rs", "dashboard")
#: The figures every report holds (issue 15).
FIELDS = ("acknowledged", "lost", "kills", "kills_survived", "requests_failed", "http_5xx", "hangs", "peak_rss_mib",
          "final_run", "first_start", "restart_after_kill", "restart_dicom_s", "restart_dashboard_s", "clean_start",
          "by_kind", "stopped_cleanly")


def say(text: str) -> None:
    print(text, flush=True)


# -- what the clients saw ------------------------------------------------------------
@dataclass
class Tally:
    """Outcomes of one kind of request."""

    ok: int = 0
    failed: int = 0
    http_5xx: int = 0
    hangs: int = 0
    #: A few distinct failure reasons with their counts.
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        top = sorted(self.reasons.items(), key=lambda kv: -kv[1])[:12]
        return {"ok": self.ok, "failed": self.failed, "http_5xx": self.http_5xx, "hangs": self.hangs,
                "failure_reasons": dict(top)}


@dataclass(frozen=True)
class Acked:
    """An acknowledged instance: where it is and a digest of its data set bytes as sent."""

    study: str
    series: str
    sha256: str
    via: str


class Ledger:
    """Thread-safe counts and the acknowledged instances."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tallies = {kind: Tally() for kind in KINDS}
        self.acked: dict[str, Acked] = {}
        self._order: list[str] = []
        self.sent = 0

    def ok(self, kind: str) -> None:
        with self.lock:
            self.tallies[kind].ok += 1

    def fail(self, kind: str, reason: str, elapsed: float = 0.0, status: int = 0) -> None:
        reason = re.sub(r"0x[0-9a-fA-F]+|\d{2,}", "N", reason)[:120]
        with self.lock:
            tally = self.tallies[kind]
            tally.failed += 1
            if status >= 500:
                tally.http_5xx += 1
            if elapsed >= HANG_S:
                tally.hangs += 1
            tally.reasons[reason] = tally.reasons.get(reason, 0) + 1

    def ack(self, uid: str, item: Acked) -> None:
        with self.lock:
            if uid not in self.acked:
                self._order.append(uid)
            self.acked[uid] = item

    def some_acked(self) -> tuple[str, Acked] | None:
        """A random acknowledged instance (None before the first)."""
        with self.lock:
            if not self._order:
                return None
            uid = random.choice(self._order)
            return uid, self.acked[uid]


def split_part10(part10: bytes) -> tuple[str, bytes]:
    """(MediaStorageSOPInstanceUID, data set bytes after the file meta) of a Part 10 file."""
    handle = io.BytesIO(part10)
    read_preamble(handle, False)
    meta = read_dataset(handle, is_implicit_VR=False, is_little_endian=True,
                        stop_when=lambda tag, vr, length: tag.group != 2)
    return str(meta.get("MediaStorageSOPInstanceUID", "")), part10[handle.tell():]


def data_set_digest(part10: bytes) -> str:
    """SHA-256 of a Part 10 file's data set (the bytes after the file meta)."""
    return hashlib.sha256(split_part10(part10)[1]).hexdigest()


class Generator:
    """New CT instances (Part 10 bytes), a series per batch, a study per few batches."""

    PATIENT = ("SOAK^TEST", "SOAK0001", "19700101", "O")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.study = None
        self.batches = 0

    def batch(self, n: int) -> list[tuple[str, str, str, bytes]]:
        """``n`` instances of a new series: (study uid, series uid, SOP instance uid, Part 10 bytes)."""
        if self.study is None or self.batches % 4 == 0:
            self.study = _study(self.count, f"SOAK {self.name}", dt.date(2026, 1, 1))
        self.batches += 1
        series = generate_uid(PREFIX)
        out = []
        for k in range(n):
            ds = _instance(self.PATIENT, self.study, "CT", series, self.batches, k, IMAGE_SIZE)
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            out.append((str(self.study.StudyInstanceUID), series, str(ds.SOPInstanceUID), buffer.getvalue()))
            self.count += 1
        return out


# -- the server under test --------------------------------------------------------------
class SoakServer(PacsdashServer):
    """``pacsdash serve`` on one home and fixed ports, in its own process group."""

    name = "soak"

    def __init__(self, tmp_root: Path, keep: bool = False) -> None:
        super().__init__(tmp_root, keep)
        self.http_port, self.dicom_port = free_port(), free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = free_port()
        self.started_at = 0.0

    def launch(self) -> None:
        """Start the process (returns at once; :meth:`await_ready` measures the start)."""
        if self._log is None:
            self._log = open(self.log_path, "ab")
        self._log.write(f"\n==== soak: starting pacsdash serve at {dt.datetime.now().isoformat()} ====\n".encode())
        self._log.flush()
        (self.home / "run" / "server.json").unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [str(PACSDASH), "serve", "--home", str(self.home), "--host", LOOPBACK, "--http-port", str(self.http_port),
             "--dicom-port", str(self.dicom_port), "--aet", self.aet],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.folder,
            start_new_session=True)
        self.server_pid = self.proc.pid
        self.exit_code = None

    def await_ready(self) -> dict[str, float]:
        """Seconds from the process start to a C-ECHO answered and to ``/login`` answering 200."""
        got: dict[str, float] = {}
        failure: list[str] = []

        def probe(what: str, check: Callable[[], bool]) -> None:
            deadline = self.started_at + READY_TIMEOUT
            while time.monotonic() < deadline and not failure:
                if self.proc is None or self.proc.poll() is not None:
                    failure.append(f"pacsdash serve exited with code {self.proc.returncode if self.proc else '?'} "
                                   f"while starting:\n{tail(self.log_path)}")
                    return
                if check():
                    got[what] = time.monotonic() - self.started_at
                    return
                time.sleep(PROBE_INTERVAL)
            if not failure:
                failure.append(f"{what} not ready within {READY_TIMEOUT:.0f} s of the start:\n{tail(self.log_path)}")

        threads = [threading.Thread(target=probe, args=("dicom_s", self.echo)),
                   threading.Thread(target=probe, args=("dashboard_s", self.login_page))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failure:
            raise BenchError(failure[0])
        return {k: round(v, 3) for k, v in got.items()}

    def echo(self, timeout: float = 5.0) -> bool:
        """Whether the DICOM port answers a C-ECHO now."""
        ae = AE(ae_title=CLIENT_AET)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = timeout
        assoc = ae.associate(LOOPBACK, self.dicom_port, ae_title=self.aet)
        if not assoc.is_established:
            return False
        try:
            status = assoc.send_c_echo()
            return bool(status) and status.Status == 0
        finally:
            assoc.release()

    def login_page(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/login", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def tree(self) -> list[int]:
        """The server process and every descendant (DICOM workers, resource tracker, ...)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def kill9(self) -> int:
        """SIGKILL the process group and every descendant; return how many processes were killed."""
        pids = self.tree()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=30)
        left = reap_orphans(pids[1:], grace=10)
        if left:
            raise BenchError(f"{left} process(es) of the server were still alive 10 s after SIGKILL")
        self.proc = None
        return len(pids)

    def counts(self) -> dict[str, int]:
        """Open file descriptors and threads of the server process and of its whole tree."""
        out = {"fds": 0, "threads": 0, "tree_fds": 0, "tree_threads": 0, "processes": 0}
        for n, pid in enumerate(self.tree()):
            try:
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                threads = len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
            if n == 0:
                out["fds"], out["threads"] = fds, threads
            out["tree_fds"] += fds
            out["tree_threads"] += threads
            out["processes"] += 1
        return out


class MemorySampler(threading.Thread):
    """Peak VmRSS of the server process and of its process tree, every 0.5 s."""

    def __init__(self, server: SoakServer) -> None:
        super().__init__(name="soak-memory", daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.peak_own_kb = 0
        self.peak_tree_kb = 0
        self.peak_processes = 0

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            proc = self.server.proc
            if proc is None or proc.poll() is not None:
                continue
            own, tree, processes = read_tree_rss_kb(proc.pid)
            self.peak_own_kb = max(self.peak_own_kb, own or 0)
            self.peak_tree_kb = max(self.peak_tree_kb, tree)
            self.peak_processes = max(self.peak_processes, processes)


# -- the clients ------------------------------------------------------------------------
class Clients:
    """Threads of load; each loops until :attr:`stop` is set, never raising."""

    def __init__(self, server: SoakServer, ledger: Ledger, folder: Path, stores: int = 2, stows: int = 1,
                 pace: float = 0.05) -> None:
        self.server, self.ledger, self.folder, self.pace = server, ledger, folder, pace
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        plan: list[tuple[str, Callable[[str], None]]] = [(f"c-store-{k}", self.c_store) for k in range(stores)]
        plan += [(f"stow-rs-{k}", self.stow) for k in range(stows)]
        plan += [("qido-rs", self.qido), ("wado-rs", self.wado), ("dashboard", self.dashboard)]
        for name, target in plan:
            self.threads.append(threading.Thread(target=self._guarded, args=(name, target), name=f"soak-{name}",
                                                 daemon=True))

    def _guarded(self, name: str, target: Callable[[str], None]) -> None:
        while not self.stop.is_set():
            try:
                target(name)
            except Exception as exc:  # a client bug must not end the soak: count it and go on
                self.ledger.fail(name.rsplit("-", 1)[0] if name[-1].isdigit() else name,
                                 f"client error {type(exc).__name__}: {exc}")
                self.stop.wait(BACKOFF_S)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> list[str]:
        """Stop every client; the names of those still running after a hang's time."""
        self.stop.set()
        deadline = time.monotonic() + HANG_S + 15
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    def _http(self, kind: str, call: Callable[[], requests.Response]) -> requests.Response | None:
        """One HTTP request: the answer, or None after counting the failure."""
        started = time.monotonic()
        try:
            response = call()
        except requests.RequestException as exc:
            self.ledger.fail(kind, f"{type(exc).__name__}", time.monotonic() - started)
            self.stop.wait(BACKOFF_S)
            return None
        elapsed = time.monotonic() - started
        if elapsed >= HANG_S:
            self.ledger.fail(kind, f"took {elapsed:.0f} s (HTTP {response.status_code})", elapsed)
            return None
        return response

    def c_store(self, name: str) -> None:
        generator = Generator(name)
        ae = AE(ae_title=CLIENT_AET)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = HANG_S
        spool = self.folder / name
        spool.mkdir(parents=True, exist_ok=True)
        while not self.stop.is_set():
            batch = generator.batch(5)
            paths = []
            for k, (_, _, uid, data) in enumerate(batch):
                path = spool / f"{k}.dcm"
                path.write_bytes(data)
                paths.append(path)
            started = time.monotonic()
            assoc = ae.associate(LOOPBACK, self.server.dicom_port, ae_title=self.server.aet)
            if not assoc.is_established:
                elapsed = time.monotonic() - started
                self.ledger.fail("c-store", "association not established", elapsed)
                self.stop.wait(BACKOFF_S)
                continue
            wake_on_abort(assoc)
            try:
                for (study, series, uid, data), path in zip(batch, paths):
                    began = time.monotonic()
                    with self.ledger.lock:
                        self.ledger.sent += 1
                    try:
                        status = assoc.send_c_store(path)
                    except Exception as exc:  # pynetdicom raises on an aborted association in some states
                        self.ledger.fail("c-store", f"send_c_store raised {type(exc).__name__}",
                                         time.monotonic() - began)
                        break
                    elapsed = time.monotonic() - began
                    if status and status.Status == 0 and elapsed < HANG_S:
                        self.ledger.ack(uid, Acked(study, series, data_set_digest(data), "c-store"))
                        self.ledger.ok("c-store")
                    elif status and status.Status == 0:
                        self.ledger.ack(uid, Acked(study, series, data_set_digest(data), "c-store"))
                        self.ledger.fail("c-store", f"success after {elapsed:.0f} s", elapsed)
                    else:
                        what = f"status {status.Status:#06x}" if status else "no response (association lost)"
                        self.ledger.fail("c-store", what, elapsed)
                        if not assoc.is_established:
                            break
            finally:
                if assoc.is_established:
                    assoc.release()
            self.stop.wait(self.pace)

    def stow(self, name: str) -> None:
        generator = Generator(name)
        session = requests.Session()
        session.auth = (WEB_USER, WEB_PASSWORD)
        while not self.stop.is_set():
            batch = generator.batch(3)
            boundary = secrets.token_hex(12)
            body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                            for _, _, _, data in batch) + f"--{boundary}--\r\n".encode()
            headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                       "Accept": "application/dicom+json"}
            with self.ledger.lock:
                self.ledger.sent += len(batch)
            response = self._http("stow-rs", lambda: session.post(f"{self.server.base_url}/dicom-web/studies",
                                                                  data=body, headers=headers, timeout=(5, HANG_S)))
            if response is None:
                continue
            stored: set[str] = set()
            if response.status_code in (200, 202):
                try:
                    answer = response.json()
                    stored = {item["00081155"]["Value"][0] for item in answer.get("00081199", {}).get("Value", [])}
                except (ValueError, KeyError, IndexError, TypeError):
                    self.ledger.fail("stow-rs", f"HTTP {response.status_code} with an unreadable answer")
                    continue
            for study, series, uid, data in batch:
                if uid in stored:
                    self.ledger.ack(uid, Acked(study, series, data_set_digest(data), "stow-rs"))
            if response.status_code == 200 and len(stored) == len(batch):
                self.ledger.ok("stow-rs")
            else:
                self.ledger.fail("stow-rs", f"HTTP {response.status_code}, {len(stored)} of {len(batch)} stored",
                                 status=response.status_code)
                self.stop.wait(BACKOFF_S)
            self.stop.wait(self.pace)

    def qido(self, name: str) -> None:
        session = requests.Session()
        session.auth = (WEB_USER, WEB_PASSWORD)
        while not self.stop.is_set():
            picked = self.ledger.some_acked()
            if picked is None or random.random() < 0.5:
                url = f"{self.server.base_url}/dicom-web/studies?PatientID=SOAK*&limit=50"
            else:
                url = f"{self.server.base_url}/dicom-web/studies/{picked[1].study}/series"
            response = self._http("qido-rs", lambda: session.get(url, headers={"Accept": "application/dicom+json"},
                                                                 timeout=(5, HANG_S)))
            if response is None:
                continue
            if response.status_code in (200, 204):
                self.ledger.ok("qido-rs")
            else:
                self.ledger.fail("qido-rs", f"HTTP {response.status_code}", status=response.status_code)
                self.stop.wait(BACKOFF_S)
            self.stop.wait(self.pace)

    def wado(self, name: str) -> None:
        session = requests.Session()
        session.auth = (WEB_USER, WEB_PASSWORD)
        while not self.stop.is_set():
            picked = self.ledger.some_acked()
            if picked is None:
                self.stop.wait(0.5)
                continue
            uid, item = picked
            url = f"{self.server.base_url}/dicom-web/studies/{item.study}/series/{item.series}/instances/{uid}"
            response = self._http("wado-rs", lambda: session.get(url, headers={"Accept": RETRIEVE_ACCEPT},
                                                                 timeout=(5, HANG_S)))
            if response is None:
                continue
            if response.status_code != 200:
                note = " (an acknowledged instance)" if response.status_code == 404 else ""
                self.ledger.fail("wado-rs", f"HTTP {response.status_code}{note}", status=response.status_code)
                self.stop.wait(BACKOFF_S)
                continue
            digests = retrieved_digests(response)
            if digests.get(uid) == item.sha256:
                self.ledger.ok("wado-rs")
            else:
                self.ledger.fail("wado-rs", "200 but not the bytes sent")
            self.stop.wait(self.pace)

    def dashboard(self, name: str) -> None:
        """Log in, then open the dashboard page (Panel makes a session for it) every 2 s."""
        session = requests.Session()
        logged_in = False
        while not self.stop.is_set():
            if not logged_in:
                response = self._http("dashboard", lambda: session.post(
                    f"{self.server.base_url}/login", data={"username": WEB_USER, "password": WEB_PASSWORD},
                    allow_redirects=False, timeout=(5, HANG_S)))
                if response is None:
                    continue
                if response.status_code != 302 or "user" not in session.cookies:
                    self.ledger.fail("dashboard", f"login: HTTP {response.status_code}", status=response.status_code)
                    self.stop.wait(BACKOFF_S)
                    continue
                logged_in = True
            response = self._http("dashboard", lambda: session.get(f"{self.server.base_url}/", allow_redirects=False,
                                                                   timeout=(5, HANG_S)))
            if response is None:
                continue
            if response.status_code == 200 and b"bokeh" in response.content.lower():
                self.ledger.ok("dashboard")
            else:
                self.ledger.fail("dashboard", f"page: HTTP {response.status_code}", status=response.status_code)
                logged_in = response.status_code not in (302, 401, 403)
                self.stop.wait(BACKOFF_S)
                continue
            self.stop.wait(2.0)


def wake_on_abort(assoc: Any) -> None:
    """Let a C-STORE waiting for its response return as soon as the association ends.

    pynetdicom 3.0 waits the whole ``dimse_timeout`` for a response even when
    the peer has closed the connection (nothing wakes its message queue): a
    killed server would look like a 30 s hang. A dcmtk SCU sees the close at once.
    """

    def watch() -> None:
        assoc.join()
        assoc.dimse.msg_queue.put((None, None))

    threading.Thread(target=watch, name="soak-assoc-watch", daemon=True).start()


def retrieved_digests(response: requests.Response) -> dict[str, str]:
    """SOP Instance UID -> data set digest of each part of a WADO-RS multipart answer."""
    out: dict[str, str] = {}
    for _, payload in split_multipart(response.content, response.headers.get("Content-Type", "")):
        uid, data = split_part10(payload)
        out[uid] = hashlib.sha256(data).hexdigest()
    return out


def verify(server: SoakServer, acked: dict[str, Acked]) -> tuple[list[str], dict[str, int]]:
    """The acknowledged instances not retrievable byte for byte: (uids, why -> count)."""
    session = requests.Session()
    session.auth = (WEB_USER, WEB_PASSWORD)
    by_series: dict[tuple[str, str], list[str]] = {}
    for uid, item in acked.items():
        by_series.setdefault((item.study, item.series), []).append(uid)
    lost: list[str] = []
    why: dict[str, int] = {}
    for (study, series), uids in by_series.items():
        url = f"{server.base_url}/dicom-web/studies/{study}/series/{series}"
        got: dict[str, str] = {}
        response = session.get(url, headers={"Accept": RETRIEVE_ACCEPT}, timeout=120)
        if response.status_code == 200:
            got = retrieved_digests(response)
        for uid in uids:
            if got.get(uid) == acked[uid].sha256:
                continue
            # one at a time, in case the series answer was cut short
            single = session.get(f"{url}/instances/{uid}", headers={"Accept": RETRIEVE_ACCEPT}, timeout=60)
            if single.status_code == 200 and retrieved_digests(single).get(uid) == acked[uid].sha256:
                continue
            reason = "different bytes" if single.status_code == 200 else f"HTTP {single.status_code}"
            why[f"{acked[uid].via}: {reason}"] = why.get(f"{acked[uid].via}: {reason}", 0) + 1
            lost.append(uid)
    return lost, why


# -- the run ------------------------------------------------------------------------------
def kill_times(seconds: float, kills: int, rng: random.Random) -> list[float]:
    """When to kill (seconds into the load): one random moment in each of ``kills`` equal slots
    between 10% and 75% of the run, so the last server runs for the last quarter at least."""
    if kills <= 0:
        return []
    start, end = 0.10 * seconds, 0.75 * seconds
    slot = (end - start) / kills
    return [start + k * slot + rng.uniform(0.15, 0.85) * slot for k in range(kills)]


def summary(values: list[float]) -> dict[str, float | None]:
    return {"median": round(statistics.median(values), 3) if values else None,
            "max": round(max(values), 3) if values else None, "n": len(values)}


def run(seconds: float, kills: int, seed: int, tmp_root: Path, keep: bool) -> dict[str, Any]:
    """The soak itself; returns the report."""
    rng = random.Random(seed)
    ledger = Ledger()
    restarts: list[dict[str, float]] = []
    report: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(WORK_DIR),
        "pacsdash_source": source_state(),
        "config": {"seconds": seconds, "kills": kills, "seed": seed, "hang_s": HANG_S, "image": f"CT {IMAGE_SIZE}x"
                   f"{IMAGE_SIZE} 16-bit", "clients": "2 C-STORE (pynetdicom, 5 instances an association), 1 STOW-RS "
                   "(3 instances a request), 1 QIDO-RS, 1 WADO-RS, 1 dashboard (login, then GET / every 2 s)"},
    }
    with SoakServer(tmp_root, keep=keep) as server:
        server.prepare()
        server.add_user()
        sampler = MemorySampler(server)
        server.launch()
        first = server.await_ready()
        say(f"server up: DICOM {first['dicom_s']} s, dashboard {first['dashboard_s']} s after the start "
            f"(home {server.home})")
        report["first_start"] = first
        report["counts_first_start"] = server.counts()
        sampler.start()
        clients = Clients(server, ledger, server.folder / "client")
        begun = time.monotonic()
        clients.start()
        survived = 0
        failures: list[str] = []
        final_start_counts: dict[str, int] = {}
        try:
            for at in kill_times(seconds, kills, rng):
                delay = begun + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                time.sleep(1.0 if time.monotonic() - server.started_at < 1.0 else 0)
                killed = server.kill9()
                with ledger.lock:
                    acked_then = len(ledger.acked)
                say(f"  {time.monotonic() - begun:6.1f} s: kill -9 of {killed} process(es); {acked_then} acknowledged "
                    "so far")
                server.launch()
                try:
                    took = server.await_ready()
                except BenchError as exc:
                    failures.append(f"restart after kill {len(restarts) + 1}: {exc}")
                    say(f"  the server did not come back: {exc}")
                    break
                restarts.append(took)
                survived += 1
                say(f"  {time.monotonic() - begun:6.1f} s: back: DICOM {took['dicom_s']} s, dashboard "
                    f"{took['dashboard_s']} s after the start")
            if not failures:
                final_start_counts = server.counts()
                time.sleep(max(0.0, begun + seconds - time.monotonic()))
        finally:
            stuck = clients.finish()
        load_seconds = time.monotonic() - begun
        time.sleep(2.0)
        final_end_counts = {} if failures else server.counts()
        sampler.stop_event.set()
        sampler.join(2)
        stopping = time.monotonic()
        server.stop()
        stop_seconds = round(time.monotonic() - stopping, 2)
        stopped_cleanly = server.exit_code in (0, -15) and "stopped cleanly" in tail(server.log_path, 40)
        server.proc = None
        say(f"load stopped after {load_seconds:.0f} s; server stopped with SIGTERM in {stop_seconds} s "
            f"(exit {server.exit_code}); starting it again to check every acknowledged instance")
        acked = dict(ledger.acked)
        clean: dict[str, float] = {}
        lost: list[str] | None = None
        why: dict[str, int] = {}
        verify_seconds = None
        server.launch()
        try:
            clean = server.await_ready()
        except BenchError as exc:
            failures.append(f"final start: {exc}")
            say(f"the server did not start for the check: {exc}")
        else:
            checking = time.monotonic()
            lost, why = verify(server, acked)
            verify_seconds = round(time.monotonic() - checking, 1)
        server.stop()
        issues = server.issues
    tallies = {kind: t.as_dict() for kind, t in ledger.tallies.items()}
    report.update({
        "load_seconds": round(load_seconds, 1),
        "sent": ledger.sent,
        "acknowledged": len(acked),
        "acknowledged_by": {via: sum(1 for a in acked.values() if a.via == via) for via in ("c-store", "stow-rs")},
        "lost": None if lost is None else len(lost),
        "lost_reasons": why,
        "lost_uids": (lost or [])[:50],
        "failures": failures,
        "kills": kills,
        "kills_survived": survived,
        "requests_ok": sum(t["ok"] for t in tallies.values()),
        "requests_failed": sum(t["failed"] for t in tallies.values()),
        "http_5xx": sum(t["http_5xx"] for t in tallies.values()),
        "hangs": sum(t["hangs"] for t in tallies.values()) + len(stuck),
        "clients_stuck_at_end": stuck,
        "by_kind": tallies,
        "restart_after_kill": restarts,
        "restart_dicom_s": summary([r["dicom_s"] for r in restarts]),
        "restart_dashboard_s": summary([r["dashboard_s"] for r in restarts]),
        "clean_start": clean,
        "targets": {"dicom_s": TARGET_DICOM_S, "dashboard_s": TARGET_DASHBOARD_S},
        "peak_rss_mib": {"server": round(sampler.peak_own_kb / 1024, 1), "tree": round(sampler.peak_tree_kb / 1024, 1),
                         "tree_processes": sampler.peak_processes},
        "final_run": {"start": final_start_counts, "end": final_end_counts},
        "sigterm_stop_s": stop_seconds,
        "stopped_cleanly": stopped_cleanly,
        "verify_seconds": verify_seconds,
        "server_log_issues": len(issues),
        "server_log_issue_samples": issues[:15],
    })
    return report


def table(r: dict[str, Any]) -> str:
    """The figures as a Markdown table."""

    def timing(key: str, target: float) -> str:
        s = r[key]
        if not s["n"]:
            return "none measured"
        verdict = "meets" if s["max"] <= target else "misses"
        return f"median {s['median']:.2f} s, max {s['max']:.2f} s (n={s['n']}; target {target:g} s: {verdict})"

    start, end = r["final_run"]["start"], r["final_run"]["end"]
    kinds = ", ".join(f"{k} {v['ok']}/{v['failed']}" for k, v in r["by_kind"].items())
    rows = [
        ("Load", f"{r['load_seconds']:.0f} s, {r['config']['clients']}"),
        ("Instances sent", f"{r['sent']:,}"),
        ("Acknowledged", f"{r['acknowledged']:,} (C-STORE {r['acknowledged_by']['c-store']:,}, STOW-RS "
                         f"{r['acknowledged_by']['stow-rs']:,})"),
        ("Lost (must be 0)", "not checked: the server did not start" if r["lost"] is None
         else f"{r['lost']}" + (f" {r['lost_reasons']}" if r["lost"] else "")),
        ("Kills survived", f"{r['kills_survived']} of {r['kills']}"),
        ("Requests ok / failed", f"{r['requests_ok']:,} / {r['requests_failed']:,} ({kinds})"),
        ("HTTP 5xx", f"{r['http_5xx']}"),
        (f"Hangs (>= {HANG_S:.0f} s)", f"{r['hangs']}"),
        ("Restart after kill -9: DICOM C-ECHO", timing("restart_dicom_s", TARGET_DICOM_S)),
        ("Restart after kill -9: dashboard /login 200", timing("restart_dashboard_s", TARGET_DASHBOARD_S)),
        ("First start / clean start (DICOM, dashboard)", f"{r['first_start']['dicom_s']:.2f} s, "
         f"{r['first_start']['dashboard_s']:.2f} s / " + (f"{r['clean_start']['dicom_s']:.2f} s, "
         f"{r['clean_start']['dashboard_s']:.2f} s" if r["clean_start"] else "failed")),
        ("Peak RSS", f"server {r['peak_rss_mib']['server']} MiB, process tree {r['peak_rss_mib']['tree']} MiB "
                     f"({r['peak_rss_mib']['tree_processes']} processes)"),
        ("File handles, final run start -> end", f"server {start.get('fds')} -> {end.get('fds')}, tree "
         f"{start.get('tree_fds')} -> {end.get('tree_fds')}"),
        ("Threads, final run start -> end", f"server {start.get('threads')} -> {end.get('threads')}, tree "
         f"{start.get('tree_threads')} -> {end.get('tree_threads')}"),
        ("SIGTERM stop", f"{r['sigterm_stop_s']} s, {'clean' if r['stopped_cleanly'] else 'NOT clean'}"),
        ("Server log warnings/errors", f"{r['server_log_issues']}"),
    ]
    rows += [("FAILURE", " ".join(f.split())[:300].replace("|", "/")) for f in r["failures"]]
    return "\n".join(["| Figure | Value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    out = ["# pacsdash soak test", "", f"- Date: {r['date']}", f"- Machine: {m['cpu_count']} CPUs "
           f"({m.get('cpu_model')}), {m.get('mem_total_gib')} GiB; pacsdash {m.get('pacsdash')} "
           f"({r['pacsdash_source']}), Python {m['python']}, pynetdicom {m.get('pynetdicom')}",
           f"- Seed {r['config']['seed']}; kills at random moments between 10% and 75% of the load; restart timed "
           "from the new process's start to a C-ECHO answered and to GET /login answering 200 (probes every "
           f"{PROBE_INTERVAL * 1000:.0f} ms)", "", table(r), "",
           "Restarts after kill -9 (s from the start): " + ", ".join(
               f"DICOM {t['dicom_s']}, dashboard {t['dashboard_s']}" for t in r["restart_after_kill"]), ""]
    if r["server_log_issue_samples"]:
        out += ["## Server log warnings and errors (first 15)", ""]
        out += [f"- `{line[:300]}`" for line in r["server_log_issue_samples"]] + [""]
    return "\n".join(out)


def default_json_path() -> Path:
    commit = subprocess.run(["git", "-C", str(RESULTS_DIR.parent.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return RESULTS_DIR / f"soak-{dt.date.today().isoformat()}-{commit}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the load runs (default 3)")
    parser.add_argument("--kills", type=int, default=3, help="kill -9 of the server during the load (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the kill times (default: random)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the JSON goes (the Markdown beside it); "
                        "default benchmarks/results/soak-DATE-COMMIT.json")
    parser.add_argument("--tmp-dir", type=Path, default=WORK_DIR / "tmp", help="where the server's folder is made")
    parser.add_argument("--keep", action="store_true", help="keep the server's home and log")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.kills < 0:
        parser.error("--minutes must be positive and --kills 0 or more")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # refused connections while the server is down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server is stopped on the way out
    say(f"soak: {args.minutes:g} min of load, {args.kills} kill(s), seed {seed}")
    report = run(args.minutes * 60, args.kills, seed, args.tmp_dir, args.keep)
    json_path = args.json or default_json_path()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(report) + "\n")
    print()
    print(table(report))
    print(f"\nwrote {json_path} and {md_path}")
    return 0 if report["lost"] == 0 and report["kills_survived"] == report["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
