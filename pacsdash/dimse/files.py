"""Sending stored files over DIMSE exactly as they are, within the rules.

pynetdicom's C-GET and C-MOVE services only take :class:`Dataset` objects,
which they re-encode before sending (changing the bytes: re-deflated data
sets, normalised sequences). The retrieve handlers yield a
:class:`StoredInstance` instead, and :func:`send_stored_file`, installed over
``Association.send_c_store`` by :mod:`pacsdash.dimse.compat`, sends its file
with pynetdicom's own chunked file sending, which copies the stored data set
bytes unchanged (PS3.4 C.4.2.3, C.4.3.3 C-STORE sub-operations).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dsutils import split_dataset

from pacsdash.archive import DamagedFile, InstanceLocation, MissingFile

DEFLATED = "1.2.840.10008.1.2.1.99"


@contextmanager
def even_length_copy(path: Path) -> Iterator[Path]:
    """``path``, or a copy whose data set is padded to an even length.

    PS3.5 A.5 asks that a deflated data set of odd length end with one NUL
    pad byte, and strict peers (dcmtk) abort on an odd P-DATA fragment.
    Some real files lack the pad; the stored file keeps its bytes and the
    copy sent gets the one byte the standard asks for. Every other file is
    sent as it is.
    """
    meta, offset = split_dataset(path)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED or (os.path.getsize(path) - offset) % 2 == 0:
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=".dcm", delete=False) as tmp:
        with open(path, "rb") as source:
            shutil.copyfileobj(source, tmp)
        tmp.write(b"\x00")
    try:
        yield Path(tmp.name)
    finally:
        os.unlink(tmp.name)


@dataclass(frozen=True)
class MoveOriginator:
    """Who asked for a C-MOVE: what its C-STORE sub-operations name in Move
    Originator Application Entity Title (0000,1030) and Move Originator
    Message ID (0000,1031) (PS3.7 9.3.1.1), so that the destination can tell
    which move an instance belongs to."""

    aet: str
    message_id: int


class StoredInstance(Dataset):
    """A stand-in for a stored file, yielded to pynetdicom's C-GET/C-MOVE code.

    It carries the identifying UIDs pynetdicom logs, plus the file's path;
    :func:`send_stored_file` hands the path to pynetdicom's chunked file
    sending. For a C-MOVE it also carries the :class:`MoveOriginator`:
    pynetdicom's C-MOVE service names the mover itself (its own AE title) as
    the move originator; :func:`send_stored_file` names the requestor.

    On plain pynetdicom (:mod:`pacsdash.dimse.compat`) it has no file meta,
    so sending it fails: a failed sub-operation naming the instance.
    """

    def __init__(self, path: Path, location: InstanceLocation, originator: MoveOriginator | None = None) -> None:
        super().__init__()
        self.SOPClassUID = location.SOPClassUID
        self.SOPInstanceUID = location.SOPInstanceUID
        self.__dict__["source_path"] = path
        self.__dict__["size"] = location.size
        self.__dict__["move_originator"] = originator

    def checked_path(self) -> Path:
        """The stored file, once it is there with the size received.

        Raises
        ------
        MissingFile, DamagedFile
            So that pynetdicom counts a failed sub-operation naming the
            instance (PS3.4 C.4.2.3, C.4.3.3) instead of sending a file cut
            short as if it were whole; ``pacsdash check`` names the cause.
        """
        path: Path = self.__dict__["source_path"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise MissingFile(f"the stored file of {self.SOPInstanceUID} is missing") from None
        if size != self.__dict__["size"]:
            raise DamagedFile(f"the stored file of {self.SOPInstanceUID} has {size} bytes, not the "
                              f"{self.__dict__['size']} received")
        return path


def send_stored_file(original: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """``Association.send_c_store`` (pynetdicom 3.0) taking a :class:`StoredInstance`
    (its file, sent as stored, and its move originator) and padding files
    with :func:`even_length_copy`; anything else as ``original`` does."""

    def send_c_store(self: Any, dataset: Any, msg_id: int = 1, priority: int = 2,
                     originator_aet: str | None = None, originator_id: int | None = None) -> Dataset:
        if isinstance(dataset, StoredInstance):
            originator = dataset.__dict__["move_originator"]
            if originator is not None:
                originator_aet, originator_id = originator.aet, originator.message_id
            dataset = dataset.checked_path()
        if isinstance(dataset, (str, Path)):
            with even_length_copy(Path(dataset)) as path:
                return original(self, path, msg_id, priority, originator_aet, originator_id)
        return original(self, dataset, msg_id, priority, originator_aet, originator_id)

    send_c_store.__wrapped__ = original  # type: ignore[attr-defined]
    send_c_store.__doc__ = original.__doc__
    return send_c_store
