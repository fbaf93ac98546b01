"""Where dashboard components read from: the local archive or any DICOMweb server.

Components (search, series list, viewer, overview, patient view) take a
:class:`DataSource`; :func:`as_source` makes one of a pacsdash
:class:`~pacsdash.archive.Archive` (read in-process, as the server does) or
of a :class:`pacsdash.client.Client` (QIDO-RS and WADO-RS, so the same
components explore pacsdash from a notebook while it serves, or Orthanc, or
a hospital's PACS).
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from pydicom.dataset import Dataset

from pacsdash.archive import Level, Query

#: Results a DICOMweb source counts at most (QIDO-RS has no count).
MAX_COUNT = 100_000
#: Longest side of a thumbnail, in pixels.
THUMBNAIL = 64


@runtime_checkable
class DataSource(Protocol):
    """What dashboard components read."""

    def find(self, query: Query) -> list[dict[str, Any]]:
        """Entities matching ``query``: keyword -> value as DICOM text."""

    def count(self, query: Query) -> int:
        """How many entities match ``query`` (paging aside)."""

    def locate(self, level: Level, uid: str | None = None, **keys: str) -> list[Any]:
        """The instances of an entity (objects with StudyInstanceUID,
        SeriesInstanceUID and SOPInstanceUID)."""

    def read_dataset(self, location: Any) -> Dataset:
        """One instance, whole."""

    def summary(self) -> dict[str, Any]:
        """``totals`` (patients, studies, series, instances), ``by_modality``
        as (modality, studies) and ``by_month`` as (YYYYMM, studies)."""

    def thumbnail_src(self, study: str, series: str, instance: str) -> str:
        """An ``<img src>`` of an instance's thumbnail that the browser can load."""

    def subscribe(self, listener: Any) -> None:
        """Call ``listener`` when instances arrive (if the source can tell)."""


class ArchiveSource:
    """The local archive, read in-process; thumbnails from its WADO-RS route."""

    def __init__(self, archive: Any) -> None:
        self.archive = archive

    def find(self, query: Query) -> list[dict[str, Any]]:
        return self.archive.find(query)

    def count(self, query: Query) -> int:
        return self.archive.count(query)

    def locate(self, level: Level, uid: str | None = None, **keys: str) -> list[Any]:
        return self.archive.locate(level, uid, **keys)

    def read_dataset(self, location: Any) -> Dataset:
        return self.archive.read_dataset(location)

    def summary(self) -> dict[str, Any]:
        return self.archive.summary()

    def thumbnail_src(self, study: str, series: str, instance: str) -> str:
        return (f"/dicom-web/studies/{quote(study, safe='')}/series/{quote(series, safe='')}"
                f"/instances/{quote(instance, safe='')}/thumbnail?viewport={THUMBNAIL},{THUMBNAIL}")

    def subscribe(self, listener: Any) -> None:
        self.archive.subscribe(listener)


@dataclass(frozen=True)
class RemoteInstance:
    """An instance of a DICOMweb server."""

    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str
    SOPClassUID: str = ""


_QIDO_LEVEL = {Level.STUDY: "study", Level.SERIES: "series", Level.IMAGE: "instance"}


def _text(element: dict[str, Any]) -> str | None:
    """A DICOM JSON element's value as DICOM text (``a\\b`` for several, PN as ``Family^Given``)."""
    values = element.get("Value")
    if not values:
        return None
    out = []
    for value in values:
        if isinstance(value, dict):
            out.append(str(value.get("Alphabetic", "")))
        else:
            out.append(str(value))
    return "\\".join(out)


class DicomWebSource:
    """Any DICOMweb server, through a :class:`pacsdash.client.Client`.

    QIDO-RS has neither counts nor sorting: :meth:`count` pages through the
    results (up to :data:`MAX_COUNT`), and a page is sorted here as asked.
    Patients are the distinct PatientIDs of the studies found.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._thumbs: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- QIDO-RS ----------------------------------------------------------------
    def _rows(self, level: Level, filters: dict[str, str], fields: list[str], limit: int | None = None,
              offset: int = 0) -> list[dict[str, Any]]:
        from pydicom.datadict import keyword_for_tag

        qido = _QIDO_LEVEL[level]
        search = {"study": self.client.web.search_for_studies, "series": self.client.web.search_for_series,
                  "instance": self.client.web.search_for_instances}[qido]
        if limit is None:
            items = self.client._search(qido, filters, fields or None)  # noqa: SLF001 - paged search
        else:
            items = self.client._call(f"QIDO-RS {qido}", lambda: search(  # noqa: SLF001
                search_filters=filters, fields=fields or None, limit=limit, offset=offset))
        rows = []
        for item in items:
            row = {}
            for tag, element in item.items():
                try:
                    name = keyword_for_tag(int(tag, 16)) or tag
                except ValueError:
                    name = tag
                row[name] = _text(element)
            rows.append(row)
        return rows

    def find(self, query: Query) -> list[dict[str, Any]]:
        filters = {k: v for k, v in query.filters.items() if v not in ("", "*")}
        if query.level is Level.PATIENT:
            return self._patients(filters)
        rows = self._rows(query.level, filters, list(query.fields), query.limit, query.offset)
        for keyword, descending in reversed(query.order_by):
            rows.sort(key=lambda r, k=keyword: (r.get(k) is None, str(r.get(k) or "")), reverse=descending)
        return rows

    def _patients(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        fields = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex"]
        studies = self._rows(Level.STUDY, filters, fields)
        patients: dict[str, dict[str, Any]] = {}
        counts: Counter[str] = Counter()
        for study in studies:
            key = str(study.get("PatientID") or "")
            counts[key] += 1
            patients.setdefault(key, {k: study.get(k) for k in fields})
        for key, row in patients.items():
            row["NumberOfPatientRelatedStudies"] = str(counts[key])
        return list(patients.values())

    def count(self, query: Query) -> int:
        if query.level is Level.PATIENT:
            return len(self.find(query))
        unique = {Level.STUDY: "StudyInstanceUID", Level.SERIES: "SeriesInstanceUID", Level.IMAGE: "SOPInstanceUID"}
        filters = {k: v for k, v in query.filters.items() if v not in ("", "*")}
        return min(len(self._rows(query.level, filters, [unique[query.level]])), MAX_COUNT)

    def locate(self, level: Level, uid: str | None = None, **keys: str) -> list[RemoteInstance]:
        filters = dict(keys)
        if uid is not None:
            filters[level.unique_key] = uid
        rows = self._rows(Level.IMAGE, filters, ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
        return [RemoteInstance(str(r.get("StudyInstanceUID")), str(r.get("SeriesInstanceUID")),
                               str(r.get("SOPInstanceUID")), str(r.get("SOPClassUID") or "")) for r in rows]

    # -- WADO-RS ----------------------------------------------------------------
    def read_dataset(self, location: Any) -> Dataset:
        return self.client.dataset(location.StudyInstanceUID, location.SeriesInstanceUID, location.SOPInstanceUID)

    def thumbnail_src(self, study: str, series: str, instance: str) -> str:
        """A data: URI of the server's rendered image (the browser holds no
        credentials for another server), fetched once."""
        with self._lock:
            known = self._thumbs.get(instance)
        if known is not None:
            return known
        try:
            data = self.client._call("WADO-RS rendered", lambda: self.client.web.retrieve_instance_rendered(  # noqa: SLF001
                study, series, instance, media_types=("image/jpeg",),
                params={"viewport": f"{THUMBNAIL},{THUMBNAIL}"}))
            src = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        except Exception:  # no rendered image: the series list shows a box instead
            src = ""
        with self._lock:
            self._thumbs[instance] = src
        return src

    def summary(self) -> dict[str, Any]:
        studies = self._rows(Level.STUDY, {}, ["ModalitiesInStudy", "StudyDate", "PatientID",
                                               "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"])
        by_modality: Counter[str] = Counter()
        by_month: Counter[str] = Counter()
        for study in studies:
            for modality in str(study.get("ModalitiesInStudy") or "(none)").split("\\"):
                by_modality[modality or "(none)"] += 1
            date = str(study.get("StudyDate") or "")
            if len(date) == 8 and date.isdigit():
                by_month[date[:6]] += 1

        def total(key: str) -> int:
            return sum(int(s.get(key) or 0) for s in studies)

        totals = {"patients": len({s.get("PatientID") for s in studies}), "studies": len(studies),
                  "series": total("NumberOfStudyRelatedSeries"), "instances": total("NumberOfStudyRelatedInstances")}
        return {"totals": totals, "by_modality": by_modality.most_common(), "by_month": sorted(by_month.items())}

    def subscribe(self, listener: Any) -> None:
        """A DICOMweb server does not announce arrivals: refresh by hand."""


def _wrap_dicomweb_client(web: Any) -> Any:
    """A pacsdash Client that sends through a dicomweb-client the caller made
    (its session, credentials and settings), from every thread."""
    from pacsdash.client import Client

    class Wrapped(Client):
        @property
        def web(self) -> Any:
            return web

    return Wrapped(web.base_url)


def as_source(source: Any) -> DataSource:
    """A :class:`DataSource` of an Archive, a pacsdash Client, a dicomweb-client
    ``DICOMwebClient``, or a source already."""
    if source is None:
        raise ValueError("no data source: give a pacsdash Archive, a pacsdash.client.Client or a DataSource")
    from dicomweb_client.api import DICOMwebClient

    from pacsdash.archive import Archive
    from pacsdash.archive.scoped import ScopedArchive
    from pacsdash.client import Client

    if isinstance(source, DICOMwebClient):
        source = _wrap_dicomweb_client(source)
    if isinstance(source, ScopedArchive):  # one user's view: its own source, as light as the view
        cached = source.__dict__.get("_dashboard_source")
        if cached is None:
            cached = source.__dict__["_dashboard_source"] = ArchiveSource(source)
        return cached
    if isinstance(source, Archive):
        cached = getattr(source, "_dashboard_source", None)
        if cached is None:
            cached = source._dashboard_source = ArchiveSource(source)  # noqa: SLF001 - one per archive
        return cached
    if isinstance(source, Client):
        return DicomWebSource(source)
    if isinstance(source, DataSource):
        return source
    raise TypeError(f"{type(source).__name__} is not a data source: give a pacsdash Archive, a "
                    f"pacsdash.client.Client or a DataSource")
