"""The command line, run as a user would, against real homes and servers."""

from __future__ import annotations

import shutil

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pacsdash.access import Accounts
from pacsdash.archive import Archive, Level, Query
from pacsdash.config import load_settings
from tests.factories import make_dataset
from tests.helpers import BROKEN, SAMPLES, VALID, ServerProcess, free_port, run_cli


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def server(home):
    assert run_cli("modalities", "add", "tests", "--home", str(home), "--aet", "TESTSCU", "--host", "127.0.0.1", "--port", "11112").returncode == 0
    server = ServerProcess.start(home)
    yield server
    server.stop()


def count_instances(home) -> int:
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        return archive.index.totals()["instances"]


def find_patients(server) -> list[str]:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="PACSDASH")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = ""
    responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    return sorted(identifier.PatientID for status, identifier in responses if status.Status == 0xFF00)


def test_users_lifecycle(home):
    result = run_cli("users", "add", "alice", "--role", "admin", "--password-stdin", "--home", str(home), input="password-1\n")
    assert result.returncode == 0, result.stderr
    assert run_cli("users", "add", "bob", "--home", str(home), "--role", "viewer", "--password-stdin", input="password-2\n").returncode == 0
    listing = run_cli("users", "list", "--home", str(home))
    assert listing.stdout.splitlines() == ["alice\tadmin\tall studies", "bob\tviewer\tall studies"]
    again = run_cli("users", "add", "alice", "--role", "admin", "--password-stdin", "--home", str(home), input="x-password\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert run_cli("users", "passwd", "bob", "--password-stdin", "--home", str(home), input="new-password\n").returncode == 0
    assert run_cli("users", "remove", "bob", "--home", str(home)).returncode == 0
    assert run_cli("users", "list", "--home", str(home)).stdout.splitlines() == ["alice\tadmin\tall studies"]
    assert "password-1" not in (home / "pacsdash.toml").read_text() if (home / "pacsdash.toml").exists() else True


def test_users_add_and_passwd_refuse_a_short_password(home):
    short = run_cli("users", "add", "alice", "--role", "admin", "--password-stdin", "--home", str(home),
                    input="9-chars!!\n")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    assert run_cli("users", "list", "--home", str(home)).stdout == ""
    added = run_cli("users", "add", "alice", "--role", "admin", "--password-stdin", "--home", str(home),
                    input="10-chars!!\n")
    assert added.returncode == 0, added.stderr
    changed = run_cli("users", "passwd", "alice", "--password-stdin", "--home", str(home), input="9-chars!!\n")
    assert changed.returncode != 0 and "at least 10 characters" in changed.stderr
    accounts = Accounts(load_settings(home).accounts_path)
    assert accounts.authenticate("alice", "10-chars!!") is not None  # the refused change changed nothing
    assert "at least 10 characters" in run_cli("users", "add", "--help").stdout


def test_modalities_lifecycle(home):
    add = run_cli("modalities", "add", "ws", "--home", str(home), "--aet", "WS1", "--host", "127.0.0.1", "--port", "11112", "--allow", "find,move")
    assert add.returncode == 0, add.stderr
    assert run_cli("modalities", "list", "--home", str(home)).stdout.splitlines() == ["ws\tWS1\t127.0.0.1\t11112\tfind,move\tall studies"]
    bad = run_cli("modalities", "add", "x", "--home", str(home), "--aet", "X", "--host", "h", "--port", "1", "--allow", "steal")
    assert bad.returncode == 1 and "--allow" in bad.stderr
    assert run_cli("modalities", "remove", "ws", "--home", str(home)).returncode == 0
    assert run_cli("modalities", "list", "--home", str(home)).stdout == ""


def test_config_error_names_the_key(home):
    home.mkdir()
    (home / "pacsdash.toml").write_text("[server]\ndicom_port = 'x'\n")
    result = run_cli("serve", "--home", str(home))
    assert result.returncode == 2
    assert "[server] dicom_port" in result.stderr


def test_import_offline_reports_each_failure(home, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLES / "valid", data / "valid")
    shutil.copytree(SAMPLES / "broken", data / "nested" / "broken")
    result = run_cli("import", "--home", str(home), str(data))
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == len(BROKEN) - 3  # three broken samples are complete and kept
    assert any("path_traversal_uid.dcm" in line and "not a valid UID" in line for line in failed)
    assert count_instances(home) == len(VALID) + 3
    again = run_cli("import", "--home", str(home), str(data / "valid"))
    assert again.returncode == 0
    assert f"imported 0 new, {len(VALID)} already archived, 0 failed" in again.stdout


def test_admin_commands_and_import_work_while_serving(server, home):
    assert run_cli("users", "add", "carol", "--role", "editor", "--password-stdin", "--home", str(home), input="carol-password\n").returncode == 0
    assert "carol" in run_cli("users", "list", "--home", str(home)).stdout
    result = run_cli("import", "--home", str(home), str(SAMPLES / "valid"))
    assert result.returncode == 0, result.stderr
    assert f"imported {len(VALID)} new" in result.stdout
    assert "4MR1" in find_patients(server)  # visible at once through the running server


def test_second_server_on_a_home_is_refused(server, home):
    result = run_cli("serve", "--home", str(home), "--http-port", "0", "--dicom-port", "0", timeout=60)
    assert result.returncode == 1
    assert "another pacsdash process" in result.stderr


def test_send_and_echo(server, tmp_path):
    folder = tmp_path / "outgoing"
    (folder / "deep").mkdir(parents=True)
    for k in range(3):
        make_dataset(PatientID=f"SEND{k}").save_as(folder / "deep" / f"{k}.dcm", enforce_file_format=True)
    result = run_cli("send", "127.0.0.1", str(server.dicom_port), str(folder), "--aet", "PACSDASH")
    assert result.returncode == 0, result.stderr
    assert "sent 3 of 3 files" in result.stdout
    (folder / "notes.txt").write_text("not dicom")
    shutil.copy(next(p for p in BROKEN if p.name == "path_traversal_uid.dcm"), folder / "evil.dcm")
    result = run_cli("send", "127.0.0.1", str(server.dicom_port), str(folder), "--aet", "PACSDASH")
    assert result.returncode == 1
    assert "notes.txt" in result.stderr and "evil.dcm" in result.stderr
    assert "sent 3 of 5 files" in result.stdout
    assert find_patients(server) == ["SEND0", "SEND1", "SEND2"]
    echo = run_cli("echo", "127.0.0.1", str(server.dicom_port), "--aet", "PACSDASH")
    assert echo.returncode == 0 and "status 0x0000" in echo.stdout
    closed = run_cli("echo", "127.0.0.1", str(free_port()))
    assert closed.returncode == 1 and "could not connect" in closed.stderr


def test_demo_makes_a_home_with_studies(home):
    result = run_cli("demo", "--home", str(home), "--no-serve", timeout=300)
    assert result.returncode == 0, result.stderr
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        studies = archive.find(Query(Level.STUDY, {}, ["ModalitiesInStudy"]))
        modalities = {m for s in studies for m in (s["ModalitiesInStudy"] or "").split("\\")}
        assert {"CT", "MR", "OT"} <= modalities
        patients = {s["PatientID"] for s in studies}
        assert len(patients) >= 5
        multiframe = archive.find(Query(Level.IMAGE, {"NumberOfFrames": "12"}))
        assert len(multiframe) == 1
        colour = archive.find(Query(Level.IMAGE, {"PhotometricInterpretation": "RGB"}))
        assert len(colour) >= 2
        ct = archive.find(Query(Level.IMAGE, {"Modality": "CT", "Rows": "256"}))
        assert len(ct) >= 40
    users = run_cli("users", "list", "--home", str(home)).stdout
    assert "admin\tadmin" in users


def test_export_offline_and_through_the_server(home, tmp_path):
    import zipfile

    from pydicom import dcmread

    mr = next(p for p in VALID if p.name == "MR_small.dcm")
    study = dcmread(mr, stop_before_pixels=True).StudyInstanceUID
    expected = sorted(p.read_bytes() for p in VALID if dcmread(p, stop_before_pixels=True).StudyInstanceUID == study)
    assert run_cli("import", "--home", str(home), str(SAMPLES / "valid")).returncode == 0

    def contents(path):
        """The DICOM files of the ZIP (each listed in its manifest.csv)."""
        with zipfile.ZipFile(path) as archive:
            listed = archive.read("manifest.csv").decode()
            files = [info for info in archive.infolist() if info.filename != "manifest.csv"]
            assert all(info.filename in listed for info in files)
            return sorted(archive.read(info) for info in files)

    offline = tmp_path / "offline.zip"
    result = run_cli("export", study, "--home", str(home), "--out", str(offline))
    assert result.returncode == 0, result.stderr
    assert contents(offline) == expected
    missing = run_cli("export", "1.2.3", "--home", str(home), "--out", str(tmp_path / "none.zip"))
    assert missing.returncode == 1 and "no study" in missing.stderr and not (tmp_path / "none.zip").exists()
    server = ServerProcess.start(home)
    try:
        online = tmp_path / "online.zip"
        result = run_cli("export", study, "--home", str(home), "--out", str(online))
        assert result.returncode == 0, result.stderr
        assert contents(online) == expected
        assert run_cli("export", "1.2.3", "--home", str(home), "--out", str(tmp_path / "x.zip")).returncode == 1
    finally:
        server.stop()


def test_demo_defaults_to_its_own_home_and_prints_the_commands_for_it(tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pacsdash", "demo", "--no-serve"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert result.returncode == 0, result.stderr
    home = (tmp_path / "pacsdash-demo").resolve()
    assert (home / "index.duckdb").exists() and not (tmp_path / "pacsdash-home").exists()
    assert f"pacsdash users add NAME --role admin|editor|viewer --password-stdin --home {home}" in result.stdout
    assert "demo users: admin/admin-demo-pw, editor/editor-demo-pw, viewer/viewer-demo-pw" in result.stdout
    assert f"pacsdash modalities add NAME --aet AET --host HOST --port N --home {home}" in result.stdout


def test_account_commands_say_when_the_home_holds_nothing(tmp_path):
    empty = tmp_path / "nothing-here"
    listed = run_cli("users", "list", "--home", str(empty))
    assert listed.returncode == 1 and "holds no pacsdash home" in listed.stderr and not empty.exists()
    peers = run_cli("modalities", "list", "--home", str(empty))
    assert peers.returncode == 1 and "holds no pacsdash home" in peers.stderr
    added = run_cli("users", "add", "first", "--role", "admin", "--password-stdin", "--home", str(empty),
                    input="a-long-password\n")
    assert added.returncode == 0 and "holds no pacsdash home yet: a new one is made there" in added.stderr
    again = run_cli("users", "add", "second", "--role", "viewer", "--password-stdin", "--home", str(empty),
                    input="a-long-password\n")
    assert again.returncode == 0 and "note:" not in again.stderr
