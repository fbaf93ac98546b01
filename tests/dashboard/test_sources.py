"""Dashboard components over DICOMweb while the server runs (the archive's file is locked then)."""

from __future__ import annotations

import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom import dcmread

from pacsdash.archive import Archive, Level, Query
from pacsdash.dashboard.sources import ArchiveSource, DataSource, DicomWebSource, as_source
from tests.helpers import VALID, ServerProcess, run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("sources") / "home"
    assert run_cli("users", "add", "viewer", "--role", "viewer", "--password-stdin", "--home", str(home),
                   input="viewer-password\n").returncode == 0
    assert run_cli("import", "--home", str(home), *[str(p) for p in VALID]).returncode == 0
    running = ServerProcess.start(home)
    yield running
    running.stop()


def web_client(server) -> DICOMwebClient:
    return DICOMwebClient(f"http://127.0.0.1:{server.http_port}/dicom-web",
                          session=create_session_from_user_pass("viewer", "viewer-password"))


def test_the_archive_is_locked_while_the_server_runs(server):
    with pytest.raises(Exception, match="already running|lock|Conflicting|Could not set lock"):
        Archive.open_home(server.home / "store", server.home / "index.duckdb")


def test_a_dicomweb_client_is_a_data_source_for_the_viewer(server):
    """SeriesViewer(archive=DICOMwebClient(...)) raised AttributeError; it must show the series."""
    from pacsdash.dashboard.viewer import SeriesViewer

    path = next(p for p in VALID if p.name == "CT_small.dcm")
    original = dcmread(path)
    viewer = SeriesViewer(archive=web_client(server), study_uid=original.StudyInstanceUID)
    assert viewer.series_uid == original.SeriesInstanceUID and len(viewer.series) == 1
    frame = viewer.series.frame(0)
    expected = original.pixel_array.astype(np.float64) * float(original.RescaleSlope) + float(original.RescaleIntercept)
    assert (frame.Rows, frame.Columns) == original.pixel_array.shape
    assert np.allclose(frame.pixels.astype(np.float64), expected)  # modality values, as the browser receives them


def test_both_sources_answer_a_study_query_alike(server):
    source = as_source(web_client(server))
    assert isinstance(source, DicomWebSource) and isinstance(source, DataSource)
    query = Query(Level.STUDY, {"ModalitiesInStudy": "MR"}, ["PatientID", "StudyDate"])
    remote = {r["StudyInstanceUID"]: (r.get("PatientID"), r.get("StudyDate")) for r in source.find(query)}
    expected = {}
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        if ds.get("Modality") == "MR":
            expected[ds.StudyInstanceUID] = (ds.get("PatientID") or None, ds.get("StudyDate") or None)
    assert remote == expected and source.count(query) == len(expected)
    instances = source.locate(Level.STUDY, next(iter(expected)))
    assert instances and all(i.StudyInstanceUID == next(iter(expected)) for i in instances)
    assert isinstance(as_source(ArchiveSource(None)), ArchiveSource)  # a source is taken as it is
    with pytest.raises(TypeError, match="not a data source"):
        as_source(object())
