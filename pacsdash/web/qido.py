"""QIDO-RS: search for studies, series and instances (PS3.18 10.6).

Requests are parsed into the archive's one :class:`Query`, so QIDO-RS and
C-FIND match alike. Each result carries the attributes PS3.18 Table
10.6.3-3/-4/-5 requires at its level, plus the matching keys and
``includefield`` ones (``all``: everything the index keeps of the level
and the levels above), and a RetrieveURL (0008,1190).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

from tornado.ioloop import IOLoop

from pacsdash.access import Action
from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.archive.attributes import BY_KEYWORD, TABLE_ATTRIBUTES, Attribute, attribute_for
from pacsdash.archive.parsing import UID_PATTERN
from pacsdash.archive.query import OTHER_ATTRIBUTES
from pacsdash.web.base import DICOM_JSON, ApiError, BaseHandler, bad_request
from pacsdash.web.dicomjson import BINARY_VRS, row_to_json, text_to_json

#: PS3.18 Table 10.6.3-3 (study), -4 (series), -5 (instance): returned always.
REQUIRED = {
    Level.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "StudyInstanceUID",
    ),
    Level.IMAGE: (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
        "StudyInstanceUID", "SeriesInstanceUID",
    ),
}
#: What ``includefield=all`` returns (PS3.18 10.6.1.2.1: every available
#: attribute of the level and the levels above): the index's columns of the
#: level and above; at the instance level also every other attribute the
#: index keeps of the instance (see :func:`other_attributes`). The patient's
#: attributes are columns of the study table.
ALL_COLUMNS = {
    Level.STUDY: TABLE_ATTRIBUTES[Level.STUDY],
    Level.SERIES: TABLE_ATTRIBUTES[Level.SERIES] + TABLE_ATTRIBUTES[Level.STUDY],
    Level.IMAGE: TABLE_ATTRIBUTES[Level.IMAGE] + TABLE_ATTRIBUTES[Level.SERIES] + TABLE_ATTRIBUTES[Level.STUDY],
}
#: Left out when empty: OHIF's study list breaks on an empty ModalitiesInStudy.
OMIT_EMPTY = frozenset({"ModalitiesInStudy"})
CONTROL_PARAMETERS = {"limit", "offset", "includefield", "fuzzymatching"}
#: Most results one request returns; more are asked for with offset.
MAX_LIMIT = 5000


def check_uid_path(value: str, name: str) -> str:
    """A UID taken from a URL path, or a 404 (it cannot name anything stored)."""
    if len(value) > 64 or not UID_PATTERN.match(value):
        raise ApiError(404, f"{name} {value[:80]!r} is not a valid UID")
    return value


def parse_int(handler: BaseHandler, name: str, default: int | None) -> int | None:
    raw = handler.get_query_argument(name, None)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 12:
        raise bad_request(f"{name} must be a whole number of zero or more, got {raw[:40]!r}")
    return int(raw)


def accepts_json(handler: BaseHandler) -> bool:
    accept = handler.request.headers.get("Accept", "")
    if not accept:
        return True
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in (DICOM_JSON, "application/json", "*/*", "application/*"):
            return True
    return False


def build_query(handler: BaseHandler, level: Level, path_keys: dict[str, str]) -> tuple[Query, list[Attribute], bool]:
    """The Query of a QIDO-RS request, the attributes to return, and whether
    the limit was lowered to :data:`MAX_LIMIT`."""
    filters: dict[str, str] = dict(path_keys)
    fields: list[str] = []
    include_all = False
    for name, values in handler.request.query_arguments.items():
        texts = [v.decode("utf-8", "replace") for v in values]
        if name in ("limit", "offset"):
            continue
        if name == "fuzzymatching":
            if any(t.lower() not in ("true", "false") for t in texts):
                raise bad_request("fuzzymatching must be true or false")
            continue
        if name == "includefield":
            for text in texts:
                for item in (p.strip() for p in text.split(",")):
                    if not item:
                        continue
                    if item == "all":
                        include_all = True
                        continue
                    fields.append(_attribute(item, "includefield").keyword)
            continue
        if "." in name:
            raise bad_request(f"{name[:80]}: matching inside sequences is not supported")
        attr = _attribute(name, "query parameter")
        if len(texts) > 1:
            raise bad_request(f"{attr.keyword} is given more than once")
        filters[attr.keyword] = texts[0]
    limit = parse_int(handler, "limit", None)
    offset = parse_int(handler, "offset", 0) or 0
    lowered = limit is None or limit > MAX_LIMIT
    if lowered:
        limit = MAX_LIMIT
    returned = [BY_KEYWORD[k] for k in REQUIRED[level]]
    if include_all:
        returned += [a for a in dict.fromkeys(ALL_COLUMNS[level]) if a not in returned]
    for keyword in list(filters) + fields:
        attr = attribute_for(keyword)
        if attr not in returned:
            returned.append(attr)
    try:
        query = Query(level, filters, [a.keyword for a in returned], limit=limit, offset=offset, include_defaults=False,
                      other_attributes=include_all and level is Level.IMAGE)
    except InvalidQuery as exc:
        raise bad_request(str(exc)) from None
    return query, returned, lowered and limit is not None


def _attribute(name: str, what: str) -> Attribute:
    if len(name) > 64:
        raise bad_request(f"{what} {name[:40]!r}... is not a DICOM keyword or tag")
    try:
        return attribute_for(name)
    except KeyError:
        raise bad_request(f"{what} {name!r} is neither a DICOM keyword nor a tag") from None


#: Matching beyond PS3.4 C.2.2.2 that this server does, named in a response header.
MATCHING_EXTENSIONS = "numeric-comparison"


class QidoHandler(BaseHandler):
    """GET on the six QIDO-RS resources."""

    audit_action = "query"

    def initialize(self, app: Any, level: Level) -> None:
        super().initialize(app)
        self.level = level

    async def get(self, study: str | None = None, series: str | None = None) -> None:
        self.require(Action.SEARCH)
        if not accepts_json(self):
            raise ApiError(406, f"QIDO-RS answers {DICOM_JSON}")
        path_keys = {}
        if study is not None:
            path_keys["StudyInstanceUID"] = check_uid_path(study, "StudyInstanceUID")
        if series is not None:
            path_keys["SeriesInstanceUID"] = check_uid_path(series, "SeriesInstanceUID")
        query, returned, lowered = build_query(self, self.level, path_keys)
        try:
            rows = await IOLoop.current().run_in_executor(None, self.archive.find, query)
        except InvalidQuery as exc:
            raise bad_request(str(exc)) from None
        if not rows and path_keys and not query.offset:
            await self._check_exists(path_keys)
        base = f"{self.base_url()}/dicom-web"
        results = []
        for row in rows:
            item = row_to_json(row, returned, OMIT_EMPTY)
            if query.other_attributes:
                for key, value in other_attributes(row.get(OTHER_ATTRIBUTES)).items():
                    item.setdefault(key, value)
            item["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
            item["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
            item["00081190"] = {"vr": "UR", "Value": [retrieve_url(base, self.level, row)]}
            results.append(dict(sorted(item.items())))
        if lowered and len(rows) == query.limit:
            self.set_header(
                "Warning",
                '299 pacsdash "The number of results exceeded the maximum supported by the server. '
                'Additional results can be requested."',
            )
        # Tells a client (pacsdash.client) that numeric comparisons such as
        # SliceThickness=<=1 are matched here (see pacsdash.archive.query).
        self.set_header("X-Matching-Extensions", MATCHING_EXTENSIONS)
        self.write_json(results, content_type=DICOM_JSON)

    async def _check_exists(self, path_keys: dict[str, str]) -> None:
        """A search under a study or series that does not exist is a 404, not
        an empty result (PS3.18 10.6.3: the target resource is unknown)."""
        level = Level.SERIES if "SeriesInstanceUID" in path_keys else Level.STUDY
        if not await _exists(self.archive, level, path_keys):
            raise ApiError(404, f"no such {'series' if level is Level.SERIES else 'study'}")


async def _exists(archive: Any, level: Level, keys: dict[str, str]) -> bool:
    return bool(await IOLoop.current().run_in_executor(None, archive.count, Query(level, dict(keys))))


def other_attributes(text: str | None) -> dict[str, dict[str, Any]]:
    """An instance's attribute JSON from the index (tag -> DICOM text) in the
    DICOM JSON model, each with its dictionary VR.

    Private attributes are left out: the index keeps their text, not their VR
    nor their creator's meaning. An ambiguous VR (``US or SS``) is the one
    the instance's PixelRepresentation implies.
    """
    if not text:
        return {}
    try:
        stored = json.loads(text)
    except ValueError:
        return {}
    signed = stored.get("00280103") == "1"
    out: dict[str, dict[str, Any]] = {}
    for key, value in stored.items():
        vr = _public_vr(key, signed)
        if vr is not None:
            out[key] = text_to_json(vr, value)
    return out


@functools.lru_cache(maxsize=4096)
def _public_vr(key: str, signed: bool) -> str | None:
    """The VR of a public, non-binary attribute's 8-hex-digit tag; None for
    any other (private, unknown, binary)."""
    try:
        tag = int(key, 16)
        vr = attribute_for(key).vr
    except (KeyError, ValueError):
        return None
    if (tag >> 16) % 2:
        return None
    if " or " in vr:
        options = vr.split(" or ")
        vr = "SS" if signed and "SS" in options else options[0]
    return None if vr in BINARY_VRS or vr == "SQ" else vr


def retrieve_url(base: str, level: Level, row: dict[str, str | None]) -> str:
    """The WADO-RS URL of a search result (0008,1190)."""
    url = f"{base}/studies/{quote(row['StudyInstanceUID'] or '')}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{quote(row['SeriesInstanceUID'] or '')}"
    if level is Level.IMAGE:
        url += f"/instances/{quote(row['SOPInstanceUID'] or '')}"
    return url
