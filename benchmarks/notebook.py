"""The notebook phase: ``pacsdash.client`` as a notebook uses it, with targets.

(a) Volume: ``Client.volume(study, series)`` of a CT series of
    ``plan.notebook_slices`` 512x512 slices (the series' metadata and its
    Series Pixel Data, PS3.18 10.4.1.1.6, requested at once; stacked and
    rescaled; the pydicom headers built when first read) beside the plain
    way a notebook would do it without pacsdash's client: dicomweb-client's
    ``DICOMwebClient.retrieve_series`` (the whole series as multipart DICOM),
    then pydicom: slices sorted by ImagePositionPatient along the slice normal,
    ``pixel_array * RescaleSlope + RescaleIntercept`` stacked as float32 (see
    :func:`plain_volume`). Same pacsdash server, same session set-up; both
    arrays must be equal. Target: ``volume()`` in at most half the plain way's
    time. Orthanc is not needed: the reference is the plain way.
(b) Cohort: ``Client.cohort("series", Modality="CT", SliceThickness="<=1",
    ConvolutionKernel="B30f")`` on generated indexes (no DICOM files; written
    straight into pacsdash's DuckDB schema, as the dashboard phase does) where
    every instance carries a realistic attribute JSON (:func:`ct_attributes`:
    47 tags for a CT slice, keyed and written exactly as pacsdash's parser
    stores them, checked against it: :func:`check_against_parser`;
    SliceThickness and ConvolutionKernel are in that JSON, not in a column),
    timed end to end over HTTP (QIDO-RS, DICOM JSON, the DataFrame). Target
    < 1 s. To say where the time goes, the same page queries are first timed
    alone in pacsdash's ``DuckDBIndex.find`` on the server's copy of the index.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import WORK_DIR, BenchError
from benchmarks.cpu import ForeignLoad
from benchmarks.guard import Guard, say
from benchmarks.report import Results
from benchmarks.servers import WEB_PASSWORD, WEB_USER, PacsdashServer

ONLY = ("pacsdash",)
#: volume() time over the plain way's: at most this.
TARGET_RATIO = 0.5
#: cohort() end to end: less than this (ms).
TARGET_COHORT_MS = 1000.0
VOLUME_WARMUP, VOLUME_REPS = 1, 3
COHORT_WARMUP, COHORT_REPS = 1, 5
#: Times the SQL alone is run (after one untimed run) for the breakdown.
SQL_REPS = 3
#: The cohort the issue asks for.
COHORT_CONDITIONS = {"Modality": "CT", "SliceThickness": "<=1", "ConvolutionKernel": "B30f"}
PARTS = ("volume", "cohort")
#: Bump when the generated attribute JSON changes (the cached indexes are then made again).
GENERATOR_VERSION = 1

# -- the generated cohort index ---------------------------------------------------
UID_ROOT = "1.2.826.0.1.3680043.10.998"
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
#: Reconstructions of a CT acquisition: slice thickness (mm, as written in the file) and kernel.
THICKNESSES = ("0.625", "1", "1.25", "2.5", "5")
KERNELS = ("B30f", "B45f", "B70f")
KVPS = ("80", "100", "120", "140")
#: Window (centre, width) a scanner writes for each kernel: soft tissue, general, lung/bone.
WINDOWS = {"B30f": ("40", "400"), "B45f": ("60", "360"), "B70f": ("-600", "1500")}
FIRST_DATE = dt.date(2016, 1, 1)


@dataclass(frozen=True)
class CohortIndexPlan:
    """``instances`` instances in series of ``per_series``, ``series_per_study`` series a study.

    Series ``s`` is an MR series when ``s % 7 == 3`` (no kernel: it can only
    fail the cohort), otherwise a CT reconstruction of thickness
    ``THICKNESSES[s % 5]`` with kernel ``KERNELS[(s // 5) % 3]``: every
    thickness meets every kernel.
    """

    instances: int
    per_series: int = 100
    series_per_study: int = 4

    @property
    def series(self) -> int:
        return -(-self.instances // self.per_series)

    @property
    def studies(self) -> int:
        return -(-self.series // self.series_per_study)

    @property
    def patients(self) -> int:
        return max(1, self.studies // 2)

    def size_of(self, s: int) -> int:
        """Instances of series ``s`` (the last one may be short)."""
        return min(self.per_series, self.instances - s * self.per_series)

    @staticmethod
    def modality(s: int) -> str:
        return "MR" if s % 7 == 3 else "CT"

    @staticmethod
    def thickness(s: int) -> str:
        return THICKNESSES[s % len(THICKNESSES)]

    @staticmethod
    def kernel(s: int) -> str:
        return KERNELS[(s // len(THICKNESSES)) % len(KERNELS)]

    def study_date(self, study: int) -> dt.date:
        return FIRST_DATE + dt.timedelta(days=(study * 7919) % 3000)

    def series_uid(self, s: int) -> str:
        return f"{UID_ROOT}.2.{s}"

    def matching(self) -> list[str]:
        """SeriesInstanceUIDs meeting :data:`COHORT_CONDITIONS`, from the generator (not from the index)."""
        return [self.series_uid(s) for s in range(self.series) if self.modality(s) == "CT"
                and float(self.thickness(s)) <= 1 and self.kernel(s) == "B30f"]

    def expected(self) -> int:
        return len(self.matching())


def _milli(text: str) -> int:
    """A thickness in thousandths of a mm (exact, so Python and SQL write positions alike)."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


#: Slice position of instance 0 in thousandths of a mm (positions then go down by the thickness).
Z_START = 150_000


def _position_text(s_thickness: str, k: int) -> str:
    return f"{(Z_START - k * _milli(s_thickness)) / 1000:.3f}"


def _instance_values(plan: CohortIndexPlan, s: int, k: int) -> dict[str, str]:
    """The attribute values that change from one instance of series ``s`` to the next (reference of the SQL)."""
    current = 150 + (k * 37) % 120
    z = _position_text(plan.thickness(s), k)
    return {"InstanceCreationTime": f"0830{k % 60:02d}.{k:06d}", "XRayTubeCurrent": str(current),
            "Exposure": str(current // 2), "z": z}


#: The same values in DuckDB SQL, over the columns ``k`` (0-based instance) and ``th_milli`` of the series.
_SQL_VALUES = {
    "InstanceCreationTime": ("'0830' || lpad(CAST(k % 60 AS VARCHAR), 2, '0') || '.' || "
                             "lpad(CAST(k AS VARCHAR), 6, '0')"),
    "XRayTubeCurrent": "CAST(150 + (k * 37) % 120 AS VARCHAR)",
    "Exposure": "CAST((150 + (k * 37) % 120) // 2 AS VARCHAR)",
    "z": f"printf('%.3f', ({Z_START} - k * th_milli) / 1000.0)",
}
#: Marks in a series' JSON template where an instance's values go (never in real text).
_SLOT = "@@{}@@"


def ct_attributes(plan: CohortIndexPlan, s: int, k: int) -> dict[str, str]:
    """Keyword -> DICOM text of the non-column attributes of instance ``k`` of series ``s``.

    What a CT scanner writes beside the attributes pacsdash keeps as columns
    (ImageType, Rows, Columns, BitsAllocated... are columns, so not here); MR
    series get an MR set without a kernel.
    """
    v = _instance_values(plan, s, k)
    study = s // plan.series_per_study
    date = plan.study_date(study).strftime("%Y%m%d")
    fov = "350" if s % 2 else "400"
    half = f"{-int(fov) / 2:.3f}"
    spacing = f"{int(fov) / 512:.6f}".rstrip("0")
    common = {
        "SpecificCharacterSet": "ISO_IR 100", "InstanceCreationDate": date,
        "InstanceCreationTime": v["InstanceCreationTime"], "InstitutionalDepartmentName": "Radiology",
        "ManufacturerModelName": "SOMATOM Definition AS+" if plan.modality(s) == "CT" else "MAGNETOM Aera",
        "SliceThickness": plan.thickness(s), "DeviceSerialNumber": str(60000 + study % 40),
        "SoftwareVersions": "syngo CT VA48A" if plan.modality(s) == "CT" else "syngo MR E11",
        "PatientPosition": "HFS", "AcquisitionNumber": "2",
        "ImagePositionPatient": f"{half}\\{half}\\{v['z']}", "ImageOrientationPatient": "1\\0\\0\\0\\1\\0",
        "FrameOfReferenceUID": f"{UID_ROOT}.4.{study}", "SliceLocation": v["z"], "SamplesPerPixel": "1",
        "PixelSpacing": f"{spacing}\\{spacing}", "BitsStored": "12", "HighBit": "11", "PixelRepresentation": "0",
        "LossyImageCompression": "00",
    }
    if plan.modality(s) == "MR":
        return {**common, "ScanningSequence": "SE", "SequenceVariant": "SK\\SP", "ScanOptions": "FS",
                "MRAcquisitionType": "2D", "RepetitionTime": "500", "EchoTime": "15", "NumberOfAverages": "1",
                "ImagingFrequency": "63.6", "MagneticFieldStrength": "1.5", "EchoTrainLength": "1",
                "FlipAngle": "90", "WindowCenter": "600", "WindowWidth": "1200"}
    kernel = plan.kernel(s)
    center, width = WINDOWS[kernel]
    return {
        **common,
        "ScanOptions": "HELICAL MODE", "KVP": KVPS[s % len(KVPS)], "DataCollectionDiameter": "500",
        "ReconstructionDiameter": fov, "DistanceSourceToDetector": "1085.6", "DistanceSourceToPatient": "595",
        "GantryDetectorTilt": "0", "TableHeight": "155", "RotationDirection": "CW", "ExposureTime": "500",
        "XRayTubeCurrent": v["XRayTubeCurrent"], "Exposure": v["Exposure"], "FilterType": "FLAT",
        "GeneratorPower": "36", "FocalSpots": "1.2", "ConvolutionKernel": kernel, "SingleCollimationWidth": "0.6",
        "TotalCollimationWidth": "38.4", "TableSpeed": "46.0", "TableFeedPerRotation": "23.0",
        "SpiralPitchFactor": "0.6", "WindowCenter": center, "WindowWidth": width, "RescaleIntercept": "-1024",
        "RescaleSlope": "1", "RescaleType": "HU", "WindowCenterWidthExplanation": "WINDOW1",
    }


def attribute_json(attributes: dict[str, str]) -> str:
    """The ``attributes`` column as pacsdash writes it (see pacsdash.archive.parsing and index):
    8-hex-digit tags in file order (ascending), DICOM text, ``json.dumps(..., ensure_ascii=False)``."""
    from pydicom.datadict import tag_for_keyword

    by_tag = sorted((tag_for_keyword(keyword), text) for keyword, text in attributes.items())
    return json.dumps({f"{tag:08X}": text for tag, text in by_tag}, ensure_ascii=False)


def part10(plan: CohortIndexPlan, s: int, k: int) -> bytes:
    """Instance ``k`` of series ``s`` as a Part 10 file (no pixel data): what the generated row stands for."""
    import io

    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    items: dict[str, Any] = {
        **ct_attributes(plan, s, k), "SOPClassUID": CT_CLASS if plan.modality(s) == "CT" else MR_CLASS,
        "SOPInstanceUID": f"{plan.series_uid(s)}.{k + 1}",
        "StudyInstanceUID": f"{UID_ROOT}.1.{s // plan.series_per_study}",
        "SeriesInstanceUID": plan.series_uid(s), "Modality": plan.modality(s), "InstanceNumber": str(k + 1),
        "ImageType": "ORIGINAL\\PRIMARY\\AXIAL", "Rows": 512, "Columns": 512, "BitsAllocated": 16,
        "PhotometricInterpretation": "MONOCHROME2",
    }
    ds = Dataset()
    for keyword in sorted(items, key=tag_for_keyword):
        value, vr = items[keyword], dictionary_VR(tag_for_keyword(keyword))
        if vr in ("FD", "FL"):
            value = float(value)
        elif vr in ("US", "SS", "UL", "SL"):
            value = int(value)
        elif isinstance(value, str) and "\\" in value:
            value = value.split("\\")
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def check_against_parser(plan: CohortIndexPlan) -> None:
    """Raise unless pacsdash's own parser stores a CT and an MR instance's attributes exactly as generated
    (same tags kept out as columns, same text, same JSON)."""
    from pacsdash.archive.parsing import parse_instance

    for s in {0, min(3, plan.series - 1)}:
        for k in {0, plan.size_of(s) - 1}:
            stored = parse_instance(part10(plan, s, k)).attributes
            generated = attribute_json(ct_attributes(plan, s, k))
            if json.dumps(stored, ensure_ascii=False) != generated:
                wanted = json.loads(generated)
                differ = sorted(t for t in set(stored) | set(wanted) if stored.get(t) != wanted.get(t))
                raise BenchError(f"the generated attribute JSON of series {s} differs from what pacsdash's parser "
                                 f"stores, at {differ[:8]} (pacsdash changed its columns or text?)")


def json_template(plan: CohortIndexPlan, s: int) -> list[str]:
    """Series ``s``'s attribute JSON cut where each instance's own values go: text, value name, text, ..."""
    slotted = dict(ct_attributes(plan, s, 0))
    slotted["InstanceCreationTime"] = _SLOT.format("InstanceCreationTime")
    if "XRayTubeCurrent" in slotted:
        slotted["XRayTubeCurrent"] = _SLOT.format("XRayTubeCurrent")
        slotted["Exposure"] = _SLOT.format("Exposure")
    half = slotted["ImagePositionPatient"].rsplit("\\", 1)[0]
    slotted["ImagePositionPatient"] = half + "\\" + _SLOT.format("z")
    slotted["SliceLocation"] = _SLOT.format("z")
    text = attribute_json(slotted)
    pieces = text.split("@@")
    if len(pieces) % 2 != 1:  # pragma: no cover - a value containing "@@"
        raise ValueError("unbalanced value marks in the JSON template")
    return pieces  # even positions: literal JSON text; odd positions: names of _SQL_VALUES


def _frames(plan: CohortIndexPlan) -> tuple[Any, Any, Any, int]:
    """pandas frames of patients, studies and series, and the most value slots of a series' JSON template.

    Each series row carries its template: literal pieces ``p0``..``pN`` and the
    names ``v0``..``vN-1`` of the instance values between them (None past its last).
    """
    import pandas as pd

    from benchmarks.datasets import GIVEN, SURNAMES

    patients = []
    for p in range(plan.patients):
        name = f"{SURNAMES[p % len(SURNAMES)]}^{GIVEN[(p // len(SURNAMES)) % len(GIVEN)]}"
        birth = (dt.date(1935, 1, 1) + dt.timedelta(days=(p * 3571) % 28000)).strftime("%Y%m%d")
        patients.append({"PatientID": f"NB{p:06d}", "PatientName": name, "PatientBirthDate": birth,
                         "PatientSex": "F" if p % 2 else "M"})
    studies = []
    for st in range(plan.studies):
        patient = patients[st % plan.patients]
        studies.append({
            "StudyInstanceUID": f"{UID_ROOT}.1.{st}", "StudyDate": plan.study_date(st).strftime("%Y%m%d"),
            "StudyTime": f"{8 + st % 10:02d}{(st * 7) % 60:02d}00", "AccessionNumber": f"NB{st:08d}",
            "StudyID": str(st % 100000), "StudyDescription": "CT THORAX" if st % 3 else "CT ABDOMEN",
            "ReferringPhysicianName": "HOUSE^GREGORY", "InstitutionName": "pacsdash teaching unit", **patient,
        })
    series_rows: list[dict[str, Any]] = []
    templates = [json_template(plan, s) for s in range(plan.series)]
    slots = max(len(t) // 2 for t in templates)
    for s, pieces in enumerate(templates):
        st = s // plan.series_per_study
        modality = plan.modality(s)
        description = (f"{plan.thickness(s)} mm {plan.kernel(s)}" if modality == "CT"
                       else f"T1 SE {plan.thickness(s)} mm")
        texts, names = pieces[0::2], pieces[1::2]
        series_rows.append({
            "SeriesInstanceUID": plan.series_uid(s), "Modality": modality,
            "SeriesNumber": str(s % plan.series_per_study + 1), "SeriesDescription": description,
            "SeriesDate": studies[st]["StudyDate"], "SeriesTime": studies[st]["StudyTime"],
            "BodyPartExamined": "CHEST", "ProtocolName": "Thorax routine" if modality == "CT" else "Thorax MR",
            "Manufacturer": "SIEMENS", "StudyInstanceUID": studies[st]["StudyInstanceUID"],
            "SOPClassUID": CT_CLASS if modality == "CT" else MR_CLASS, "n": plan.size_of(s),
            "th_milli": _milli(plan.thickness(s)),
            **{f"p{n}": texts[n] if n < len(texts) else "" for n in range(slots + 1)},
            **{f"v{n}": names[n] if n < len(names) else None for n in range(slots)},
        })
    return pd.DataFrame(patients), pd.DataFrame(studies), pd.DataFrame(series_rows), slots


def write_index(path: Path, plan: CohortIndexPlan) -> None:
    """Write the generated index into ``path`` in pacsdash's own schema, left closed cleanly."""
    import duckdb

    from pacsdash.archive import summaries
    from pacsdash.archive.index import DuckDBIndex

    DuckDBIndex(path).close()  # pacsdash's own schema
    patients, studies, series, slots = _frames(plan)
    json_sql = instance_json_sql(slots)
    con = duckdb.connect(str(path))
    try:
        con.register("gen_patients", patients)
        con.register("gen_studies", studies)
        con.register("gen_series", series)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO patients BY NAME SELECT *, now() AS received_at FROM gen_patients")
        con.execute("INSERT INTO studies BY NAME SELECT *, now() AS received_at FROM gen_studies")
        con.execute('INSERT INTO series BY NAME SELECT "SeriesInstanceUID", "Modality", "SeriesNumber", '
                    '"SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined", "ProtocolName", '
                    '"Manufacturer", "StudyInstanceUID", now() AS received_at FROM gen_series')
        con.execute(
            'INSERT INTO instances BY NAME SELECT "SeriesInstanceUID" || \'.\' || CAST(k + 1 AS VARCHAR) AS '
            '"SOPInstanceUID", "SOPClassUID", CAST(k + 1 AS VARCHAR) AS "InstanceNumber", '
            '"SeriesDate" AS "ContentDate", "SeriesTime" AS "ContentTime", "SeriesDate" AS "AcquisitionDate", '
            '"SeriesTime" AS "AcquisitionTime", \'ORIGINAL\\PRIMARY\\AXIAL\' AS "ImageType", \'512\' AS "Rows", '
            '\'512\' AS "Columns", \'16\' AS "BitsAllocated", \'MONOCHROME2\' AS "PhotometricInterpretation", '
            '"SeriesInstanceUID", "StudyInstanceUID", \'1.2.840.10008.1.2.1\' AS "TransferSyntaxUID", '
            '\'generated/\' || "SeriesInstanceUID" || \'.\' || CAST(k + 1 AS VARCHAR) AS file, 526000 AS size, '
            f"'benchmark' AS origin, now() AS received_at, {json_sql} AS attributes "
            "FROM (SELECT *, unnest(range(n)) AS k FROM gen_series)")
        summaries.refresh(con, None, None)  # counts and ModalitiesInStudy, as the writer keeps them
        # A clean stop: the server must not "reconcile" (the generated rows have no files).
        con.execute("CREATE TABLE IF NOT EXISTS archive_state (name VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT OR REPLACE INTO archive_state VALUES ('state', 'closed')")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def instance_json_sql(slots: int) -> str:
    """SQL writing an instance's attribute JSON from its series' template (``p0``, ``v0``, ``p1``, ...) and its
    own values (over ``k`` and ``th_milli``); a slot a series does not have (``vN`` NULL) writes nothing."""
    parts = ["p0"]
    for n in range(slots):
        cases = " ".join(f"WHEN '{name}' THEN {sql}" for name, sql in _SQL_VALUES.items())
        parts.append(f"coalesce(CASE v{n} {cases} END, '')")
        parts.append(f"p{n + 1}")
    return " || ".join(parts)


def cohort_index(plan: CohortIndexPlan) -> tuple[Path, dict[str, Any]]:
    """The index file of ``plan``, generated once into ``benchmarks/work/`` (again when pacsdash's schema or
    this generator changes); and how it was made."""
    from benchmarks.dashboard import _schema_digest

    folder = WORK_DIR / f"cohort-index-{plan.instances}x{plan.per_series}"
    probe = WORK_DIR / "tmp" / f"schema-probe-{os.getpid()}.duckdb"
    probe.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = _schema_digest(probe)
    finally:
        for leftover in probe.parent.glob(probe.name + "*"):
            leftover.unlink()
    check_against_parser(plan)
    marker, path = folder / "complete.json", folder / "index.duckdb"
    try:
        info = json.loads(marker.read_text())
        if info.get("schema") == digest and info.get("generator") == GENERATOR_VERSION:
            return path, info
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    say(f"generating a cohort index of {plan.instances:,} instances ({plan.series:,} series) in {folder} ...")
    started = time.monotonic()
    write_index(path, plan)
    info = {"instances": plan.instances, "series": plan.series, "studies": plan.studies, "schema": digest,
            "generator": GENERATOR_VERSION, "seconds": round(time.monotonic() - started, 1),
            "file_mib": round(path.stat().st_size / 2**20, 1)}
    marker.write_text(json.dumps(info))
    say(f"  {info['seconds']} s, {info['file_mib']:.0f} MiB")
    return path, info


# -- (a) volume ---------------------------------------------------------------------
def plain_volume(datasets: list[Any]) -> Any:
    """The plain way: slices sorted by ImagePositionPatient along the normal of ImageOrientationPatient, then
    ``pixel_array * RescaleSlope + RescaleIntercept`` stacked as float32 (z, y, x)."""
    import numpy as np

    if not datasets:
        raise BenchError("no slices to stack")
    orientation = [float(v) for v in datasets[0].ImageOrientationPatient]
    normal = np.cross(orientation[:3], orientation[3:])
    ordered = sorted(datasets, key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)))
    return np.stack([ds.pixel_array.astype(np.float32) * np.float32(float(ds.get("RescaleSlope", 1) or 1))
                     + np.float32(float(ds.get("RescaleIntercept", 0) or 0)) for ds in ordered])


def same_array(a: Any, b: Any) -> str:
    """'' when the two volumes are equal (shape, dtype, every voxel), else how they differ."""
    import numpy as np

    if a.shape != b.shape:
        return f"shapes differ: {a.shape} and {b.shape}"
    if a.dtype != b.dtype:
        return f"types differ: {a.dtype} and {b.dtype}"
    if not np.array_equal(a, b):
        return f"{int(np.count_nonzero(a != b))} voxels differ (largest difference {float(np.max(np.abs(a - b)))})"
    return ""


def measure_volume(base_url: str, study: str, series: str, slices: int, size: int, warmup: int = VOLUME_WARMUP,
                   reps: int = VOLUME_REPS) -> dict[str, Any]:
    """Time ``Client.volume`` and the plain way alternately (each warmed up first); check every result."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    from pacsdash.client import connect

    url = f"{base_url}/dicom-web"
    client = connect(url, user=WEB_USER, password=WEB_PASSWORD)
    session = requests.Session()
    session.auth = (WEB_USER, WEB_PASSWORD)
    web = DICOMwebClient(url, session=session)

    def plain() -> Any:
        return plain_volume(web.retrieve_series(study, series))

    def ours() -> Any:
        return client.volume(study, series).array

    reference = None
    runs: dict[str, list[float]] = {"client": [], "plain": []}
    for rep in range(warmup + reps):
        for name, fetch in (("plain", plain), ("client", ours)):
            started = time.perf_counter()
            array = fetch()
            seconds = time.perf_counter() - started
            if array.shape != (slices, size, size):
                raise BenchError(f"{name}: a volume of shape {array.shape}, ({slices}, {size}, {size}) expected")
            if reference is None:
                reference = array
            else:
                differs = same_array(array, reference)
                if differs:
                    raise BenchError(f"Client.volume() and the plain way disagree: {differs}")
            if rep >= warmup:
                runs[name].append(seconds)
    client_s, plain_s = statistics.median(runs["client"]), statistics.median(runs["plain"])
    try:
        breakdown = volume_breakdown(client, session, url, study, series, reps)
    except Exception as exc:  # it uses the client's internals, which may change: the rows stand without it
        breakdown = {"error": f"{type(exc).__name__}: {exc}"}
    return {"breakdown_ms": breakdown, "slices": slices, "shape": list(reference.shape), "dtype": str(reference.dtype),
            "client_ms": [round(t * 1000, 1) for t in runs["client"]],
            "plain_ms": [round(t * 1000, 1) for t in runs["plain"]],
            "client_median_ms": round(client_s * 1000, 1), "plain_median_ms": round(plain_s * 1000, 1),
            "ratio": round(client_s / plain_s, 3), "arrays_equal": True, "warmup": warmup}


def volume_breakdown(client: Any, session: Any, url: str, study: str, series: str, reps: int) -> dict[str, Any]:
    """Where ``Client.volume``'s time goes, stage by stage, each alone (medians of ``reps``, ms): the series
    metadata request (HTTP and JSON), the slices' geometry headers made from it, the Series Pixel Data request
    (HTTP and multipart), decoding and stacking; ``Client.volume`` then reads every header (``headers`` are built
    when first read: the cost a notebook pays if it reads them all); the old way's stages for comparison
    (``metadata()`` with every header built by ``Dataset.from_json``, one frames request a slice, 8 threads);
    and the plain way's whole-series request alone."""
    from pacsdash.client import client as module
    from pacsdash.client.headers import geometry_header, has_pixels
    from pacsdash.client.volume import stack

    def timed(function: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        value = function()
        return (time.perf_counter() - started) * 1000, value

    stages: dict[str, list[float]] = {}

    def add(name: str, ms: float) -> None:
        stages.setdefault(name, []).append(ms)

    for _ in range(reps):
        ms, items = timed(lambda: [i for i in client._metadata_items(study, series) if has_pixels(i)])
        add("metadata_request", ms)
        ms, geometry = timed(lambda: [geometry_header(i) for i in items])
        add("geometry_headers", ms)
        ms, found = timed(lambda: client._series_pixel_data(study, series))
        add("series_pixel_data_request", ms)
        raw = [found[str(h.SOPInstanceUID)] for h in geometry]
        ms, _ = timed(lambda: stack(geometry, [module._pixels(d, h, rescale=False, copy=False)
                                               for d, h in zip(raw, geometry)]))
        add("decode_and_stack", ms)
        ms, _ = timed(lambda: [h.PatientID for h in client.volume(study, series).headers])
        add("volume_then_every_header_read", ms)
        ms, headers = timed(lambda: [h for h in client.metadata(study, series) if "Rows" in h])
        add("old_metadata_with_every_header", ms)
        ms, _ = timed(lambda: client._first_frames(study, series, headers))
        add(f"old_frames_{len(headers)}_requests_{module.THREADS}_threads", ms)
        ms, _ = timed(lambda: session.get(f"{url}/studies/{study}/series/{series}", timeout=300, headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}).content)
        add("plain_series_request_alone", ms)
    return {name: round(statistics.median(values), 1) for name, values in stages.items()}


# -- (b) cohort ------------------------------------------------------------------------
def page_queries(expected: int) -> list[Any]:
    """The index queries the QIDO-RS series searches of ``Client.cohort`` run, one per page.

    As pacsdash.web.qido.build_query makes them from the client's request:
    the conditions as filters, the level's required attributes plus the
    conditions returned, ``limit`` = the client's page, ``offset`` moving on
    until a page comes back empty (a short page may be a server's cap).
    """
    from pacsdash.archive import Level, Query
    from pacsdash.client.client import PAGE
    from pacsdash.web.qido import REQUIRED

    returned = list(dict.fromkeys([*REQUIRED[Level.SERIES], *COHORT_CONDITIONS]))
    return [Query(Level.SERIES, dict(COHORT_CONDITIONS), returned, limit=PAGE, offset=offset, include_defaults=False)
            for offset in [*range(0, expected, PAGE), expected]]


def measure_index(index_path: Path, expected: int, reps: int = SQL_REPS) -> dict[str, Any]:
    """The cohort's page queries in pacsdash's own index code (``DuckDBIndex.find``), in this process, on the
    server's index file (before the server opens it): the SQL without HTTP."""
    from pacsdash.archive.index import DuckDBIndex

    queries = page_queries(expected)
    index = DuckDBIndex(index_path)
    try:
        per_page: list[list[float]] = [[] for _ in queries]
        for rep in range(1 + reps):
            found = 0
            for n, query in enumerate(queries):
                started = time.perf_counter()
                found += len(index.find(query))
                if rep:
                    per_page[n].append(time.perf_counter() - started)
            if found != expected:
                raise BenchError(f"the index query found {found} series, {expected} expected")
    finally:
        index.close()
    totals = [sum(page[r] for page in per_page) for r in range(reps)]
    return {"pages": len(queries), "median_ms": round(statistics.median(totals) * 1000, 1),
            "per_page_median_ms": [round(statistics.median(page) * 1000, 1) for page in per_page],
            "runs_ms": [round(t * 1000, 1) for t in totals]}


def check_cohort(frame: Any, plan: CohortIndexPlan) -> None:
    """The cohort DataFrame holds exactly the generator's matching series, all matched in the server."""
    wanted = set(plan.matching())
    got = set(frame["SeriesInstanceUID"]) if len(frame) else set()
    if got != wanted or len(frame) != len(wanted):
        raise BenchError(f"cohort(): {len(frame)} series ({len(got - wanted)} unexpected, {len(wanted - got)} "
                         f"missing); {len(wanted)} expected from the generator")
    if frame.attrs.get("filtered_here"):
        raise BenchError(f"cohort(): the client filtered {frame.attrs['filtered_here']} itself (pacsdash "
                         "should match every condition)")
    if len(frame) and not ((frame["SliceThickness"] <= 1).all() and (frame["ConvolutionKernel"] == "B30f").all()):
        raise BenchError("cohort(): a returned series does not show SliceThickness <= 1 and ConvolutionKernel B30f")


def measure_cohort(base_url: str, plan: CohortIndexPlan, warmup: int = COHORT_WARMUP,
                   reps: int = COHORT_REPS) -> dict[str, Any]:
    """Time ``Client.cohort`` end to end (HTTP, DICOM JSON, the DataFrame); check every answer."""
    from pacsdash.client import connect

    client = connect(f"{base_url}/dicom-web", user=WEB_USER, password=WEB_PASSWORD)
    runs: list[float] = []
    for rep in range(warmup + reps):
        started = time.perf_counter()
        frame = client.cohort("series", **COHORT_CONDITIONS)
        seconds = time.perf_counter() - started
        check_cohort(frame, plan)
        if rep >= warmup:
            runs.append(seconds)
    times = [t * 1000 for t in runs]
    return {"matches": plan.expected(), "median_ms": round(statistics.median(times), 1),
            "min_ms": round(min(times), 1), "max_ms": round(max(times), 1), "runs_ms": [round(t, 1) for t in times],
            "warmup": warmup}


# -- the phase ----------------------------------------------------------------------------
def volume_ids() -> list[str]:
    return ["notebook_volume", "notebook_volume_plain", "notebook_volume_ratio"]


def cohort_ids(size: int) -> list[str]:
    return [f"notebook_cohort_{size}", f"notebook_cohort_{size}_index"]


def ratio_note(ratio: float) -> str:
    return "meets target" if ratio <= TARGET_RATIO else "MISSES target"


def cohort_note(ms: float) -> str:
    return "meets target" if ms < TARGET_COHORT_MS else "MISSES target"


def _rows(results: Results, plan: Any) -> None:
    n = plan.notebook_slices
    if "volume" in plan.notebook_parts:
        results.metric("notebook_volume", f"Client.volume() of a {n}-slice CT 512x512 series (metadata and Series "
                       f"Pixel Data requested at once, stacked and rescaled), median of {VOLUME_REPS}; target at "
                       f"most {TARGET_RATIO:g}x the plain way's time", "ms", "lower", ONLY)
        results.metric("notebook_volume_plain", "The plain way, same series and server: dicomweb-client "
                       "retrieve_series (multipart DICOM) + pydicom sort along the normal and stack pixel_array * "
                       f"slope + intercept as float32, median of {VOLUME_REPS}", "ms", "lower", ONLY)
        results.metric("notebook_volume_ratio", f"Client.volume() time / the plain way's (target <= {TARGET_RATIO:g})",
                       "x", "lower", ONLY)
    if "cohort" in plan.notebook_parts:
        for size in plan.cohort_sizes:
            cp = CohortIndexPlan(size)
            results.metric(f"notebook_cohort_{size}", f"Client.cohort('series', Modality='CT', SliceThickness='<=1', "
                           f"ConvolutionKernel='B30f') end to end over HTTP, generated index of {size:,} instances "
                           f"({cp.series:,} series, {cp.expected():,} match), median of {COHORT_REPS} (target < "
                           f"{TARGET_COHORT_MS:g} ms)", "ms", "lower", ONLY)
            pages = len(page_queries(cp.expected()))
            results.metric(f"notebook_cohort_{size}_index", f"The same cohort on {size:,} instances, pacsdash's index "
                           f"queries alone (DuckDBIndex.find of its {pages} QIDO-RS page{'s' if pages > 1 else ''}, "
                           f"in this process, no HTTP), median of {SQL_REPS}", "ms", "lower", ONLY)


def _volume_part(plan: Any, results: Results, guard: Guard, details: dict[str, Any]) -> None:
    from pydicom import dcmread

    from benchmarks.datasets import ct_volume
    from benchmarks.phases import record_server

    n = plan.notebook_slices
    fileset = ct_volume(n)
    first = dcmread(fileset.files()[0], stop_before_pixels=True)
    study, series, size = str(first.StudyInstanceUID), str(first.SeriesInstanceUID), int(first.Rows)
    say(f"notebook: Client.volume() and the plain way, {n} CT {size}x{size}")
    with PacsdashServer(plan.tmp_root, plan.keep) as server:
        try:
            server.add_user()
            summary = server.import_offline(fileset.shards, timeout=600)
            server.start()
            results.details.setdefault("setup", {})["pacsdash (notebook volume)"] = \
                f"`pacsdash import` before start: {summary}"

            def run() -> tuple[dict, dict]:
                with ForeignLoad(server.pid) as load:
                    measured = measure_volume(server.base_url, study, series, n, size)
                return measured, load.result

            measured = guard.measure("pacsdash notebook volume", volume_ids(), "pacsdash", run)
        finally:
            server.stop()
            record_server(results, server, "notebook volume")
    details["volume"] = measured
    m = results.metrics
    m["notebook_volume"].values["pacsdash"] = measured["client_median_ms"]
    m["notebook_volume"].notes["pacsdash"] = ratio_note(measured["ratio"])
    m["notebook_volume_plain"].values["pacsdash"] = measured["plain_median_ms"]
    m["notebook_volume_ratio"].values["pacsdash"] = measured["ratio"]
    m["notebook_volume_ratio"].notes["pacsdash"] = ratio_note(measured["ratio"])
    say(f"  Client.volume() {measured['client_median_ms']} ms, plain way {measured['plain_median_ms']} ms: "
        f"ratio {measured['ratio']} ({ratio_note(measured['ratio'])}); arrays equal; stages (ms): "
        f"{measured['breakdown_ms']}")


def _cohort_part(plan: Any, results: Results, guard: Guard, details: dict[str, Any], size: int) -> None:
    from benchmarks.phases import record_server

    cp = CohortIndexPlan(size)
    index_path, made = cohort_index(cp)
    say(f"notebook: Client.cohort() on {size:,} generated instances ({cp.series:,} series, {cp.expected():,} match)")
    row = details.setdefault("cohort", {}).setdefault(str(size), {})
    row.update(instances=size, series=cp.series, studies=cp.studies, expected=cp.expected(),
               index_mib=made.get("file_mib"), generated_in_s=made.get("seconds"))
    id, index_id = cohort_ids(size)
    with PacsdashServer(plan.tmp_root, plan.keep) as server:
        try:
            server.home.mkdir(parents=True, exist_ok=True)
            home_index = server.home / "index.duckdb"
            shutil.copy(index_path, home_index)
            server.add_user()

            def run_index() -> tuple[dict, dict]:
                with ForeignLoad(os.getpid()) as load:
                    measured = measure_index(home_index, cp.expected())
                return measured, load.result

            row["index"] = guard.measure(f"pacsdash notebook cohort {size} index", [index_id], "pacsdash", run_index)
            results.metrics[index_id].values["pacsdash"] = row["index"]["median_ms"]
            started = time.perf_counter()
            server.start()
            row["server_start_s"] = round(time.perf_counter() - started, 1)

            def run() -> tuple[dict, dict]:
                with ForeignLoad(server.pid) as load:
                    measured = measure_cohort(server.base_url, cp)
                return measured, load.result

            row["http"] = guard.measure(f"pacsdash notebook cohort {size}", [id], "pacsdash", run)
        finally:
            server.stop()
            record_server(results, server, f"notebook cohort {size}")
    median = row["http"]["median_ms"]
    row["outside_index_ms"] = round(median - row["index"]["median_ms"], 1)
    results.metrics[id].values["pacsdash"] = median
    results.metrics[id].notes["pacsdash"] = cohort_note(median)
    say(f"  cohort() {median} ms ({cohort_note(median)}; runs {row['http']['runs_ms']}); index queries alone "
        f"{row['index']['median_ms']} ms over {row['index']['pages']} page(s); the difference, HTTP, DICOM JSON and "
        f"the DataFrame, {row['outside_index_ms']} ms (the two are measured apart: noise when small)")


def run(plan: Any, results: Results, guard: Guard) -> None:
    """The notebook phase (pacsdash only): rows, then the volume, then each cohort size."""
    _rows(results, plan)
    if "pacsdash" not in plan.servers:
        return
    details = results.details.setdefault("notebook", {})
    if "volume" in plan.notebook_parts:
        guard.attempt(volume_ids(), "pacsdash", lambda: _volume_part(plan, results, guard, details))
    if "cohort" in plan.notebook_parts:
        for size in plan.cohort_sizes:
            guard.attempt(cohort_ids(size), "pacsdash",
                          lambda size=size: _cohort_part(plan, results, guard, details, size))
