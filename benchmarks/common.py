"""Shared paths, tool locations, errors and small process helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT / "benchmarks"
WORK_DIR = BENCH_DIR / "work"
RESULTS_DIR = BENCH_DIR / "results"
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
PACSDASH = PROJECT / ".venv" / "bin" / "pacsdash"
STORESCU = Path("/usr/bin/storescu")
ORTHANC = Path("/usr/sbin/Orthanc")
ORTHANC_DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_PG_INDEX = Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")
CHROMIUM = Path("/usr/bin/chromium")

LOOPBACK = "127.0.0.1"
#: Calling AE title of every benchmark client (registered as a peer where needed).
CLIENT_AET = "BENCHSCU"
CLIENT_PORT = 11113


class Skipped(Exception):
    """A measurement cannot be made here; the message says why."""


class BenchError(RuntimeError):
    """A measurement was attempted and failed; the message says how."""


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def dcmtk_env() -> dict[str, str]:
    """The environment for dcmtk programs: Nagle's algorithm off (TCP_NODELAY=1)."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Call ``check`` until it returns true; raise :class:`BenchError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 30.0) -> int | None:
    """SIGTERM one process we started, wait, SIGKILL it if it hangs; return its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    return proc.wait(timeout=10)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ('' if absent)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def count_files(folder: Path, suffix: str = "") -> int:
    """How many files (ending in ``suffix``) are under ``folder``, recursively."""
    total = 0
    for _, _, names in os.walk(folder):
        total += sum(1 for n in names if n.endswith(suffix))
    return total


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and of its waited-for children (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def read_rss_kb(pid: int) -> int | None:
    """VmRSS of process ``pid`` in KiB, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Process ids of every child, grandchild, ... of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def read_tree_rss_kb(pid: int) -> tuple[int | None, int, int]:
    """(VmRSS of ``pid``, VmRSS summed over ``pid`` and its descendants, process count); KiB.

    The sum counts pages shared between the processes once per process.
    """
    own = read_rss_kb(pid)
    children = [kb for kb in (read_rss_kb(child) for child in descendants(pid)) if kb is not None]
    return own, (own or 0) + sum(children), 1 + len(children)

