"""Queries, retrievals and uploads over HTTP are in the audit trail (issue:
"queries, retrievals ... uploads, each with who, when, what, outcome"): who
asked, from where, which studies, how it went; the same request again within
a minute is one entry, so a viewer fetching a study frame by frame does not
flood the trail."""

from __future__ import annotations

import time

import requests

from tests.factories import make_instance
from tests.web.conftest import session_for
from tests.web.test_dicomweb import multipart


def audit(base_url: str, **params: str) -> list[dict]:
    answer = session_for("admin").get(f"{base_url}/api/audit", params={"limit": "1000", **params}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]


def wait_for(base_url: str, what, **params: str) -> list[dict]:
    """The entries matching ``params`` once ``what(entries)`` holds (written in the background)."""
    deadline = time.monotonic() + 20
    while True:
        entries = audit(base_url, **params)
        if what(entries):
            return entries
        assert time.monotonic() < deadline, f"not in the trail within 20 s: {params}, found {entries}"
        time.sleep(0.2)


def test_an_upload_a_query_and_retrievals_are_recorded_once_each(base_url):
    raw = make_instance(PatientName="AUDIT^ANNA", PatientID="AUDIT1")
    body, content_type = multipart([raw])
    editor, viewer = session_for("editor"), session_for("viewer")
    stored = editor.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type},
                         timeout=30)
    assert stored.status_code == 200
    study = viewer.get(f"{base_url}/dicom-web/studies", params={"PatientID": "AUDIT1"}, timeout=30).json()[0]
    study_uid = study["0020000D"]["Value"][0]
    for _ in range(3):  # the same retrieval three times: one entry
        assert viewer.get(f"{base_url}/dicom-web/studies/{study_uid}/metadata", timeout=30).status_code == 200
    assert viewer.get(f"{base_url}/dicom-web/studies/1.2.3.999/metadata", timeout=30).status_code == 404

    uploads = wait_for(base_url, lambda e: len(e) >= 1, action="upload", user="editor", study=study_uid)
    assert [(e["outcome"], e["studies"], e["address"]) for e in uploads] == [("success", [study_uid], "127.0.0.1")]
    queries = wait_for(base_url, lambda e: len(e) >= 1, action="query", user="viewer")
    assert [(e["outcome"], e["studies"]) for e in queries] == [("success", [])]
    retrievals = wait_for(base_url, lambda e: len(e) >= 2, action="retrieve", user="viewer")
    mine = [(e["outcome"], e["studies"]) for e in retrievals if e["studies"] in ([study_uid], ["1.2.3.999"])]
    assert sorted(mine) == [("failure", ["1.2.3.999"]), ("success", [study_uid])]


def test_a_caller_without_a_login_leaves_no_query_entry(base_url):
    before = len(audit(base_url, action="query"))
    assert requests.get(f"{base_url}/dicom-web/studies", timeout=30).status_code == 401
    time.sleep(1)
    assert len(audit(base_url, action="query")) == before
