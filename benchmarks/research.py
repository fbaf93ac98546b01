"""The research phase: anonymize a CT study into the archive, export it anonymized, memory of a cohort export.

pacsdash (JSON API, an editor user):

- ``POST /api/studies/{uid}/anonymize`` answers 200 once the de-identified copy is
  stored: timed from the request to the answer;
- ``POST /api/exports`` with ``{"studies": [uid], "format": "zip"|"nifti",
  "anonymize": true}`` answers 202 with a job; ``GET /api/exports/{id}`` is polled
  (every :data:`POLL_INTERVAL` s) until the job is done. The ZIP is then
  downloaded (``/api/exports/{id}/download``) so that its time is to the last
  byte in the client's hands, like Orthanc's ``/archive``; NIfTI is timed to
  "done" (its download would zip the folder first).

Orthanc 1.10.1 (no plugin, no auth):

- ``POST /studies/{id}/anonymize`` with ``{"Keep": [], "Force": false}``:
  synchronous, its default profile; answers with the new study's ``ID``;
- ``GET /studies/{new id}/archive``: the ZIP of the anonymized study.

Each repetition anonymizes, exports and then deletes the copy it made
(untimed), after one untimed repetition, so that every repetition, and a repeated measurement on a busy
machine, starts from the same archive. Every answer is checked after its
timing (instances stored, DICOM files in the ZIP, NIfTI volumes written).

Memory (pacsdash only): a cohort of small CT studies is exported as an
anonymized ZIP while the server's VmRSS is sampled; one study is exported first
(untimed) so that the start value includes what any export loads once.
"""

from __future__ import annotations

import io
import statistics
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import datasets, ingest, memory
from benchmarks.common import BenchError
from benchmarks.cpu import ForeignLoad
from benchmarks.guard import Guard, say
from benchmarks.phases import record_server
from benchmarks.report import Results
from benchmarks.servers import WEB_PASSWORD, WEB_USER, OrthancServer, PacsdashServer, Server

SERVER_NAMES = ("pacsdash", "orthanc")
#: The pacsdash user that anonymizes and exports (role editor); deleting the copies needs the admin ``WEB_USER``.
EDITOR_USER, EDITOR_PASSWORD = "bench-editor", "bench-editor-password"
#: Seconds between two polls of an export job (the timing's resolution).
POLL_INTERVAL = 0.05
#: Bound on one request or export.
REQUEST_TIMEOUT = 1800.0
#: The cohort export's RSS counts as flat when it grows less than this from start to end and to the peak.
FLAT_LIMIT = 0.20
#: RSS sampling interval during the cohort export (s).
SAMPLE_INTERVAL = 0.25
ORTHANC_ANONYMIZE_BODY = {"Keep": [], "Force": False}
#: Untimed repetitions first (checked like the others), as in the C-FIND and DICOMweb phases.
WARMUP = 1
#: pacsdash's target for anonymizing and for the anonymized ZIP: at least Orthanc's rate.
TARGET_RATIO = 1.0

TIMED_IDS = ["research_anonymize", "research_zip", "research_nifti"]
MEMORY_IDS = ["research_mem_start", "research_mem_peak", "research_mem_end", "research_mem_growth",
              "research_mem_peak_growth", "research_cohort_rate"]


# -- pure logic (tested) --------------------------------------------------------
def dicom_entries(zip_bytes: bytes) -> list[str]:
    """Names of the ZIP's entries that are DICOM Part 10 files ("DICM" at byte 128)."""
    names = []
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as bundle:
        for info in bundle.infolist():
            if info.is_dir() or info.file_size < 132:
                continue
            with bundle.open(info) as handle:
                if handle.read(132)[128:132] == b"DICM":
                    names.append(info.filename)
    return names


def zip_compression(zip_bytes: bytes) -> str:
    """How the ZIP's entries are stored: "stored", "deflated", or a mix."""
    kinds = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as bundle:
        found = sorted({kinds.get(i.compress_type, str(i.compress_type)) for i in bundle.infolist() if not i.is_dir()})
    return "+".join(found) or "empty"


def deidentification_method(zip_bytes: bytes) -> str:
    """DeidentificationMethod (0012,0063) of the ZIP's first DICOM file ('' if none)."""
    from pydicom import dcmread

    names = dicom_entries(zip_bytes)
    if not names:
        return ""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as bundle:
        ds = dcmread(io.BytesIO(bundle.read(names[0])), stop_before_pixels=True)
    value = ds.get("DeidentificationMethod", "")
    return str(value) if isinstance(value, str) else "\\".join(str(v) for v in value)


def job_finished(job: dict[str, Any]) -> bool:
    """Whether an export job (``GET /api/exports/{id}``) has ended; raise if it failed."""
    state = job.get("state")
    if state == "failed":
        raise BenchError(f"export job failed: {job.get('error') or 'no reason given'}")
    if state not in ("queued", "running", "done"):
        raise BenchError(f"export job in an unknown state {state!r}")
    return state == "done"


def median_rate(instances: int, seconds: list[float]) -> float:
    """Instances per second at the median time."""
    if not seconds:
        raise ValueError("no timings")
    return instances / statistics.median(seconds)


def memory_verdict(samples: list[tuple[float, int]], limit: float = FLAT_LIMIT) -> dict[str, Any]:
    """Start, peak and end RSS (MiB) of the export and how much it grew.

    ``samples`` are (time, KiB) from the export's start to its end. Flat when
    both the end and the peak are less than ``limit`` above the start.
    """
    if not samples:
        raise ValueError("no RSS samples")
    start, end = samples[0][1], samples[-1][1]
    peak = max(kb for _, kb in samples)
    growth = (end - start) / start if start else 0.0
    peak_growth = (peak - start) / start if start else 0.0
    return {
        "start_mib": round(start / 1024, 1),
        "peak_mib": round(peak / 1024, 1),
        "end_mib": round(end / 1024, 1),
        "growth": round(growth, 4),
        "peak_growth": round(peak_growth, 4),
        "flat": growth < limit and peak_growth < limit,
        "flat_limit": limit,
        "samples": len(samples),
        "series_mib": [round(kb / 1024, 1) for _, kb in samples],
    }


def ratio_target_note(pacsdash: float, orthanc: float) -> str:
    """The note after pacsdash's rate: whether it reaches Orthanc's."""
    return "meets target" if orthanc > 0 and pacsdash / orthanc >= TARGET_RATIO else "MISSES target"


# -- clients ----------------------------------------------------------------------
def _session(auth: tuple[str, str] | None) -> Any:
    import requests

    session = requests.Session()
    session.auth = auth
    session.headers["Accept-Encoding"] = "identity"
    return session


def _json(response: Any, what: str, status: int = 200) -> Any:
    if response.status_code != status:
        raise BenchError(f"{what} answered {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise BenchError(f"{what} answered something that is not JSON: {response.text[:200]}") from None


@dataclass
class Export:
    """One timed export: seconds to done (and to the last downloaded byte), the job, the ZIP."""

    seconds_to_done: float
    seconds: float
    job: dict[str, Any]
    polls: int
    body: bytes = b""


@dataclass
class PacsdashClient:
    """pacsdash's research API as an editor (and admin, to delete the copies)."""

    base_url: str
    editor: Any = field(init=False)
    admin: Any = field(init=False)

    def __post_init__(self) -> None:
        self.editor = _session((EDITOR_USER, EDITOR_PASSWORD))
        self.admin = _session((WEB_USER, WEB_PASSWORD))

    def anonymize(self, study_uid: str) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = self.editor.post(f"{self.base_url}/api/studies/{study_uid}/anonymize", json={},
                                    timeout=REQUEST_TIMEOUT)
        seconds = time.perf_counter() - started
        return seconds, _json(response, "POST /api/studies/{uid}/anonymize")

    def export(self, studies: list[str], fmt: str, download: bool) -> Export:
        """Start an anonymized export, poll it to done, download it if asked; time all of it."""
        body = {"studies": studies, "format": fmt, "anonymize": True}
        started = time.perf_counter()
        job = _json(self.editor.post(f"{self.base_url}/api/exports", json=body, timeout=60), "POST /api/exports", 202)
        url = f"{self.base_url}/api/exports/{job['id']}"
        polls = 0
        while not job_finished(job):
            if time.perf_counter() - started > REQUEST_TIMEOUT:
                raise BenchError(f"the {fmt} export did not finish within {REQUEST_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)
            job = _json(self.editor.get(url, timeout=60), "GET /api/exports/{id}")
            polls += 1
        done = time.perf_counter() - started
        content = b""
        if download:
            response = self.editor.get(f"{url}/download", timeout=REQUEST_TIMEOUT)
            content = response.content
            if response.status_code != 200:
                raise BenchError(f"GET /api/exports/{{id}}/download answered {response.status_code}")
        return Export(done, time.perf_counter() - started, job, polls, content)

    def delete(self, study_uid: str) -> None:
        response = self.admin.delete(f"{self.base_url}/api/studies/{study_uid}", timeout=REQUEST_TIMEOUT)
        _json(response, "DELETE /api/studies/{uid}")


@dataclass
class OrthancClient:
    """Orthanc's REST API (no authentication: the benchmark's Orthanc without DICOMweb has none)."""

    base_url: str
    session: Any = field(init=False)

    def __post_init__(self) -> None:
        self.session = _session(None)

    def study_id(self, study_uid: str) -> str:
        found = _json(self.session.post(f"{self.base_url}/tools/lookup", data=study_uid, timeout=60), "/tools/lookup")
        ids = [f["ID"] for f in found if f.get("Type") == "Study"]
        if len(ids) != 1:
            raise BenchError(f"Orthanc's /tools/lookup found {len(ids)} studies for {study_uid}")
        return ids[0]

    def instances(self, study_id: str) -> int:
        found = _json(self.session.get(f"{self.base_url}/studies/{study_id}/instances", timeout=120),
                      "GET /studies/{id}/instances")
        return len(found)

    def anonymize(self, study_id: str) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = self.session.post(f"{self.base_url}/studies/{study_id}/anonymize", json=ORTHANC_ANONYMIZE_BODY,
                                     timeout=REQUEST_TIMEOUT)
        seconds = time.perf_counter() - started
        return seconds, _json(response, "POST /studies/{id}/anonymize")

    def archive(self, study_id: str) -> tuple[float, bytes]:
        started = time.perf_counter()
        response = self.session.get(f"{self.base_url}/studies/{study_id}/archive", timeout=REQUEST_TIMEOUT)
        content = response.content
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"GET /studies/{{id}}/archive answered {response.status_code}")
        return seconds, content

    def delete(self, study_id: str) -> None:
        response = self.session.delete(f"{self.base_url}/studies/{study_id}", timeout=REQUEST_TIMEOUT)
        if response.status_code != 200:
            raise BenchError(f"DELETE /studies/{{id}} answered {response.status_code}")


# -- checks -------------------------------------------------------------------------
def _check_zip(content: bytes, expected: int, who: str) -> dict[str, Any]:
    try:
        names = dicom_entries(content)
    except zipfile.BadZipFile as exc:
        raise BenchError(f"{who}'s ZIP cannot be read: {exc}") from None
    if len(names) != expected:
        raise BenchError(f"{who}'s ZIP holds {len(names)} DICOM files, {expected} expected")
    return {"zip_bytes": len(content), "dicom_files": len(names), "compression": zip_compression(content)}


def _check_export(job: dict[str, Any], expected: int, fmt: str) -> dict[str, Any]:
    summary = job.get("summary") or {}
    if summary.get("instances") != expected or summary.get("left_out"):
        raise BenchError(f"the {fmt} export read {summary.get('instances')} instances and left out "
                         f"{summary.get('left_out')}; {expected} expected, none left out")
    if not summary.get("files"):
        raise BenchError(f"the {fmt} export wrote no file")
    return {"files": summary["files"], "instances": summary["instances"]}


# -- measurement ----------------------------------------------------------------------
def _rows(results: Results, n: int, reps: int, cohort: int) -> None:
    both, only = SERVER_NAMES, ("pacsdash",)
    results.metric("research_anonymize", f"Anonymize a study of {n} CT 512x512 into the archive (pacsdash: POST "
                   f"/api/studies/{{uid}}/anonymize; Orthanc: POST /studies/{{id}}/anonymize), median of {reps}; "
                   "target >= Orthanc", "instances/s", "higher", both)
    results.metric("research_zip", f"Anonymized ZIP of the {n}-instance study in the client's hands (pacsdash: "
                   "export job with anonymize + download; Orthanc: /archive of its anonymized copy); target >= Orthanc",
                   "instances/s", "higher", both)
    results.metric("research_nifti", f"Anonymized NIfTI export of the {n}-instance study, to job done (dcm2niix; "
                   "Orthanc has no NIfTI export)", "instances/s", "higher", only)
    what = f"anonymized ZIP export of a {cohort}-instance cohort (CT 128x128)"
    results.metric("research_mem_start", f"Server RSS at the start of an {what}", "MiB", "lower", only)
    results.metric("research_mem_peak", "Server RSS, peak during that export", "MiB", "lower", only)
    results.metric("research_mem_end", "Server RSS at the end of that export", "MiB", "lower", only)
    results.metric("research_mem_growth", f"RSS growth from start to end of that export (flat if it and the peak's "
                   f"are < {FLAT_LIMIT:.0%})", "%", "lower", only)
    results.metric("research_mem_peak_growth", "RSS growth from start to peak of that export", "%", "lower", only)
    results.metric("research_cohort_rate", f"Rate of the {what}, to job done", "instances/s", "higher", only)


def _study_uids(files: list[Path]) -> list[str]:
    """The StudyInstanceUIDs of ``files``, in order of first appearance."""
    from pydicom import dcmread

    seen: dict[str, None] = {}
    for path in files:
        seen.setdefault(str(dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                            .StudyInstanceUID), None)
    return list(seen)


def _load(server: Server, fileset: datasets.FileSet) -> str:
    """Fill and start a server (pacsdash: users, then offline import; Orthanc: storescu); a line saying how."""
    if isinstance(server, PacsdashServer):
        server.add_user()
        server.add_user(EDITOR_USER, EDITOR_PASSWORD, "editor")
        started = time.perf_counter()
        summary = server.import_offline(fileset.shards, timeout=ingest.timeout_for(fileset.count))
        seconds = time.perf_counter() - started
        server.start()
        return f"`pacsdash import` before start: {fileset.count} files in {seconds:.1f} s; {summary}"
    server.start()
    loaded = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
    if loaded.errors:
        raise BenchError("loading failed: " + "; ".join(loaded.errors[:3]))
    return f"storescu, 4 associations: {fileset.count} files in {loaded.seconds:.1f} s"


def _pacsdash_reps(client: PacsdashClient, uid: str, n: int, reps: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for _ in range(WARMUP + reps):
        seconds, answer = client.anonymize(uid)
        copy = answer.get("StudyInstanceUID")
        if answer.get("stored") != n or answer.get("excluded") or answer.get("duplicates") or not copy or copy == uid:
            raise BenchError(f"anonymize stored {answer.get('stored')} instances ({answer.get('duplicates')} "
                             f"duplicates, {len(answer.get('excluded') or [])} left out) as {copy}; {n} new expected")
        zipped = client.export([uid], "zip", download=True)
        run = {"anonymize_s": round(seconds, 3), "copy": copy,
               "zip_s": round(zipped.seconds, 3), "zip_to_done_s": round(zipped.seconds_to_done, 3),
               "zip_polls": zipped.polls, **_check_zip(zipped.body, n, "pacsdash"),
               **_check_export(zipped.job, n, "zip")}
        try:  # a NIfTI failure (no dcm2niix...) leaves the other rows measured
            nifti = client.export([uid], "nifti", download=False)
            run.update(nifti_s=round(nifti.seconds, 3), nifti_files=_check_export(nifti.job, n, "nifti")["files"])
        except BenchError as exc:
            run["nifti_error"] = str(exc)
        if len(runs) == WARMUP:
            run["deidentification_method"] = deidentification_method(zipped.body)
        runs.append(run)
        client.delete(copy)  # the next repetition stores its copy again
    return {"warmup": runs[:WARMUP], "runs": runs[WARMUP:]}


def _orthanc_reps(client: OrthancClient, uid: str, n: int, reps: int) -> dict[str, Any]:
    source = client.study_id(uid)
    runs: list[dict[str, Any]] = []
    for _ in range(WARMUP + reps):
        seconds, answer = client.anonymize(source)
        copy = answer.get("ID")
        if not copy:
            raise BenchError(f"Orthanc's anonymize answered no ID: {answer}")
        held = client.instances(copy)
        if held != n:
            raise BenchError(f"Orthanc's anonymized study holds {held} instances, {n} expected")
        zip_s, content = client.archive(copy)
        run = {"anonymize_s": round(seconds, 3), "copy": copy, "zip_s": round(zip_s, 3),
               **_check_zip(content, n, "Orthanc")}
        if len(runs) == WARMUP:
            run["deidentification_method"] = deidentification_method(content)
        runs.append(run)
        client.delete(copy)
    return {"warmup": runs[:WARMUP], "runs": runs[WARMUP:]}


def _measure_study(plan: Any, results: Results, guard: Guard, name: str, fileset: datasets.FileSet,
                   uid: str) -> dict[str, Any]:
    n, reps = fileset.count, plan.research_repetitions
    server = PacsdashServer(plan.tmp_root, plan.keep) if name == "pacsdash" else OrthancServer(plan.tmp_root, plan.keep)
    with server:
        try:
            setup = _load(server, fileset)
            results.details.setdefault("setup", {})[f"{name} (research)"] = setup
            say(f"  {setup}")
            held = server.stored_count()
            if held != n:
                raise BenchError(f"{name} holds {held} instances, {n} expected")
            ids = TIMED_IDS if name == "pacsdash" else TIMED_IDS[:2]

            def run() -> tuple[dict, dict]:
                with ForeignLoad(server.pid) as load:
                    if isinstance(server, PacsdashServer):
                        measured = _pacsdash_reps(PacsdashClient(server.base_url), uid, n, reps)
                    else:
                        measured = _orthanc_reps(OrthancClient(server.base_url), uid, n, reps)
                return measured, load.result

            return guard.measure(f"{name} research", ids, name, run)
        finally:
            server.stop()
            record_server(results, server, "research")


def _measure_memory(plan: Any, results: Results, guard: Guard, fileset: datasets.FileSet,
                    uids: list[str]) -> dict[str, Any]:
    with PacsdashServer(plan.tmp_root, plan.keep) as server:
        try:
            setup = _load(server, fileset)
            results.details.setdefault("setup", {})["pacsdash (research cohort)"] = setup
            say(f"  {setup}")
            held = server.stored_count()
            if held != fileset.count:
                raise BenchError(f"pacsdash holds {held} instances, {fileset.count} expected")
            client = PacsdashClient(server.base_url)
            warm = client.export(uids[:1], "zip", download=False)  # what any export loads once, before the start
            say(f"  warm-up: one study exported in {warm.seconds:.1f} s")

            def run() -> tuple[dict, dict]:
                with memory.RssSampler(server.pid, SAMPLE_INTERVAL) as sampler, ForeignLoad(server.pid) as load:
                    export = client.export(uids, "zip", download=False)
                checked = _check_export(export.job, fileset.count, "cohort zip")
                verdict = memory_verdict(sampler.samples)
                tree = memory_verdict(sampler.tree_samples)
                return {"seconds": round(export.seconds, 3), "polls": export.polls, **checked, **verdict,
                        "process_tree": {k: tree[k] for k in ("start_mib", "peak_mib", "end_mib", "growth")},
                        "max_processes": sampler.max_processes, "warm_up_s": round(warm.seconds, 3)}, load.result

            return guard.measure("pacsdash research memory", MEMORY_IDS, "pacsdash", run)
        finally:
            server.stop()
            record_server(results, server, "research memory")


def run(plan: Any, results: Results, guard: Guard) -> None:
    """The research phase: rows, data, each server's study runs, then pacsdash's cohort memory."""
    n, reps, cohort = plan.research_instances, plan.research_repetitions, plan.research_cohort
    _rows(results, n, reps, cohort)
    names = [s for s in plan.servers if s in SERVER_NAMES]
    if not names:
        return
    details = results.details.setdefault("research", {})
    fileset = datasets.ct_volume(n)
    fileset.warm()
    uid = _study_uids(fileset.files()[:1])[0]
    for name in names:
        say(f"research: {name}, anonymize and export a study of {n} CT 512x512, {reps} repetition(s)")

        def one(name: str = name) -> None:
            measured = _measure_study(plan, results, guard, name, fileset, uid)
            details[name] = measured
            runs = measured["runs"]
            m = results.metrics
            m["research_anonymize"].values[name] = round(median_rate(n, [r["anonymize_s"] for r in runs]), 1)
            m["research_zip"].values[name] = round(median_rate(n, [r["zip_s"] for r in runs]), 1)
            if name == "pacsdash":
                failed = [r["nifti_error"] for r in runs if "nifti_error" in r]
                if failed:
                    results.skip(["research_nifti"], name, f"failed: {failed[0]}")
                else:
                    m["research_nifti"].values[name] = round(median_rate(n, [r["nifti_s"] for r in runs]), 1)
            for key in ("anonymize", "zip", "nifti"):
                if f"{key}_s" in runs[0]:
                    say(f"  {key}: " + ", ".join(f"{r[f'{key}_s']:.2f} s" for r in runs))

        guard.attempt(TIMED_IDS if name == "pacsdash" else TIMED_IDS[:2], name, one)
    m = results.metrics
    for id in ("research_anonymize", "research_zip"):
        ours, theirs = m[id].values.get("pacsdash"), m[id].values.get("orthanc")
        if ours is not None and theirs is not None:
            m[id].notes["pacsdash"] = ratio_target_note(ours, theirs)
    if "pacsdash" not in names:
        return
    say(f"research: pacsdash, RSS during an anonymized ZIP export of a {cohort}-instance cohort")
    cohort_set = datasets.many_studies(cohort)

    def mem() -> None:
        uids = _study_uids(cohort_set.files())
        measured = _measure_memory(plan, results, guard, cohort_set, uids)
        details["cohort_memory"] = {"instances": cohort, "studies": len(uids), **measured}
        m["research_mem_start"].values["pacsdash"] = measured["start_mib"]
        m["research_mem_peak"].values["pacsdash"] = measured["peak_mib"]
        m["research_mem_end"].values["pacsdash"] = measured["end_mib"]
        m["research_mem_growth"].values["pacsdash"] = round(measured["growth"] * 100, 1)
        m["research_mem_growth"].notes["pacsdash"] = "flat" if measured["flat"] else "GROWING"
        m["research_mem_peak_growth"].values["pacsdash"] = round(measured["peak_growth"] * 100, 1)
        m["research_cohort_rate"].values["pacsdash"] = round(cohort / measured["seconds"], 1)
        say(f"  RSS {measured['start_mib']} -> peak {measured['peak_mib']} -> end {measured['end_mib']} MiB "
            f"({measured['growth']:+.1%}, peak {measured['peak_growth']:+.1%}); {cohort / measured['seconds']:.1f} "
            "instances/s")

    guard.attempt(MEMORY_IDS, "pacsdash", mem)
