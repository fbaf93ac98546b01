"""C-STORE ingest with dcmtk's ``storescu``: one association, or one per shard in parallel."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import CLIENT_AET, LOOPBACK, STORESCU, BenchError, Skipped, dcmtk_env, tail
from benchmarks.datasets import FileSet
from benchmarks.servers import Server


@dataclass
class IngestResult:
    """One timed ingest: how many instances, how long, what the server holds."""

    instances: int
    associations: int
    seconds: float
    stored: int
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Instances per second of wall time."""
        return self.instances / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "instances": self.instances,
            "associations": self.associations,
            "seconds": round(self.seconds, 3),
            "instances_per_s": round(self.rate, 1),
            "stored": self.stored,
            "errors": self.errors,
        }


def storescu_argv(server: Server, folders: list[Path]) -> list[str]:
    """``storescu`` sending every file under ``folders`` over one association."""
    return [
        str(STORESCU),
        "-aet", CLIENT_AET,
        "-aec", server.aet,
        "-to", "30", "-ta", "30", "-td", "120",
        "+sd", "+r",  # the inputs are folders, scanned recursively
        LOOPBACK, str(server.dicom_port),
        *map(str, folders),
    ]


def timeout_for(instances: int) -> float:
    """A bound on one ingest: a minute plus 10 instances/s (dcmtk at its worst)."""
    return 60.0 + instances * 0.1


def run_storescu(server: Server, fileset: FileSet, associations: int, log_dir: Path) -> IngestResult:
    """Send ``fileset`` to ``server`` with ``associations`` parallel storescu processes; time it.

    With 1 association one process sends all four shards; with 4, each process
    sends one shard. The wall time runs from the first start to the last exit.
    """
    if not STORESCU.exists():
        raise Skipped(f"{STORESCU} not found")
    if associations not in (1, 4):
        raise ValueError("associations must be 1 or 4 (the sets have four shards)")
    groups = [fileset.shards] if associations == 1 else [[shard] for shard in fileset.shards]
    before = server.stored_count()
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen, Path]] = []
    errors: list[str] = []
    deadline_s = timeout_for(fileset.count)
    started = time.perf_counter()
    try:
        for k, folders in enumerate(groups):
            log = log_dir / f"storescu-{associations}-{k}.log"
            with open(log, "wb") as handle:
                proc = subprocess.Popen(storescu_argv(server, folders), stdout=handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=dcmtk_env())
            procs.append((proc, log))
        for proc, log in procs:
            remaining = max(1.0, deadline_s - (time.perf_counter() - started))
            try:
                code = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                raise BenchError(f"storescu did not finish within {deadline_s:.0f} s") from None
            if code != 0:
                output = tail(log, 8).strip() or "no output; see the server's log"
                errors.append(f"storescu exited with {code} ({output})")
        seconds = time.perf_counter() - started
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    stored = server.stored_count() - before
    if stored != fileset.count:
        errors.append(f"{server.name} holds {stored} new instances, {fileset.count} were sent")
    for proc, log in procs:
        text = log.read_text(errors="replace")
        failures = [ln for ln in text.splitlines() if ln.startswith(("E:", "F:"))]
        errors += failures[:5]
    return IngestResult(fileset.count, associations, seconds, stored, list(dict.fromkeys(errors)))


# -- ingest with /activity open ---------------------------------------------------
#: The target of issue 14: ``/activity`` open costs the 4-association ingest at most this share of its rate.
ACTIVITY_COST_TARGET = 0.05
#: Variants of the /activity comparison, in the order each round runs them.
ACTIVITY_VARIANTS = ("plain", "activity", "traffic_off")


def activity_cost(with_page: float, without_page: float) -> float:
    """How much slower the ingest ran with the page open, as a share of the rate without it (negative: faster)."""
    if without_page <= 0:
        raise ValueError("the rate without the page must be positive")
    return (without_page - with_page) / without_page


def median_rates(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median rate of each variant over the rounds (variants missing from a round are left out of it)."""
    import statistics

    names = dict.fromkeys(name for r in rounds for name in r)
    return {name: statistics.median([r[name] for r in rounds if name in r]) for name in names}


class ActivityPage:
    """``/activity`` open in a logged-in headless Chromium for the length of a ``with`` block.

    On leaving, the page must have shown associations (``.pd-assoc``) live: the
    page was really following the traffic while the ingest ran.
    """

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url, self.user, self.password = base_url, user, password
        self.associations_seen = 0

    def __enter__(self) -> ActivityPage:
        from playwright.sync_api import sync_playwright

        from benchmarks.common import CHROMIUM

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = self.page = self._browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{self.base_url}/activity")
            page.fill("#username", self.user)
            page.fill("#password", self.password)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            if "/activity" not in page.url:  # the login took us to the archive
                page.goto(f"{self.base_url}/activity")
            page.get_by_text("DICOM associations").first.wait_for(timeout=60_000)
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.page.locator(".pd-assoc").first.wait_for(timeout=10_000)
                self.associations_seen = self.page.locator(".pd-assoc").count()
        finally:
            self._browser.close()
            self._playwright.stop()
