"""Read the header of a received instance into an index record.

Only the header is decoded (pixel data is never loaded); the bytes the caller
received are what the store keeps.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from pacsdash.archive.attributes import BULK_VRS, TABLE_ATTRIBUTES, Level

#: PS3.5 9.1: digits and dots, at most 64 characters. Leading zeros in a
#: component are not conformant but common in old data, so they are allowed.
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Values longer than this are not read while parsing (pixel data, mostly).
DEFER_SIZE = 16384
DEFLATED = "1.2.840.10008.1.2.1.99"
#: Longest value kept in the attribute JSON; longer text is not a search key.
MAX_JSON_VALUE = 1024


class InvalidInstance(ValueError):
    """The bytes are not a DICOM instance the archive can file."""


@dataclass
class InstanceRecord:
    """What the index keeps about one instance, read from its header."""

    SOPInstanceUID: str
    SeriesInstanceUID: str
    StudyInstanceUID: str
    #: Column values per level, keyed by keyword, as DICOM strings.
    columns: dict[Level, dict[str, str | None]] = field(default_factory=dict)
    #: Every other non-bulk top-level attribute: 8-hex-digit tag -> string.
    attributes: dict[str, str] = field(default_factory=dict)
    TransferSyntaxUID: str = ""
    size: int = 0
    origin: str = ""
    #: Store key of the file, set once the bytes are durable.
    file: str = ""


def check_uid(value: Any, keyword: str) -> str:
    """Return ``value`` as a clean UID string, or raise :class:`InvalidInstance`."""
    text = str(value).rstrip("\x00 ") if value is not None else ""
    if not text:
        raise InvalidInstance(f"{keyword} is missing or empty")
    if len(text) > 64 or not UID_PATTERN.match(text):
        raise InvalidInstance(f"{keyword} {text[:80]!r} is not a valid UID (PS3.5 9.1)")
    return text


def value_text(value: Any) -> str | None:
    """Render an element value as a DICOM string (multi-values joined by ``\\``)."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, MultiValue)):
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, bytes):
        return None
    return str(value)


def read_header(raw: bytes) -> Dataset:
    """Decode the Part 10 header and check that the data set is complete.

    Every top-level element is checked against its declared length, so a
    file cut short (in a sequence, in the pixel data) is refused rather than
    archived incomplete. Values other than the identifying ones are not
    validated: real files carry odd values, and they are kept as they came.

    Raises
    ------
    InvalidInstance
        If the bytes are not a Part 10 file, or are truncated, or the header
        cannot be decoded.
    """
    if len(raw) < 132:
        raise InvalidInstance(f"{len(raw)} bytes is too short for a DICOM Part 10 file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Large values (pixel data) are skipped, not read: the length
            # check below uses their positions instead.
            ds = dcmread(io.BytesIO(raw), force=False, defer_size=DEFER_SIZE)
            _check_complete(ds, len(raw))
            for elem in ds:
                if elem.tag != 0x7FE00010 and elem.VR not in BULK_VRS:
                    _ = elem.value
        # pydicom turns "the file ended inside an element" into a warning.
        for warning in caught:
            text = str(warning.message)
            if "EOF" in text or "End of file" in text or "end of file" in text:
                raise InvalidInstance(f"the data set is truncated: {text}")
    except InvalidInstance:
        raise
    except InvalidDicomError as exc:
        raise InvalidInstance(f"not a DICOM Part 10 file: {exc}") from None
    except Exception as exc:  # pydicom raises many types for broken encodings
        raise InvalidInstance(f"the DICOM data set cannot be decoded: {exc}") from None
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InvalidInstance("the file meta information has no TransferSyntaxUID (0002,0010)")
    return ds


def _check_complete(ds: Dataset, size: int) -> None:
    """Raise if a top-level element holds fewer bytes than its length says.

    A value that was read is measured; a deferred one (large, not read) must
    end within the ``size`` bytes received. Deflated data sets are read from
    an inflated copy, where positions differ, so they are not deferred.
    """
    deflated = ds.file_meta.get("TransferSyntaxUID") == DEFLATED
    for tag, raw in ds._dict.items():  # noqa: SLF001 - raw elements, before decoding
        length = getattr(raw, "length", None)
        if length is None or length == 0xFFFFFFFF:
            continue
        value = getattr(raw, "value", None)
        if isinstance(value, bytes):
            present = len(value)
        elif value is None and not deflated and getattr(raw, "value_tell", None) is not None:
            present = max(0, min(length, size - raw.value_tell))
        else:
            continue
        if present < length:
            raise InvalidInstance(
                f"the data set is truncated: element {tag} declares {length} bytes, {present} are present"
            )


def record_from_dataset(ds: Dataset, size: int, origin: str = "") -> InstanceRecord:
    """Build the index record of a decoded header.

    Raises
    ------
    InvalidInstance
        If an identifying UID is missing or malformed.
    """
    uids = {kw: check_uid(ds.get(kw), kw) for kw in REQUIRED_UIDS}
    # MediaStorageSOPInstanceUID may differ from SOPInstanceUID in real files
    # (edited copies); the data set's own UID is the one that identifies it.
    transfer_syntax = check_uid(ds.file_meta.TransferSyntaxUID, "TransferSyntaxUID")
    columns: dict[Level, dict[str, str | None]] = {}
    column_tags: set[int] = set()
    for level, attrs in TABLE_ATTRIBUTES.items():
        values: dict[str, str | None] = {}
        for attr in attrs:
            if attr.derived:
                continue
            column_tags.add(attr.tag)
            if attr.keyword == "TransferSyntaxUID":
                values[attr.keyword] = transfer_syntax
            elif attr.keyword in uids:
                values[attr.keyword] = uids[attr.keyword]
            else:
                values[attr.keyword] = _element_text(ds, attr.tag)
        columns[level] = values
    columns[Level.PATIENT]["PatientID"] = columns[Level.PATIENT]["PatientID"] or ""
    columns[Level.STUDY]["PatientID"] = columns[Level.PATIENT]["PatientID"]
    attributes: dict[str, str] = {}
    for elem in ds:
        if elem.tag.group == 0x0002 or elem.tag in column_tags or elem.VR in BULK_VRS:
            continue
        text = _element_text(ds, elem.tag)
        if text is not None and len(text) <= MAX_JSON_VALUE:
            attributes[f"{int(elem.tag):08X}"] = text
    return InstanceRecord(
        SOPInstanceUID=uids["SOPInstanceUID"],
        SeriesInstanceUID=uids["SeriesInstanceUID"],
        StudyInstanceUID=uids["StudyInstanceUID"],
        columns=columns,
        attributes=attributes,
        TransferSyntaxUID=transfer_syntax,
        size=size,
        origin=origin,
    )


def _element_text(ds: Dataset, tag: int) -> str | None:
    elem = ds.get(tag)
    if elem is None or elem.VR in BULK_VRS:
        return None
    try:
        text = value_text(elem.value)
    except Exception:  # a value pydicom cannot convert is not indexed
        return None
    if text is not None:
        text = text.replace("\x00", "").strip()
    return text or None


def parse_instance(raw: bytes, origin: str = "") -> InstanceRecord:
    """Parse and validate ``raw`` Part 10 bytes into an index record."""
    return record_from_dataset(read_header(raw), len(raw), origin)
