"""Fixtures for the viewer: an archive with a generated CT series and a cine series."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsdash.archive import Archive
from pacsdash.demo.generate import PATIENTS, _study, multiframe, volume_series
from tests.factories import make_instance

CT_SLICES = 20
CT_SIZE = 128
CINE_FRAMES = 12


@dataclass
class ViewerStudy:
    """An archive holding one study: an SR (series 1), a CT series (2) and a multi-frame RGB series (90)."""

    archive: Archive
    study_uid: str
    ct_series_uid: str
    cine_series_uid: str
    ct: list[Dataset]
    cine: Dataset


def make_viewer_study(folder: Path, patient_name: str | None = None) -> ViewerStudy:
    folder.mkdir(parents=True, exist_ok=True)
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    patient = PATIENTS[0] if patient_name is None else (patient_name, *PATIENTS[0][1:])
    study = _study(0, "CT CHEST", dt.date(2026, 1, 1))
    ct = list(volume_series(patient, study, "CT", CT_SLICES, CT_SIZE, 2, "Axial 5mm"))
    cine = multiframe(patient, study, frames=CINE_FRAMES, size=64)
    for ds in [*ct, cine]:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        archive.store_file(path)
    report = make_instance(  # a series without images, numbered first
        StudyInstanceUID=study.StudyInstanceUID, PatientID=PATIENTS[0][1], PatientName=patient[0], Modality="SR",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11", SeriesNumber=1, SeriesDescription="Report", Rows=None,
        Columns=None, SamplesPerPixel=None, PhotometricInterpretation=None, BitsAllocated=None, BitsStored=None,
        HighBit=None, PixelRepresentation=None, PixelData=None,
    )
    archive.store_bytes(report)
    return ViewerStudy(archive, study.StudyInstanceUID, ct[0].SeriesInstanceUID, cine.SeriesInstanceUID, ct, cine)


@pytest.fixture
def viewer_study(tmp_path: Path):
    study = make_viewer_study(tmp_path / "home")
    yield study
    study.archive.close()
