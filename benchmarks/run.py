"""Run every benchmark and write ``benchmarks/results/latest.{json,md}``.

Usage (from the project folder)::

    .venv/bin/python -m benchmarks.run            # full run, about 15 minutes
    .venv/bin/python -m benchmarks.run --quick    # smoke run, about 2 minutes

Each metric is measured on a fresh server; one that cannot be measured is
reported as skipped with the reason, and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
from pathlib import Path

from benchmarks import backends, datasets, report
from benchmarks.common import RESULTS_DIR, WORK_DIR
from benchmarks.guard import FOREIGN_LIMIT, Guard
from benchmarks.machine import machine_info, source_state
from benchmarks.phases import PHASE_FUNCTIONS, PHASES, Plan
from benchmarks.servers import ORTHANC_CONFIG_NOTES, ORTHANC_DICOMWEB_NOTES, PG_NOTES, SERVERS


def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    """The plan of this run, from the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument("--instances", type=int, help="CT instances per ingest run (default 1000, quick 100)")
    parser.add_argument("--find-studies", type=int, help="studies in the C-FIND index (default 2000, quick 200)")
    parser.add_argument("--find-per-study", type=int, default=10, help="instances per study in the C-FIND index")
    parser.add_argument("--memory-instances", type=int, help="instances of the memory run (default 10000, quick 1000)")
    parser.add_argument("--repetitions", type=int, help="C-FIND repetitions per query type (default 50, quick 20)")
    parser.add_argument("--web-instances", type=int,
                        help="CT 512x512 instances of the study retrieved over DICOMweb and viewed in the dashboard "
                        "(default 100, quick 30)")
    parser.add_argument("--dash-studies", type=int,
                        help="studies in the generated dashboard search index (default 100000, quick 10000)")
    parser.add_argument("--browser-repetitions", type=int,
                        help="times the browser opens the study and scrolls it (default 5, quick 2)")
    parser.add_argument("--activity-rounds", type=int,
                        help="rounds of pacsdash's 4-association ingest without a page, with /activity open and with "
                        "the traffic record off (default 3, quick 1; 0 leaves them out)")
    parser.add_argument("--research-instances", type=int,
                        help="CT 512x512 instances of the study anonymized and exported (default 100, quick 20)")
    parser.add_argument("--research-cohort", type=int,
                        help="CT 128x128 instances of the cohort exported while pacsdash's RSS is sampled "
                        "(default 2000, quick 200)")
    parser.add_argument("--research-repetitions", type=int,
                        help="times the study is anonymized and exported (default 3, quick 2)")
    parser.add_argument("--notebook-slices", type=int,
                        help="CT 512x512 slices of the series fetched as a volume by pacsdash.client and by "
                        "dicomweb-client + pydicom (default 100, quick 30)")
    parser.add_argument("--cohort-sizes",
                        help="comma-separated instance counts of the generated indexes searched with "
                        "pacsdash.client's cohort() (default 20000,1000000, quick 2000,20000)")
    parser.add_argument("--notebook-parts", default="volume,cohort",
                        help="which parts of the notebook phase run: volume, cohort or both (default both)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where latest.json and latest.md are written (default benchmarks/results)")
    parser.add_argument("--scale-instances", type=int,
                        help="instances of pacsdash's index in the scale phase's second measurement: the C-FIND index "
                        "plus generated rows (default 1000000, quick 20000)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated subset of " + ",".join(SERVERS) + " (default all)")
    parser.add_argument("--only", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    parser.add_argument("--tmp-dir", type=Path, default=WORK_DIR / "tmp", help="where server folders are made")
    parser.add_argument("--keep", action="store_true", help="keep server folders and logs (for debugging)")
    parser.add_argument("--wait-idle", type=float, default=60.0,
                        help="before each measurement, wait up to this many seconds for other processes to leave "
                        "the CPUs idle (default 60)")
    parser.add_argument("--retries", type=int, default=2,
                        help=f"measure again (up to this many times) when other processes used more than "
                        f"{FOREIGN_LIMIT * 100:.0f}%% of the machine meanwhile (default 2)")
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
    for value, what in ((args.instances, "--instances"), (studies, "--find-studies"),
                        (args.memory_instances, "--memory-instances"), (args.web_instances, "--web-instances"),
                        (args.dash_studies, "--dash-studies"), (args.research_instances, "--research-instances"),
                        (args.research_cohort, "--research-cohort")):
        if value is not None and value < 4:
            parser.error(f"{what} must be at least 4")
    if args.activity_rounds is not None and args.activity_rounds < 0:
        parser.error("--activity-rounds must be 0 or more")
    if args.research_repetitions is not None and args.research_repetitions < 1:
        parser.error("--research-repetitions must be at least 1")
    if args.notebook_slices is not None and args.notebook_slices < 2:
        parser.error("--notebook-slices must be at least 2")
    try:
        cohort_sizes = tuple(int(v.replace("_", "")) for v in args.cohort_sizes.split(",") if v.strip()) \
            if args.cohort_sizes else ((2_000, 20_000) if args.quick else (20_000, 1_000_000))
    except ValueError:
        parser.error("--cohort-sizes takes whole numbers separated by commas")
    if not cohort_sizes or any(n < 100 for n in cohort_sizes):
        parser.error("--cohort-sizes must each be at least 100")
    scale_instances = args.scale_instances or (20_000 if args.quick else 1_000_000)
    if "scale" in phases and scale_instances <= studies * args.find_per_study:
        parser.error("--scale-instances must be larger than the C-FIND index (--find-studies x --find-per-study)")
    notebook_parts = tuple(p for p in args.notebook_parts.split(",") if p)
    for part in notebook_parts:
        if part not in ("volume", "cohort"):
            parser.error(f"unknown notebook part {part!r} (volume, cohort)")
    plan = Plan(
        quick=args.quick,
        instances=args.instances or (100 if args.quick else 1000),
        find=datasets.FindIndexPlan(studies, args.find_per_study, max(3, studies // 10)),
        memory_instances=args.memory_instances or (1000 if args.quick else 10000),
        repetitions=args.repetitions or (20 if args.quick else 50),
        servers=servers,
        phases=phases,
        tmp_root=args.tmp_dir,
        keep=args.keep,
        web_instances=args.web_instances or (30 if args.quick else 100),
        dash_studies=args.dash_studies or (10_000 if args.quick else 100_000),
        browser_repetitions=args.browser_repetitions or (2 if args.quick else 5),
        activity_rounds=(1 if args.quick else 3) if args.activity_rounds is None else args.activity_rounds,
        research_instances=args.research_instances or (20 if args.quick else 100),
        research_cohort=args.research_cohort or (200 if args.quick else 2000),
        research_repetitions=args.research_repetitions or (2 if args.quick else 3),
        notebook_slices=args.notebook_slices or (30 if args.quick else 100),
        cohort_sizes=cohort_sizes,
        notebook_parts=notebook_parts,
        scale_instances=scale_instances,
    )
    return plan, args


def notes(plan: Plan) -> list[str]:
    """How to read the numbers."""
    out = [
        "Ingest rates are wall time of the storescu processes (start of the first to exit of the last), "
        "file scanning and association set-up included; every run starts a fresh server with an empty store, "
        "and the count the server holds afterwards is checked.",
        "dcmtk programs (storescu, Orthanc) run with TCP_NODELAY=1; pacsdash, the bare receiver and the C-FIND "
        "client set TCP_NODELAY on their sockets.",
        "The bare pynetdicom receiver writes each data set without fsync; pacsdash and Orthanc make stored files "
        "durable (Orthanc: SyncStorageArea, default true).",
        ORTHANC_CONFIG_NOTES,
        f"C-FIND: one association per server (Study Root), {plan.repetitions} timed repetitions per query after 3 "
        "untimed ones; latency from request to final response, all matches received and decoded by pynetdicom "
        "in this process; p95 is the nearest-rank percentile. The bare pynetdicom receiver has no C-FIND (n/a).",
        "Memory: VmRSS from /proc every 0.5 s, of the server process and summed over it and its child processes "
        "(shared pages counted once per process); growth is the largest sample after the first 20% of the ingest "
        "(by time) relative to the sample at that mark.",
        f"Before each measurement the run waits (bounded) for the CPUs to go idle; a measurement during which other "
        f"processes used more than {FOREIGN_LIMIT:.0%} of the machine is repeated, and marked † if it still was.",
    ]
    if "ingest" in plan.phases and plan.activity_rounds and "pacsdash" in plan.servers:
        out.append(
            f"/activity's cost (pacsdash only): {plan.activity_rounds} round(s), each running the 4-association "
            "ingest on a fresh server three times back to back: with no page open, with /activity open in a "
            "logged-in headless Chromium (the page must have shown the associations live), and with the traffic "
            "record off (PACSDASH_TRAFFIC=off); the medians are compared: cost = 1 - with page / without, target "
            "<= 5%. The traffic record's own cost compares no page with the record off.")
    if "dicomweb" in plan.phases:
        out.append(
            f"DICOMweb: both servers hold the C-FIND index plus one study of {plan.web_instances} CT 512x512 in one "
            "series (pacsdash by `pacsdash import`, Orthanc by storescu); one requests.Session with keep-alive to "
            f"127.0.0.1, HTTP Basic auth, Accept-Encoding identity; {plan.repetitions} timed requests per type after 3 "
            f"untimed ones ({max(5, plan.repetitions // 3)} after 2 for the whole-study retrieve); latency to the last "
            "byte of the body. Every answer is checked after its timing: status 200, media type, number of matches "
            "(QIDO-RS), the right SOP Instance UIDs (retrieve, /metadata), a JPEG (/rendered), the stored frame bytes "
            "(/frames). Wildcards go unencoded in the URL (Orthanc 1.10.1 does not decode %2A). MB/s is body bytes "
            "(1 MB = 10^6 bytes) over the median time.")
        out.append(ORTHANC_DICOMWEB_NOTES)
    if "dashboard" in plan.phases:
        out.append(
            f"Dashboard (pacsdash only; targets printed with each row): search = StudySearch.refresh() in this "
            f"process on a generated index of {plan.dash_studies:,} studies (first page of 25 by date, the total "
            f"count, the table), {plan.repetitions} timed repetitions after 3; totals, rows and the first date "
            f"checked. Browser = Chromium headless driven by Playwright against `pacsdash serve` on that index plus "
            f"the {plan.web_instances}-slice CT, {plan.browser_repetitions} sessions each in a fresh browser context "
            "(logged in anew); times taken in the page with performance.now(), polled once per animation frame. "
            "Scrolling: arrow-down from the first slice to the last once the browser holds every slice; fps = "
            "distinct slices drawn per second (slices skipped when keys come faster than the screen refreshes are "
            "listed in the details).")
    if "research" in plan.phases:
        from benchmarks import research

        out.append(
            f"Research: both servers hold one study of {plan.research_instances} CT 512x512 (pacsdash by `pacsdash "
            "import`, Orthanc by storescu); each of "
            f"{plan.research_repetitions} repetitions, after one untimed, anonymizes it (timed to the answer), exports it, "
            "then deletes the copy (untimed); rates are at the median time. pacsdash: POST /api/studies/{uid}/anonymize as an editor "
            "(answers once the copy is stored; PS3.15 Annex E with pacsdash's default options); anonymized export = "
            "POST /api/exports {\"studies\": [uid], \"format\": \"zip\"|\"nifti\", \"anonymize\": true}, "
            f"GET /api/exports/{{id}} polled every {research.POLL_INTERVAL * 1000:.0f} ms until done; the ZIP row "
            "includes downloading it (/download), so that it ends, like Orthanc's, with the ZIP in the client's "
            "hands; NIfTI (dcm2niix) is timed to done. Orthanc 1.10.1: POST /studies/{id}/anonymize with "
            f"{research.ORTHANC_ANONYMIZE_BODY} (synchronous; Orthanc's default basic profile), then GET "
            "/studies/{new id}/archive. The ZIPs are not the same work: pacsdash's anonymized export de-identifies "
            "every instance on the way (from the original study) while Orthanc's /archive zips its already "
            "anonymized copy; but Orthanc deflates the entries while pacsdash stores them uncompressed (the research "
            "details give each ZIP's size and entry compression). The profiles differ too (DeidentificationMethod "
            "of each ZIP's first file, in the details). Orthanc has no NIfTI export: that row is pacsdash's alone, "
            "without a ratio. Target: pacsdash at least Orthanc's rate (ratio >= 1), noted on pacsdash's value.")
        out.append(
            f"Research memory (pacsdash only): {plan.research_cohort} CT 128x128 in studies of 100, exported as one "
            f"anonymized ZIP job after an untimed export of one study (so the start includes what any export loads "
            f"once); VmRSS of the server every {research.SAMPLE_INTERVAL} s from the request to the job done. Growth "
            f"is end and peak relative to the start; flat if both are under {research.FLAT_LIMIT:.0%}.")
    if "notebook" in plan.phases:
        from benchmarks import notebook

        out.append(
            f"Notebook (pacsdash only; targets printed with each row): pacsdash.client against `pacsdash serve`, HTTP "
            f"Basic auth. Volume: Client.volume() of {plan.notebook_slices} CT 512x512 slices beside the plain way "
            "(dicomweb-client's DICOMwebClient.retrieve_series, the series as multipart DICOM, then pydicom: sorted by "
            "ImagePositionPatient along the slice normal, pixel_array * RescaleSlope + RescaleIntercept stacked as "
            f"float32), alternately, {notebook.VOLUME_REPS} timed after {notebook.VOLUME_WARMUP} untimed each; every "
            f"array checked equal to the first. Target: volume() at most {notebook.TARGET_RATIO:g}x the plain way's "
            "time. Orthanc is not needed: the reference is the plain way on the same server. Cohort: "
            "Client.cohort('series', Modality='CT', SliceThickness='<=1', ConvolutionKernel='B30f') on generated "
            "indexes (" + ", ".join(f"{n:,}" for n in plan.cohort_sizes) + " instances in series of 100, 4 series a "
            "study, 1 series in 7 MR; no DICOM files) whose instances carry a realistic CT attribute JSON "
            "(47 tags, as pacsdash's parser writes them; SliceThickness and ConvolutionKernel are not columns), "
            f"{notebook.COHORT_REPS} timed after {notebook.COHORT_WARMUP} untimed, end to end (QIDO-RS pages of "
            "1,000, DICOM JSON, the DataFrame); the series returned are checked against the generator's. The index "
            "row times the same page queries in pacsdash's DuckDBIndex.find in this process on the same file "
            f"before the server opens it. Target < {notebook.TARGET_COHORT_MS:g} ms.")
    if {"pacsdash-pg", "orthanc-pg"} & set(plan.servers):
        from benchmarks.backends import postgres_bin

        folder = postgres_bin()
        out.append(PG_NOTES.format(version=folder.parent.name if folder else "(not installed)"))
    if "ingest" in plan.phases and "pacsdash-pg" in plan.servers:
        out.append("Ingest ratio pacsdash-pg / pacsdash: the two 1- and 4-association rates of the ingest rows, each "
                   "on a fresh server (target >= 0.8, issue 16); pacsdash-pg's rate includes moto's CPU time on the "
                   "same 2 CPUs.")
    if "scale" in plan.phases:
        from benchmarks import scale

        out.append(
            f"Scale: each server is loaded with the C-FIND index ({plan.find.count:,} instances) and timed with the "
            f"C-FIND phase's four STUDY queries over C-FIND and QIDO-RS ({plan.repetitions} timed after 3 untimed, "
            f"medians); then pacsdash is stopped, {plan.scale_instances - plan.find.count:,} instances are generated "
            "straight into its index (a template record from pacsdash's parser, copied with each instance's "
            "identifiers, added through the index's own Index.add in batches: pacsdash's schema and summaries, on "
            "DuckDB or PostgreSQL; no DICOM files), and it is timed again on the same home at "
            f"{plan.scale_instances:,}. The generated studies match none of the queries (other patients, no SMITH, "
            "dates 2005-2014, no CT), so both sizes give the same answers, checked each time. Ratio = median at the "
            f"large size / median at the base size, target <= {scale.TARGET_RATIO:g} (issue 16). Orthanc: "
            f"{scale.ORTHANC_REASON}.")
    return out


def _conditions(results: report.Results) -> None:
    """Notes on a busy machine and on pacsdash code changing during the run."""
    loaded = {k: v["foreign_share"] for k, v in results.details.get("foreign_load", {}).items()
              if v["foreign_share"] > FOREIGN_LIMIT}
    if loaded:
        results.notes.insert(0, f"Values marked † were measured while other processes used more than "
                             f"{FOREIGN_LIMIT:.0%} of the machine (share of all CPUs): {loaded}; they are less reliable.")
    ran = sorted(set(results.details.get("pacsdash_source", {}).values()))
    if len(ran) > 1:
        results.notes.insert(0, "pacsdash's source changed during this run (it is being edited): the phases "
                             f"measured different code: {', '.join(ran)} (see details.pacsdash_source)")


def main(argv: list[str] | None = None) -> int:
    """Run the phases, then write and print the results."""
    plan, args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that every finally block runs
    results = report.Results(
        meta={
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(WORK_DIR),
            "pacsdash_source_at_start": source_state(),
            "config": {
                "quick": plan.quick,
                "ingest_ct_512": plan.instances,
                "find_index": plan.find.count,
                "find_studies": plan.find.studies,
                "find_patients": plan.find.patients,
                "find_repetitions": plan.repetitions,
                "memory_ct_128": plan.memory_instances,
                "web_ct_512": plan.web_instances,
                "dash_studies": plan.dash_studies,
                "browser_repetitions": plan.browser_repetitions,
                "activity_rounds": plan.activity_rounds,
                "research_ct_512": plan.research_instances,
                "research_cohort_ct_128": plan.research_cohort,
                "research_repetitions": plan.research_repetitions,
                "notebook_ct_512": plan.notebook_slices,
                "notebook_cohort_sizes": list(plan.cohort_sizes),
                "notebook_parts": list(plan.notebook_parts),
                "servers": list(plan.servers),
                "scale_instances": plan.scale_instances,
            },
        }
    )
    results.notes += notes(plan)
    guard = Guard(results, args.wait_idle, args.retries)
    started = time.monotonic()
    try:
        for phase in plan.phases:
            PHASE_FUNCTIONS[phase](plan, results, guard)
    finally:
        backends.shutdown()
        results.meta["duration_s"] = round(time.monotonic() - started, 1)
        _conditions(results)
        json_path, md_path = report.write(results, args.results_dir)
    print()
    print(report.table(results))
    print(f"\nwrote {json_path} and {md_path} ({results.meta['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
