"""A Python client of ANY DICOMweb server, for notebooks (PS3.18).

Built on dicomweb-client (its HTTP and multipart code); this adds pandas
tables, paging with a progress bar, numpy frames and volumes, and cohorts
on any attribute. Against pacsdash every condition is evaluated in the
server; against another server what QIDO-RS cannot be relied on to match
is checked here, and the result says so.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import requests
import urllib3
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from tqdm.auto import tqdm

from pacsdash.client import conditions as cond
from pacsdash.client.headers import (Header, LazyHeaders, full_header, geometry_header, has_pixels,
                                     sop_instance_uid)
from pacsdash.client.tables import keyword, to_frame
from pacsdash.client.volume import Volume, stack
from pacsdash.web.multipart import MalformedMultipart, parameters, split_part_views

LOGGER = logging.getLogger(__name__)
#: Results asked for per QIDO-RS request.
PAGE = 5000
#: Frames fetched at once by :meth:`Client.volume` from a server without the Series Pixel Data resource.
THREADS = 8
UNCOMPRESSED = "1.2.840.10008.1.2.1"
#: What a server without the Pixel Data resources (PS3.18 10.4.1.1.6) answers for one: unknown path,
#: bad request, method or media type, not implemented.
NOT_OFFERED = {400, 404, 405, 406, 415, 501}
#: ``.../instances/{uid}/...`` in a part's Content-Location.
INSTANCE_IN_URL = re.compile(r"/instances/([0-9.]{1,64})(?:/|$)")
#: Columns of every table of a level, even an empty one.
KEYS = {"study": ["StudyInstanceUID"], "series": ["StudyInstanceUID", "SeriesInstanceUID"],
        "instance": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]}
DTYPES = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): np.uint16, (16, 1): np.int16, (32, 0): np.uint32,
          (32, 1): np.int32}


class ClientError(RuntimeError):
    """A request the server refused or failed; names the URL and the status."""

    def __init__(self, url: str, status: int | None, message: str) -> None:
        super().__init__(f"{status or 'no answer'} from {url}: {message}")
        self.url = url
        self.status = status


class QuerySession(requests.Session):
    """A session that sends ``*``, ``?``, ``,`` and ``^`` in query strings as
    themselves: DICOM matching values are made of them (``PatientName=doe*``,
    ``Doe^John``, ``viewport=64,64``), RFC 3986 allows them in a query (``^``
    is passed by every server met), and some servers do not percent-decode
    query values: Orthanc 1.10's DICOMweb plugin matched ``%2Adoe%2A``
    literally and refused ``viewport=64%2C64``."""

    RAW = {"%2A": "*", "%3F": "?", "%2C": ",", "%5E": "^"}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict:
        """As requests does, except that ``connect(verify=...)`` is not overridden
        by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (psf/requests#3829): a
        site's own CA file or a server's certificate, given, is used."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            settings["verify"] = self.verify
        return settings

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path, mark, query = (request.url or "").partition("?")
        if mark:
            for encoded, raw in self.RAW.items():
                query = query.replace(encoded, raw).replace(encoded.lower(), raw)
            request.url = f"{path}?{query}"
        return super().send(request, **kwargs)


def connect(url: str, *, user: str | None = None, password: str | None = None, token: str | None = None,
            verify: bool | str = True) -> Client:
    """A :class:`Client` of the DICOMweb service at ``url`` (e.g.
    ``http://127.0.0.1:8042/dicom-web``), with Basic credentials or a bearer token."""
    return Client(url, user=user, password=password, token=token, verify=verify)


class Client:
    """Query and fetch from a DICOMweb server; see :func:`connect`."""

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 token: str | None = None, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        self._auth = (user, password, token, verify)
        self._local = threading.local()
        self._extensions: set[str] | None = None
        #: Whether the server offers the Series Pixel Data resource (None: not tried yet).
        self.series_pixel_data: bool | None = None
        self.last_note = ""

    # -- plumbing ----------------------------------------------------------------
    def _session(self) -> requests.Session:
        user, password, token, verify = self._auth
        session = QuerySession()
        session.verify = verify
        if user is not None:
            session.auth = (user, password or "")
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token}"
        return session

    @property
    def web(self) -> DICOMwebClient:
        """This thread's dicomweb-client (sessions are not shared between threads)."""
        client = getattr(self._local, "web", None)
        if client is None:
            self._local.http = self._session()
            client = self._local.web = DICOMwebClient(self.url, session=self._local.http, timeout=120)
        return client

    @property
    def http(self) -> requests.Session:
        """This thread's session, the one its :attr:`web` client uses."""
        self.web  # noqa: B018 - makes both
        return self._local.http

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except requests.HTTPError as exc:
            response = exc.response
            raise ClientError(getattr(response, "url", self.url), getattr(response, "status_code", None),
                              _detail(response) or what) from None
        except requests.RequestException as exc:
            raise ClientError(self.url, None, f"{what}: {exc}") from None

    @property
    def extensions(self) -> set[str]:
        """Matching extensions the server says it has (pacsdash: ``numeric-comparison``)."""
        if self._extensions is None:
            response = self._call("QIDO-RS", lambda: self._session().get(
                f"{self.url}/studies", params={"limit": "1"}, headers={"Accept": "application/dicom+json"},
                timeout=30))
            if response.status_code >= 400:
                raise ClientError(f"{self.url}/studies", response.status_code, _detail(response) or "QIDO-RS")
            self._extensions = {e.strip() for e in response.headers.get("X-Matching-Extensions", "").split(",")
                                if e.strip()}
        return self._extensions

    # -- QIDO-RS --------------------------------------------------------------------
    def _search(self, level: str, filters: dict[str, Any], fields: list[str] | None = None,
                **path: str | None) -> list[dict]:
        """Every result of a QIDO-RS search, page by page (``limit``/``offset``).

        A page shorter than asked ends the search only if it is empty: a
        server may cap its pages below ``limit`` (PS3.18 8.3.4.4.1), and
        stopping at its first short page would drop the rest silently. A
        server that ignores ``offset`` (the same page again) ends it too.
        """
        search = {"study": self.web.search_for_studies, "series": self.web.search_for_series,
                  "instance": self.web.search_for_instances}[level]
        found: list[dict] = []
        first_of_last_page: str | None = None
        with tqdm(desc=f"QIDO-RS {level}", unit=" results", disable=None, leave=False) as bar:
            while True:
                page = self._call(f"QIDO-RS {level} search", lambda: search(
                    **{k: v for k, v in path.items() if v}, search_filters={k: str(v) for k, v in filters.items()},
                    fields=fields, limit=PAGE, offset=len(found)))
                if not page:
                    return found
                first = json.dumps(page[0], sort_keys=True)
                if first == first_of_last_page:
                    LOGGER.warning("%s ignores QIDO-RS offset: %d results kept", self.url, len(found))
                    return found
                first_of_last_page = first
                found.extend(page)
                bar.update(len(page))

    def studies(self, **filters: Any) -> pd.DataFrame:
        """Studies matching ``filters`` (keyword or tag -> DICOM matching value)."""
        return to_frame(self._search("study", filters), KEYS["study"])

    def series(self, study_uid: str | None = None, **filters: Any) -> pd.DataFrame:
        """Series, of one study or of all, matching ``filters``."""
        return to_frame(self._search("series", filters, study_instance_uid=study_uid), KEYS["series"])

    def instances(self, study_uid: str | None = None, series_uid: str | None = None, **filters: Any) -> pd.DataFrame:
        """Instances matching ``filters``."""
        return to_frame(self._search("instance", filters, study_instance_uid=study_uid,
                                     series_instance_uid=series_uid), KEYS["instance"])

    # -- WADO-RS ---------------------------------------------------------------------
    def dataset(self, study: str, series: str, instance: str) -> Dataset:
        """One instance, whole, as pydicom reads it."""
        return self._call("WADO-RS instance", lambda: self.web.retrieve_instance(study, series, instance))

    def metadata(self, study: str, series: str) -> list[Dataset]:
        """The headers of a series' instances (one request; bulk data left out)."""
        return [full_header(item) for item in self._metadata_items(study, series)]

    def _metadata_items(self, study: str, series: str) -> list[dict]:
        """The series' metadata as DICOM JSON (WADO-RS, PS3.18 10.4.1.1.2)."""
        return self._call("WADO-RS metadata", lambda: self.web.retrieve_series_metadata(study, series))

    def _frame_bytes(self, study: str, series: str, instance: str, number: int) -> bytes:
        frames = self._call(f"WADO-RS frame {number}", lambda: self.web.retrieve_instance_frames(
            study, series, instance, [number], media_types=(("application/octet-stream", UNCOMPRESSED),)))
        return frames[0]

    def frame(self, study: str, series: str, instance: str, number: int = 1, rescale: bool = False,
              header: Header | None = None) -> np.ndarray:
        """Frame ``number`` (1-based) of an instance: stored values (rows, columns[, samples]);
        modality values (float32) when ``rescale``."""
        if header is None:
            item = next((i for i in self._metadata_items(study, series) if sop_instance_uid(i) == instance), None)
            if item is None:
                raise ClientError(f"{self.url}/studies/{study}/series/{series}/instances/{instance}", 404,
                                  "no such instance in the series' metadata")
            header = geometry_header(item)
        return _pixels(self._frame_bytes(study, series, instance, number), header, rescale)

    def volume(self, study: str, series: str, rescale: bool = True) -> Volume:
        """A series as a :class:`~pacsdash.client.volume.Volume`, in as few requests as the server allows.

        Two requests, made at once, where the server offers the Series Pixel
        Data resource (PS3.18 10.4.1.1.6; pacsdash does): the series'
        metadata and all its pixel data, uncompressed. Elsewhere (Orthanc)
        the metadata, then each slice's first frame, several at a time.
        ``headers`` are built from the metadata when first read.
        """
        with ThreadPoolExecutor(1, thread_name_prefix="pacsdash-client") as pool:
            pending = pool.submit(self._series_pixel_data, study, series) if self.series_pixel_data is not False \
                else None
            items = [item for item in self._metadata_items(study, series) if has_pixels(item)]
            found = self._pixel_data_found(pending)
        geometry = [geometry_header(item) for item in items]
        raw = [found.get(str(h.get("SOPInstanceUID", ""))) for h in geometry]
        missing = [k for k, data in enumerate(raw) if data is None]
        if missing:
            fetched = self._first_frames(study, series, [geometry[k] for k in missing])
            for k, data in zip(missing, fetched):
                raw[k] = data
        pixels = [_pixels(data, h, rescale=False, copy=False) for data, h in zip(raw, geometry)]
        volume = stack(geometry, pixels, rescale)
        position = {id(h): k for k, h in enumerate(geometry)}
        volume.headers = LazyHeaders([items[position[id(h)]] for h in volume.headers])
        return volume

    def _pixel_data_found(self, pending: Future | None) -> dict[str, memoryview]:
        """The answer of :meth:`_series_pixel_data` (the metadata request having succeeded): the parts
        by SOPInstanceUID, or nothing, remembering when the server does not offer the resource."""
        if pending is None:
            return {}
        try:
            return pending.result()
        except ClientError as exc:
            if exc.status in NOT_OFFERED:
                self.series_pixel_data = False
                LOGGER.info("%s does not offer Series Pixel Data (%s): fetching frame by frame", self.url, exc)
            else:
                LOGGER.warning("Series Pixel Data failed, fetching frame by frame: %s", exc)
            return {}

    def _series_pixel_data(self, study: str, series: str) -> dict[str, memoryview]:
        """Every instance's pixel data, uncompressed, in one request (PS3.18 10.4.1.1.6, payload
        10.4.3.3.6), by the SOPInstanceUID its part's Content-Location names.

        dicomweb-client drops the parts' headers, so the body is split with
        pacsdash's own multipart parser; the parts are views of the body.
        """
        url = f"{self.url}/studies/{study}/series/{series}/pixeldata"

        def get() -> tuple[requests.Response, bytes]:
            response = self.http.get(url, timeout=300, stream=True, headers={
                "Accept": f'multipart/related; type="application/octet-stream"; transfer-syntax={UNCOMPRESSED}'})
            response.raise_for_status()
            with response:  # read at once: tens of MB, where requests' .content goes 10 KB at a time
                try:
                    return response, response.raw.read(decode_content=True)
                except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut short: what requests would raise
                    raise requests.exceptions.ChunkedEncodingError(exc) from None

        response, body = self._call("WADO-RS series pixel data", get)
        media, params = parameters(response.headers.get("Content-Type", ""))
        if media != "multipart/related":
            raise ClientError(url, 406, f"the series pixel data came as {media[:80]!r}, not multipart/related")
        try:
            parts = split_part_views(body, params.get("boundary", ""))
        except MalformedMultipart as exc:
            raise ClientError(url, response.status_code, f"a broken multipart body: {exc}") from None
        self.series_pixel_data = True
        found: dict[str, memoryview] = {}
        for part in parts:
            match = INSTANCE_IN_URL.search(part.headers.get("content-location", ""))
            if match and part.content_type == "application/octet-stream":
                found.setdefault(match.group(1), part.content)
        return found

    def _first_frames(self, study: str, series: str, headers: list[Header]) -> list[bytes]:
        """Frame 1 of each instance, one WADO-RS frames request each, :data:`THREADS` at a time."""
        with ThreadPoolExecutor(THREADS, thread_name_prefix="pacsdash-client") as pool:
            return list(tqdm(pool.map(lambda h: self._frame_bytes(study, series, str(h.SOPInstanceUID), 1), headers),
                             total=len(headers), desc="frames", unit=" frames", disable=None, leave=False))

    # -- cohorts ----------------------------------------------------------------------
    def cohort(self, level: str = "series", **conditions: Any) -> pd.DataFrame:
        """Studies, series or instances meeting every condition, on any attribute.

        A condition is an exact value, a QIDO wildcard or range
        (``StudyDate="20230101-20231231"``) or a numeric comparison
        (``SliceThickness="<=1"``, ``">1.5"``, ``"!=0"``). The DataFrame's
        ``attrs["filtered_here"]`` lists the conditions this client had to
        check itself (none against pacsdash): those another server cannot be
        relied on to match, and date/time ranges it was asked to match but
        answered results outside of (Orthanc matches a study without a date
        to ``StudyDate="-20040120"``), which are left out.
        """
        if level not in cond.LEVELS:
            raise ValueError(f"level must be one of {', '.join(cond.LEVELS)}")
        parsed = cond.parse(conditions)
        in_server = "numeric-comparison" in self.extensions
        sent = {c.keyword: c.value for c in parsed if in_server or c.standard_at(level)}
        rest = [c for c in parsed if c.keyword not in sent]
        fields = [c.keyword for c in parsed]
        results = self._search(level, sent, fields)
        corrected: list[cond.Condition] = []
        ranges = [c for c in parsed if c.keyword in sent and c.is_range]
        if not in_server and ranges:
            results, corrected = _recheck(results, ranges)
        if rest:
            results = self._filter_here(level, results, rest)
        notes = []
        if rest:
            notes.append(f"{self.url} cannot be relied on to match {', '.join(c.keyword for c in rest)}: "
                         f"checked in this client on what the server returned")
        if corrected:
            notes.append(f"{self.url} returned results that do not meet {', '.join(c.keyword for c in corrected)}: "
                         f"left out in this client")
        self.last_note = "; ".join(notes)
        if self.last_note:
            LOGGER.warning(self.last_note)
        frame = to_frame(results, KEYS[level] + [keyword(c.keyword) for c in parsed])
        frame.attrs["filtered_here"] = [f"{c.keyword}={c.value}" for c in parsed if c in rest or c in corrected]
        return frame

    def _filter_here(self, level: str, results: list[dict], rest: list[cond.Condition]) -> list[dict]:
        """Keep the results whose attributes (or, for series and studies, any
        of whose instances' headers) meet ``rest``."""
        def value(item: dict, keyword: str) -> Any:
            return (_json_element(item, keyword) or {}).get("Value")

        def item_meets(item: dict) -> bool | None:
            verdicts = []
            for c in rest:
                got = value(item, c.keyword)
                if got is None:
                    return None  # not returned at this level: look at the instances
                verdicts.append(cond.matches(c, got))
            return all(verdicts)

        kept = []
        for item in tqdm(results, desc="checking", unit=" results", disable=None, leave=False):
            verdict = item_meets(item)
            if verdict is None and level != "instance":
                study = (value(item, "StudyInstanceUID") or [None])[0]
                series = (value(item, "SeriesInstanceUID") or [None])[0]
                headers = self._headers_below(level, study, series)
                verdict = any(all(cond.matches(c, _header_value(h, c.keyword)) for c in rest) for h in headers)
            if verdict:
                kept.append(item)
        return kept

    def _headers_below(self, level: str, study: str | None, series: str | None) -> list[Dataset]:
        if level == "series" and study and series:
            return self.metadata(study, series)
        if level == "study" and study:
            items = self._call("WADO-RS metadata", lambda: self.web.retrieve_study_metadata(study))
            return [full_header(i) for i in items]
        return []


def _json_element(item: dict, keyword: str) -> dict | None:
    """An attribute of a DICOM JSON result, by keyword or 8-hex-digit tag; None when not returned."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return item.get(f"{tag:08X}" if tag is not None else keyword.upper())


def _recheck(results: list[dict], sent: list[cond.Condition]) -> tuple[list[dict], list[cond.Condition]]:
    """The results that meet the ranges a server was asked to match, judged
    on the attributes it returned with them (a result without the attribute
    is taken on trust; one with it empty fails), and the conditions some
    result failed."""
    kept, failed = [], []
    for item in results:
        missed = []
        for c in sent:
            element = _json_element(item, c.keyword)
            if element is not None and not cond.matches(c, element.get("Value")):
                missed.append(c)
        if missed:
            failed.extend(c for c in missed if c not in failed)
        else:
            kept.append(item)
    return kept, failed


def _detail(response: requests.Response | None) -> str:
    """What a refusal says: the ``error`` of a JSON object, else the start of the text."""
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "")[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("Message") or body.get("Details") or "")[:200]
    return str(body)[:200]


def _header_value(header: Dataset, keyword: str) -> Any:
    """An attribute's value in a pydicom header, by keyword or 8-hex-digit tag; None when absent."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        try:
            tag = int(keyword, 16)
        except ValueError:
            return None
    element = header.get(tag)
    return None if element is None else element.value


def _pixels(data: bytes | memoryview, header: Header, rescale: bool, copy: bool = True) -> np.ndarray:
    """Stored values of one uncompressed frame, shaped by its header (a
    read-only view of ``data`` where it can be, unless ``copy``).

    As pydicom's ``pixel_array`` gives them: 1-bit frames (segmentations)
    unpacked to 0/1 ``uint8``; YBR_FULL_422 served as stored (chroma
    subsampled, 2 bytes a pixel) upsampled and converted to RGB.
    """
    bits = int(header.get("BitsAllocated", 16))
    signed = int(header.get("PixelRepresentation", 0))
    rows, columns = int(header.Rows), int(header.Columns)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    if bits == 1:
        if len(data) * 8 < rows * columns * samples:
            raise ValueError(f"a 1-bit frame of {rows}x{columns} needs {rows * columns * samples} bits, "
                             f"the server sent {len(data)} bytes")
        bits_ = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: rows * columns * samples]
        values = bits_.reshape((rows, columns, samples) if samples > 1 else (rows, columns))
    elif (samples == 3 and bits == 8 and photometric == "YBR_FULL_422" and columns % 2 == 0
          and rows * columns * 2 <= len(data) < rows * columns * 3):
        from pydicom.pixels.processing import convert_color_space

        pairs = np.frombuffer(data, dtype=np.uint8, count=rows * columns * 2).reshape(-1, 4)  # Y1 Y2 Cb Cr
        ybr = np.empty((rows * columns, 3), dtype=np.uint8)
        ybr[0::2, 0], ybr[1::2, 0] = pairs[:, 0], pairs[:, 1]
        ybr[0::2, 1] = ybr[1::2, 1] = pairs[:, 2]
        ybr[0::2, 2] = ybr[1::2, 2] = pairs[:, 3]
        values = convert_color_space(ybr.reshape(rows, columns, 3), "YBR_FULL", "RGB")
    else:
        dtype = np.dtype(DTYPES.get((bits, signed), np.uint16)).newbyteorder("<")
        count = rows * columns * samples
        if len(data) < count * dtype.itemsize:
            raise ValueError(f"a frame of {rows}x{columns}x{samples} at {bits} bits needs {count * dtype.itemsize} "
                             f"bytes, the server sent {len(data)} ({photometric or 'no photometric interpretation'})")
        values = np.frombuffer(data, dtype=dtype, count=count)
        shape = (rows, columns, samples) if samples > 1 else (rows, columns)
        if samples > 1 and int(header.get("PlanarConfiguration", 0) or 0) == 1:
            values = values.reshape(samples, rows, columns).transpose(1, 2, 0)
        values = values.reshape(shape).astype(dtype.newbyteorder("="), copy=copy)
    if rescale:
        slope = float(header.get("RescaleSlope", 1) or 1)
        intercept = float(header.get("RescaleIntercept", 0) or 0)
        return values.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return values
