"""``[server] plain_pynetdicom = true``: the DICOM node on pynetdicom as released.

A few scenarios of test_dcmtk.py against a ``pacsdash serve`` process (and
its DICOM worker processes) that installs none of pacsdash's changes to
pynetdicom (:mod:`pacsdash.dimse.compat`). Where those changes fix
pynetdicom's behaviour (files re-encoded by C-MOVE and C-GET, the Move
Originator AE title), only the content is checked here, not the bytes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.helpers import SAMPLES, ServerProcess, StoreSCP, run_cli, wait_until

pytestmark = pytest.mark.usefixtures("dcmtk")

SCU_AET = "TESTSCU"
#: Uncompressed samples that storescu's default contexts carry.
FILES = [SAMPLES / "valid" / "CT_small.dcm", SAMPLES / "valid" / "MR_small.dcm"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """A plain-pynetdicom server with TESTSCU and a storescp registered; every FILE stored by storescu."""
    root = tmp_path_factory.mktemp("plain")
    home = root / "home"
    scp = StoreSCP.start(root / "moved")
    server = None
    try:
        for args in (["test", "--aet", SCU_AET, "--port", "11112", "--allow", "store,find,move,get"],
                     ["storescp", "--aet", scp.aet, "--port", str(scp.port)]):
            result = run_cli("modalities", "add", *args, "--host", "127.0.0.1", "--home", str(home))
            assert result.returncode == 0, result.stderr
        home.mkdir(exist_ok=True)
        from pacsdash.config import set_server_option

        set_server_option(home, "plain_pynetdicom", True)
        server = ServerProcess.start(home)
        result = run("/usr/bin/storescu", "-aet", SCU_AET, "-aec", server.aet, "127.0.0.1", str(server.dicom_port),
                     *map(str, FILES))
        assert result.returncode == 0, result.stderr
        yield server, scp
    finally:
        if server is not None:
            server.stop()
        scp.stop()


def _logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((home / "logs").glob("*.log")))


def test_server_and_workers_run_plain(plain_server) -> None:
    server, _ = plain_server
    wait_until(lambda: _logs(server.home).count("running on plain pynetdicom") >= 3,
               timeout=10, what="the server and its 2 workers to log plain mode")


def test_echoscu(plain_server) -> None:
    server, _ = plain_server
    result = run("/usr/bin/echoscu", "-aet", SCU_AET, "-aec", server.aet, "127.0.0.1", str(server.dicom_port))
    assert result.returncode == 0, result.stderr


def test_findscu_finds_what_storescu_stored(plain_server) -> None:
    server, _ = plain_server
    for path in FILES:
        ds = dcmread(path, stop_before_pixels=True)
        result = run("/usr/bin/findscu", "-S", "-aet", SCU_AET, "-aec", server.aet, "-k", "QueryRetrieveLevel=IMAGE",
                     "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                     "-k", "PatientID", "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("Find Response:") == 1, (path.name, result.stderr)
        assert str(ds.SOPInstanceUID) in result.stderr


def test_movescu_to_storescp(plain_server) -> None:
    server, scp = plain_server
    for path in FILES:
        ds = dcmread(path, stop_before_pixels=True)
        result = run("/usr/bin/movescu", "-S", "-aet", SCU_AET, "-aec", server.aet, "-aem", scp.aet,
                     "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                     "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                     "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, (path.name, result.stderr)
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in scp.folder.iterdir()}
    assert received == {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in FILES}


def test_getscu_gets_the_same_content(plain_server, tmp_path) -> None:
    server, _ = plain_server
    for path in FILES:
        ds = dcmread(path, stop_before_pixels=True)
        out = tmp_path / path.stem
        out.mkdir()
        result = run("/usr/bin/getscu", "-S", "-aet", SCU_AET, "-aec", server.aet, "-od", str(out),
                     "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                     "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                     "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, (path.name, result.stderr)
        [got] = list(out.iterdir())
        assert dcmread(got) == _content(path), path.name


def _content(path: Path):
    """The data set of ``path`` as pydicom re-encodes it: without Data Set
    Trailing Padding (FFFC,FFFC), which has no meaning (PS3.5 7.2)."""
    ds = dcmread(path)
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]
    return ds


def test_findscu_from_unknown_peer_is_rejected(plain_server) -> None:
    server, _ = plain_server
    result = run("/usr/bin/findscu", "-S", "-aet", "STRANGER", "-aec", server.aet, "-k", "QueryRetrieveLevel=STUDY",
                 "-k", "PatientID", "127.0.0.1", str(server.dicom_port))
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr or "Rejected" in result.stderr
