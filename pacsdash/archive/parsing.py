"""Read the header of a received instance into an index record.

Only the header is decoded (pixel data is never loaded); the bytes the caller
received are what the store keeps.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

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


#: Tags kept as index columns (not repeated in the attribute JSON).
COLUMN_TAGS = frozenset(a.tag for attrs in TABLE_ATTRIBUTES.values() for a in attrs if not a.derived)
#: (keyword, tag) of each level's stored columns, and of the identifying UIDs.
_COLUMN_KEYS = {
    level: tuple((a.keyword, a.tag) for a in attrs if not a.derived) for level, attrs in TABLE_ATTRIBUTES.items()
}
_REQUIRED_TAGS = tuple((kw, tag_for_keyword(kw)) for kw in REQUIRED_UIDS)


@functools.lru_cache(maxsize=4096)
def _hex_tag(tag: int) -> str:
    """A tag as the 8 hex digits the attribute JSON is keyed by."""
    return f"{tag:08X}"


class _PydicomMessages(logging.Handler):
    """Collects pydicom's warnings per thread while a header is read.

    pydicom reports some damage (a sequence that runs past the end of the
    file) as a warning, which it also logs. ``warnings.catch_warnings`` is
    not thread-safe, and several associations parse at once, so the log
    records are collected instead, each thread its own.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        collected = getattr(self._local, "messages", None)
        if collected is not None:
            collected.append(record.getMessage())

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        messages: list[str] = []
        self._local.messages = messages
        try:
            yield messages
        finally:
            self._local.messages = None


_PYDICOM_MESSAGES = _PydicomMessages()
_pydicom_logger = logging.getLogger("pydicom")
_pydicom_logger.addHandler(_PYDICOM_MESSAGES)
_pydicom_logger.propagate = False  # odd values in received files are not our errors
if _pydicom_logger.level == logging.NOTSET or _pydicom_logger.level > logging.WARNING:
    _pydicom_logger.setLevel(logging.WARNING)
# pydicom repeats each such log message as a UserWarning; received files are
# kept as they came, so those warnings are noise here.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")


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
    #: Labels its study gets if this instance creates it (an upload by a
    #: user restricted to labels: what they store, they keep seeing).
    labels: tuple[str, ...] = ()


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
    # Large values (pixel data) are skipped, not read: the length check uses
    # their positions instead.
    ds = _checked(raw, lambda: dcmread(io.BytesIO(raw), force=False, defer_size=DEFER_SIZE))
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InvalidInstance("the file meta information has no TransferSyntaxUID (0002,0010)")
    return ds


def read_data_set(raw: bytes, offset: int, transfer_syntax: UID) -> Dataset:
    """Decode the data set that starts at ``offset`` of ``raw``, encoded in
    ``transfer_syntax`` (not deflated), and check that it is complete.

    For Part 10 bytes whose file meta the caller wrote itself (the C-STORE
    lane): reading it back would cost as much as the rest of the header.

    Raises
    ------
    InvalidInstance
        As :func:`read_header`.
    """

    def read() -> Dataset:
        fp = io.BytesIO(raw)
        fp.seek(offset)
        return read_dataset(fp, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                            defer_size=DEFER_SIZE)

    return _checked(raw, read)


def _checked(raw: bytes, read: Callable[[], Dataset]) -> Dataset:
    """``read()``'s data set, once :func:`_check_complete` passed; pydicom's
    errors and its reports of truncation as :class:`InvalidInstance`."""
    try:
        with _PYDICOM_MESSAGES.capture() as messages:
            ds = read()
            _check_complete(ds, len(raw))
        # pydicom turns "the file ended inside an element" into a warning.
        for text in messages:
            if "EOF" in text or "End of file" in text or "end of file" in text:
                raise InvalidInstance(f"the data set is truncated: {text}")
    except InvalidInstance:
        raise
    except InvalidDicomError as exc:
        raise InvalidInstance(f"not a DICOM Part 10 file: {exc}") from None
    except Exception as exc:  # pydicom raises many types for broken encodings
        raise InvalidInstance(f"the DICOM data set cannot be decoded: {exc}") from None
    return ds


def _check_complete(ds: Dataset, size: int) -> None:
    """Raise if a top-level element holds fewer bytes than its length says.

    A value that was read is measured; a deferred one (large, not read) must
    end within the ``size`` bytes received. Deflated data sets are read from
    an inflated copy, where positions differ, so they are not deferred.
    """
    meta = getattr(ds, "file_meta", None)
    deflated = meta is not None and meta.get("TransferSyntaxUID") == DEFLATED
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


#: Raw values converted by :func:`element_texts`, kept for the next instance:
#: (tag, VR, value bytes, little endian, character set) -> text or None.
_converted: dict[tuple[Any, ...], str | None] = {}
#: Most conversions kept, and the longest value kept.
CONVERSIONS_KEPT = 8192
CONVERSION_KEPT_LENGTH = 256


def _element_text(raw: Any, encoding: Any, ds: Dataset) -> str | None:
    """One element's value as DICOM text, through pydicom's converter (None: not indexed)."""
    try:
        elem = convert_raw_data_element(raw, encoding=encoding, ds=ds) if isinstance(raw, RawDataElement) else raw
        if elem.VR in BULK_VRS:
            return None
        text = value_text(elem.value)
    except Exception:  # odd values are kept in the file, not indexed
        return None
    if text is None:
        return None
    return text.replace("\x00", "").strip() or None


def element_texts(ds: Dataset) -> dict[int, str]:
    """Every top-level, non-bulk, non-sequence value of ``ds`` as DICOM text.

    One pass over the raw elements, converted with pydicom's own converter
    (the data set's character set applies); a value pydicom cannot convert
    is left out rather than failing the instance. Instances of a series
    repeat most of their values byte for byte, so short values with an
    explicit VR are converted once and the text is kept (the conversion
    depends on nothing else then).
    """
    encoding = ds._character_set  # noqa: SLF001 - the data set's decoded SpecificCharacterSet
    charset = tuple(encoding) if isinstance(encoding, list) else encoding
    texts: dict[int, str] = {}
    for tag, raw in ds._dict.items():  # noqa: SLF001 - raw elements, not yet decoded
        if tag >> 16 == 0x0002:
            continue
        value = getattr(raw, "value", None)
        if (
            isinstance(raw, RawDataElement)
            and raw.VR is not None
            and isinstance(value, bytes)
            and len(value) <= CONVERSION_KEPT_LENGTH
        ):
            key = (tag, raw.VR, value, raw.is_little_endian, charset)
            try:
                text = _converted[key]
            except KeyError:
                text = _element_text(raw, encoding, ds)
                if len(_converted) >= CONVERSIONS_KEPT:
                    _converted.clear()
                _converted[key] = text
        else:
            text = _element_text(raw, encoding, ds)
        if text:
            texts[int(tag)] = text
    return texts


def record_from_dataset(ds: Dataset, size: int, origin: str = "", transfer_syntax: str | None = None) -> InstanceRecord:
    """Build the index record of a decoded header (``transfer_syntax``: the
    data set's, if ``ds`` has no file meta).

    Raises
    ------
    InvalidInstance
        If an identifying UID is missing or malformed.
    """
    texts = element_texts(ds)
    uids = {kw: check_uid(texts.get(tag), kw) for kw, tag in _REQUIRED_TAGS}
    # MediaStorageSOPInstanceUID may differ from SOPInstanceUID in real files
    # (edited copies); the data set's own UID is the one that identifies it.
    transfer_syntax = check_uid(transfer_syntax or ds.file_meta.TransferSyntaxUID, "TransferSyntaxUID")
    known = {**uids, "TransferSyntaxUID": transfer_syntax}
    columns: dict[Level, dict[str, str | None]] = {
        level: {kw: known[kw] if kw in known else texts.get(tag) for kw, tag in keys}
        for level, keys in _COLUMN_KEYS.items()
    }
    columns[Level.PATIENT]["PatientID"] = columns[Level.PATIENT]["PatientID"] or ""
    columns[Level.STUDY]["PatientID"] = columns[Level.PATIENT]["PatientID"]
    attributes = {
        _hex_tag(tag): text for tag, text in texts.items() if tag not in COLUMN_TAGS and len(text) <= MAX_JSON_VALUE
    }
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


def parse_instance(raw: bytes, origin: str = "", data_set: tuple[str, int] | None = None) -> InstanceRecord:
    """Parse and validate ``raw`` Part 10 bytes into an index record.

    ``data_set``, from a caller that wrote the file meta itself: the data
    set's transfer syntax and where it starts in ``raw``, so that the file
    meta is not read back.
    """
    if data_set is not None:
        syntax = _readable_syntax(data_set[0])
        if syntax is not None:
            return record_from_dataset(read_data_set(raw, data_set[1], syntax), len(raw), origin, syntax)
    return record_from_dataset(read_header(raw), len(raw), origin)


@functools.lru_cache(maxsize=64)
def _readable_syntax(transfer_syntax: str) -> UID | None:
    """``transfer_syntax`` as a UID if :func:`read_data_set` can read it
    directly (known, not deflated); None to let pydicom's reader decide."""
    syntax = UID(transfer_syntax)
    try:
        return syntax if syntax != DEFLATED and syntax.is_transfer_syntax else None
    except ValueError:  # a private transfer syntax
        return None
