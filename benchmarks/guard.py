"""Run measurements so that one failure or a busy machine does not spoil the run.

:meth:`Guard.attempt` turns any failure into "skipped" rows with the reason.
:meth:`Guard.measure` waits for the CPUs to go idle, runs a measurement, and
repeats it (up to ``retries`` times) when other processes used more than
:data:`FOREIGN_LIMIT` of the machine meanwhile; a value still measured under
such load is flagged in the table.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from benchmarks.common import Skipped
from benchmarks.cpu import wait_for_quiet
from benchmarks.report import Results

T = TypeVar("T")
#: CPUs busier than this (fraction of all) while the benchmark is idle: wait.
QUIET_THRESHOLD = 0.15
#: Other processes using more than this share of all CPUs during a measurement: retry, then flag.
FOREIGN_LIMIT = 0.10


def say(text: str) -> None:
    """Progress on standard output."""
    print(text, flush=True)


@dataclass
class Guard:
    """Failure handling and load checks for the measurements of one run."""

    results: Results
    wait_idle: float
    retries: int

    def attempt(self, ids: list[str], server: str, action: Callable[[], T]) -> T | None:
        """Run ``action``; on failure mark rows ``ids`` of ``server`` skipped and return None."""
        try:
            return action()
        except Skipped as exc:
            reason = str(exc)
        except Exception as exc:  # any failure of one measurement must not stop the run
            reason = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        say(f"  {server}: {reason}")
        self.results.skip(ids, server, reason)
        return None

    def quiet(self, where: str) -> None:
        """Wait (bounded) for other processes to leave the CPUs idle; keep how busy they were."""
        busy = wait_for_quiet(self.wait_idle, QUIET_THRESHOLD)
        self.results.details.setdefault("cpu_busy_before", {})[where] = round(busy, 3)
        if busy > QUIET_THRESHOLD:
            say(f"  note: other processes kept the CPUs {busy:.0%} busy before this measurement")

    def measure(self, where: str, ids: list[str], server: str, run: Callable[[], tuple[T, dict]]) -> T:
        """Call ``run`` (returning its result and a :class:`ForeignLoad` result) until the machine was quiet enough."""
        for attempt in range(self.retries + 1):
            self.quiet(where)
            value, load = run()
            share = load.get("foreign_share", 0.0)
            self.results.details.setdefault("foreign_load", {})[where] = load
            if share <= FOREIGN_LIMIT:
                return value
            if attempt < self.retries:
                say(f"  other processes used {share:.0%} of the machine meanwhile: measuring again")
                self.results.details.setdefault("discarded_under_load", {}).setdefault(where, []).append(load)
                continue
            say(f"  note: other processes used {share:.0%} of the machine during this measurement")
            for id in ids:
                if id in self.results.metrics:
                    self.results.metrics[id].flagged.add(server)
        return value
