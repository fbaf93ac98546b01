"""DICOMweb latency and throughput over one persistent HTTP session.

Every request goes through one ``requests.Session`` (keep-alive) to
127.0.0.1, with HTTP Basic credentials and ``Accept-Encoding: identity`` (no
compression on either server, so byte counts compare). A latency runs from
sending the request to the last byte of the body. Every answer is checked
(status, media type, number of matches or instances, bytes) after its timing
stops, so a fast wrong answer fails the measurement instead of winning it.
"""

from __future__ import annotations

import fnmatch
import re
import statistics
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cfind import FindQuery, percentile
from benchmarks.cfind import queries as find_queries
from benchmarks.common import BenchError
from benchmarks.datasets import FindIndexPlan

#: OHIF's Accept for raw frames: any transfer syntax, stored bytes preferred.
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
#: Whole-study retrieve as stored (both servers keep Explicit VR Little Endian files as received).
RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
JSON_ACCEPT = "application/dicom+json"
MB = 1_000_000


# -- answers -------------------------------------------------------------------
def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart Content-Type (quotes removed)."""
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type, re.IGNORECASE)
    if not match:
        raise ValueError(f"no boundary in Content-Type {content_type!r}")
    return match.group(2) or match.group(1)


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related body: (headers with lower-case names, payload).

    Follows RFC 2046 5.1.1: the CRLF before each delimiter belongs to the
    delimiter; a preamble and an epilogue are ignored.
    """
    delimiter = b"--" + boundary_of(content_type).encode()
    if body.startswith(delimiter):
        body = b"\r\n" + body
    chunks = body.split(b"\r\n" + delimiter)
    parts: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # close delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part without a blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:  # the rest of the delimiter line first
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts


def dicom_sop_uid(payload: bytes) -> str:
    """SOP Instance UID of a Part 10 payload (header only)."""
    from io import BytesIO

    from pydicom import dcmread

    if payload[128:132] != b"DICM":
        raise ValueError("a part that is not a DICOM Part 10 file")
    ds = dcmread(BytesIO(payload), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def person_name_matches(pattern: str, name: str) -> bool:
    """DICOM wildcard match of a PN the way both servers do it (case-insensitive)."""
    return fnmatch.fnmatchcase(name.upper(), pattern.upper().replace("[", "[[]"))


def extra_study_matches(filters: dict[str, str], study: dict[str, str]) -> bool:
    """Whether one more study (PatientName, PatientID, StudyDate, ModalitiesInStudy) matches ``filters``."""
    for key, value in filters.items():
        have = study.get(key, "")
        if key == "PatientName":
            ok = person_name_matches(value, have)
        elif key == "StudyDate" and "-" in value:
            low, _, high = value.partition("-")
            ok = (not low or have >= low) and (not high or have <= high)
        elif key == "ModalitiesInStudy":
            ok = value in have.split("\\")
        else:
            ok = have == value
        if not ok:
            return False
    return True


# -- requests ------------------------------------------------------------------
@dataclass(frozen=True)
class WebTarget:
    """A server's DICOMweb root and credentials."""

    name: str
    base_url: str
    auth: tuple[str, str]
    prefix: str = "/dicom-web"

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.prefix}{path}"


@dataclass(frozen=True)
class TestStudy:
    """The CT study retrieved: its UIDs, the instances, the raw first frame of one instance."""

    study_uid: str
    series_uid: str
    sop_uids: frozenset[str]
    instance_uid: str
    frame: bytes
    #: What QIDO sees of it, for the expected match counts.
    attributes: dict[str, str]

    @classmethod
    def from_files(cls, files: list[Path]) -> TestStudy:
        from pydicom import dcmread

        headers = [dcmread(p, stop_before_pixels=True) for p in files]
        studies = {str(h.StudyInstanceUID) for h in headers}
        series = {str(h.SeriesInstanceUID) for h in headers}
        if len(studies) != 1 or len(series) != 1:
            raise BenchError(f"the CT set holds {len(studies)} studies and {len(series)} series, one of each expected")
        middle = sorted(files)[len(files) // 2]
        ds = dcmread(middle)
        first = headers[0]
        return cls(
            study_uid=studies.pop(),
            series_uid=series.pop(),
            sop_uids=frozenset(str(h.SOPInstanceUID) for h in headers),
            instance_uid=str(ds.SOPInstanceUID),
            frame=bytes(ds.PixelData),
            attributes={"PatientName": str(first.PatientName), "PatientID": str(first.PatientID),
                        "StudyDate": str(first.StudyDate), "ModalitiesInStudy": str(first.Modality)},
        )

    @property
    def instance_path(self) -> str:
        return f"/studies/{self.study_uid}/series/{self.series_uid}/instances/{self.instance_uid}"


@dataclass
class Timing:
    """Latencies of one request type, and what its answers held."""

    label: str
    times_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        median = statistics.median(self.times_ms)
        out = {
            "label": self.label,
            "repetitions": len(self.times_ms),
            "median_ms": round(median, 2),
            "p95_ms": round(percentile(self.times_ms, 95), 2),
            "min_ms": round(min(self.times_ms), 2),
            "max_ms": round(max(self.times_ms), 2),
            "body_bytes": self.sizes[0] if self.sizes else 0,
            **self.detail,
        }
        if self.sizes:
            out["median_mb_per_s"] = round(statistics.median(self.sizes) / MB / (median / 1000), 1)
        return out


Check = Callable[[Any], dict[str, Any]]


def timed(session: Any, url: str, accept: str, check: Check, repetitions: int, warmup: int, label: str) -> Timing:
    """GET ``url`` ``warmup`` + ``repetitions`` times; time the timed ones; ``check`` every answer.

    ``check`` raises :class:`BenchError` on a wrong answer and returns what to
    keep about a right one (match counts...).
    """
    timing = Timing(label)
    for rep in range(warmup + repetitions):
        started = time.perf_counter()
        response = session.get(url, headers={"Accept": accept})
        body = response.content
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"{label}: HTTP {response.status_code} ({body[:200]!r})")
        timing.detail = check(response)
        if rep >= warmup:
            timing.times_ms.append(seconds * 1000)
            timing.sizes.append(len(body))
    return timing


def _media(response: Any) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def qido_queries(plan: FindIndexPlan, extra: dict[str, str]) -> list[FindQuery]:
    """The C-FIND phase's four study queries, expected counts including the CT study ``extra``."""
    return [FindQuery(q.name, q.label, q.filters, q.expected + extra_study_matches(q.filters, extra))
            for q in find_queries(plan)]


def check_qido(expected: int) -> Check:
    def check(response: Any) -> dict[str, Any]:
        if _media(response) not in ("application/dicom+json", "application/json"):
            raise BenchError(f"QIDO answered {_media(response)!r}")
        matches = len(response.json()) if response.content.strip() else 0
        if matches != expected:
            raise BenchError(f"QIDO answered {matches} matches, {expected} expected")
        return {"matches": matches, "expected_matches": expected}

    return check


def check_metadata(study: TestStudy) -> Check:
    def check(response: Any) -> dict[str, Any]:
        items = response.json()
        uids = {str((item.get("00080018") or {}).get("Value", [""])[0]) for item in items}
        if len(items) != len(study.sop_uids) or uids != study.sop_uids:
            raise BenchError(f"/metadata answered {len(items)} instances, {len(study.sop_uids)} expected "
                             f"({len(uids & study.sop_uids)} of the right ones)")
        return {"instances": len(items)}

    return check


def check_retrieve(study: TestStudy) -> Check:
    seen: dict[str, int] = {}

    def check(response: Any) -> dict[str, Any]:
        parts = split_multipart(response.content, response.headers.get("Content-Type", ""))
        payload = sum(len(p) for _, p in parts)
        if len(parts) != len(study.sop_uids):
            raise BenchError(f"WADO-RS study answered {len(parts)} parts, {len(study.sop_uids)} expected")
        if not seen:  # read every header once; afterwards the same sizes are expected
            uids = {dicom_sop_uid(p) for _, p in parts}
            if uids != study.sop_uids:
                raise BenchError(f"WADO-RS study answered {len(uids & study.sop_uids)} of the "
                                 f"{len(study.sop_uids)} instances")
            seen["payload"] = payload
        elif payload != seen["payload"]:
            raise BenchError(f"WADO-RS study answered {payload} bytes of instances, {seen['payload']} before")
        return {"instances": len(parts), "instance_bytes": payload}

    return check


def check_frame(study: TestStudy) -> Check:
    def check(response: Any) -> dict[str, Any]:
        if _media(response) != "multipart/related":
            raise BenchError(f"/frames answered {_media(response)!r}, multipart/related expected")
        parts = split_multipart(response.content, response.headers.get("Content-Type", ""))
        if len(parts) != 1 or parts[0][1] != study.frame:
            sizes = [len(p) for _, p in parts]
            raise BenchError(f"/frames/1 answered parts of {sizes} bytes, not the stored frame "
                             f"({len(study.frame)} bytes)")
        return {"frame_bytes": len(parts[0][1]), "part_type": parts[0][0].get("content-type", "")}

    return check


def check_jpeg(response: Any) -> dict[str, Any]:
    if _media(response) != "image/jpeg" or response.content[:2] != b"\xff\xd8":
        raise BenchError(f"/rendered answered {_media(response)!r} starting {response.content[:4]!r}")
    return {"jpeg_bytes": len(response.content)}


def query_string(filters: dict[str, str]) -> str:
    """``filters`` as a URL query, with ``*`` (and ``^``) left as they are.

    Orthanc 1.10.1 does not decode ``%2A`` in a query argument: percent-encoded
    wildcards (as ``requests`` sends them) match nothing there. Both servers
    get the same literal text.
    """
    return urllib.parse.urlencode(filters, safe="*^")


def _attempt(results: dict[str, dict], name: str, extra: dict[str, Any], action: Callable[[], Timing]) -> None:
    try:
        results[name] = {**extra, **action().summary()}
    except (BenchError, ValueError) as exc:
        results[name] = {**extra, "error": str(exc)}


def _session(target: WebTarget) -> Any:
    import requests

    session = requests.Session()
    session.auth = target.auth
    session.headers["Accept-Encoding"] = "identity"
    return session


def _qido(session: Any, target: WebTarget, queries: list[FindQuery], repetitions: int, warmup: int,
          results: dict[str, dict]) -> None:
    for query in queries:
        url = target.url("/studies") + "?" + query_string(query.filters)
        _attempt(results, f"qido_{query.name}", {"filters": query.filters},
                 lambda url=url, query=query: timed(session, url, JSON_ACCEPT, check_qido(query.expected),
                                                    repetitions, warmup, f"QIDO-RS {query.label}"))


def measure_qido(target: WebTarget, plan: FindIndexPlan, repetitions: int, warmup: int = 3) -> dict[str, dict]:
    """The QIDO-RS study queries alone (the C-FIND index's counts): ``qido_<query>`` -> summary or error."""
    results: dict[str, dict] = {}
    with _session(target) as session:
        _qido(session, target, find_queries(plan), repetitions, warmup, results)
    return results


def measure(target: WebTarget, plan: FindIndexPlan, study: TestStudy, repetitions: int,
            retrieve_repetitions: int, warmup: int = 3) -> dict[str, dict]:
    """Every DICOMweb measurement on one server: name -> :meth:`Timing.summary`, or ``{"error": why}``.

    A wrong answer to one request type fails that type only.
    """
    results: dict[str, dict] = {}

    def attempt(name: str, extra: dict[str, Any], action: Callable[[], Timing]) -> None:
        _attempt(results, name, extra, action)

    with _session(target) as session:
        _qido(session, target, qido_queries(plan, study.attributes), repetitions, warmup, results)
        steps: list[tuple[str, str, str, Check, int]] = [
            ("retrieve", f"/studies/{study.study_uid}", RETRIEVE_ACCEPT, check_retrieve(study), retrieve_repetitions),
            ("study_metadata", f"/studies/{study.study_uid}/metadata", JSON_ACCEPT, check_metadata(study),
             repetitions),
            ("series_metadata", f"/studies/{study.study_uid}/series/{study.series_uid}/metadata", JSON_ACCEPT,
             check_metadata(study), repetitions),
            ("rendered", f"{study.instance_path}/rendered", "image/jpeg", check_jpeg, repetitions),
            ("frame", f"{study.instance_path}/frames/1", FRAMES_ACCEPT, check_frame(study), repetitions),
        ]
        for name, path, accept, check, reps in steps:
            attempt(name, {"path": path.replace(study.study_uid, "{study}"), "accept": accept},
                    lambda name=name, path=path, accept=accept, check=check, reps=reps: timed(
                        session, target.url(path), accept, check, reps, min(warmup, 2) if name == "retrieve"
                        else warmup, name))
    return results
