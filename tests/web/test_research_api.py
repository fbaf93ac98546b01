"""The research tools through their doors: CLI and JSON API, with a restart between."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import zipfile

import pytest
import requests
from pydicom import dcmread

from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli

USERS = {"admin": "admin-pw-long", "editor": "editor-pw-long", "viewer": "viewer-pw-long"}
PREFIX = "1.2.826.0.1.3680043.10.1474.55."


def session(role: str) -> requests.Session:
    s = requests.Session()
    s.auth = (role, USERS[role])
    return s


def visit(number: int, date: str) -> tuple[str, list[bytes]]:
    """A two-instance study of patient LONG^ITUDINAL on ``date``; the second
    instance references the first (ReferencedImageSequence)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    study = f"{PREFIX}{number}"
    first_uid = f"{PREFIX}{number}.1.1"
    first = make_instance(PatientID="LONG-1", PatientName="LONG^ITUDINAL", IssuerOfPatientID="HOSP",
                          PatientBirthDate="19600101", StudyInstanceUID=study, SeriesInstanceUID=f"{study}.1",
                          SOPInstanceUID=first_uid, StudyDate=date, StudyTime="101500", AccessionNumber=f"ACC{number}",
                          InstitutionName="General Hospital of Somewhere", SeriesDescription="Head LONG")
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = first_uid
    second = make_instance(PatientID="LONG-1", PatientName="LONG^ITUDINAL", IssuerOfPatientID="HOSP",
                           StudyInstanceUID=study, SeriesInstanceUID=f"{study}.1", SOPInstanceUID=f"{study}.1.2",
                           StudyDate=date, StudyTime="101500", ReferencedImageSequence=Sequence([item]))
    return study, [first, second]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("research") / "home"
    for name, password in USERS.items():
        assert run_cli("users", "add", name, "--role", name, "--password-stdin", "--home", str(home),
                       input=password + "\n").returncode == 0
    folder = home.parent / "in"
    folder.mkdir()
    for number, date in ((1, "20200110"), (2, "20200315")):
        _, raws = visit(number, date)
        for k, raw in enumerate(raws):
            (folder / f"v{number}-{k}.dcm").write_bytes(raw)
    assert run_cli("import", "--home", str(home), str(folder)).returncode == 0
    return home


def anonymized_instances(base: str, study: str) -> list:
    response = session("viewer").get(f"{base}/dicom-web/studies/{study}", headers={"Accept": "multipart/related; type=application/dicom"})
    assert response.status_code == 200, response.text
    from dicomweb_client.web import DICOMwebClient

    client = DICOMwebClient(f"{base}/dicom-web")
    client._session.auth = ("viewer", USERS["viewer"])
    return client.retrieve_study(study)


def test_cli_then_api_after_a_restart_share_subject_shift_and_uids(home):
    # Run 1: the command line, no server running.
    first = run_cli("anonymize", "--home", str(home), f"{PREFIX}1")
    assert first.returncode == 0, first.stderr
    new_first = first.stdout.strip().splitlines()[-1]
    assert new_first.startswith("2.25.") and new_first != f"{PREFIX}1"
    # Run 2: the JSON API of a freshly started server.
    server = ServerProcess.start(home)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        assert session("viewer").post(f"{base}/api/studies/{PREFIX}2/anonymize").status_code == 403
        assert session("editor").post(f"{base}/api/studies/{PREFIX}9/anonymize").status_code == 404
        assert session("editor").post(f"{base}/api/studies/{PREFIX}2/anonymize",
                                      json={"options": ["no-such-option"]}).status_code == 400
        response = session("editor").post(f"{base}/api/studies/{PREFIX}2/anonymize", json={})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["StudyInstanceUID"].startswith("2.25.") and body["excluded"] == []
        one, two = anonymized_instances(base, new_first), anonymized_instances(base, body["StudyInstanceUID"])
        # Same subject, never the original identity.
        subjects = {(ds.PatientID, str(ds.PatientName)) for ds in one + two}
        assert len(subjects) == 1 and "LONG" not in str(subjects)
        assert all(ds.PatientIdentityRemoved == "YES" and "2026d" in ds.DeidentificationMethod for ds in one + two)
        # The interval between the visits is kept; the dates themselves are not; times of day are.
        dates = [dt.datetime.strptime(ds[0].StudyDate, "%Y%m%d") for ds in (one, two)]
        assert (dates[1] - dates[0]).days == 65 and one[0].StudyDate != "20200110"
        assert {ds.StudyTime for ds in one + two} == {"101500"}
        # References hold: the second instance points at the first's new UID.
        for instances in (one, two):
            referring = next(ds for ds in instances if "ReferencedImageSequence" in ds)
            target = next(ds for ds in instances if "ReferencedImageSequence" not in ds)
            assert referring.ReferencedImageSequence[0].ReferencedSOPInstanceUID == target.SOPInstanceUID
        for ds in one + two:
            raw = ds.to_json()
            for original in ("LONG^ITUDINAL", "LONG-1", "HOSP", "19600101", "General Hospital", "ACC1", "ACC2", PREFIX):
                assert original not in raw
        # The admin can look the pseudonym up, through the API and the command line.
        pseudonym = one[0].PatientID
        assert session("editor").get(f"{base}/api/pseudonyms/{pseudonym}").status_code == 403
        found = session("admin").get(f"{base}/api/pseudonyms/{pseudonym}").json()
        assert (found["PatientID"], found["IssuerOfPatientID"]) == ("LONG-1", "HOSP")
        cli = run_cli("pseudonym", "--home", str(home), pseudonym)
        assert cli.returncode == 0 and "PatientID=LONG-1" in cli.stdout
        # Both runs are recorded, for admins.
        assert session("editor").get(f"{base}/api/records").status_code == 403
        records = session("admin").get(f"{base}/api/records", params={"action": "anonymize"}).json()["records"]
        assert {tuple(r["studies"]) for r in records} == {(f"{PREFIX}1",), (f"{PREFIX}2",)}
        assert {r["actor"] for r in records} == {"editor", records[-1]["actor"]} and records[-1]["actor"].startswith("cli:")
        assert all(r["details"]["stored"] == 2 and "Retain Longitudinal Temporal Information with Modified Dates"
                   in r["details"]["options"] for r in records)
    finally:
        server.stop()


def wait_for(base: str, job: dict, role: str) -> dict:
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = session(role).get(f"{base}/api/exports/{job['id']}").json()
    return job


def test_exports_through_the_api_by_role(home, tmp_path):
    server = ServerProcess.start(home)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        anonymized = {"studies": [f"{PREFIX}1"], "format": "zip", "anonymize": True}
        assert session("viewer").post(f"{base}/api/exports", json=anonymized).status_code == 403
        assert session("viewer").post(f"{base}/api/exports", json={**anonymized, "out": "/tmp/x"}).status_code == 400
        assert session("viewer").post(f"{base}/api/exports", json={"format": "zip"}).status_code == 400
        # A viewer may take originals out, found by a condition on any attribute.
        job = session("viewer").post(f"{base}/api/exports", json={"where": {"PatientID": "LONG-1"}, "format": "folder"})
        assert job.status_code == 202, job.text
        job = wait_for(base, job.json(), "viewer")
        assert job["state"] == "done" and job["summary"]["files"] == 4
        assert session("editor").get(f"{base}/api/exports/{job['id']}").status_code == 404  # not theirs
        data = session("viewer").get(f"{base}{job['download']}").content
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            rows = list(csv.DictReader(io.TextIOWrapper(bundle.open("manifest.csv"), "utf-8")))
            assert {r["subject"] for r in rows} == {"LONG-1"}
            for row in rows:
                assert bundle.read(row["path"]) and len(row["sha256"]) == 64
        # An editor's anonymized export names only pseudonyms.
        job = wait_for(base, session("editor").post(f"{base}/api/exports", json=anonymized).json(), "editor")
        assert job["state"] == "done", job
        data = session("editor").get(f"{base}{job['download']}").content
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            text = bundle.read("manifest.csv").decode()
            assert "LONG-1" not in text and PREFIX not in text and "SUBJ-" in text
            for name in bundle.namelist():
                if name.endswith(".dcm"):
                    ds = dcmread(io.BytesIO(bundle.read(name)))
                    assert ds.PatientIdentityRemoved == "YES" and PREFIX not in ds.SOPInstanceUID
        records = session("admin").get(f"{base}/api/records", params={"action": "export"}).json()["records"]
        assert [r["details"]["anonymized"] for r in records[:2]] == [True, False]
    finally:
        server.stop()


def test_cli_export_while_the_server_runs_and_without(home, tmp_path):
    out = tmp_path / "cohort.zip"
    offline = run_cli("export", "--home", str(home), f"{PREFIX}1", "--out", str(out), "--anonymize")
    assert offline.returncode == 0, offline.stderr
    assert run_cli("export", "--home", str(home), f"{PREFIX}1", "--out", str(out)).returncode == 1  # exists
    server = ServerProcess.start(home)
    try:
        online = tmp_path / "nifti"
        result = run_cli("export", "--home", str(home), "--where", "PatientID=LONG-1", "--out", str(online),
                         "--format", "nifti")
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(open(online / "manifest.csv")))
        # Two 2x2 slices with no position each: listed with the reason, no volume made.
        assert len(rows) == 2 and all(r["path"] == "" and "ImagePositionPatient" in r["note"] for r in rows)
        legacy = tmp_path / "legacy.zip"  # export STUDY --out FILE.zip keeps working
        assert run_cli("export", "--home", str(home), f"{PREFIX}2", "--out", str(legacy)).returncode == 0
        with zipfile.ZipFile(legacy) as bundle:
            assert len([n for n in bundle.namelist() if n.endswith(".dcm")]) == 2
    finally:
        server.stop()
    with zipfile.ZipFile(out) as bundle:
        assert "manifest.csv" in bundle.namelist()
