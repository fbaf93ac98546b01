"""The scale phase: C-FIND and QIDO-RS latency as the index grows from the C-FIND index to 1,000,000 instances.

Each server is loaded with the C-FIND index (20,000 instances in 2,000 studies by default; pacsdash by ``pacsdash
import``, Orthanc by storescu) and timed with the C-FIND phase's four STUDY queries, over DIMSE and over QIDO-RS.
Then pacsdash is stopped, rows are generated straight into its index until it holds ``plan.scale_instances``
instances (no DICOM files), it is started again on the same home and timed again with the same queries.

The generated rows match none of the four queries (other patients and patient IDs, no SMITH, study dates in
2005-2014, no CT), so both sizes must give the same answers: the ratio latency(large) / latency(base) is what
the archive's growth costs a search whose answer did not change (target <= 1.5).

The rows go in through pacsdash's own code only: one template record made by pacsdash's parser
(:func:`~pacsdash.archive.parsing.record_from_dataset` of a generated data set), copied with each instance's
identifiers, patient, study and series values (every key it changes must be a column the parser wrote), then
:meth:`Index.add` in batches, the same path the archive's writer takes for received instances, on
:class:`~pacsdash.archive.index.DuckDBIndex` or :class:`~pacsdash.archive.pg_index.PostgresIndex`: the schema,
the study and series summaries (counts, ModalitiesInStudy) and the series values stay pacsdash's own. The server
stopped cleanly before, so it does not reconcile the rows without files away.

Orthanc: filling its index with 1,000,000 rows means storing 1,000,000 instances through its own code (C-STORE
or REST, hours on 2 CPUs); its index schema is Orthanc's private business (and the plugin's), so no rows are
generated: Orthanc and Orthanc with PostgreSQL are timed at the base size only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import cfind, datasets, dicomweb, ingest
from benchmarks.cpu import ForeignLoad
from benchmarks.guard import Guard, say
from benchmarks.report import Results
from benchmarks.servers import (
    ORTHANC_NAMES,
    PACSDASH_NAMES,
    SERVERS,
    WEB_PASSWORD,
    WEB_USER,
    PacsdashPgServer,
    PacsdashServer,
    Server,
)

SERVER_NAMES = PACSDASH_NAMES + ORTHANC_NAMES
#: latency(large) / latency(base): at most this (issue 16: flat within 1.5x).
TARGET_RATIO = 1.5
KINDS = (("cfind", "C-FIND STUDY"), ("qido", "QIDO-RS studies"))
#: Records per Index.add call while generating.
BATCH = 20_000
UID_ROOT = "1.2.826.0.1.3680043.10.997"
#: Modalities of the generated studies: never CT (ModalitiesInStudy=CT must not match them).
MODALITIES = ("MR", "CR", "US", "DX", "MR+CR")
FIRST_DATE = dt.date(2005, 1, 1)
DATE_SPREAD_DAYS = 3650  # 2005-2014: before the C-FIND index's first study (2015), never January 2020
ORTHANC_REASON = ("no rows generated into Orthanc: filling its index means storing each instance through Orthanc "
                  "(hours for 1,000,000 on 2 CPUs); its schema is its own. Measured at the base size only")


@dataclass(frozen=True)
class ExtraPlan:
    """``instances`` generated instances: studies of ``per_study`` in series of ``per_series``, 2 studies a patient."""

    instances: int
    per_study: int = 10
    per_series: int = 5

    @property
    def studies(self) -> int:
        return -(-self.instances // self.per_study)

    def patient(self, p: int) -> tuple[str, str, str, str]:
        name = f"{datasets.SURNAMES[p % len(datasets.SURNAMES)]}^{datasets.GIVEN[(p // 7) % len(datasets.GIVEN)]}"
        birth = (dt.date(1930, 1, 1) + dt.timedelta(days=(p * 3571) % 27000)).strftime("%Y%m%d")
        return name, f"SG{p:07d}", birth, "F" if p % 2 else "M"

    def study_date(self, s: int) -> str:
        return (FIRST_DATE + dt.timedelta(days=(s * 7919) % DATE_SPREAD_DAYS)).strftime("%Y%m%d")

    def modalities(self, s: int) -> list[str]:
        return MODALITIES[s % len(MODALITIES)].split("+")

    def study_size(self, s: int) -> int:
        return min(self.per_study, self.instances - s * self.per_study)


def template_record() -> Any:
    """One instance record as pacsdash's parser makes it (columns per level, attribute JSON)."""
    from pacsdash.archive.parsing import record_from_dataset

    study = datasets._study(0, "GENERATED", FIRST_DATE)
    ds = datasets._instance(("TEMPLATE^T", "SG0", "19500101", "M"), study, "MR", f"{UID_ROOT}.0", 1, 0, 64)
    return record_from_dataset(ds, 9000, "benchmark")


def _level(values: dict[str, str | None], changes: dict[str, str]) -> dict[str, str | None]:
    out = dict(values)
    for key, value in changes.items():
        if key in out:
            out[key] = value
    return out


def generated_records(extra: ExtraPlan, template: Any = None):
    """The generated instances' records, in order (a generator: 1,000,000 records are not held at once)."""
    from pacsdash.archive.attributes import Level

    template = template or template_record()
    columns = template.columns
    wanted = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "AccessionNumber", "StudyID", "StudyDescription", "SeriesInstanceUID", "Modality", "SeriesNumber",
              "SeriesDescription", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"}
    written = {key for level in columns.values() for key in level}
    if wanted - written:  # pacsdash's schema changed: the generator must follow
        raise RuntimeError(f"pacsdash's parser no longer writes the columns {sorted(wanted - written)}")
    for s in range(extra.studies):
        name, pid, birth, sex = extra.patient(s // 2)
        study_uid = f"{UID_ROOT}.1.{s}"
        study_values = {"PatientName": name, "PatientID": pid, "PatientBirthDate": birth, "PatientSex": sex,
                        "StudyInstanceUID": study_uid, "StudyDate": extra.study_date(s),
                        "AccessionNumber": f"SG{s:08d}", "StudyID": str(s % 100000),
                        "StudyDescription": f"GENERATED STUDY {s % 41}"}
        patient = _level(columns[Level.PATIENT], study_values)
        study = _level(columns[Level.STUDY], study_values)
        modalities = extra.modalities(s)
        size = extra.study_size(s)
        for k in range(size):
            n = min(k // extra.per_series, len(modalities) - 1) if len(modalities) > 1 else 0
            modality = modalities[n]
            series_uid = f"{UID_ROOT}.2.{s}.{n + 1}"
            sop_uid = f"{UID_ROOT}.3.{s}.{k + 1}"
            series_values = {**study_values, "SeriesInstanceUID": series_uid, "Modality": modality,
                             "SeriesNumber": str(n + 1), "SeriesDescription": f"{modality} series {n + 1}"}
            image = _level(columns[Level.IMAGE], {
                **series_values, "SOPInstanceUID": sop_uid, "SOPClassUID": str(datasets.SOP_CLASS[modality]),
                "InstanceNumber": str(k + 1)})
            yield dataclasses.replace(
                template, SOPInstanceUID=sop_uid, SeriesInstanceUID=series_uid, StudyInstanceUID=study_uid,
                columns={Level.PATIENT: patient, Level.STUDY: study,
                         Level.SERIES: _level(columns[Level.SERIES], series_values), Level.IMAGE: image},
                file=f"generated/{sop_uid}.dcm")


def open_index(server: PacsdashServer) -> Any:
    """The stopped server's index, opened by the benchmark (pacsdash's own class for its backend)."""
    if isinstance(server, PacsdashPgServer):
        from pacsdash.archive.pg_index import PostgresIndex

        return PostgresIndex(server.index_url)
    from pacsdash.archive.index import DuckDBIndex

    return DuckDBIndex(server.home / "index.duckdb")


def generate(server: PacsdashServer, extra: ExtraPlan) -> dict[str, Any]:
    """Add ``extra``'s rows to the stopped server's index; how long it took and what the index then holds."""
    index = open_index(server)
    started = time.perf_counter()
    added = 0
    try:
        batch = []
        for record in generated_records(extra):
            batch.append(record)
            if len(batch) == BATCH:
                added += sum(index.add(batch))
                batch = []
        if batch:
            added += sum(index.add(batch))
        seconds = time.perf_counter() - started
        totals = index.totals()
    finally:
        index.close()
    if added != extra.instances:
        raise RuntimeError(f"generating: {added} of {extra.instances} rows added (the rest were indexed already)")
    return {"generated_instances": added, "generated_studies": extra.studies, "seconds": round(seconds, 1),
            "rows_per_s": round(added / seconds), "index_totals": totals}


# -- rows ------------------------------------------------------------------------------
def row_id(kind: str, query: str, what: str) -> str:
    return f"scale_{kind}_{query}_{what}"


def _rows(results: Results, plan: Any) -> list[str]:
    base, large = plan.find.count, plan.scale_instances
    ids = []
    for kind, kind_label in KINDS:
        for query in cfind.queries(plan.find):
            label = f"{kind_label} {query.label} ({query.expected} matches)"
            for what, text, unit in (("base", f"at {base:,} instances, median", "ms"),
                                     ("large", f"at {large:,} instances ({large - base:,} generated), median", "ms"),
                                     ("ratio", f"latency at {large:,} / at {base:,} (target <= {TARGET_RATIO:g})", "x")):
                id = row_id(kind, query.name, what)
                results.metric(id, f"Scale: {label}, {text}", unit, "lower", SERVER_NAMES)
                ids.append(id)
    return ids


def _load(server: Server, fileset: datasets.FileSet) -> str:
    if isinstance(server, PacsdashServer):
        server.add_user()
        started = time.perf_counter()
        summary = server.import_offline(fileset.shards, timeout=ingest.timeout_for(fileset.count))
        seconds = time.perf_counter() - started
        server.start()
        return f"`pacsdash import` before start: {fileset.count} files in {seconds:.1f} s; {summary}"
    server.start()
    loaded = ingest.run_storescu(server, fileset, 4, server.folder / "clients")
    if loaded.errors:
        raise RuntimeError("loading the index failed: " + "; ".join(loaded.errors[:3]))
    return f"storescu, 4 associations: {fileset.count} files in {loaded.seconds:.1f} s"


def measure(server: Server, plan: Any) -> dict[str, dict]:
    """C-FIND and QIDO-RS median latencies of the four queries on ``server``; every answer's count checked."""
    found = cfind.measure(server, plan.find, plan.repetitions)
    for row in found.values():
        if row["matches"] != row["expected_matches"]:
            raise RuntimeError(f"C-FIND {row['label']}: {row['matches']} matches, {row['expected_matches']} expected")
    target = dicomweb.WebTarget(server.name, server.base_url, (WEB_USER, WEB_PASSWORD))
    qido = dicomweb.measure_qido(target, plan.find, plan.repetitions)
    for row in qido.values():
        if "error" in row:
            raise RuntimeError(f"QIDO-RS: {row['error']}")
    return {"cfind": found, "qido": qido}


def ratio(large: float, base: float) -> float:
    """latency(large) / latency(base)."""
    if base <= 0:
        raise ValueError("the base latency must be positive")
    return large / base


def run(plan: Any, results: Results, guard: Guard) -> None:
    """Latency at the C-FIND index's size and, for pacsdash, at ``plan.scale_instances`` (generated rows)."""
    ids = _rows(results, plan)
    names = [n for n in plan.servers if n in SERVER_NAMES]
    if not names:
        return
    if plan.scale_instances <= plan.find.count:
        raise ValueError("--scale-instances must be larger than the C-FIND index")
    fileset = datasets.find_index(plan.find)
    extra = ExtraPlan(plan.scale_instances - fileset.count)
    details = results.details.setdefault("scale", {})
    setup = results.details.setdefault("setup", {})
    large_ids = [i for i in ids if not i.endswith("_base")]
    for name in names:
        say(f"scale: {name}, loading {fileset.count} instances")
        if name in ORTHANC_NAMES:
            results.skip(large_ids, name, ORTHANC_REASON)

        def one(name: str = name) -> None:
            cls = SERVERS[name]
            server = cls(plan.tmp_root, plan.keep, dicomweb=True) if name in ORTHANC_NAMES else \
                cls(plan.tmp_root, plan.keep)
            entry: dict[str, Any] = details.setdefault(name, {})
            with server:
                try:
                    setup[f"{name} (scale)"] = _load(server, fileset)
                    say(f"  {setup[f'{name} (scale)']}")
                    held = server.stored_count()
                    if held != fileset.count:
                        raise RuntimeError(f"{name} holds {held} instances, {fileset.count} expected")

                    def run_at(size: int) -> tuple[dict, dict]:
                        with ForeignLoad(server.pid) as load:
                            measured = measure(server, plan)
                        return measured, load.result

                    entry["base"] = {"instances": fileset.count,
                                     **guard.measure(f"{name} scale {fileset.count}", ids, name,
                                                     lambda: run_at(fileset.count))}
                    _report(results, name, entry["base"], "base")
                    if name in PACSDASH_NAMES:
                        server.stop()
                        say(f"  generating {extra.instances:,} instances into the index ...")
                        entry["generated"] = generate(server, extra)
                        say(f"  {entry['generated']['seconds']} s ({entry['generated']['rows_per_s']:,} rows/s); "
                            f"the index holds {entry['generated']['index_totals']}")
                        started = time.perf_counter()
                        server.start()
                        entry["restart_s"] = round(time.perf_counter() - started, 1)
                        entry["large"] = {"instances": plan.scale_instances,
                                          **guard.measure(f"{name} scale {plan.scale_instances}", large_ids, name,
                                                          lambda: run_at(plan.scale_instances))}
                        _report(results, name, entry["large"], "large")
                        _ratios(results, name, entry)
                finally:
                    server.stop()
                    from benchmarks.phases import record_server

                    record_server(results, server, "scale")

        guard.attempt(ids if name in PACSDASH_NAMES else [i for i in ids if i.endswith("_base")], name, one)


def _report(results: Results, name: str, measured: dict, what: str) -> None:
    for kind, _ in KINDS:
        for query, row in measured[kind].items():
            query_name = query.removeprefix("qido_")
            results.metrics[row_id(kind, query_name, what)].values[name] = row["median_ms"]
            say(f"  {what}: {kind} {row['label']}: {row.get('matches')} matches, median {row['median_ms']} ms")


def _ratios(results: Results, name: str, entry: dict) -> None:
    entry["ratios"] = {}
    for kind, _ in KINDS:
        for query, row in entry["large"][kind].items():
            query_name = query.removeprefix("qido_")
            value = ratio(row["median_ms"], entry["base"][kind][query]["median_ms"])
            entry["ratios"][f"{kind}_{query_name}"] = round(value, 2)
            metric = results.metrics[row_id(kind, query_name, "ratio")]
            metric.values[name] = round(value, 2)
            metric.notes[name] = "meets target" if value <= TARGET_RATIO else "MISSES target"
