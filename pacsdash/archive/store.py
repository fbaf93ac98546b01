"""The file store: original bytes kept exactly as received.

File names are random (never built from a UID or a name a peer sent), spread
over two levels of folders. A file is written to a temporary name, flushed to
disk, renamed into place and its folder synced, so a file under its final
name is always complete.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

TMP_SUFFIX = ".tmp"
FILE_SUFFIX = ".dcm"


class Store(Protocol):
    """Where original instance files live."""

    def write(self, raw: bytes) -> str:
        """Durably write ``raw`` and return its key."""

    def open(self, key: str) -> BinaryIO:
        """Open the file stored under ``key`` for reading."""

    def local_path(self, key: str) -> Path:
        """A local path holding the file's bytes."""

    def delete(self, key: str) -> None:
        """Remove the file stored under ``key`` (no error if absent)."""

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""

    def keys(self) -> Iterator[str]:
        """Every key in the store."""

    def clean_temporary(self) -> int:
        """Remove unfinished writes; return how many were removed."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Files in a local folder, ``ab/cd/abcdef....dcm``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if (
            len(key) != 32 + len(FILE_SUFFIX)
            or not key.endswith(FILE_SUFFIX)
            or not all(c in "0123456789abcdef" for c in key[:32])
        ):
            raise KeyError(f"not a store key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def write(self, raw: bytes) -> str:
        """Durably write ``raw`` under a new random key and return the key."""
        key = secrets.token_hex(16) + FILE_SUFFIX
        path = self._path(key)
        folder = path.parent
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(raw)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(folder)
        return key

    def open(self, key: str) -> BinaryIO:
        """Open the stored file for reading (binary)."""
        return open(self._path(key), "rb")

    def read(self, key: str) -> bytes:
        """The stored bytes."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self._path(key).exists()

    def local_path(self, key: str) -> Path:
        """The file's path on this machine."""
        return self._path(key)

    def delete(self, key: str) -> None:
        """Remove a stored file."""
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        """Every stored key (finished files only)."""
        for first in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not first.is_dir() or len(first.name) != 2:
                continue
            for second in os.scandir(first.path):
                if not second.is_dir():
                    continue
                for entry in os.scandir(second.path):
                    if entry.name.endswith(FILE_SUFFIX):
                        yield entry.name

    def clean_temporary(self) -> int:
        """Remove files a crash left half-written."""
        removed = 0
        for tmp in self.root.glob(f"*/*/*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed
