"""Is the machine quiet? CPU use of other processes before and during a measurement.

The benchmark shares the machine with whatever else runs. Before each
measurement it waits (bounded) for the CPUs to go idle; during it, it counts
the CPU time used by processes that are not part of the measurement (not the
benchmark, its clients, or the server and its children) as "foreign" load.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

from benchmarks.common import descendants

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[float, float]:
    """(process, total) CPU seconds of all CPUs since boot, from /proc/stat.

    "process" is user + nice + system time, what processes use (interrupt
    time, such as loopback network processing, and time stolen by the
    hypervisor are left out); total includes idle, iowait, irq, softirq and
    steal (guest time is already inside user time).
    """
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    user, nice, system = values[0], values[1], values[2]
    return (user + nice + system) / TICK, sum(values) / TICK


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy running processes over the next ``seconds`` (0..1)."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1e-9, total1 - total0)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s) until the CPUs are idle; return the last busy fraction.

    Call it while the benchmark itself is idle: whatever is busy then is someone else.
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def _process_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK  # utime stime cutime cstime


def _ours(server_pid: int) -> float:
    """CPU seconds of this process, its children (waited for or still running), and the server's process tree.

    Running children (a browser and its helpers) count as ours, each process once.
    """
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    pids = {server_pid, *descendants(server_pid), *descendants(os.getpid())} - {os.getpid()}
    return own + sum(_process_cpu(p) for p in pids)


@dataclass
class ForeignLoad:
    """Counts CPU time used by other processes during a ``with`` block."""

    server_pid: int
    result: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> ForeignLoad:
        self._start = (time.monotonic(), *_cpu_times(), _ours(self.server_pid))
        return self

    def __exit__(self, *exc: object) -> None:
        t0, busy0, total0, ours0 = self._start
        wall = time.monotonic() - t0
        busy1, total1 = _cpu_times()
        ours1 = _ours(self.server_pid)
        cpus = os.cpu_count() or 1
        foreign = max(0.0, (busy1 - busy0) - (ours1 - ours0))
        self.result = {
            "wall_s": round(wall, 2),
            "machine_busy": round((busy1 - busy0) / max(1e-9, total1 - total0), 3),
            "foreign_cpu_s": round(foreign, 2),
            #: Share of the whole machine (all CPUs) used by other processes.
            "foreign_share": round(foreign / max(1e-9, wall * cpus), 3),
        }
