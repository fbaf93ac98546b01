"""The benchmark phases: ingest, C-FIND latency, server memory, DICOMweb, dashboard, research, notebook, scale.

Every measurement uses a fresh server (for C-FIND, one per server with the
index loaded once) and ends with the server stopped and its folder removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import cfind, datasets, dicomweb, ingest, memory
from benchmarks.common import STORESCU
from benchmarks.cpu import ForeignLoad
from benchmarks.guard import Guard, say
from benchmarks.report import Results
from benchmarks.servers import ORTHANC_NAMES, PACSDASH_NAMES, SERVERS, WEB_PASSWORD, WEB_USER, PacsdashServer, Server

PHASES = ("ingest", "find", "memory", "dicomweb", "dashboard", "research", "notebook", "scale")
#: The servers that answer C-FIND and DICOMweb (the bare receiver does neither).
QUERY_SERVERS = PACSDASH_NAMES + ORTHANC_NAMES
#: Issue 16: pacsdash with PostgreSQL + S3 ingests at least this share of the embedded default's rate.
PG_INGEST_TARGET = 0.8


@dataclass(frozen=True)
class Plan:
    """How big each benchmark is, and where it runs."""

    quick: bool
    instances: int
    find: datasets.FindIndexPlan
    memory_instances: int
    repetitions: int
    servers: tuple[str, ...]
    phases: tuple[str, ...]
    tmp_root: Path
    keep: bool
    #: CT 512x512 instances of the one-series study retrieved (DICOMweb) and viewed (dashboard).
    web_instances: int = 100
    #: Studies in the generated dashboard index.
    dash_studies: int = 100_000
    #: Times the browser opens the study (first frame) and scrolls the series.
    browser_repetitions: int = 5
    #: CT 512x512 instances of the study anonymized and exported (research).
    research_instances: int = 100
    #: CT 128x128 instances of the cohort exported while pacsdash's RSS is sampled (research).
    research_cohort: int = 2000
    #: Times the study is anonymized and exported (research).
    research_repetitions: int = 3
    #: CT 512x512 slices of the series fetched as a volume by pacsdash.client and the plain way (notebook).
    notebook_slices: int = 100
    #: Instances of each generated index searched with pacsdash.client's cohort() (notebook).
    cohort_sizes: tuple[int, ...] = (20_000, 1_000_000)
    #: Which parts of the notebook phase run: "volume", "cohort".
    notebook_parts: tuple[str, ...] = ("volume", "cohort")
    #: Rounds of the 4-association ingest without a page, with /activity open, with the traffic record off.
    activity_rounds: int = 3
    #: Instances of pacsdash's index in the scale phase's second measurement (the C-FIND index plus generated rows).
    scale_instances: int = 1_000_000


def record_server(results: Results, server: Server, where: str) -> None:
    """Keep the server's log warnings, how it stopped, and which pacsdash code it ran."""
    issues = ([server.stop_note] if server.stop_note else []) + server.issues
    if issues:
        results.log_issues[f"{server.name} / {where}"] = issues[:50]
    if server.source:
        results.details.setdefault("pacsdash_source", {})[where] = server.source


# -- 1. ingest ---------------------------------------------------------------
def run_ingest(plan: Plan, results: Results, guard: Guard) -> None:
    """Instances/s of storescu into each server, 1 and 4 associations."""
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

            def run(name: str = name, n: int = n) -> tuple[ingest.IngestResult, dict]:
                with SERVERS[name](plan.tmp_root, plan.keep) as server:
                    try:
                        server.start()
                        with ForeignLoad(server.pid) as load:
                            result = ingest.run_storescu(server, fileset, n, server.folder / "clients")
                    finally:
                        server.stop()
                        record_server(results, server, f"ingest {n}")
                return result, load.result

            def one(name: str = name, n: int = n, id: str = id, run=run) -> None:
                result = guard.measure(f"{name} ingest {n}", [id], name, run)
                details.setdefault(name, {})[str(n)] = result.as_dict()
                if result.errors:
                    raise RuntimeError("; ".join(result.errors[:3]))
                results.metrics[id].values[name] = round(result.rate, 1)
                say(f"  {result.rate:.1f} instances/s ({result.seconds:.2f} s)")

            guard.attempt([id], name, one)
    if "pacsdash-pg" in plan.servers:
        pg_ingest_ratios(results, plan.servers)
    if "pacsdash" in plan.servers and plan.activity_rounds:
        run_activity_ingest(plan, results, guard, fileset)


def pg_ingest_ratios(results: Results, servers: tuple[str, ...]) -> None:
    """Rows: pacsdash-pg's ingest rate over pacsdash's, 1 and 4 associations (target >= 0.8)."""
    for n in (1, 4):
        id = f"ingest_{n}_pg_ratio"
        metric = results.metric(id, f"Ingest, {n} association{'s' if n > 1 else ''}: pacsdash with PostgreSQL + S3 "
                                f"(moto) over pacsdash with DuckDB + files (target >= {PG_INGEST_TARGET:g})", "x",
                                "higher", ("pacsdash-pg",))
        values = results.metrics[f"ingest_{n}"].values
        if "pacsdash" not in servers:
            metric.skipped["pacsdash-pg"] = "pacsdash (the embedded default) was not run"
        elif "pacsdash" in values and "pacsdash-pg" in values and values["pacsdash"] > 0:
            value = values["pacsdash-pg"] / values["pacsdash"]
            metric.values["pacsdash-pg"] = round(value, 2)
            metric.notes["pacsdash-pg"] = "meets target" if value >= PG_INGEST_TARGET else "MISSES target"
            if {"pacsdash", "pacsdash-pg"} & results.metrics[f"ingest_{n}"].flagged:
                metric.flagged.add("pacsdash-pg")
        else:
            metric.skipped["pacsdash-pg"] = "one of the two ingest rates is missing"


ACTIVITY_IDS = ["ingest_4_plain", "ingest_4_activity", "ingest_4_traffic_off", "ingest_activity_cost",
                "ingest_traffic_cost"]


def _activity_rows(results: Results, rounds: int) -> None:
    target = f"target <= {ingest.ACTIVITY_COST_TARGET:.0%}"
    only = ("pacsdash",)
    results.metric("ingest_4_plain", f"Ingest, 4 associations, pacsdash with no page open (baseline of the "
                   f"/activity rows; median of {rounds} rounds)", "instances/s", "higher", only)
    results.metric("ingest_4_activity", "Ingest, 4 associations, pacsdash with /activity open in a logged-in "
                   "Chromium, median", "instances/s", "higher", only)
    results.metric("ingest_4_traffic_off", "Ingest, 4 associations, pacsdash with its traffic record off "
                   "(PACSDASH_TRAFFIC=off), median", "instances/s", "higher", only)
    results.metric("ingest_activity_cost", f"/activity open: the 4-association ingest slower by ({target})", "%",
                   "lower", only)
    results.metric("ingest_traffic_cost", "The traffic record (no page open): the 4-association ingest slower than "
                   "with it off by", "%", "lower", only)


def _activity_round(plan: Plan, results: Results, fileset: datasets.FileSet) -> tuple[dict, dict]:
    """One round: the ingest without the page, with /activity open, with the traffic record off."""
    rates: dict[str, float] = {}
    seen = 0
    with ForeignLoad(os.getpid()) as load:  # the servers, storescu and Chromium are all our children
        for variant in ingest.ACTIVITY_VARIANTS:
            with PacsdashServer(plan.tmp_root, plan.keep) as server:
                try:
                    if variant == "traffic_off":
                        server.env["PACSDASH_TRAFFIC"] = "off"
                    server.add_user()
                    server.start()
                    folder = server.folder / "clients"
                    if variant == "activity":
                        with ingest.ActivityPage(server.base_url, WEB_USER, WEB_PASSWORD) as page:
                            result = ingest.run_storescu(server, fileset, 4, folder)
                        seen = page.associations_seen
                    else:
                        result = ingest.run_storescu(server, fileset, 4, folder)
                finally:
                    server.stop()
                    record_server(results, server, f"ingest 4 {variant}")
            if result.errors:
                raise RuntimeError(f"{variant}: " + "; ".join(result.errors[:3]))
            rates[variant] = result.rate
    return {"rates": rates, "associations_seen": seen}, load.result


def run_activity_ingest(plan: Plan, results: Results, guard: Guard, fileset: datasets.FileSet) -> None:
    """pacsdash's 4-association ingest with and without /activity open, and with its traffic record off.

    The variants run back to back, each on a fresh server, in ``plan.activity_rounds`` rounds; the medians are
    compared, so that a slower minute of a shared machine weighs on every variant alike.
    """
    _activity_rows(results, plan.activity_rounds)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        results.skip(ACTIVITY_IDS, "pacsdash", "playwright is not installed (pip install -e '.[test]')")
        return
    details = results.details.setdefault("ingest_activity", {"rounds": []})

    def one() -> None:
        for k in range(plan.activity_rounds):
            say(f"ingest: pacsdash, 4 associations, round {k + 1} of {plan.activity_rounds}: no page, /activity "
                "open, traffic record off")
            measured = guard.measure(f"pacsdash ingest 4 /activity round {k + 1}", ACTIVITY_IDS, "pacsdash",
                                     lambda: _activity_round(plan, results, fileset))
            details["rounds"].append({**measured, "rates": {n: round(r, 1) for n, r in measured["rates"].items()}})
            say("  " + ", ".join(f"{n} {r:.1f}/s" for n, r in measured["rates"].items())
                + f"; the page showed {measured['associations_seen']} associations")
        rates = ingest.median_rates([r["rates"] for r in details["rounds"]])
        for variant in ingest.ACTIVITY_VARIANTS:
            results.metrics[f"ingest_4_{variant}"].values["pacsdash"] = round(rates[variant], 1)
        cost = ingest.activity_cost(rates["activity"], rates["plain"])
        metric = results.metrics["ingest_activity_cost"]
        metric.values["pacsdash"] = round(cost * 100, 1)
        metric.notes["pacsdash"] = "meets target" if cost <= ingest.ACTIVITY_COST_TARGET else "MISSES target"
        results.metrics["ingest_traffic_cost"].values["pacsdash"] = round(
            ingest.activity_cost(rates["plain"], rates["traffic_off"]) * 100, 1)
        say(f"  /activity open: {cost:.1%} slower (target <= {ingest.ACTIVITY_COST_TARGET:.0%})")

    guard.attempt(ACTIVITY_IDS, "pacsdash", one)


# -- 2. C-FIND ---------------------------------------------------------------
def _find_ids(query: cfind.FindQuery) -> tuple[str, str]:
    return f"find_{query.name}_median", f"find_{query.name}_p95"


def _load_index(server: Server, fileset: datasets.FileSet) -> str:
    """Fill the server with the C-FIND index and start it; a line saying how."""
    if isinstance(server, PacsdashServer):
        started = time.perf_counter()
        summary = server.import_offline(fileset.shards, timeout=ingest.timeout_for(fileset.count))
        seconds = time.perf_counter() - started
        server.start()
        return (f"`pacsdash import` before start: {fileset.count} files in {seconds:.1f} s "
                f"({fileset.count / seconds:.0f}/s); {summary}")
    server.start()
    loaded = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
    if loaded.errors:
        raise RuntimeError("loading the index failed: " + "; ".join(loaded.errors[:3]))
    return f"storescu, 4 associations: {fileset.count} files in {loaded.seconds:.1f} s ({loaded.rate:.0f}/s)"


def run_find(plan: Plan, results: Results, guard: Guard) -> None:
    """Median and p95 C-FIND latency of four STUDY-level queries, pacsdash and Orthanc."""
    queries = cfind.queries(plan.find)
    all_ids: list[str] = []
    for query in queries:
        median_id, p95_id = _find_ids(query)
        results.metric(median_id, f"C-FIND STUDY {query.label} ({query.expected} matches), median", "ms", "lower",
                       QUERY_SERVERS)
        results.metric(p95_id, f"C-FIND STUDY {query.label} ({query.expected} matches), p95", "ms", "lower",
                       QUERY_SERVERS)
        all_ids += [median_id, p95_id]
    names = [n for n in plan.servers if n in QUERY_SERVERS]
    if not names:
        return
    fileset = datasets.find_index(plan.find)
    details = results.details.setdefault("find", {})
    setup = results.details.setdefault("setup", {})
    for name in names:
        say(f"find: {name}, loading {fileset.count} instances")

        def one(name: str = name) -> None:
            with SERVERS[name](plan.tmp_root, plan.keep) as server:
                try:
                    setup[name] = _load_index(server, fileset)
                    say(f"  {setup[name]}")
                    held = server.stored_count()
                    if held != fileset.count:
                        raise RuntimeError(f"{name} holds {held} instances, {fileset.count} expected")

                    def run() -> tuple[dict, dict]:
                        with ForeignLoad(server.pid) as load:
                            measured = cfind.measure(server, plan.find, plan.repetitions)
                        return measured, load.result

                    measured = guard.measure(f"{name} find", all_ids, name, run)
                finally:
                    server.stop()
                    record_server(results, server, "find")
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

        guard.attempt(all_ids, name, one)


# -- 3. memory ---------------------------------------------------------------
MEMORY_IDS = ["mem_start", "mem_max", "mem_end", "mem_growth", "tree_max", "tree_end", "tree_growth", "ingest_small_4"]


def _memory_rows(results: Results, n: int) -> None:
    results.metric("mem_start", f"Server RSS before a {n}-instance ingest", "MiB", "lower")
    results.metric("mem_max", "Server RSS, max during the ingest (sampled every 0.5 s)", "MiB", "lower")
    results.metric("mem_end", "Server RSS at the end of the ingest", "MiB", "lower")
    results.metric("mem_growth", f"RSS growth after the first 20% of the ingest (flat if < {memory.FLAT_LIMIT:.0%})",
                   "%", "lower")
    results.metric("tree_max", "Server process tree RSS (server + child processes, summed), max", "MiB", "lower")
    results.metric("tree_end", "Server process tree RSS at the end of the ingest", "MiB", "lower")
    results.metric("tree_growth", "Process tree RSS growth after the first 20% of the ingest", "%", "lower")
    results.metric("ingest_small_4", "Ingest during the memory run, CT 128x128, storescu, 4 associations",
                   "instances/s", "higher")


def run_memory(plan: Plan, results: Results, guard: Guard) -> None:
    """RSS of each server (and its child processes) during a long ingest over 4 associations."""
    n = plan.memory_instances
    _memory_rows(results, n)
    if not STORESCU.exists():
        for name in plan.servers:
            results.skip(MEMORY_IDS, name, f"{STORESCU} not found")
        return
    fileset = datasets.many_studies(n)
    fileset.warm()
    details = results.details.setdefault("memory", {})
    for name in plan.servers:
        say(f"memory: {name}, {n} instances over 4 associations")

        def run(name: str = name) -> tuple[tuple, dict]:
            with SERVERS[name](plan.tmp_root, plan.keep) as server:
                try:
                    server.start()
                    with memory.RssSampler(server.pid) as sampler, ForeignLoad(server.pid) as load:
                        started = time.monotonic()
                        result = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
                        ended = time.monotonic()
                finally:
                    server.stop()
                    record_server(results, server, "memory")
            return (sampler, started, ended, result), load.result

        def one(name: str = name, run=run) -> None:
            sampler, started, ended, result = guard.measure(f"{name} memory", ["ingest_small_4"], name, run)
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

        guard.attempt(MEMORY_IDS, name, one)


# -- 4. DICOMweb -------------------------------------------------------------
WEB_SERVERS = QUERY_SERVERS


def _web_rows(results: Results, plan: Plan, extra: dict[str, str]) -> list[str]:
    """Create the DICOMweb rows (``extra``: the CT study, for the match counts); return their ids."""
    ids: list[str] = []

    def row(id: str, label: str, unit: str, better: str) -> None:
        results.metric(id, label, unit, better, WEB_SERVERS)
        ids.append(id)

    for query in dicomweb.qido_queries(plan.find, extra):
        label = f"QIDO-RS studies {query.label} ({query.expected} matches)"
        row(f"web_qido_{query.name}_median", f"{label}, median", "ms", "lower")
        row(f"web_qido_{query.name}_p95", f"{label}, p95", "ms", "lower")
    n = plan.web_instances
    row("web_retrieve_rate", f"WADO-RS retrieve of a study of {n} CT 512x512 (multipart DICOM), at median time",
        "MB/s", "higher")
    row("web_retrieve_p95", f"WADO-RS retrieve of the {n}-instance study, p95", "ms", "lower")
    for name, label in (("study_metadata", f"WADO-RS study /metadata ({n} instances)"),
                        ("series_metadata", f"WADO-RS series /metadata ({n} instances)"),
                        ("rendered", "WADO-RS /rendered, one CT frame as image/jpeg"),
                        ("frame", "WADO-RS /frames/1 raw, OHIF's Accept (transfer-syntax=*)")):
        row(f"web_{name}_median", f"{label}, median", "ms", "lower")
        row(f"web_{name}_p95", f"{label}, p95", "ms", "lower")
    return ids


def _load_web(server: Server, sets: list[datasets.FileSet]) -> str:
    """Fill a server with ``sets`` (pacsdash: offline import; Orthanc: storescu) and start it."""
    total = sum(s.count for s in sets)
    if isinstance(server, PacsdashServer):
        server.add_user()
        started = time.perf_counter()
        summary = server.import_offline([shard for s in sets for shard in s.shards],
                                        timeout=ingest.timeout_for(total))
        seconds = time.perf_counter() - started
        server.start()
        return f"`pacsdash import` before start: {total} files in {seconds:.1f} s; {summary}"
    server.start()
    parts = []
    for fileset in sets:
        loaded = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
        if loaded.errors:
            raise RuntimeError("loading failed: " + "; ".join(loaded.errors[:3]))
        parts.append(f"{fileset.count} files in {loaded.seconds:.1f} s")
    return "storescu, 4 associations: " + ", ".join(parts)


def run_dicomweb(plan: Plan, results: Results, guard: Guard) -> None:
    """QIDO-RS and WADO-RS latency of pacsdash and of Orthanc's DICOMweb plugin, same data in both."""
    names = [n for n in plan.servers if n in WEB_SERVERS]
    if not names:
        return
    find_set = datasets.find_index(plan.find)
    ct_set = datasets.ct_volume(plan.web_instances)
    study = dicomweb.TestStudy.from_files(ct_set.files())
    ids = _web_rows(results, plan, study.attributes)
    total = find_set.count + ct_set.count
    details = results.details.setdefault("dicomweb", {})
    setup = results.details.setdefault("setup", {})
    retrieve_reps = max(5, plan.repetitions // 3)
    for name in names:
        say(f"dicomweb: {name}, loading {total} instances")

        def one(name: str = name) -> None:
            server = SERVERS[name](plan.tmp_root, plan.keep, dicomweb=True) if name in ORTHANC_NAMES else \
                SERVERS[name](plan.tmp_root, plan.keep)
            with server:
                try:
                    setup[f"{name} (DICOMweb)"] = _load_web(server, [find_set, ct_set])
                    say(f"  {setup[f'{name} (DICOMweb)']}")
                    held = server.stored_count()
                    if held != total:
                        raise RuntimeError(f"{name} holds {held} instances, {total} expected")
                    target = dicomweb.WebTarget(name, server.base_url, (WEB_USER, WEB_PASSWORD))

                    def run() -> tuple[dict, dict]:
                        with ForeignLoad(server.pid) as load:
                            measured = dicomweb.measure(target, plan.find, study, plan.repetitions, retrieve_reps)
                        return measured, load.result

                    measured = guard.measure(f"{name} dicomweb", ids, name, run)
                finally:
                    server.stop()
                    record_server(results, server, "dicomweb")
            details[name] = measured
            m = results.metrics
            for key, row in measured.items():
                if "error" in row:
                    row_ids = ["web_retrieve_rate", "web_retrieve_p95"] if key == "retrieve" else \
                        [f"web_{key}_median", f"web_{key}_p95"]
                    results.skip(row_ids, name, f"wrong answer: {row['error']}")
                    say(f"  {key}: wrong answer: {row['error']}")
                    continue
                if key == "retrieve":
                    m["web_retrieve_rate"].values[name] = row["median_mb_per_s"]
                    m["web_retrieve_p95"].values[name] = row["p95_ms"]
                else:
                    m[f"web_{key}_median"].values[name] = row["median_ms"]
                    m[f"web_{key}_p95"].values[name] = row["p95_ms"]
                extra = f", {row['matches']} matches" if "matches" in row else ""
                say(f"  {row['label']}: median {row['median_ms']} ms, p95 {row['p95_ms']} ms{extra}")

        guard.attempt(ids, name, one)


# -- 5. dashboard ------------------------------------------------------------
def run_dashboard(plan: Plan, results: Results, guard: Guard) -> None:
    """Dashboard search on a large generated index, first frame and scrolling in a real browser."""
    from benchmarks import dashboard

    dashboard.run(plan, results, guard)


# -- 6. research -------------------------------------------------------------
def run_research(plan: Plan, results: Results, guard: Guard) -> None:
    """Anonymize a CT study and export it anonymized (ZIP, NIfTI) beside Orthanc; RSS of a cohort export."""
    from benchmarks import research

    research.run(plan, results, guard)


# -- 7. notebook --------------------------------------------------------------
def run_notebook(plan: Plan, results: Results, guard: Guard) -> None:
    """pacsdash.client: volume() beside dicomweb-client + pydicom, cohort() on non-indexed tags of large indexes."""
    from benchmarks import notebook

    notebook.run(plan, results, guard)


# -- 8. scale -------------------------------------------------------------------
def run_scale(plan: Plan, results: Results, guard: Guard) -> None:
    """C-FIND and QIDO-RS latency at the C-FIND index's size and at ``plan.scale_instances`` (generated rows)."""
    from benchmarks import scale

    scale.run(plan, results, guard)


PHASE_FUNCTIONS = {"ingest": run_ingest, "find": run_find, "memory": run_memory, "dicomweb": run_dicomweb,
                   "dashboard": run_dashboard, "research": run_research, "notebook": run_notebook,
                   "scale": run_scale}
