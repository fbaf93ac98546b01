"""Sending stored files over DIMSE exactly as they are, within the rules."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pynetdicom.dsutils import split_dataset

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
