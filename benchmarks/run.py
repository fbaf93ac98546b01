"""Run every benchmark and write ``benchmarks/results/latest.{json,md}``.

Usage (from the project folder)::

    .venv/bin/python -m benchmarks.run            # full run
    .venv/bin/python -m benchmarks.run --quick    # smoke run, a minute or two

Each metric is measured on a fresh server; one that cannot be measured is
reported as skipped with the reason, and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import cfind, datasets, ingest, memory, report
from benchmarks.common import RESULTS_DIR, STORESCU, WORK_DIR, Skipped, wait_for_quiet
from benchmarks.machine import machine_info, source_state
from benchmarks.servers import ORTHANC_CONFIG_NOTES, SERVERS, PacsdashServer, Server

PHASES = ("ingest", "find", "memory")


@dataclass(frozen=True)
class Plan:
    """How big each benchmark is."""

    quick: bool
    instances: int
    find: datasets.FindIndexPlan
    memory_instances: int
    repetitions: int
    servers: tuple[str, ...]
    phases: tuple[str, ...]
    tmp_root: Path
    keep: bool
    wait_idle: float


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--instances", type=int, help="CT instances per ingest run (default 1000, quick 100)")
    parser.add_argument("--find-studies", type=int, help="studies in the C-FIND index (default 2000, quick 200)")
    parser.add_argument("--find-per-study", type=int, default=10, help="instances per study in the C-FIND index")
    parser.add_argument("--memory-instances", type=int, help="instances of the memory run (default 10000, quick 1000)")
    parser.add_argument("--repetitions", type=int, help="C-FIND repetitions per query type (default 50, quick 20)")
    parser.add_argument("--servers", default="pacsdash,orthanc,bare", help="comma-separated subset of pacsdash,orthanc,bare")
    parser.add_argument("--only", default=",".join(PHASES), help="comma-separated subset of ingest,find,memory")
    parser.add_argument("--tmp-dir", type=Path, default=WORK_DIR / "tmp", help="where server folders are made")
    parser.add_argument("--keep", action="store_true", help="keep server folders and logs (for debugging)")
    parser.add_argument("--wait-idle", type=float, default=60.0,
                        help="before each measurement, wait up to this many seconds for other processes to leave "
                        "the CPUs idle (default 60)")
    args = parser.parse_args(argv)
    servers = tuple(s for s in args.servers.split(",") if s)
    phases = tuple(p for p in args.only.split(",") if p)
    for name in servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    for name in phases:
        if name not in PHASES:
            parser.error(f"unknown phase {name!r}")
    studies = args.find_studies or (200 if args.quick else 2000)
    for value, what in ((args.instances, "--instances"), (studies, "--find-studies"), (args.memory_instances, "--memory-instances")):
        if value is not None and value < 4:
            parser.error(f"{what} must be at least 4")
    return Plan(
        quick=args.quick,
        instances=args.instances or (100 if args.quick else 1000),
        find=datasets.FindIndexPlan(studies, args.find_per_study, max(3, studies // 10)),
        memory_instances=args.memory_instances or (1000 if args.quick else 10000),
        repetitions=args.repetitions or (20 if args.quick else 50),
        servers=servers,
        phases=phases,
        tmp_root=args.tmp_dir,
        keep=args.keep,
        wait_idle=args.wait_idle,
    )


def say(text: str) -> None:
    print(text, flush=True)


def attempt(results: report.Results, ids: list[str], server: str, action: Callable[[], Any]) -> Any:
    """Run ``action``; on failure mark rows ``ids`` of ``server`` skipped and return None."""
    try:
        return action()
    except Skipped as exc:
        reason = str(exc)
    except Exception as exc:  # any failure of one measurement must not stop the run
        reason = f"failed: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    say(f"  {server}: {reason}")
    results.skip(ids, server, reason)
    return None


QUIET_THRESHOLD = 0.15


def quiet(plan: Plan, results: report.Results, where: str) -> None:
    """Before a measurement: wait for other processes to go quiet, and note how busy the CPUs were."""
    busy = wait_for_quiet(plan.wait_idle, QUIET_THRESHOLD)
    results.details.setdefault("cpu_busy_before", {})[where] = round(busy, 3)
    if busy > QUIET_THRESHOLD:
        say(f"  note: other processes kept the CPUs {busy:.0%} busy before this measurement")


def record_issues(results: report.Results, server: Server, where: str) -> None:
    """Keep the server's log warnings, and which pacsdash code it ran."""
    if server.issues:
        results.log_issues[f"{server.name} / {where}"] = server.issues[:50]
    if server.source:
        results.details.setdefault("pacsdash_source", {})[where] = server.source
    if server.stop_note:
        results.log_issues.setdefault(f"{server.name} / {where}", []).insert(0, server.stop_note)


# -- 1. ingest ---------------------------------------------------------------
def run_ingest(plan: Plan, results: report.Results) -> None:
    ids = {1: "ingest_1", 4: "ingest_4"}
    for n, id in ids.items():
        results.metric(id, f"Ingest, CT 512x512 16-bit, storescu, {n} association{'s' if n > 1 else ''}",
                       "instances/s", "higher")
    if not STORESCU.exists():
        for name in plan.servers:
            results.skip(list(ids.values()), name, f"{STORESCU} not found")
        return
    fileset = datasets.ct_volume(plan.instances)
    fileset.warm()
    details = results.details.setdefault("ingest", {})
    for name in plan.servers:
        for n, id in ids.items():
            say(f"ingest: {name}, {n} association(s), {fileset.count} instances")

            def one() -> None:
                quiet(plan, results, f"{name} ingest {n}")
                with SERVERS[name](plan.tmp_root, plan.keep) as server:
                    try:
                        server.start()
                        result = ingest.run_storescu(server, fileset, n, server.folder / "clients")
                    finally:
                        server.stop()
                        record_issues(results, server, f"ingest {n}")
                details.setdefault(name, {})[str(n)] = result.as_dict()
                if result.errors:
                    raise RuntimeError("; ".join(result.errors[:3]))
                results.metrics[id].values[name] = round(result.rate, 1)
                say(f"  {result.rate:.1f} instances/s ({result.seconds:.2f} s)")

            attempt(results, [id], name, one)


# -- 2. C-FIND ---------------------------------------------------------------
def _find_ids(query: cfind.FindQuery) -> tuple[str, str]:
    return f"find_{query.name}_median", f"find_{query.name}_p95"


def run_find(plan: Plan, results: report.Results) -> None:
    queries = cfind.queries(plan.find)
    all_ids: list[str] = []
    for query in queries:
        median_id, p95_id = _find_ids(query)
        results.metric(median_id, f"C-FIND STUDY {query.label} ({query.expected} matches), median", "ms", "lower",
                       ("pacsdash", "orthanc"))
        results.metric(p95_id, f"C-FIND STUDY {query.label} ({query.expected} matches), p95", "ms", "lower",
                       ("pacsdash", "orthanc"))
        all_ids += [median_id, p95_id]
    names = [n for n in plan.servers if n in ("pacsdash", "orthanc")]
    if not names:
        return
    fileset = datasets.find_index(plan.find)
    details = results.details.setdefault("find", {})
    setup = results.details.setdefault("setup", {})
    for name in names:
        say(f"find: {name}, loading {fileset.count} instances")

        def one() -> None:
            quiet(plan, results, f"{name} find")
            with SERVERS[name](plan.tmp_root, plan.keep) as server:
                try:
                    if isinstance(server, PacsdashServer):
                        started = time.perf_counter()
                        summary = server.import_offline(fileset.shards, timeout=ingest.timeout_for(fileset.count))
                        seconds = time.perf_counter() - started
                        setup[name] = (f"`pacsdash import` before start: {fileset.count} files in {seconds:.1f} s "
                                       f"({fileset.count / seconds:.0f}/s); {summary}")
                        server.start()
                    else:
                        server.start()
                        loaded = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
                        if loaded.errors:
                            raise RuntimeError("loading the index failed: " + "; ".join(loaded.errors[:3]))
                        setup[name] = (f"storescu, 4 associations: {fileset.count} files in {loaded.seconds:.1f} s "
                                       f"({loaded.rate:.0f}/s)")
                    say(f"  {setup[name]}")
                    held = server.stored_count()
                    if held != fileset.count:
                        raise RuntimeError(f"{name} holds {held} instances, {fileset.count} expected")
                    measured = cfind.measure(server, plan.find, plan.repetitions)
                finally:
                    server.stop()
                    record_issues(results, server, "find")
            details[name] = {"instances": fileset.count, "queries": measured}
            for query in queries:
                row = measured[query.name]
                median_id, p95_id = _find_ids(query)
                results.metrics[median_id].values[name] = row["median_ms"]
                results.metrics[p95_id].values[name] = row["p95_ms"]
                if row["matches"] != row["expected_matches"]:
                    results.notes.append(f"C-FIND {query.label} on {name}: {row['matches']} matches, "
                                         f"{row['expected_matches']} expected from the generated index")
                say(f"  {query.label}: {row['matches']} matches, median {row['median_ms']} ms, p95 {row['p95_ms']} ms")

        attempt(results, all_ids, name, one)


# -- 3. memory ---------------------------------------------------------------
MEMORY_IDS = ["mem_start", "mem_max", "mem_end", "mem_growth", "tree_max", "tree_end", "tree_growth", "ingest_small_4"]


def run_memory(plan: Plan, results: report.Results) -> None:
    n = plan.memory_instances
    results.metric("mem_start", f"Server RSS before a {n}-instance ingest", "MiB", "lower")
    results.metric("mem_max", f"Server RSS, max during the ingest (sampled every 0.5 s)", "MiB", "lower")
    results.metric("mem_end", "Server RSS at the end of the ingest", "MiB", "lower")
    results.metric("mem_growth", f"RSS growth after the first 20% of the ingest (flat if < "
                   f"{memory.FLAT_LIMIT:.0%})", "%", "lower")
    results.metric("tree_max", "Server process tree RSS (server + child processes, summed), max", "MiB", "lower")
    results.metric("tree_end", "Server process tree RSS at the end of the ingest", "MiB", "lower")
    results.metric("tree_growth", "Process tree RSS growth after the first 20% of the ingest", "%", "lower")
    results.metric("ingest_small_4", "Ingest during the memory run, CT 128x128, storescu, 4 associations",
                   "instances/s", "higher")
    if not STORESCU.exists():
        for name in plan.servers:
            results.skip(MEMORY_IDS, name, f"{STORESCU} not found")
        return
    fileset = datasets.many_studies(n)
    fileset.warm()
    details = results.details.setdefault("memory", {})
    for name in plan.servers:
        say(f"memory: {name}, {n} instances over 4 associations")

        def one() -> None:
            quiet(plan, results, f"{name} memory")
            with SERVERS[name](plan.tmp_root, plan.keep) as server:
                try:
                    server.start()
                    with memory.RssSampler(server.pid) as sampler:
                        started = time.monotonic()
                        result = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
                        ended = time.monotonic()
                finally:
                    server.stop()
                    record_issues(results, server, "memory")
            summary = memory.summarize(sampler.samples, started, ended)
            tree = memory.summarize(sampler.tree_samples, started, ended)
            details[name] = {"ingest": result.as_dict(), **summary, "process_tree": tree,
                             "max_processes": sampler.max_processes}
            if result.errors:
                raise RuntimeError("; ".join(result.errors[:3]))
            m = results.metrics
            m["mem_start"].values[name] = summary["start_mib"]
            m["mem_max"].values[name] = summary["max_mib"]
            m["mem_end"].values[name] = summary["end_mib"]
            m["mem_growth"].values[name] = round(summary["growth_after_20pct"] * 100, 1)
            m["mem_growth"].notes[name] = "flat" if summary["flat"] else "GROWING"
            m["tree_max"].values[name] = tree["max_mib"]
            m["tree_max"].notes[name] = f"{sampler.max_processes} process{'es' if sampler.max_processes > 1 else ''}"
            m["tree_end"].values[name] = tree["end_mib"]
            m["tree_growth"].values[name] = round(tree["growth_after_20pct"] * 100, 1)
            m["tree_growth"].notes[name] = "flat" if tree["flat"] else "GROWING"
            m["ingest_small_4"].values[name] = round(result.rate, 1)
            say(f"  RSS {summary['start_mib']} -> max {summary['max_mib']} -> end {summary['end_mib']} MiB, "
                f"growth after 20% {summary['growth_after_20pct']:.1%}; process tree max {tree['max_mib']} MiB "
                f"({sampler.max_processes} processes); {result.rate:.1f} instances/s")

        attempt(results, MEMORY_IDS, name, one)


def notes(plan: Plan) -> list[str]:
    return [
        "Ingest rates are wall time of the storescu processes (start of the first to exit of the last), "
        "file scanning and association set-up included; every run starts a fresh server with an empty store, "
        "and the count the server holds afterwards is checked.",
        "dcmtk programs (storescu, Orthanc) run with TCP_NODELAY=1; pacsdash, the bare receiver and the C-FIND "
        "client set TCP_NODELAY on their sockets.",
        "pacsdash fsyncs each file and its folder before acknowledging; Orthanc syncs its storage area too "
        "(SyncStorageArea default true); the bare receiver writes without fsync.",
        ORTHANC_CONFIG_NOTES,
        f"C-FIND: one association per server (Study Root), {plan.repetitions} timed repetitions per query after 3 "
        "untimed ones; latency from request to final response, all matches received and decoded by pynetdicom "
        "in this process; p95 is the nearest-rank percentile.",
        "The bare pynetdicom receiver has no C-FIND (n/a).",
        "Memory: VmRSS of the server process from /proc every 0.5 s; growth is the largest sample after the "
        "first 20% of the ingest (by time) relative to the sample at that mark.",
    ]


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that every finally block runs
    find_plan = plan.find
    results = report.Results(
        meta={
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(WORK_DIR),
            "pacsdash_source_at_start": source_state(),
            "config": {
                "quick": plan.quick,
                "ingest_ct_512": plan.instances,
                "find_index": find_plan.count,
                "find_studies": find_plan.studies,
                "find_patients": find_plan.patients,
                "find_repetitions": plan.repetitions,
                "memory_ct_128": plan.memory_instances,
            },
        }
    )
    results.notes += notes(plan)
    started = time.monotonic()
    phases = {"ingest": run_ingest, "find": run_find, "memory": run_memory}
    try:
        for phase in plan.phases:
            phases[phase](plan, results)
    finally:
        results.meta["duration_s"] = round(time.monotonic() - started, 1)
        noisy = {k: v for k, v in results.details.get("cpu_busy_before", {}).items() if v > QUIET_THRESHOLD}
        if noisy:
            results.notes.insert(0, "Other processes were using the CPUs before these measurements (fraction of all "
                                 f"CPUs busy while the benchmark was idle): {noisy}; their numbers are less reliable.")
        ran = sorted(set(results.details.get("pacsdash_source", {}).values()))
        if len(ran) > 1:
            results.notes.insert(0, "pacsdash's source changed during this run (it is being edited): the phases "
                                 f"measured different code: {', '.join(ran)} (see details.pacsdash_source)")
        json_path, md_path = report.write(results, RESULTS_DIR)
    print()
    print(report.table(results))
    print(f"\nwrote {json_path} and {md_path} ({results.meta['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
