"""A study's original files as a ZIP: ``Study/Series/Instance.dcm``."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from pacsdash.archive.index import InstanceLocation


def zip_name(location: InstanceLocation) -> str:
    """The entry name of an instance (UIDs are digits and dots: checked at ingest)."""
    return f"{location.StudyInstanceUID}/{location.SeriesInstanceUID}/{location.SOPInstanceUID}.dcm"


def write_zip(out: BinaryIO, files: Iterable[tuple[InstanceLocation, Path]]) -> None:
    """Write the files, stored as they are (DICOM pixel data rarely compresses)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for location, path in files:
            archive.write(path, zip_name(location))
