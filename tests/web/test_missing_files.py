"""A missing or damaged stored file is a 404/410 (or a failed sub-operation), never a 500.

The index keeps the row; the file is deleted (missing) or cut short
(damaged) on disk by hand, as ``pacsdash check`` would find it. Every door
maps :class:`pacsdash.archive.MissingFile` / ``DamagedFile``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (CTImageStorage, StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove)

from pacsdash.archive import Archive, Level
from tests.conftest import SCU_AET
from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli

ADMIN = ("root", "root-password")
GONE = 410



def _make_study(folder: Path, count: int) -> tuple[str, str, list[bytes]]:
    study, series = generate_uid(), generate_uid()
    raws = [make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=n) for n in range(count)]
    folder.mkdir(parents=True)
    for n, raw in enumerate(raws):
        (folder / f"{n}.dcm").write_bytes(raw)
    return study, series, raws


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A server whose study has one instance intact, one file deleted, one cut short."""
    root = tmp_path_factory.mktemp("missing")
    home = root / "home"
    study, series, raws = _make_study(root / "data", 3)
    assert run_cli("import", str(root / "data"), "--home", str(home)).returncode == 0
    assert run_cli("users", "add", ADMIN[0], "--role", "admin", "--password-stdin", "--home", str(home),
                   input=ADMIN[1] + "\n").returncode == 0
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        located = archive.locate(Level.STUDY, study)
    by_number = {raws.index((home / "store" / loc.file).read_bytes()): loc for loc in located}
    intact, gone, cut = by_number[0], by_number[1], by_number[2]
    (home / "store" / gone.file).unlink()
    path = home / "store" / cut.file
    path.write_bytes(path.read_bytes()[:-40])  # into the pixel data: still parses up to it
    server = ServerProcess.start(home)
    yield {"base": f"http://127.0.0.1:{server.http_port}", "study": study, "series": series,
           "intact": intact, "gone": gone, "cut": cut, "raw": raws[0]}
    server.stop()


def get(damaged, path: str, **params) -> requests.Response:
    return requests.get(damaged["base"] + path, params=params or None, auth=ADMIN, timeout=30)


def instance_url(damaged, which: str) -> str:
    loc = damaged[which]
    return f"/dicom-web/studies/{loc.StudyInstanceUID}/series/{loc.SeriesInstanceUID}/instances/{loc.SOPInstanceUID}"


def test_the_intact_instance_is_served_byte_for_byte(damaged):
    answer = get(damaged, instance_url(damaged, "intact"))
    assert answer.status_code == 200 and damaged["raw"] in answer.content


@pytest.mark.parametrize("which", ["gone", "cut"])
def test_wado_rs_instance_of_a_missing_or_damaged_file(damaged, which):
    assert get(damaged, instance_url(damaged, which)).status_code == GONE


def test_wado_rs_metadata_of_a_missing_file(damaged):
    assert get(damaged, instance_url(damaged, "gone") + "/metadata").status_code == GONE


@pytest.mark.parametrize("which", ["gone", "cut"])
def test_wado_rs_frames_of_a_missing_or_damaged_file(damaged, which):
    assert get(damaged, instance_url(damaged, which) + "/frames/1").status_code == GONE


@pytest.mark.parametrize("which", ["gone", "cut"])
def test_wado_rs_pixel_data_of_a_missing_or_damaged_file(damaged, which):
    assert get(damaged, instance_url(damaged, which) + "/pixeldata").status_code == GONE


def test_wado_rs_rendered_of_a_missing_file(damaged):
    assert get(damaged, instance_url(damaged, "gone") + "/rendered").status_code == GONE


def test_wado_rs_study_metadata_leaves_the_missing_out_and_says_so(damaged):
    answer = get(damaged, f"/dicom-web/studies/{damaged['study']}/metadata")
    assert answer.status_code == 206, answer.text[:200]
    listed = [item["00080018"]["Value"][0] for item in answer.json()]
    assert listed == [damaged["intact"].SOPInstanceUID]
    warning = answer.headers["Warning"]
    assert warning.startswith("299 ") and damaged["gone"].SOPInstanceUID in warning
    assert damaged["cut"].SOPInstanceUID in warning


def test_wado_rs_study_with_a_missing_file_is_not_cut_off_mid_stream(damaged):
    try:
        answer = get(damaged, f"/dicom-web/studies/{damaged['study']}")
    except requests.exceptions.ChunkedEncodingError:
        pytest.fail("the response was cut off mid-stream")
    # Partial Content with the readable instances (PS3.18 10.4.3), or Gone as a whole.
    assert answer.status_code in (206, GONE), answer.status_code
    if answer.status_code == 206:
        assert damaged["raw"] in answer.content and answer.content.rstrip().endswith(b"--")


@pytest.mark.parametrize("content_type", ["application/dicom", "image/jpeg"])
@pytest.mark.parametrize("which", ["gone", "cut"])
def test_wado_uri_of_a_missing_or_damaged_file(damaged, which, content_type):
    loc = damaged[which]
    answer = get(damaged, "/wado", requestType="WADO", studyUID=loc.StudyInstanceUID,
                 seriesUID=loc.SeriesInstanceUID, objectUID=loc.SOPInstanceUID, contentType=content_type)
    assert answer.status_code == GONE


def test_zip_archive_of_a_study_with_missing_files_holds_the_rest_and_names_the_missing(damaged):
    answer = get(damaged, f"/api/studies/{damaged['study']}/archive")
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        names = bundle.namelist()
        note = bundle.read("MISSING.txt").decode()
        contents = [bundle.read(name) for name in names if name != "MISSING.txt"]
    assert contents == [damaged["raw"]]  # the readable instance only, byte for byte
    for which in ("gone", "cut"):
        assert damaged[which].SOPInstanceUID in note and damaged[which].file in note


# -- DIMSE: the C-STORE sub-operation of a missing or damaged file fails, the others complete --
@pytest.fixture(params=["gone", "cut"])
def broken_study(request, archive: Archive):
    """A study of three instances, one of whose files is deleted or cut short."""
    study = generate_uid()
    for n in range(3):
        archive.store_bytes(make_instance(StudyInstanceUID=study, InstanceNumber=n))
    broken = archive.locate(Level.STUDY, study)[0]
    path = archive.local_path(broken)
    if request.param == "gone":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-40])
    return study, broken


def _query(study: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    return query


def _assert_one_failed(final: tuple[Dataset, Dataset | None], failed_uid: str) -> None:
    """PS3.4 C.4.2.1.3/C.4.3.1.3: Warning B000, two completed, one failed, named in the
    identifier's Failed SOP Instance UID List."""
    status, identifier = final
    assert status.Status == 0xB000, hex(status.Status)
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (2, 1)
    failed = identifier.get("FailedSOPInstanceUIDList", []) if identifier is not None else []
    assert failed_uid in ([failed] if isinstance(failed, str) else list(failed))


def test_c_get_of_a_study_with_a_missing_file(node, broken_study):
    study, gone = broken_study
    ae = AE(ae_title=SCU_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(_query(study), StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    _assert_one_failed(responses[-1], gone.SOPInstanceUID)


def test_c_move_of_a_study_with_a_missing_file(node, accounts, broken_study):
    study, gone = broken_study
    received = []
    receiver = AE(ae_title="MOVEDEST")
    receiver.supported_contexts = StoragePresentationContexts
    listener = receiver.start_server(("127.0.0.1", 0), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(1) or 0)])
    try:
        accounts.add_modality("dest", "MOVEDEST", "127.0.0.1", listener.server_address[1])
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH")
        assert assoc.is_established
        try:
            responses = list(assoc.send_c_move(_query(study), "MOVEDEST", StudyRootQueryRetrieveInformationModelMove))
        finally:
            assoc.release()
    finally:
        listener.shutdown()
    _assert_one_failed(responses[-1], gone.SOPInstanceUID)
    assert len(received) == 2
