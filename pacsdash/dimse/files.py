"""Sending stored files over DIMSE exactly as they are, within the rules.

pynetdicom's C-GET and C-MOVE services only take :class:`Dataset` objects,
which they re-encode before sending (changing the bytes: re-deflated data
sets, normalised sequences). The retrieve handlers yield a
:class:`StoredInstance` instead, and :func:`send_stored_file`, installed over
``Association.send_c_store`` by :mod:`pacsdash.dimse.compat`, sends its
stored bytes with pynetdicom's own chunked file sending, which copies the
stored data set bytes unchanged (PS3.4 C.4.2.3, C.4.3.3 C-STORE
sub-operations).

The bytes come from the archive as a stream (:meth:`Archive.open
<pacsdash.archive.Archive.open>`), never from a path into the store: the
store may be an object store. pynetdicom's chunked sending opens a file by
name, so :func:`file_to_send` names one: the stream's own open file when it
is a local file (no copy), else a temporary copy.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_preamble

from pacsdash.archive import InstanceLocation

DEFLATED = "1.2.840.10008.1.2.1.99"
#: Where this process's open files are named (Linux: links to /proc/self/fd; macOS: the descriptors).
FD_FOLDER = "/dev/fd"
CHUNK = 1 << 20


def _split(stream: BinaryIO) -> tuple[str, int]:
    """``(Transfer Syntax UID, where the data set starts)`` of a Part 10 stream
    (pynetdicom's ``split_dataset``, on a stream); the stream is left at its start."""
    stream.seek(0)
    try:
        read_preamble(stream, False)
        meta = read_dataset(stream, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag.group != 2)
        return str(meta.get("TransferSyntaxUID", "")), stream.tell()
    finally:
        stream.seek(0)


def _needs_pad(stream: BinaryIO, size: int) -> bool:
    """Whether the stream is a deflated data set of odd length.

    PS3.5 A.5 asks that a deflated data set of odd length end with one NUL
    pad byte, and strict peers (dcmtk) abort on an odd P-DATA fragment.
    Some real files lack the pad; the stored file keeps its bytes and the
    copy sent gets the one byte the standard asks for.
    """
    syntax, offset = _split(stream)
    return syntax == DEFLATED and (size - offset) % 2 == 1


@contextmanager
def _copy(stream: BinaryIO, pad: bytes = b"") -> Iterator[Path]:
    """A temporary file holding the stream's bytes (and ``pad``), removed after."""
    stream.seek(0)
    with tempfile.NamedTemporaryFile(suffix=".dcm", delete=False) as tmp:
        shutil.copyfileobj(stream, tmp, CHUNK)
        tmp.write(pad)
    try:
        yield Path(tmp.name)
    finally:
        os.unlink(tmp.name)


def _open_file_name(stream: BinaryIO) -> Path | None:
    """A name under which this process can open the regular local file
    ``stream`` reads (its descriptor in :data:`FD_FOLDER`), or None."""
    if not isinstance(getattr(stream, "raw", None), io.FileIO) or not os.path.isdir(FD_FOLDER):
        return None
    descriptor = stream.fileno()
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        return None
    return Path(FD_FOLDER, str(descriptor))


@contextmanager
def file_to_send(stream: BinaryIO, size: int | None = None) -> Iterator[Path]:
    """A file name pynetdicom's chunked file sending can open, holding the
    bytes of ``stream`` (``size`` of them; measured when not given), valid
    while ``stream`` is open.

    A deflated data set of odd length is a temporary copy with the pad byte
    (:func:`_needs_pad`); a local file is named by its open descriptor, so
    the very file opened (and checked) is sent, without a copy; anything
    else (an object store's stream) is a temporary copy.
    """
    if size is None:
        size = stream.seek(0, os.SEEK_END)
    if _needs_pad(stream, size):
        with _copy(stream, b"\x00") as path:
            yield path
        return
    name = _open_file_name(stream)
    if name is not None:
        stream.seek(0)  # macOS shares the offset of a descriptor opened through /dev/fd
        yield name
        return
    with _copy(stream) as path:
        yield path


@contextmanager
def even_length_copy(path: Path) -> Iterator[Path]:
    """``path`` (a file on disk, ``pacsdash send``), or a copy whose deflated
    data set is padded to an even length (:func:`_needs_pad`)."""
    with open(path, "rb") as stream:
        pad = _needs_pad(stream, os.fstat(stream.fileno()).st_size)
        if pad:
            with _copy(stream, b"\x00") as copy:
                yield copy
            return
    yield path


@dataclass(frozen=True)
class MoveOriginator:
    """Who asked for a C-MOVE: what its C-STORE sub-operations name in Move
    Originator Application Entity Title (0000,1030) and Move Originator
    Message ID (0000,1031) (PS3.7 9.3.1.1), so that the destination can tell
    which move an instance belongs to."""

    aet: str
    message_id: int


class StoredInstance(Dataset):
    """A stand-in for a stored file, yielded to pynetdicom's C-GET/C-MOVE code
    (and given to :func:`pacsdash.dimse.scu.send_files`).

    It carries the identifying UIDs pynetdicom logs, plus what opens the
    stored bytes (``opener``: :meth:`Archive.open
    <pacsdash.archive.Archive.open>` of the instance);
    :func:`send_stored_file` hands them to pynetdicom's chunked file sending
    (:func:`file_to_send`). For a C-MOVE it also carries the
    :class:`MoveOriginator`: pynetdicom's C-MOVE service names the mover
    itself (its own AE title) as the move originator; :func:`send_stored_file`
    names the requestor.

    On plain pynetdicom (:mod:`pacsdash.dimse.compat`) it has no file meta,
    so sending it fails: a failed sub-operation naming the instance.
    """

    def __init__(self, opener: Callable[[], BinaryIO], location: InstanceLocation,
                 originator: MoveOriginator | None = None) -> None:
        super().__init__()
        self.SOPClassUID = location.SOPClassUID
        self.SOPInstanceUID = location.SOPInstanceUID
        self.__dict__["opener"] = opener
        self.__dict__["location"] = location
        self.__dict__["move_originator"] = originator

    @property
    def location(self) -> InstanceLocation:
        """Where the archive keeps the instance (its UIDs, transfer syntax and size)."""
        return self.__dict__["location"]

    def open_stored(self) -> BinaryIO:
        """The stored bytes, once the file is there with the size received.

        Raises
        ------
        MissingFile, DamagedFile
            So that pynetdicom counts a failed sub-operation naming the
            instance (PS3.4 C.4.2.3, C.4.3.3) instead of sending a file cut
            short as if it were whole; ``pacsdash check`` names the cause.
        """
        return self.__dict__["opener"]()

    @contextmanager
    def sendable(self) -> Iterator[Path]:
        """:func:`file_to_send` of the stored bytes, while they are open."""
        with self.open_stored() as stream, file_to_send(stream, self.location.size) as path:
            yield path


def send_stored_file(original: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """``Association.send_c_store`` (pynetdicom 3.0) taking a :class:`StoredInstance`
    (its bytes, sent as stored, and its move originator) and padding files
    with :func:`even_length_copy`; anything else as ``original`` does."""

    def send_c_store(self: Any, dataset: Any, msg_id: int = 1, priority: int = 2,
                     originator_aet: str | None = None, originator_id: int | None = None) -> Dataset:
        if isinstance(dataset, StoredInstance):
            originator = dataset.__dict__["move_originator"]
            if originator is not None:
                originator_aet, originator_id = originator.aet, originator.message_id
            with dataset.sendable() as path:
                return original(self, path, msg_id, priority, originator_aet, originator_id)
        if isinstance(dataset, (str, Path)):
            with even_length_copy(Path(dataset)) as path:
                return original(self, path, msg_id, priority, originator_aet, originator_id)
        return original(self, dataset, msg_id, priority, originator_aet, originator_id)

    send_c_store.__wrapped__ = original  # type: ignore[attr-defined]
    send_c_store.__doc__ = original.__doc__
    return send_c_store
