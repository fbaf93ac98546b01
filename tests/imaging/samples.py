"""The sample corpus in data/dicom-samples, as described by its MANIFEST.tsv."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples"
VALID = SAMPLES / "valid"
BROKEN = SAMPLES / "broken"


@dataclass(frozen=True)
class Sample:
    """One row of MANIFEST.tsv (set ``valid``)."""

    file: str
    transfer_syntax: str
    photometric: str
    rows: int
    columns: int
    frames: int

    @property
    def has_pixels(self) -> bool:
        return self.photometric != "-"

    def __str__(self) -> str:
        return self.file


@cache
def manifest() -> tuple[Sample, ...]:
    samples = []
    with (SAMPLES / "MANIFEST.tsv").open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["set"] != "valid":
                continue
            size = row["rows_x_cols_x_frames"]
            rows, columns, frames = (int(v) for v in size.split("x")) if size != "-" else (0, 0, 0)
            samples.append(Sample(row["file"], row["transfer_syntax"], row["photometric"], rows, columns, frames))
    return tuple(samples)


PIXEL_SAMPLES = [s for s in manifest() if s.has_pixels]
NO_PIXEL_SAMPLES = [s for s in manifest() if not s.has_pixels]


def load(name: str, folder: Path = VALID) -> Dataset:
    """A fresh copy of a sample (tests may modify it)."""
    return pydicom.dcmread(folder / name)


def frames_of_interest(frames: int) -> list[int]:
    """First, middle and last frame (0-based), without repeats."""
    return sorted({0, frames // 2, frames - 1})


def open_image(data: bytes, fmt: str) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    assert picture.format == fmt
    return picture


def as_array(data: bytes, fmt: str = "PNG") -> np.ndarray:
    return np.asarray(open_image(data, fmt))
