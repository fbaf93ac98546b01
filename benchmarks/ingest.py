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
