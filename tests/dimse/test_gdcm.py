"""Interoperability with GDCM's ``gdcmscu`` (Debian's libgdcm-tools) as a real peer.

gdcmscu reads a message's data set only from a P-DATA-TF PDU of its own
(INTEROP.md): given a command set and a data set as two PDVs of one PDU,
its C-FIND waited until killed and its C-MOVE lost instances.

gdcmscu 3.0.21 (Debian) aborts in its own release code after every
association it requests, against any peer (dcmtk's storescp and Orthanc
alike): "ProtocolStream as nullptr is invalid", SIGABRT, after the A-RELEASE-RP
has arrived. Its C-FIND results are printed only after that point, so they
are never printed; the tests read its debug trace (``-D``, one line per
response status) and the files its C-MOVE writes as they arrive.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import require_tool
from tests.factories import make_instance
from tests.helpers import free_port

GDCMSCU = Path("/usr/bin/gdcmscu")
GDCM_AET = "GDCMSCU"
#: What gdcmscu 3.0.21 says when it aborts after the association's release.
GDCM_RELEASE_ABORT = "ProtocolStream as nullptr is invalid"
#: Long enough for a C-FIND or C-MOVE of two instances on loopback many times over.
TIMEOUT = 30
STUDY_A = "1.2.826.0.1.3680043.10.1474.9.5001"
STUDY_B = "1.2.826.0.1.3680043.10.1474.9.5002"
SERIES_A = "1.2.826.0.1.3680043.10.1474.9.5011"


@pytest.fixture
def gdcm() -> None:
    require_tool(GDCMSCU.exists(),
                 "gdcmscu is not installed (/usr/bin/gdcmscu missing: apt-get install libgdcm-tools); .ci/run installs it")


def gdcmscu(*args: str) -> subprocess.CompletedProcess:
    """Run gdcmscu; fail the test if it does not finish (it waits for a PDU that never comes)."""
    try:
        result = subprocess.run([str(GDCMSCU), *args], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gdcmscu {' '.join(args[:2])} did not finish within {TIMEOUT} s")
    # Exit 0, or gdcmscu's own abort once the association is released.
    assert result.returncode == 0 or (
        result.returncode == -signal.SIGABRT and GDCM_RELEASE_ABORT in result.stderr
    ), (result.returncode, result.stderr[-3000:])
    return result


def response_statuses(trace: str) -> list[int]:
    """The Status (0000,0900) of each DIMSE response gdcmscu's debug trace shows it read."""
    return [int(s) for s in re.findall(r"Received ItemType #4\n.*?\(0000,0900\) \?\? \(US\) (\d+)", trace, re.S)]


def test_gdcmscu_find_completes_with_every_study(gdcm, node, archive, accounts):
    accounts.add_modality("gdcm", GDCM_AET, "127.0.0.1", free_port())
    archive.store_bytes(make_instance(PatientID="GDCMFIND", StudyInstanceUID=STUDY_A))
    archive.store_bytes(make_instance(PatientID="GDCMFIND", StudyInstanceUID=STUDY_B))
    archive.store_bytes(make_instance(PatientID="SOMEONEELSE"))
    result = gdcmscu("--find", "--studyroot", "--study", "--key", "10,20=GDCMFIND", "--key", "20,d=",
                     "--aetitle", GDCM_AET, "--call", "PACSDASH", "-D", "127.0.0.1", str(node.port))
    trace = result.stdout + result.stderr
    assert "C-Find was successful." in trace, trace[-3000:]
    # Two pending responses (one per study of the patient), then success.
    assert response_statuses(trace) == [0xFF00, 0xFF00, 0x0000], trace[-3000:]


def test_gdcmscu_move_receives_every_instance(gdcm, node, archive, accounts, tmp_path):
    """gdcmscu as its own move destination gets both instances of a study:
    one small enough for one PDU, one split over several."""
    port = free_port()
    accounts.add_modality("gdcm", GDCM_AET, "127.0.0.1", port)
    small = make_instance(PatientID="GDCMMOVE", StudyInstanceUID=STUDY_A, SeriesInstanceUID=SERIES_A)
    large = make_instance(PatientID="GDCMMOVE", StudyInstanceUID=STUDY_A, SeriesInstanceUID=SERIES_A,
                          Rows=128, Columns=128, PixelData=bytes(range(256)) * 128)
    sent = {}
    for raw in (small, large):
        result = archive.store_bytes(raw)
        sent[result.SOPInstanceUID] = dcmread(io.BytesIO(raw))
    out = tmp_path / "moved"
    out.mkdir()
    result = gdcmscu("--move", "--studyroot", "--study", "--key", f"20,d={STUDY_A}", "-o", str(out),
                     "--port-scp", str(port), "--aetitle", GDCM_AET, "--call", "PACSDASH", "127.0.0.1", str(node.port))
    received = {dcmread(path).SOPInstanceUID: dcmread(path) for path in out.iterdir()}
    assert sorted(received) == sorted(sent), result.stderr[-3000:]
    for uid, ds in received.items():
        assert ds.PixelData == sent[uid].PixelData
        assert ds.PatientID == "GDCMMOVE"
