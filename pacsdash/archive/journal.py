"""The index journal: index rows made durable before the index commits them.

A DuckDB commit of one row costs milliseconds, and a scanner sending over one
association waits for every acknowledgement, so committing each row before
acknowledging would set the pace of ingest. The archive instead appends the
records to this journal (one write and one ``fdatasync`` for a whole group),
acknowledges, and lets the index apply them in large batches right after.
Each entry carries a sequence number; the index stores the last number it
applied in the same transaction as the rows, so that after a crash
:meth:`Journal.replay` hands back exactly the entries the index lacks.

An entry is a 20-byte header (magic, payload length, CRC-32 of the payload,
sequence number) and a JSON payload. A torn or corrupt entry ends the
journal: nothing after it was ever acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import numpy as np

from pacsdash.archive.attributes import Level
from pacsdash.archive.parsing import InstanceRecord

LOGGER = logging.getLogger(__name__)

MAGIC = b"PDJ1"
HEADER = struct.Struct("<4sIIQ")  # magic, payload length, crc32, sequence number


def encode_record(record: InstanceRecord) -> bytes:
    """The JSON payload of one record."""
    return json.dumps(
        {
            "SOPInstanceUID": record.SOPInstanceUID,
            "SeriesInstanceUID": record.SeriesInstanceUID,
            "StudyInstanceUID": record.StudyInstanceUID,
            "columns": {level.value: values for level, values in record.columns.items()},
            "attributes": record.attributes,
            "TransferSyntaxUID": record.TransferSyntaxUID,
            "size": record.size,
            "origin": record.origin,
            "file": record.file,
            **({"labels": list(record.labels)} if record.labels else {}),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def decode_record(payload: bytes) -> InstanceRecord:
    """The record of one JSON payload."""
    data: dict[str, Any] = json.loads(payload)
    data["columns"] = {Level(level): values for level, values in data["columns"].items()}
    data["labels"] = tuple(data.get("labels", ()))
    return InstanceRecord(**data)


def encode_entry(sequence: int, record: InstanceRecord) -> bytes:
    """Header and payload of one entry."""
    payload = encode_record(record)
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), sequence) + payload


class Journal:
    """An append-only file of ``(sequence, record)`` entries."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if created:
            _fsync_dir(self.path.parent)
        #: The highest sequence number :meth:`replay` found (0: none).
        self.last = 0

    def replay(self, after: int = 0) -> list[tuple[int, InstanceRecord]]:
        """Every complete entry numbered above ``after``, in order; a torn tail
        is cut off the file.

        Entries up to ``after`` (those the index has) are checked but not
        decoded: after a crash the journal may hold thousands of them, and
        decoding their JSON took most of the archive's opening.
        """
        with open(self.path, "rb") as handle:
            data = handle.read()
        entries: list[tuple[int, InstanceRecord]] = []
        offset = 0
        last = 0
        while offset + HEADER.size <= len(data):
            magic, length, crc, sequence = HEADER.unpack_from(data, offset)
            payload = data[offset + HEADER.size : offset + HEADER.size + length]
            if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                break
            if sequence > after:
                try:
                    entries.append((sequence, decode_record(payload)))
                except (ValueError, TypeError, KeyError):
                    break
            last = max(last, sequence)
            offset += HEADER.size + length
        self.last = last
        if offset < len(data):
            LOGGER.warning("index journal %s: dropping %d bytes of an unfinished entry", self.path, len(data) - offset)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        return entries

    def append(self, entries: list[tuple[int, InstanceRecord]]) -> None:
        """Write entries and make them durable (one write, one fdatasync)."""
        data = b"".join(encode_entry(sequence, record) for sequence, record in entries)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fdatasync(self._fd)

    def reset(self) -> None:
        """Empty the journal (every entry is in the index)."""
        os.ftruncate(self._fd, 0)

    def size(self) -> int:
        """Current length of the file in bytes."""
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UidFilter:
    """A compact set of SOP Instance UIDs that may answer "maybe" but never a wrong "no".

    It keeps a 64-bit hash per UID (8 bytes each in a sorted array, plus a
    small set of recent ones), so the journal thread can tell a new instance
    from a possible duplicate without asking the index; only a "maybe" is
    checked there. Removed instances stay in it: they only cost that check.
    """

    MERGE_AT = 65536

    def __init__(self, uids: Iterable[str] = ()) -> None:
        self._sorted = np.unique(np.fromiter((_uid_hash(u) for u in uids), dtype=np.uint64))
        self._recent: set[int] = set()

    def add(self, uid: str) -> None:
        """Remember ``uid``."""
        self._recent.add(_uid_hash(uid))
        if len(self._recent) >= self.MERGE_AT:
            merged = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, merged)
            self._recent.clear()

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, str):
            return False
        value = _uid_hash(uid)
        if value in self._recent:
            return True
        position = int(np.searchsorted(self._sorted, np.uint64(value)))
        return position < len(self._sorted) and int(self._sorted[position]) == value


def _uid_hash(uid: str) -> int:
    return int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "little")
