"""Resident memory of a server process sampled during an ingest."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from benchmarks.common import read_tree_rss_kb

#: Growth after the first 20% of the ingest below this fraction counts as flat.
FLAT_LIMIT = 0.15
SETTLE_FRACTION = 0.2


@dataclass
class RssSampler:
    """Samples VmRSS of ``pid`` (and of its process tree) every ``interval`` s in a background thread."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    #: The same instants, VmRSS summed over ``pid`` and its child processes.
    tree_samples: list[tuple[float, int]] = field(default_factory=list)
    #: Most processes seen in the tree at once.
    max_processes: int = 1

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> int | None:
        """Take one sample now (also used for the start and end values)."""
        rss, tree, processes = read_tree_rss_kb(self.pid)
        self.max_processes = max(self.max_processes, processes)
        if rss is not None:
            now = time.monotonic()
            self.samples.append((now, rss))
            self.tree_samples.append((now, tree))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def summarize(samples: list[tuple[float, int]], started: float, ended: float) -> dict:
    """Start, max and end RSS (MiB) of an ingest from ``started`` to ``ended``, and flatness.

    Growth is the largest RSS after the first 20% of the ingest (by time)
    relative to the RSS at that 20% mark.
    """
    if not samples:
        raise ValueError("no RSS samples")
    during = [(t, kb) for t, kb in samples if started <= t <= ended] or samples
    mark = started + SETTLE_FRACTION * (ended - started)
    at_mark = min(during, key=lambda s: abs(s[0] - mark))[1]
    after = [kb for t, kb in during if t >= mark] or [during[-1][1]]
    start_kb = samples[0][1]
    end_kb = samples[-1][1]
    growth = (max(after) - at_mark) / at_mark if at_mark else 0.0
    return {
        "start_mib": round(start_kb / 1024, 1),
        "max_mib": round(max(kb for _, kb in samples) / 1024, 1),
        "end_mib": round(end_kb / 1024, 1),
        "at_20pct_mib": round(at_mark / 1024, 1),
        "growth_after_20pct": round(growth, 4),
        "flat": growth < FLAT_LIMIT,
        "samples": len(samples),
        "series_mib": [round(kb / 1024, 1) for _, kb in samples],
    }
