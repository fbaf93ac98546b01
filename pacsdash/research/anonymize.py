"""Anonymize a study into the archive: a de-identified copy beside the original.

Each instance is read from the archive, de-identified with
:class:`~pacsdash.research.deidentify.Deidentifier` and stored like any
other instance (durable before it counts). Instances whose pixels may show
identifying text are left out unless asked for, each with its reason.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacsdash.archive import InvalidInstance, Level, Outcome, StoredFileError
from pacsdash.research import workers
from pacsdash.research.deidentify import Deidentifier, burned_in_reason, patient_key
from pacsdash.research.pseudonyms import Subject

LOGGER = logging.getLogger(__name__)
#: Instances de-identified at once (pydicom holds the GIL most of the time;
#: several overlap it with the durable writes).
THREADS = 4


class NoSuchStudy(LookupError):
    """The archive has no study with that StudyInstanceUID."""


@dataclass(frozen=True)
class Excluded:
    """An instance left out of a de-identified copy, and why."""

    SOPInstanceUID: str
    SeriesInstanceUID: str
    reason: str


@dataclass
class AnonymizedStudy:
    """What one anonymization of a study gave."""

    original: str
    StudyInstanceUID: str
    PatientID: str
    stored: int = 0
    duplicates: int = 0
    excluded: list[Excluded] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"StudyInstanceUID": self.StudyInstanceUID, "PatientID": self.PatientID, "stored": self.stored,
                "duplicates": self.duplicates,
                "excluded": [{"SOPInstanceUID": e.SOPInstanceUID, "reason": e.reason} for e in self.excluded]}


SubjectSeen = Callable[[str, str, str], None]
PIXEL_TAGS = {b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"}  # (7FE0,0010), little and big endian
DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass
class Prepared:
    """A de-identified instance ready to store or write: its Part 10 bytes,
    its header (pixel data aside) and its subject."""

    data: bytes
    dataset: Dataset
    subject: Subject
    #: Where the Pixel Data element starts in the original (appended as stored), or -1.
    pixels_at: int = -1


def _pixel_element_end(raw: bytes, offset: int, little: bool, implicit: bool) -> int | None:
    """Where the Pixel Data element starting at ``offset`` ends, or None if it cannot be told."""
    order = "little" if little else "big"
    if implicit:
        length, value = int.from_bytes(raw[offset + 4:offset + 8], order), offset + 8
    else:
        length, value = int.from_bytes(raw[offset + 8:offset + 12], order), offset + 12
    if length != 0xFFFFFFFF:
        return value + length if value + length <= len(raw) else None
    position = value  # encapsulated: items up to the sequence delimiter (PS3.5 A.4)
    while position + 8 <= len(raw):
        group, element = (int.from_bytes(raw[position + i:position + i + 2], order) for i in (0, 2))
        item_length = int.from_bytes(raw[position + 4:position + 8], order)
        if (group, element) == (0xFFFE, 0xE0DD):
            return position + 8
        if (group, element) != (0xFFFE, 0xE000):
            return None
        position += 8 + item_length
    return None


def _split(raw: bytes) -> tuple[Dataset, bytes] | None:
    """The header of ``raw`` (everything before Pixel Data) and the Pixel Data
    element's bytes as stored, when nothing follows it; else None."""
    handle = io.BytesIO(raw)
    ds = dcmread(handle, stop_before_pixels=True)
    offset = handle.tell()
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if offset >= len(raw) or raw[offset:offset + 4] not in PIXEL_TAGS or syntax == DEFLATED:
        return (ds, b"") if offset >= len(raw) and syntax != DEFLATED else None
    end = _pixel_element_end(raw, offset, syntax != ExplicitVRBigEndian, syntax == ImplicitVRLittleEndian)
    if end is None or end != len(raw):
        return None  # attributes after the pixel data (private groups, padding): the whole way
    return ds, raw[offset:]


def deidentify_instance(raw: bytes, deidentifier: Deidentifier, include_burned_in: bool,
                        seen: SubjectSeen | None = None) -> tuple[Prepared | None, str]:
    """``(the de-identified instance, "")``, or ``(None, reason)`` when left out.

    The header alone is read and de-identified; the Pixel Data element is
    appended to it as stored, so its bytes cannot change (and 512 KB per
    CT slice are neither decoded nor copied by pydicom). An instance with
    attributes after its pixel data is read and written whole.
    ``seen(pseudonym, PatientID, IssuerOfPatientID)`` learns whom each
    pseudonym stands for (for an admin's look-up; never exported).
    """
    try:
        split = _split(raw)
        ds, pixels = split if split is not None else (dcmread(io.BytesIO(raw)), b"")
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, AttributeError) as exc:
        return None, f"cannot be read: {exc}"
    if not include_burned_in:
        if pixels:
            ds.PixelData = b""  # so that the burned-in check sees an image; removed below
        reason = burned_in_reason(ds)
        if pixels:
            del ds.PixelData
        if reason:
            return None, reason
    patient = patient_key(ds)
    # The original read again only if some text is cleaned (whole when attributes follow the pixels).
    done = deidentifier.deidentify(ds, original=lambda: dcmread(io.BytesIO(raw), stop_before_pixels=split is not None))
    if seen is not None:
        seen(done.subject.PatientID, *patient)
    return Prepared(done.to_bytes() + pixels, done.dataset, done.subject, len(raw) - len(pixels) if pixels else -1), ""


def _read(archive: Any, location: Any, start: int = 0) -> bytes:
    """The stored instance's bytes from ``start`` on."""
    with archive.open(location) as handle:
        if start:
            handle.seek(start)
        return handle.read()


def _local_file(archive: Any, location: Any) -> str | None:
    """The stored file's path when the store is on this machine's disk (and
    the file is there, whole), else None.

    Raises
    ------
    StoredFileError
        When the file is missing or not the size received.
    """
    try:
        return str(archive.verified_path(location))
    except StoredFileError:
        raise
    except (AttributeError, NotImplementedError, OSError):
        return None


def anonymize_study(
    archive: Any,
    study_uid: str,
    deidentifier: Deidentifier,
    origin: str,
    include_burned_in: bool = False,
    progress: Callable[[int, int], None] | None = None,
    seen: SubjectSeen | None = None,
) -> AnonymizedStudy:
    """Store a de-identified copy of ``study_uid`` in ``archive``.

    Raises
    ------
    NoSuchStudy
        If the study is not in the archive.
    """
    locations = archive.locate(Level.STUDY, study_uid)
    if not locations:
        raise NoSuchStudy(f"no study {study_uid[:80]!r}")
    new_study = deidentifier.pseudonyms.uid(study_uid) if deidentifier.replaces_uids else study_uid
    result = AnonymizedStudy(original=study_uid, StudyInstanceUID=new_study, PatientID="")

    in_processes = len(locations) >= workers.PROCESS_THRESHOLD
    options = tuple(sorted(o.value for o in deidentifier.options))

    def deidentified(location: Any) -> tuple[bytes | None, str, str, Any]:
        """``(bytes or None, reason, pseudonym, index record or None)``: in a worker
        process for a large study (which reads a local file itself, parses its
        copy for the index and sends back the header only)."""
        if in_processes:
            local = _local_file(archive, location)
            data, pixels_at, reason, pseudonym, patient, record = workers.pool().submit(
                workers.deidentify_in_worker, local or _read(archive, location), deidentifier.pseudonyms.secret,
                options, include_burned_in, origin).result()
            if data is not None and pixels_at >= 0:
                data += _read(archive, location, pixels_at)  # the Pixel Data element, as stored
            if data is not None and seen is not None:
                seen(pseudonym, *patient)
            return data, reason, pseudonym, record
        done, reason = deidentify_instance(_read(archive, location), deidentifier, include_burned_in, seen)
        return (done.data, "", done.subject.PatientID, None) if done is not None else (None, reason, "", None)

    def one(location: Any) -> tuple[Any, str, str]:
        try:
            data, reason, pseudonym, record = deidentified(location)
        except StoredFileError as exc:  # reported by `pacsdash check`; the rest goes on
            return location, "", f"left out: {exc}"
        if data is None:
            return location, "", reason
        try:
            stored = archive.store_bytes(data, origin=origin, record=record)
        except InvalidInstance as exc:
            return location, "", f"the de-identified copy could not be stored: {exc}"
        return location, pseudonym, stored.outcome.value

    count = 0
    with ThreadPoolExecutor(THREADS, thread_name_prefix="pacsdash-anonymize") as pool:
        for location, subject, outcome in pool.map(one, locations):
            count += 1
            if not subject:
                result.excluded.append(Excluded(location.SOPInstanceUID, location.SeriesInstanceUID, outcome))
            elif outcome == Outcome.DUPLICATE.value:
                result.duplicates += 1
            else:
                result.stored += 1
            result.PatientID = result.PatientID or subject
            if progress:
                progress(count, len(locations))
    return result
