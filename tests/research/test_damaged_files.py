"""A study with a missing and a cut-short file: anonymizing and exporting it
go on, each leaving those instances out with a reason (``pacsdash check``
names and repairs the cause); nothing damaged goes out as if it were whole."""

from __future__ import annotations

import io
import zipfile

import pytest
from pydicom import dcmread

from pacsdash.archive import Archive, Level
from pacsdash.archive.actions import StudyActions
from pacsdash.research import workers
from pacsdash.research.export import ExportFormat, ExportRequest, read_manifest
from tests.research.test_cohort_export import ACTOR, ct_volume


@pytest.fixture
def damaged(tmp_path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    volume = ct_volume("DAMAGED") + ct_volume("DAMAGED")[:8]  # 20 instances: the worker processes' path
    for raw in volume:
        archive.store_bytes(raw)
    study = str(dcmread(io.BytesIO(volume[0])).StudyInstanceUID)
    locations = sorted(archive.locate(Level.STUDY, study), key=lambda loc: loc.SOPInstanceUID)
    archive.local_path(locations[0]).unlink()
    path = archive.local_path(locations[1])
    path.write_bytes(path.read_bytes()[:-1000])
    yield archive, study, len(locations), {locations[0].SOPInstanceUID, locations[1].SOPInstanceUID}
    archive.close()
    workers.shutdown()


@pytest.mark.parametrize("threshold", [10**9, workers.PROCESS_THRESHOLD], ids=["threads", "processes"])
def test_anonymize_leaves_the_damaged_instances_out(damaged, tmp_path, monkeypatch, threshold):
    archive, study, count, bad = damaged
    monkeypatch.setattr(workers, "PROCESS_THRESHOLD", threshold)
    result = StudyActions(archive, tmp_path / "home").anonymize(study, ACTOR)
    assert result.stored == count - 2
    assert {e.SOPInstanceUID for e in result.excluded} == bad
    assert all(e.reason.startswith("left out") for e in result.excluded)


def test_an_anonymized_export_leaves_them_out_and_names_no_original_uid(damaged, tmp_path):
    archive, study, count, bad = damaged
    out = tmp_path / "out.zip"
    summary = StudyActions(archive, tmp_path / "home").export(
        ExportRequest(out=out, studies=[study], format=ExportFormat.ZIP, anonymize=True), ACTOR)
    assert summary.left_out == 2 and summary.files == count - 2
    with zipfile.ZipFile(out) as bundle:
        manifest = read_manifest(bundle.read("manifest.csv").decode().splitlines())
        text = bundle.read("manifest.csv").decode()
    notes = [row["note"] for row in manifest if row["note"]]
    assert sorted(notes) == ["left out: the stored file is damaged", "left out: the stored file is missing"]
    assert not any(uid in text for uid in bad) and study not in text
