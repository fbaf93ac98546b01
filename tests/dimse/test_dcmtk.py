"""Interoperability with dcmtk's command-line tools as real peers."""

from __future__ import annotations

import re
import subprocess

import pytest
from pydicom import dcmread

from pacsdash.archive import Level
from tests.conftest import SCU_AET
from tests.factories import make_instance
from tests.helpers import StoreSCP, VALID, dataset_bytes, dcmtk_tool, free_port, sent_bytes, archive_dataset_bytes, wait_for_port

pytestmark = pytest.mark.usefixtures("dcmtk")

#: getscu's option to propose each stored transfer syntax (it proposes one
#: preferred syntax plus the uncompressed ones).
GETSCU_PREFER = {
    "1.2.840.10008.1.2": [],  # getscu never proposes implicit VR for storage
    "1.2.840.10008.1.2.1": [],
    "1.2.840.10008.1.2.2": ["+xb"],
    "1.2.840.10008.1.2.1.99": ["+xd"],
    "1.2.840.10008.1.2.4.50": ["+xy"],
    "1.2.840.10008.1.2.4.51": ["+xx"],
    "1.2.840.10008.1.2.4.70": ["+xs"],
    "1.2.840.10008.1.2.4.80": ["+xt"],
    "1.2.840.10008.1.2.4.90": ["+xv"],
    "1.2.840.10008.1.2.4.91": ["+xw"],
    "1.2.840.10008.1.2.5": ["+xr"],
}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def stored_dataset(archive, sop_uid: str) -> bytes:
    [location] = archive.locate(Level.IMAGE, sop_uid)
    return archive_dataset_bytes(archive, location)


def test_echoscu(node):
    result = run(dcmtk_tool("echoscu"), "-aet", SCU_AET, "-aec", "PACSDASH", "127.0.0.1", str(node.port))
    assert result.returncode == 0, result.stderr


def test_dcmsend_every_valid_sample(node, archive):
    result = run(dcmtk_tool("dcmsend"), "-aet", "SCANNER", "-aec", "PACSDASH", "-dn", "127.0.0.1", str(node.port),
                 *[str(p) for p in VALID])
    assert result.returncode == 0, result.stdout + result.stderr
    assert archive.index.totals()["instances"] == len(VALID)
    for path in VALID:
        sop_uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert archive.locate(Level.IMAGE, sop_uid), path.name


def test_storescu_uncompressed_samples_are_stored(node, archive):
    # storescu's default presentation contexts lack Segmentation Storage.
    files = [
        p for p in VALID
        if dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
        and dcmread(p, stop_before_pixels=True).SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4"
    ]
    result = run(dcmtk_tool("storescu"), "-aet", "SCANNER", "-aec", "PACSDASH", "127.0.0.1", str(node.port), *map(str, files))
    assert result.returncode == 0, result.stderr
    assert archive.index.totals()["instances"] == len(files)


@pytest.fixture
def loaded(node, archive):
    """Every valid sample stored with pynetdicom's byte-exact sending."""
    from pacsdash.dimse.scu import send_files

    results = send_files("127.0.0.1", node.port, VALID, "PACSDASH", SCU_AET)
    assert all(r.ok for r in results)
    return node, archive


def findscu(node, *keys: str, level: str = "STUDY", model: str = "-S", aet: str = SCU_AET) -> subprocess.CompletedProcess:
    args = [dcmtk_tool("findscu"), model, "-aet", aet, "-aec", "PACSDASH", "-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        args += ["-k", key]
    return run(*args, "127.0.0.1", str(node.port))


def test_findscu_study_root(loaded):
    node, _ = loaded
    result = findscu(node, "PatientID=4MR1", "StudyInstanceUID", "PatientName", "NumberOfStudyRelatedInstances")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Find Response:") == 1
    assert "CompressedSamples^MR1" in result.stderr
    assert "(0020,1208) IS [7 ]" in result.stderr  # MR_small in 7 encodings


def test_findscu_patient_root_wildcard(loaded):
    node, _ = loaded
    result = findscu(node, "PatientName=CompressedSamples*", "PatientID", level="PATIENT", model="-P")
    assert result.returncode == 0, result.stderr
    for pid in ("1CT1", "4MR1", "8NM1", "13US1"):
        assert re.search(rf"\[{pid} ?\]", result.stderr), pid


def test_findscu_from_unknown_peer_is_rejected(loaded):
    node, _ = loaded
    result = findscu(node, "PatientID", aet="STRANGER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr or "Rejected" in result.stderr


def test_movescu_to_storescp_is_byte_identical(loaded, accounts, tmp_path):
    node, archive = loaded
    scp = StoreSCP.start(tmp_path / "moved")
    try:
        accounts.add_modality("storescp", scp.aet, "127.0.0.1", scp.port)
        for path in VALID:
            ds = dcmread(path, stop_before_pixels=True)
            result = run(dcmtk_tool("movescu"), "-S", "-aet", SCU_AET, "-aec", "PACSDASH", "-aem", scp.aet,
                         "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                         "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                         "127.0.0.1", str(node.port))
            assert result.returncode == 0, (path.name, result.stderr)
    finally:
        scp.stop()
    received = sorted(dataset_bytes(p) for p in (tmp_path / "moved").iterdir())
    assert received == sorted(sent_bytes(p) for p in VALID)


def dimse_messages(log: str, message_type: str) -> list[dict[str, str]]:
    """The fields of each DIMSE message of ``message_type`` a dcmtk tool logged with ``-d``."""
    blocks = re.findall(rf"Message Type\s*: {message_type}\n(.*?)END DIMSE MESSAGE", log, re.S)
    return [dict(re.findall(r"^D: (\S[^:]*?)\s*: (.*)$", block, re.M)) for block in blocks]


def test_move_sub_operations_name_the_requestor_as_move_originator(node, archive, accounts, tmp_path):
    """Each C-STORE-RQ of a C-MOVE carries the requestor's AE title and the
    C-MOVE-RQ's Message ID (PS3.7 9.3.1.1), as dcmtk's storescp logs them."""
    study = "1.2.826.0.1.3680043.10.1474.9.6001"
    for _ in range(2):
        archive.store_bytes(make_instance(StudyInstanceUID=study))
    port = free_port()
    accounts.add_modality("storescp", "MOVEDEST", "127.0.0.1", port)
    (tmp_path / "moved").mkdir()
    with open(tmp_path / "storescp.log", "w") as log:
        scp = subprocess.Popen(
            [dcmtk_tool("storescp"), "-d", "-aet", "MOVEDEST", "-od", str(tmp_path / "moved"), str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        result = run(dcmtk_tool("movescu"), "-d", "-S", "-aet", SCU_AET, "-aec", "PACSDASH", "-aem", "MOVEDEST",
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(node.port))
    finally:
        scp.terminate()
        scp.wait(10)
    assert result.returncode == 0, result.stderr
    [move_request] = dimse_messages(result.stdout + result.stderr, "C-MOVE RQ")
    stores = dimse_messages((tmp_path / "storescp.log").read_text(), "C-STORE RQ")
    assert len(stores) == 2
    for store in stores:
        assert store.get("Move Originator AE Title") == SCU_AET, store
        assert store.get("Move Originator ID") == move_request["Message ID"], (store, move_request)


def test_movescu_to_unknown_destination_fails(loaded):
    node, _ = loaded
    result = run(dcmtk_tool("movescu"), "-S", "-aet", SCU_AET, "-aec", "PACSDASH", "-aem", "NOWHERE",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3", "127.0.0.1", str(node.port))
    assert "MoveDestinationUnknown" in result.stderr


def test_getscu_is_byte_identical(loaded, tmp_path):
    node, archive = loaded
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        out = tmp_path / path.stem
        out.mkdir()
        prefer = GETSCU_PREFER[str(ds.file_meta.TransferSyntaxUID)]
        result = run(dcmtk_tool("getscu"), "-S", *prefer, "+B", "-aet", SCU_AET, "-aec", "PACSDASH", "-od", str(out),
                     "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                     "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                     "127.0.0.1", str(node.port))
        assert result.returncode == 0, (path.name, result.stderr)
        [got] = list(out.iterdir())
        assert stored_dataset(archive, ds.SOPInstanceUID) == sent_bytes(path), path.name
        if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2":
            # getscu (3.6.7) offers only explicit VR for storage, even with
            # +xi: the node converts, so the content, not the bytes, is equal.
            assert dcmread(got) == dcmread(path), path.name
            continue
        assert dataset_bytes(got) == sent_bytes(path), path.name
