"""Cohort export: formats, manifest, resuming, NIfTI against dcm2niix itself."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pacsdash.archive import Archive
from pacsdash.archive.actions import Actor, StudyActions
from pacsdash.research.export import MANIFEST_COLUMNS, ExportFormat, ExportRequest, read_manifest
from pacsdash.research.options import DEFAULT_OPTIONS
from tests.conftest import require_tool
from tests.factories import PREFIX, make_instance

ACTOR = Actor("tester")
SLICES = 12


def ct_volume(patient: str = "VOL-1", tilt: bool = False) -> list[bytes]:
    """A small CT series that makes a volume: positions along the normal, spacing, values."""
    study, series, frame = generate_uid(PREFIX), generate_uid(PREFIX), generate_uid(PREFIX)
    rng = np.random.default_rng(7)
    orientation = [1, 0, 0, 0, 0.9848078, -0.1736482] if tilt else [1, 0, 0, 0, 1, 0]
    normal = np.cross(orientation[:3], orientation[3:])
    out = []
    for k in range(SLICES):
        position = (np.array([-40.0, -30.0, 10.0]) + normal * 2.5 * k).round(4).tolist()
        out.append(make_instance(
            PatientID=patient, PatientName="VOLUME^VERA", StudyInstanceUID=study, SeriesInstanceUID=series,
            FrameOfReferenceUID=frame, StudyDate="20210304", SeriesNumber=3, InstanceNumber=SLICES - k,
            ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], Rows=48, Columns=64, PixelSpacing=[0.8, 0.7],
            SliceThickness=2.5, ImageOrientationPatient=orientation, ImagePositionPatient=position,
            RescaleIntercept=-1024, RescaleSlope=1, PixelRepresentation=0,
            PixelData=rng.integers(0, 3000, (48, 64), dtype=np.uint16).tobytes(),
        ))
    return out


@pytest.fixture
def cohort(tmp_path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    volume = ct_volume()
    for raw in volume:
        archive.store_bytes(raw)
    scout = make_instance(PatientID="VOL-1", StudyInstanceUID=dcmread(io.BytesIO(volume[0])).StudyInstanceUID,
                          ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesNumber=1)
    archive.store_bytes(scout)
    other = [make_instance(PatientID="OTHER-2", StudyInstanceUID=f"{PREFIX}77", Modality="MR") for _ in range(3)]
    for raw in other:
        archive.store_bytes(raw)
    yield archive, StudyActions(archive, tmp_path / "home"), volume
    archive.close()


def rows_of(out: Path) -> list[dict[str, str]]:
    if out.suffix == ".zip":
        with zipfile.ZipFile(out) as bundle:
            return read_manifest(io.TextIOWrapper(bundle.open("manifest.csv"), "utf-8"))
    return read_manifest(out / "manifest.csv")


def test_zip_and_folder_with_a_condition_on_any_tag(cohort, tmp_path):
    archive, actions, volume = cohort
    request = ExportRequest(out=tmp_path / "thin.zip", where={"SliceThickness": "2.5"}, format=ExportFormat.ZIP)
    summary = actions.export(request, ACTOR)
    assert summary.files == SLICES and summary.left_out == 0
    with zipfile.ZipFile(tmp_path / "thin.zip") as bundle:
        header = bundle.read("manifest.csv").decode().splitlines()[0]
        assert header == ",".join(MANIFEST_COLUMNS)
        rows = rows_of(tmp_path / "thin.zip")
        assert sorted(bundle.read(r["path"]) for r in rows) == sorted(volume)  # originals, byte for byte
        assert all(hashlib.sha256(bundle.read(r["path"])).hexdigest() == r["sha256"] for r in rows)
    assert {r["subject"] for r in rows} == {"VOL-1"}
    folder = actions.export(ExportRequest(out=tmp_path / "mr", where={"Modality": "MR"}, format=ExportFormat.FOLDER),
                            ACTOR)
    assert folder.files == 3 and (tmp_path / "mr" / "manifest.csv").exists()
    with pytest.raises(Exception, match="already exists"):
        actions.export(ExportRequest(out=tmp_path / "mr", where={"Modality": "MR"}, format=ExportFormat.FOLDER), ACTOR)
    [record] = [r for r in archive.records(action="export") if r.details["out"].endswith("thin.zip")]
    assert record.actor == "tester" and record.details["files"] == SLICES


def test_an_anonymized_export_names_only_pseudonyms(cohort, tmp_path):
    archive, actions, volume = cohort
    out = tmp_path / "anon"
    actions.export(ExportRequest(out=out, studies=[f"{PREFIX}77"], format=ExportFormat.FOLDER, anonymize=True,
                                 options=DEFAULT_OPTIONS), ACTOR)
    text = (out / "manifest.csv").read_text()
    assert "OTHER-2" not in text and PREFIX not in text
    for row in rows_of(out):
        ds = dcmread(out / row["path"])
        assert ds.PatientID == row["subject"] and ds.SOPInstanceUID == row["sop_instance"]
        assert ds.PatientIdentityRemoved == "YES"
    for path in out.rglob("*.dcm"):
        assert b"OTHER-2" not in path.read_bytes()


def test_an_interrupted_export_resumes_where_it_stopped(cohort, tmp_path):
    archive, actions, volume = cohort
    out = tmp_path / "resumed"
    request = ExportRequest(out=out, where={"PatientID": "VOL-1"}, format=ExportFormat.FOLDER, anonymize=True,
                            options=DEFAULT_OPTIONS)

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        actions.export(request, ACTOR, stop_after_five)
    assert not out.exists() and len(read_manifest(out.with_name("resumed.part") / "manifest.csv")) == 5
    summary = actions.export(request, ACTOR)
    assert summary.resumed == 5 and summary.files == SLICES + 1
    rows = rows_of(out)
    assert len({r["sop_instance"] for r in rows}) == len(rows) == SLICES + 1  # each instance once
    assert all(hashlib.sha256((out / r["path"]).read_bytes()).hexdigest() == r["sha256"] for r in rows)
    another = ExportRequest(out=tmp_path / "other", where={"PatientID": "VOL-1"}, format=ExportFormat.ZIP)
    (tmp_path / "other.part").mkdir()
    (tmp_path / "other.part" / ".pacsdash-export.json").write_text('{"studies": ["x"]}')
    with pytest.raises(Exception, match="unfinished export of another request"):
        actions.export(another, ACTOR)


def test_dicomdir_is_read_by_pydicom_and_dcmtk(cohort, tmp_path):
    from pydicom.fileset import FileSet

    archive, actions, volume = cohort
    out = tmp_path / "media"
    summary = actions.export(ExportRequest(out=out, where={"PatientID": "*"}, format=ExportFormat.DICOMDIR,
                                           anonymize=True, options=DEFAULT_OPTIONS), ACTOR)
    assert summary.files == SLICES + 4
    fileset = FileSet(out / "DICOMDIR")
    assert len(fileset) == SLICES + 4
    listed = {r["path"] for r in rows_of(out)}
    assert {Path(*i.FileID.split("\\")).as_posix() for i in fileset} == listed
    dcmdump = Path("/usr/bin/dcmdump")
    require_tool(dcmdump.exists(), "dcmtk's dcmdump is not installed (apt-get install dcmtk)")
    dumped = subprocess.run([str(dcmdump), str(out / "DICOMDIR")], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.count("CS [IMAGE]") == SLICES + 4 and dumped.stdout.count("CS [PATIENT]") == 2


@pytest.mark.parametrize("anonymize", [False, True])
def test_nifti_matches_dcm2niix_on_the_same_series(cohort, tmp_path, anonymize):
    import nibabel
    from dcm2niix import bin as dcm2niix

    archive, actions, volume = cohort
    out = tmp_path / "bids"
    summary = actions.export(ExportRequest(out=out, where={"PatientID": "*"}, format=ExportFormat.NIFTI,
                                           anonymize=anonymize, options=DEFAULT_OPTIONS), ACTOR)
    rows = rows_of(out)
    [written] = [r for r in rows if r["path"]]
    notes = {r["note"] for r in rows if not r["path"]}
    assert any("localizer" in n for n in notes) and any("single 2D image" in n for n in notes)
    assert summary.files == 1
    path = Path(written["path"])
    assert path.parts[0] == f"sub-{written['subject']}" and path.parts[1] == "ses-01" and path.parts[2] == "ct"
    assert (out / path).with_name(path.name.replace(".nii.gz", ".json")).exists()  # the BIDS sidecar
    reference = tmp_path / "reference"
    (reference / "in").mkdir(parents=True)
    for k, raw in enumerate(volume):
        (reference / "in" / f"{k}.dcm").write_bytes(raw)
    subprocess.run([dcm2niix, "-z", "y", "-f", "ref", "-o", str(reference), str(reference / "in")],
                   check=True, capture_output=True, timeout=120)
    ours, theirs = nibabel.load(out / path), nibabel.load(reference / "ref.nii.gz")
    assert ours.shape == theirs.shape == (64, 48, SLICES)
    assert np.array_equal(ours.get_fdata(), theirs.get_fdata())
    assert np.allclose(ours.affine, theirs.affine)
    if anonymize:
        assert "VOL-1" not in (out / "manifest.csv").read_text()
        sidecar = (out / path).with_name(path.name.replace(".nii.gz", ".json")).read_text()
        assert "VOLUME" not in sidecar and "VOL-1" not in sidecar


def test_mixed_orientations_are_left_out_with_the_reason(tmp_path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    try:
        straight, tilted = ct_volume("MIX"), ct_volume("MIX", tilt=True)
        series = dcmread(io.BytesIO(straight[0])).SeriesInstanceUID
        study = dcmread(io.BytesIO(straight[0])).StudyInstanceUID
        for raw in straight[:6]:
            archive.store_bytes(raw)
        for raw in tilted[:6]:  # the same series, another orientation
            ds = dcmread(io.BytesIO(raw))
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            archive.store_bytes(buffer.getvalue())
        actions = StudyActions(archive, tmp_path / "home")
        actions.export(ExportRequest(out=tmp_path / "n", studies=[study], format=ExportFormat.NIFTI), ACTOR)
        [row] = rows_of(tmp_path / "n")
        assert row["path"] == "" and "mixed orientations" in row["note"]
    finally:
        archive.close()


def test_the_header_only_path_gives_the_same_bytes_as_reading_everything():
    """Anonymization reads and rewrites the header only, appending Pixel Data as
    stored: the result must equal de-identifying the whole data set, on every sample."""
    from pacsdash.research.anonymize import _split, deidentify_instance
    from pacsdash.research.deidentify import Deidentifier
    from pacsdash.research.pseudonyms import Pseudonymizer
    from tests.helpers import VALID

    deidentifier = Deidentifier(Pseudonymizer(b"k" * 32), DEFAULT_OPTIONS)
    fast = 0
    for path in VALID:
        raw = path.read_bytes()
        fast += _split(raw) is not None
        done, reason = deidentify_instance(raw, deidentifier, include_burned_in=True)
        assert reason == "", (path.name, reason)
        whole = deidentifier.deidentify(dcmread(io.BytesIO(raw))).to_bytes()
        assert done.data == whole, path.name
    assert fast >= len(VALID) // 2  # most samples take the header-only path


def test_large_studies_are_deidentified_in_worker_processes_with_the_same_result(tmp_path, monkeypatch):
    """A study of 16 or more instances goes to worker processes (which read the
    stored file and send back the header only); the copy must be the same bytes."""
    from pacsdash.archive import Level
    from pacsdash.research import workers

    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    try:
        volume = ct_volume("WORKERS") + ct_volume("WORKERS")[:4]
        for raw in volume:
            archive.store_bytes(raw)
        study = dcmread(io.BytesIO(volume[0])).StudyInstanceUID
        actions = StudyActions(archive, tmp_path / "home")
        copies = {}
        for threshold in (10**9, workers.PROCESS_THRESHOLD):
            monkeypatch.setattr(workers, "PROCESS_THRESHOLD", threshold)
            result = actions.anonymize(study, ACTOR)
            assert result.stored == SLICES and result.excluded == []
            copies[threshold] = sorted(archive.open(l).read() for l in archive.locate(Level.STUDY, result.StudyInstanceUID))
            archive.delete_study(result.StudyInstanceUID)
        assert copies[10**9] == copies[workers.PROCESS_THRESHOLD]
        assert archive.subject(dcmread(io.BytesIO(copies[10**9][0])).PatientID)["PatientID"] == "WORKERS"
    finally:
        archive.close()
        workers.shutdown()
