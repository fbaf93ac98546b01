"""C-FIND latency at STUDY level, measured in-process with pynetdicom.

One association per server, many C-FIND requests on it; each latency runs from
sending the request to the final response, all pending responses included.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pacsdash.dimse.sockets import NODELAY_HANDLERS

from benchmarks.common import CLIENT_AET, LOOPBACK, BenchError
from benchmarks.datasets import FindIndexPlan
from benchmarks.servers import Server

#: Return keys of every query, as a findscu user would ask at STUDY level.
RETURN_KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
]
PENDING = (0xFF00, 0xFF01)
#: Query date range: January 2020.
DATE_RANGE = "20200101-20200131"


@dataclass(frozen=True)
class FindQuery:
    """A named STUDY-level query: its matching keys and how many studies should match."""

    name: str
    label: str
    filters: dict[str, str]
    expected: int

    def identifier(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for keyword in RETURN_KEYS:
            setattr(ds, keyword, "")
        for keyword, value in self.filters.items():
            setattr(ds, keyword, value)
        return ds


def queries(plan: FindIndexPlan) -> list[FindQuery]:
    """The four query types, with the match counts the generated index implies."""
    pid_index = 42 % plan.patients
    by_pid = sum(1 for s in range(plan.studies) if s % plan.patients == pid_index)
    smiths = sum(1 for s in range(plan.studies) if "SMITH" in plan.patient(s % plan.patients)[0])
    lo, hi = DATE_RANGE.split("-")
    dated = sum(1 for s in range(plan.studies) if lo <= plan.study_date(s).strftime("%Y%m%d") <= hi)
    ct = sum(1 for s in range(plan.studies) if "CT" in plan.modalities(s))
    return [
        FindQuery("patient_id", "exact PatientID", {"PatientID": plan.patient(pid_index)[1]}, by_pid),
        FindQuery("patient_name", "PatientName *SMITH*", {"PatientName": "*SMITH*"}, smiths),
        FindQuery("study_date", f"StudyDate {DATE_RANGE}", {"StudyDate": DATE_RANGE}, dated),
        FindQuery("modality", "ModalitiesInStudy=CT", {"ModalitiesInStudy": "CT"}, ct),
    ]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _one_find(assoc, identifier: Dataset) -> tuple[float, int, int]:
    """(seconds, matches, final status) of one C-FIND."""
    matches = 0
    final = -1
    started = time.perf_counter()
    for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
        if not status or "Status" not in status:
            raise BenchError("no C-FIND response (timeout or aborted association)")
        if status.Status in PENDING:
            matches += 1
        else:
            final = int(status.Status)
    return time.perf_counter() - started, matches, final


def measure(server: Server, plan: FindIndexPlan, repetitions: int, warmup: int = 3) -> dict[str, dict]:
    """Median and p95 latency (ms) of each query type on ``server``."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    ae = AE(ae_title=CLIENT_AET)
    ae.acse_timeout = 30
    ae.dimse_timeout = 120
    ae.network_timeout = 120
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(LOOPBACK, server.dicom_port, ae_title=server.aet, evt_handlers=NODELAY_HANDLERS)
    if not assoc.is_established:
        state = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
        raise BenchError(f"the C-FIND association to {server.label} was {state}")
    results: dict[str, dict] = {}
    try:
        for query in queries(plan):
            identifier = query.identifier()
            times: list[float] = []
            matches = final = -1
            for rep in range(warmup + repetitions):
                seconds, matches, final = _one_find(assoc, identifier)
                if final != 0x0000:
                    raise BenchError(f"{query.label}: final C-FIND status 0x{final:04X} from {server.label}")
                if rep >= warmup:
                    times.append(seconds * 1000)
            results[query.name] = {
                "label": query.label,
                "filters": query.filters,
                "matches": matches,
                "expected_matches": query.expected,
                "repetitions": repetitions,
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 95), 2),
                "min_ms": round(min(times), 2),
                "max_ms": round(max(times), 2),
            }
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    return results
