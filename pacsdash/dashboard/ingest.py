"""Store files uploaded from the browser: DICOM files, or ZIPs of them.

No Panel here. Each file goes through :meth:`Archive.store_bytes`, the same
ingest as C-STORE and STOW-RS (durable before it counts as stored; a second
copy of a stored SOP Instance UID is a duplicate, the first copy is kept).
Names of uploaded files and ZIP members are only ever shown, never used as
paths. A ZIP is read one member at a time, and refused before anything is
unpacked when it would unpack to more than the upload limit (a zip bomb).
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pacsdash.archive.outcomes import OUTCOMES, StoreOutcome, classify

LOGGER = logging.getLogger(__name__)
#: Most members one ZIP may have.
MAX_ZIP_MEMBERS = 100_000
#: Threads storing at once (their index commits share batches).
WORKERS = 4
#: What reading a ZIP member may raise (damaged, encrypted, unsupported method).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError, OSError,
              zlib.error, ValueError)

STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"


@dataclass(frozen=True)
class FileOutcome:
    """What became of one uploaded file (or ZIP member)."""

    name: str
    outcome: str
    reason: str = ""
    study_uid: str = ""


@dataclass
class UploadReport:
    """The outcome of one upload: per file, or why it was refused as a whole."""

    files: list[FileOutcome] = field(default_factory=list)
    refused: str = ""

    def count(self, outcome: str) -> int:
        return sum(f.outcome == outcome for f in self.files)

    @property
    def studies(self) -> list[str]:
        """StudyInstanceUIDs that received a stored or duplicate instance, in order."""
        return list(dict.fromkeys(f.study_uid for f in self.files if f.study_uid))

    def summary(self) -> str:
        """One line, e.g. ``3 stored, 1 duplicate, 2 failed``."""
        if self.refused:
            return f"Upload refused: {self.refused}"
        return (f"{self.count(STORED)} stored, {self.count(DUPLICATE)} duplicate"
                f"{'s' if self.count(DUPLICATE) != 1 else ''}, {self.count(FAILED)} failed")


@dataclass(frozen=True)
class _Item:
    """A file to store: its display name and how to read its bytes."""

    name: str
    read: Callable[[], bytes]


class UploadTooLarge(ValueError):
    """The upload, or what a ZIP in it unpacks to, exceeds the limit."""


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def is_zip(data: bytes) -> bool:
    """A ZIP archive, not a DICOM file (whose preamble may hold anything)?"""
    if data[128:132] == b"DICM":
        return False
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def as_bytes(value: Any) -> bytes | BinaryIO:
    """Panel hands text-looking files over decoded; take them back to bytes.
    A binary file (the dashboard's spooled upload) stays a file: it is read
    when it is stored, one at a time."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if hasattr(value, "read") and hasattr(value, "seek"):
        return value
    return bytes(value)


def pairs(files: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, bytes | BinaryIO]]:
    """``(name, bytes or binary file)`` of each file; names may repeat (two folders' ``IM0001``)."""
    items = files.items() if isinstance(files, Mapping) else files
    return [(name, as_bytes(data)) for name, data in items]


def _size(data: bytes | BinaryIO) -> int:
    if isinstance(data, bytes):
        return len(data)
    data.seek(0, io.SEEK_END)
    return data.tell()


def _head(data: bytes | BinaryIO) -> bytes:
    """The first bytes, enough to tell a ZIP from a DICOM file."""
    if isinstance(data, bytes):
        return data[:132]
    data.seek(0)
    return data.read(132)


def _whole(data: bytes | BinaryIO) -> bytes:
    if isinstance(data, bytes):
        return data
    data.seek(0)
    return data.read()


def expand(files: Mapping[str, Any] | Iterable[tuple[str, Any]], limit: int) -> tuple[list[_Item], list[FileOutcome]]:
    """The files to store (ZIPs opened, folders inside them too) and those
    refused on the way. Files may be bytes or binary files (read only when
    stored).

    Raises
    ------
    UploadTooLarge
        If the files, or what the ZIPs among them unpack to, exceed ``limit`` bytes.
    """
    files = pairs(files)
    received = sum(_size(data) for _, data in files)
    if received > limit:
        raise UploadTooLarge(f"{megabytes(received)} received, more than the {megabytes(limit)} allowed")
    items: list[_Item] = []
    refused: list[FileOutcome] = []
    unpacked = 0
    for name, data in files:
        if not is_zip(_head(data)):
            unpacked += _size(data)
            items.append(_Item(name, lambda data=data: _whole(data)))
            continue
        try:
            archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
            members = [m for m in archive.infolist() if not m.is_dir()]
        except ZIP_ERRORS as exc:
            refused.append(FileOutcome(name, FAILED, f"not a readable ZIP: {exc}"))
            continue
        if len(members) > MAX_ZIP_MEMBERS:
            raise UploadTooLarge(f"{name} holds {len(members):,} files, more than {MAX_ZIP_MEMBERS:,}")
        unpacked += sum(m.file_size for m in members)
        if unpacked > limit:
            raise UploadTooLarge(f"{name} unpacks to more than the {megabytes(limit)} allowed")
        for member in members:
            label = f"{name}/{member.filename}"
            if member.flag_bits & 0x1:
                refused.append(FileOutcome(label, FAILED, "encrypted ZIP members are not supported"))
            elif member.filename.lower().endswith(".zip"):
                refused.append(FileOutcome(label, FAILED, "a ZIP inside a ZIP is not opened; upload it by itself"))
            else:
                items.append(_Item(label, lambda archive=archive, member=member: _read_member(archive, member)))
    return items, refused


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    """A member's bytes; zipfile stops at its declared size and checks its CRC."""
    with archive.open(member) as handle:
        data = handle.read(member.file_size + 1)
    if len(data) > member.file_size:  # pragma: no cover - zipfile enforces the size itself
        raise zipfile.BadZipFile("member is longer than it declares")
    return data


def store_item(archive: Any, item: _Item, origin: str) -> FileOutcome:
    """Store one file; every failure becomes a reason, never an exception."""
    try:
        raw = item.read()
    except ZIP_ERRORS as exc:
        return FileOutcome(item.name, FAILED, f"cannot be read from the ZIP: {exc}")
    try:
        result = archive.store_bytes(raw, origin=origin)
    except Exception as exc:  # every failure becomes a reason (archive/outcomes.py), never a crash
        outcome = classify(exc)
        if outcome is StoreOutcome.CANNOT_UNDERSTAND:
            return FileOutcome(item.name, FAILED, str(exc))
        if outcome is StoreOutcome.OUT_OF_RESOURCES:
            LOGGER.warning("upload of %r could not be written: %s", item.name[:200], exc)
        else:
            LOGGER.exception("upload of %r could not be stored", item.name[:200])
        return FileOutcome(item.name, FAILED, OUTCOMES[outcome].text)
    outcome = STORED if classify(outcome=result.outcome) is StoreOutcome.STORED else DUPLICATE
    return FileOutcome(item.name, outcome, study_uid=result.StudyInstanceUID)


def store_items(archive: Any, items: Iterable[_Item], origin: str, workers: int = WORKERS) -> Iterator[FileOutcome]:
    """Store items with a few threads, at most a few ZIP members in memory at once."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pacsdash-upload") as pool:
        pending: set[Future] = set()
        for item in items:
            pending.add(pool.submit(store_item, archive, item, origin))
            if len(pending) >= workers * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)


def ingest(
    archive: Any,
    files: Mapping[str, Any] | Iterable[tuple[str, Any]],
    origin: str,
    limit: int,
    progress: Callable[[int, int], None] | None = None,
) -> UploadReport:
    """Store uploaded files (``name -> bytes``, or ``(name, bytes)`` pairs); ZIPs are opened.

    ``progress(done, total)`` is called (from this thread) after each file.
    """
    try:
        items, refused = expand(pairs(files), limit)
    except UploadTooLarge as exc:
        return UploadReport(refused=str(exc))
    report = UploadReport(files=list(refused))
    total = len(items) + len(refused)
    if progress:
        progress(len(refused), total)
    for outcome in store_items(archive, items, origin):
        report.files.append(outcome)
        if progress:
            progress(len(report.files), total)
    return report
