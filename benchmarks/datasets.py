"""Input files, generated once and cached under ``benchmarks/work/``.

Every set is split into four shard folders (``part0`` .. ``part3``) so that four
``storescu`` processes can each send a quarter; one process sends all four.
A set is complete once its ``complete.json`` exists.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from pacsdash.demo.generate import PATIENTS, PREFIX, _study, volume_series

from benchmarks.common import WORK_DIR

SHARDS = 4
SOP_CLASS = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "CR": ComputedRadiographyImageStorage,
    "US": UltrasoundImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "PT": PositronEmissionTomographyImageStorage,
}
#: Modalities of find-index study ``s``: entry ``s % 10``; "PT+CT" is two series.
STUDY_MODALITIES = ["CT", "MR", "CR", "US", "DX", "MR", "CR", "US", "DX", "PT+CT"]
SURNAMES = [
    "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "JOHNSON", "ROBERTS", "WALKER",
    "WRIGHT", "ROBINSON", "THOMPSON", "WHITE", "HUGHES", "EDWARDS", "GREEN", "HALL", "WOOD", "HARRIS",
    "LEWIS", "MARTIN", "JACKSON", "CLARKE", "CLARK", "TURNER", "HILL", "SCOTT", "COOPER", "MORRIS",
    "WARD", "MOORE", "KING", "WATSON", "BAKER", "HARRISON", "MORGAN", "PATEL", "YOUNG", "ALLEN",
]
GIVEN = ["ANNA", "BEN", "CARLA", "DAVID", "EVA", "FRANK", "GRETA", "HUGO", "IRIS", "JONAS", "KARIN", "LEO"]
SMITH_NAMES = ["SMITH^ANNA", "SMITHERS^PAUL", "GOLDSMITH^RUTH"]
FIRST_DATE = dt.date(2015, 1, 1)
DATE_SPREAD_DAYS = 2000


@dataclass(frozen=True)
class FileSet:
    """A cached set of Part 10 files in four shard folders."""

    folder: Path
    count: int
    description: str

    @property
    def shards(self) -> list[Path]:
        """The four shard folders (each holds about a quarter of the files)."""
        return [self.folder / f"part{k}" for k in range(SHARDS)]

    def files(self) -> list[Path]:
        """Every file of the set, shard by shard."""
        return [p for shard in self.shards for p in sorted(shard.glob("*.dcm"))]

    def warm(self) -> None:
        """Read every file once so that timed runs start from the page cache."""
        for path in self.files():
            path.read_bytes()


def _cached(folder: Path, count: int, description: str, write: Callable[[Path], int]) -> FileSet:
    """Return the set in ``folder``, writing it first unless complete."""
    marker = folder / "complete.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("count") == count:
                return FileSet(folder, count, description)
        except ValueError:
            pass
    if folder.exists():
        shutil.rmtree(folder)
    for k in range(SHARDS):
        (folder / f"part{k}").mkdir(parents=True)
    started = time.monotonic()
    print(f"generating {description} in {folder} ...", flush=True)
    written = write(folder)
    if written != count:
        raise RuntimeError(f"generated {written} files, expected {count}")
    marker.write_text(json.dumps({"count": count, "description": description}))
    print(f"  {count} files in {time.monotonic() - started:.1f} s", flush=True)
    return FileSet(folder, count, description)


def _shard_path(folder: Path, index: int, total: int) -> Path:
    """Where file ``index`` of ``total`` goes: contiguous quarters, one per shard."""
    return folder / f"part{index * SHARDS // total}" / f"{index:06d}.dcm"


def _save_all(folder: Path, datasets: Iterable[Dataset], total: int) -> int:
    written = 0
    for index, ds in enumerate(datasets):
        ds.save_as(_shard_path(folder, index, total), enforce_file_format=True)
        written += 1
    return written


def ct_volume(count: int, size: int = 512) -> FileSet:
    """``count`` CT slices of ``size`` x ``size``, 16 bits, one series (the project generator)."""

    def write(folder: Path) -> int:
        study = _study(0, "BENCH CT", dt.date(2026, 1, 1))
        return _save_all(folder, volume_series(PATIENTS[0], study, "CT", count, size, 1, "bench"), count)

    return _cached(WORK_DIR / f"ct{size}-{count}", count, f"{count} CT instances {size}x{size} 16-bit", write)


def many_studies(count: int, size: int = 128, per_study: int = 100) -> FileSet:
    """``count`` CT slices of ``size`` x ``size`` in studies of ``per_study`` (memory run)."""

    def datasets() -> Iterable[Dataset]:
        studies = -(-count // per_study)
        for s in range(studies):
            study = _study(s, "BENCH MEMORY", dt.date(2026, 1, 1) + dt.timedelta(days=s))
            slices = min(per_study, count - s * per_study)
            yield from volume_series(PATIENTS[s % len(PATIENTS)], study, "CT", slices, size, 1, "memory")

    def write(folder: Path) -> int:
        return _save_all(folder, datasets(), count)

    return _cached(
        WORK_DIR / f"ct{size}-{count}-by{per_study}", count, f"{count} CT instances {size}x{size} in studies of {per_study}", write
    )


@dataclass(frozen=True)
class FindIndexPlan:
    """Shape of the C-FIND index: who the patients are and what each study holds."""

    studies: int
    per_study: int
    patients: int

    @property
    def count(self) -> int:
        return self.studies * self.per_study

    def patient(self, p: int) -> tuple[str, str, str, str]:
        """(name, id, birth date, sex) of patient ``p``; three names contain SMITH."""
        smiths = [round(self.patients * k / 4) + 1 for k in range(3)]
        if p in smiths:
            name = SMITH_NAMES[smiths.index(p)]
        else:
            name = f"{SURNAMES[p % len(SURNAMES)]}^{GIVEN[(p // len(SURNAMES)) % len(GIVEN)]}"
        birth = (dt.date(1940, 1, 1) + dt.timedelta(days=(p * 3571) % 25000)).strftime("%Y%m%d")
        return name, f"BP{p:05d}", birth, "F" if p % 2 else "M"

    def study_date(self, s: int) -> dt.date:
        """Study dates are scattered over ~5.5 years, about one a day for 2,000 studies."""
        return FIRST_DATE + dt.timedelta(days=(s * 7919) % DATE_SPREAD_DAYS)

    def modalities(self, s: int) -> list[str]:
        """One modality per series of study ``s``."""
        return STUDY_MODALITIES[s % len(STUDY_MODALITIES)].split("+")


def _instance(patient: tuple[str, str, str, str], study: Dataset, modality: str, series_uid: str, number: int,
              k: int, size: int) -> Dataset:
    name, pid, birth, sex = patient
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = generate_uid(PREFIX)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, pid, birth, sex
    for keyword in ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
                    "ReferringPhysicianName"):
        setattr(ds, keyword, getattr(study, keyword))
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = f"{modality} series {number}"
    ds.InstanceNumber = k + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(size * size, dtype=np.uint16) % 4096).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def find_index(plan: FindIndexPlan, size: int = 64) -> FileSet:
    """Small instances (``size`` x ``size``) in ``plan.studies`` studies for C-FIND."""

    def datasets() -> Iterable[Dataset]:
        for s in range(plan.studies):
            study = _study(s, f"BENCH STUDY {s % 37}", plan.study_date(s))
            patient = plan.patient(s % plan.patients)
            modalities = plan.modalities(s)
            for n, modality in enumerate(modalities):
                series_uid = generate_uid(PREFIX)
                share = plan.per_study // len(modalities) + (1 if n < plan.per_study % len(modalities) else 0)
                for k in range(share):
                    yield _instance(patient, study, modality, series_uid, n + 1, k, size)

    def write(folder: Path) -> int:
        return _save_all(folder, datasets(), plan.count)

    name = f"find-{plan.studies}x{plan.per_study}-p{plan.patients}-{size}"
    return _cached(WORK_DIR / name, plan.count, f"{plan.count} instances {size}x{size} in {plan.studies} studies, "
                   f"{plan.patients} patients", write)
