"""Where the benchmark ran: machine, file system and software versions."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ORTHANC, PROJECT, STORESCU


def _first_line(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else None


def _proc_value(path: str, key: str) -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def filesystem_of(path: Path) -> str:
    """``device type`` of the mount holding ``path`` (from /proc/mounts)."""
    path = path.resolve()
    best, found = "", "?"
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                device, mount, fstype = line.split()[:3]
                if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, found = mount, f"{device} ({fstype}, mounted at {mount})"
    except OSError:
        pass
    return found


def source_state() -> str:
    """The pacsdash code a server started now runs: HEAD plus a hash of uncommitted changes."""
    commit = _first_line(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"])
    if not commit:
        return "unknown (not a git checkout)"
    try:
        diff = subprocess.run(["git", "-C", str(PROJECT), "diff", "HEAD", "--", "pacsdash"], capture_output=True,
                              timeout=20, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{commit} + ?"
    return f"{commit} + changes {hashlib.sha1(diff).hexdigest()[:10]}" if diff else commit


def machine_info(work_dir: Path) -> dict[str, object]:
    """A description of this machine and the software under test."""
    import pacsdash
    import pydicom
    import pynetdicom

    uname = platform.uname()
    mem_kb = _proc_value("/proc/meminfo", "MemTotal")
    commit = _first_line(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(PROJECT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "uname": " ".join([uname.system, uname.node, uname.release, uname.version, uname.machine]),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _proc_value("/proc/cpuinfo", "model name"),
        "mem_total_gib": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "work_fs": filesystem_of(work_dir),
        "python": sys.version.split()[0],
        "pacsdash": pacsdash.__version__,
        "git_commit": f"{commit}{' + uncommitted changes' if dirty else ''}" if commit else None,
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
        "dcmtk": (_first_line([str(STORESCU), "--version"]) or "").strip("$ ") if STORESCU.exists() else None,
        "orthanc": f"Orthanc {(_first_line([str(ORTHANC), '--version']) or '?').split()[-1]}" if ORTHANC.exists() else None,
    }
