"""The file store: original bytes kept exactly as received.

File names are random (never built from a UID or a name a peer sent), in a
folder per day and hour of arrival: ``20261125/08/<32 hex digits>.dcm``. A
file is written to a temporary name, flushed to disk, renamed into place and
its folder synced, so a file under its final name is always complete and
stays there.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

TMP_SUFFIX = ".tmp"
FILE_SUFFIX = ".dcm"
KEY_PATTERN = re.compile(r"^(\d{8})/(\d{2})/([0-9a-f]{32})\.dcm$")


class Store(Protocol):
    """Where original instance files live: a local folder
    (:class:`LocalStore`) or an S3-compatible object store
    (:class:`~pacsdash.archive.s3store.S3Store`).

    A key is made by the store (:meth:`new_key`, matching
    :data:`KEY_PATTERN`), never taken from a peer. Every method given a key
    that is not a store key raises KeyError; every read of a key under which
    nothing is stored raises FileNotFoundError (the archive reports it as
    :class:`~pacsdash.archive.archive.MissingFile`). Other failures of the
    storage are OSError, so an ingest that could not write fails its C-STORE
    or STOW-RS instead of acknowledging it.
    """

    def new_key(self) -> str:
        """A fresh key for :meth:`write`."""

    def write(self, raw: bytes, key: str | None = None) -> str:
        """Write ``raw`` (under ``key``, or a new one) and return the key, once
        the bytes are durable: a stored file is complete or absent, never partial."""

    def open(self, key: str) -> BinaryIO:
        """A readable, seekable stream of the stored bytes (read as needed, not all at once)."""

    def read(self, key: str) -> bytes:
        """All the stored bytes of one file."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file)."""

    def size(self, key: str) -> int:
        """How many bytes are stored under ``key``."""

    def modified(self, key: str) -> float:
        """When the file was written (POSIX seconds)."""

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove the file stored under ``key`` (no error if absent)."""

    def keys(self) -> Iterator[str]:
        """Every key in the store (finished files only)."""

    def listing(self) -> tuple[list[str], list[Path]]:
        """Every key, and every unfinished write's local path, in one pass
        (recovery after an unclean stop)."""

    def clean_temporary(self) -> int:
        """Remove unfinished writes; return how many were removed."""

    def move_out(self, key: str, destination: Path) -> None:
        """Move the file stored under ``key`` to the local ``destination`` (a quarantine), durably."""


def is_key(key: str) -> bool:
    """Whether ``key`` has the form of a store key (the only names the store opens)."""
    return bool(KEY_PATTERN.match(key))


def _check_key(key: str) -> None:
    """Raise KeyError unless ``key`` is a store key (never a path a peer chose)."""
    if not KEY_PATTERN.match(key):
        raise KeyError(f"not a store key: {key!r}")


def _fsync_dir(path: Path | str) -> None:
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
        self._root = str(self.root)
        #: Folders known to exist (the day and hour folders files go to).
        self._folders: set[str] = set()

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def new_key(self) -> str:
        """A new random key in the folder of the current day and hour (UTC)."""
        now = time.gmtime()
        return f"{time.strftime('%Y%m%d', now)}/{time.strftime('%H', now)}/{secrets.token_hex(16)}{FILE_SUFFIX}"

    def write(self, raw: bytes, key: str | None = None) -> str:
        """Write ``raw``, fsync it, rename it into place and sync its folder."""
        key = key or self.new_key()
        _check_key(key)
        # Plain strings, and folders made once: this runs for every instance received.
        path = os.path.join(self._root, key)
        folder = os.path.dirname(path)
        tmp = path + TMP_SUFFIX
        if folder not in self._folders:
            self._make_folder(folder)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileNotFoundError:  # the folder was removed since it was made: make it again
            self._make_folder(folder)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(raw)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(folder)
        return key

    def _make_folder(self, folder: str) -> None:
        """Make the day/hour ``folder`` if needed, durably, and remember it."""
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            _fsync_dir(os.path.dirname(folder))
            _fsync_dir(os.path.dirname(os.path.dirname(folder)))
        self._folders.add(folder)

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

    def move_out(self, key: str, destination: Path) -> None:
        """Move a stored file out of the store (same disk: a rename), then sync
        both folders, so the file is in exactly one of the two places."""
        source = self._path(key)
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, destination)
        _fsync_dir(destination.parent)
        _fsync_dir(source.parent)

    def keys(self) -> Iterator[str]:
        """Every stored key (finished files only)."""
        for day in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not day.is_dir() or not day.name.isdigit():
                continue
            for hour in os.scandir(day.path):
                if not hour.is_dir():
                    continue
                for entry in os.scandir(hour.path):
                    key = f"{day.name}/{hour.name}/{entry.name}"
                    if KEY_PATTERN.match(key):
                        yield key

    def listing(self) -> tuple[list[str], list[Path]]:
        """Every stored key and every temporary file, from one pass over the
        folders (names only, nothing opened or stat'ed: a restart after a crash
        lists the store before it serves, so this must stay cheap)."""
        keys: list[str] = []
        temporary: list[Path] = []
        for day in os.scandir(self.root):
            if not day.is_dir() or day.name.startswith("."):
                continue
            for hour in os.scandir(day.path):
                if not hour.is_dir() or hour.name.startswith("."):
                    continue
                for entry in os.scandir(hour.path):
                    if entry.name.endswith(TMP_SUFFIX):
                        temporary.append(Path(entry.path))
                        continue
                    key = f"{day.name}/{hour.name}/{entry.name}"
                    if KEY_PATTERN.match(key):
                        keys.append(key)
        return keys, temporary

    def clean_temporary(self) -> int:
        """Remove files a crash left half-written."""
        removed = 0
        for tmp in self.root.glob(f"*/*/*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file): one seek and one read."""
        with open(self._path(key), "rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def size(self, key: str) -> int:
        """How many bytes are stored under ``key`` (FileNotFoundError if none)."""
        return os.stat(self._path(key)).st_size

    def modified(self, key: str) -> float:
        """When the file was written (its mtime, POSIX seconds; FileNotFoundError if none)."""
        return os.stat(self._path(key)).st_mtime
