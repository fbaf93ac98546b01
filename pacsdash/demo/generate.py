"""Realistic synthetic studies for the demo, tests and benchmarks.

Patients with CT and MR series of a simple head/body phantom (real Hounsfield
units for CT, tissue-like intensities for MR), a multi-frame instance and an
RGB colour instance. Every file is written as DICOM Part 10.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PREFIX = "1.2.826.0.1.3680043.10.1474."  # a UID root for generated objects

PATIENTS = [
    ("DOE^JANE", "PD0001", "19710314", "F"),
    ("MÜLLER^JÜRGEN", "PD0002", "19580702", "M"),
    ("SMITH^JOHN^A", "PD0003", "19890121", "M"),
    ("GARCÍA LÓPEZ^MARÍA", "PD0004", "20010909", "F"),
    ("NGUYEN^THI", "PD0005", "19640530", "F"),
]


@dataclass
class Phantom:
    """An ellipse phantom: background, body, organs and a lesion."""

    rows: int
    columns: int

    def slice(self, z: float, tissue: dict[str, float]) -> np.ndarray:
        """One slice at relative height ``z`` in [0, 1], values from ``tissue``."""
        y, x = np.mgrid[-1 : 1 : self.rows * 1j, -1 : 1 : self.columns * 1j]
        image = np.full((self.rows, self.columns), tissue["air"], dtype=np.float32)
        squash = 0.75 + 0.2 * np.sin(np.pi * z)
        body = (x / 0.85) ** 2 + (y / (0.65 * squash)) ** 2 <= 1
        image[body] = tissue["soft"]
        fat = body & ((x / 0.8) ** 2 + (y / (0.6 * squash)) ** 2 > 1)
        image[fat] = tissue["fat"]
        lung_r = ((x - 0.38) / 0.28) ** 2 + (y / (0.4 * squash)) ** 2 <= 1
        lung_l = ((x + 0.38) / 0.28) ** 2 + (y / (0.4 * squash)) ** 2 <= 1
        if z > 0.45:
            image[lung_r | lung_l] = tissue["lung"]
        spine = (x / 0.09) ** 2 + ((y - 0.42 * squash) / 0.09) ** 2 <= 1
        image[spine] = tissue["bone"]
        organ = ((x + 0.1) / 0.25) ** 2 + ((y + 0.1) / 0.2) ** 2 <= 1
        if z <= 0.45:
            image[organ] = tissue["organ"]
        lesion = ((x + 0.15) / 0.06) ** 2 + ((y + 0.05) / 0.06) ** 2 <= 1
        if 0.2 < z < 0.35:
            image[lesion] = tissue["lesion"]
        rng = np.random.default_rng(int(z * 1000))
        image += rng.normal(0, tissue["noise"], image.shape).astype(np.float32)
        return image


CT_TISSUE = {"air": -1000, "soft": 40, "fat": -100, "lung": -850, "bone": 900, "organ": 60, "lesion": 120, "noise": 12}
MR_TISSUE = {"air": 0, "soft": 420, "fat": 900, "lung": 40, "bone": 120, "organ": 560, "lesion": 1100, "noise": 15}


def _base(patient: tuple[str, str, str, str], study: Dataset, sop_class: str, modality: str) -> Dataset:
    name, pid, birth, sex = patient
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(PREFIX)
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    for keyword in ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName"):
        setattr(ds, keyword, getattr(study, keyword))
    ds.Modality = modality
    ds.Manufacturer = "pacsdash demo"
    ds.InstitutionName = "pacsdash teaching unit"
    return ds


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def _study(index: int, description: str, date: dt.date) -> Dataset:
    study = Dataset()
    study.StudyInstanceUID = generate_uid(PREFIX)
    study.StudyDate = date.strftime("%Y%m%d")
    study.StudyTime = f"{8 + index % 9:02d}{(index * 7) % 60:02d}00"
    study.AccessionNumber = f"ACC{20260000 + index:08d}"
    study.StudyID = str(index + 1)
    study.StudyDescription = description
    study.ReferringPhysicianName = "HOUSE^GREGORY"
    return study


def volume_series(
    patient: tuple[str, str, str, str],
    study: Dataset,
    modality: str,
    slices: int,
    size: int,
    series_number: int,
    description: str,
) -> Iterator[Dataset]:
    """A CT or MR series of ``slices`` axial slices of ``size`` x ``size``."""
    series_uid = generate_uid(PREFIX)
    frame_of_reference = generate_uid(PREFIX)
    phantom = Phantom(size, size)
    spacing = 5.0 if modality == "CT" else 4.0
    for k in range(slices):
        z = k / max(slices - 1, 1)
        ds = _base(patient, study, CTImageStorage if modality == "CT" else MRImageStorage, modality)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.SeriesDate, ds.SeriesTime = study.StudyDate, study.StudyTime
        ds.BodyPartExamined = "CHEST" if modality == "CT" else "ABDOMEN"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImagePositionPatient = [-size * 0.35, -size * 0.35, -k * spacing]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = -k * spacing
        ds.SliceThickness = spacing
        ds.PixelSpacing = [0.7, 0.7]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 12 if modality == "CT" else 16
        ds.HighBit = ds.BitsStored - 1
        image = phantom.slice(z, CT_TISSUE if modality == "CT" else MR_TISSUE)
        if modality == "CT":
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.KVP = 120
            ds.WindowCenter = [40, -600]
            ds.WindowWidth = [400, 1500]
            ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
            stored = np.clip(image + 1024, 0, 4095).astype(np.uint16)
        else:
            ds.PixelRepresentation = 0
            ds.RepetitionTime = 500
            ds.EchoTime = 15
            ds.MagneticFieldStrength = 1.5
            ds.WindowCenter = 600
            ds.WindowWidth = 1200
            stored = np.clip(image, 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        _file_meta(ds)
        yield ds


def _rgb_capture(patient: tuple[str, str, str, str], study: Dataset, sop_class: str, number: int,
                 description: str, size: int) -> Dataset:
    """A one-instance series of 8-bit RGB secondary capture."""
    ds = _base(patient, study, sop_class, "OT")
    ds.SeriesInstanceUID = generate_uid(PREFIX)
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def multiframe(patient: tuple[str, str, str, str], study: Dataset, frames: int = 12, size: int = 128) -> Dataset:
    """A multi-frame RGB instance: a rotating colour wheel, ``frames`` frames."""
    ds = _rgb_capture(patient, study, MultiFrameTrueColorSecondaryCaptureImageStorage, 90, "Cine colour wheel", size)
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 100
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    angle = np.arctan2(y, x)
    radius = np.hypot(x, y)
    out = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for f in range(frames):
        a = angle + 2 * np.pi * f / frames
        for c in range(3):
            out[f, ..., c] = (127.5 * (1 + np.cos(a - c * 2 * np.pi / 3)) * (radius <= 1)).astype(np.uint8)
    ds.PixelData = out.tobytes()
    _file_meta(ds)
    return ds


def colour_capture(patient: tuple[str, str, str, str], study: Dataset, size: int = 192) -> Dataset:
    """A single-frame RGB secondary capture (a gradient with a colour bar)."""
    ds = _rgb_capture(patient, study, SecondaryCaptureImageStorage, 91, "Colour secondary capture", size)
    ds.ConversionType = "WSD"
    y, x = np.mgrid[0:1 : size * 1j, 0:1 : size * 1j]
    rgb = np.stack([x, y, 1 - x], axis=-1)
    rgb[: size // 8] = [[1, 0, 0]] * size
    ds.PixelData = (rgb * 255).astype(np.uint8).tobytes()
    _file_meta(ds)
    return ds


def demo_datasets(ct_slices: int = 40, mr_slices: int = 20, size: int = 256) -> Iterator[Dataset]:
    """Every data set of the demo archive."""
    today = dt.date(2026, 11, 2)
    index = 0
    for p, patient in enumerate(PATIENTS):
        for visit in range(2 if p % 2 == 0 else 1):
            date = today - dt.timedelta(days=40 * p + 200 * visit)
            if (p + visit) % 2 == 0:
                study = _study(index, "CT CHEST WITH CONTRAST", date)
                yield from volume_series(patient, study, "CT", ct_slices, size, 2, "Axial 5mm soft tissue")
            else:
                study = _study(index, "MR ABDOMEN", date)
                yield from volume_series(patient, study, "MR", mr_slices, size, 3, "T1 axial")
                yield from volume_series(patient, study, "MR", mr_slices, size, 4, "T2 axial")
            index += 1
    study = _study(index, "Teaching: colour and cine", today)
    yield multiframe(PATIENTS[0], study)
    yield colour_capture(PATIENTS[0], study)


def write_demo(folder: Path, **kwargs: int) -> list[Path]:
    """Write the demo data sets as Part 10 files under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in demo_datasets(**kwargs):
        path = folder / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
