"""The same QIDO-RS queries, the same matches: pacsdash beside Orthanc."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import require_tool
from tests.helpers import VALID, OrthancProcess, have_orthanc
from tests.web.conftest import session_for
from tests.web.test_dicomweb import multipart

KEYS = {"studies": "0020000D", "series": "0020000E", "instances": "00080018"}
#: Queries both servers answer alike. Orthanc 1.10.1 (Debian) was seen to
#: answer some others wrongly, so they are not compared (our own matching
#: tests cover them): any PatientName filter, even an exact name, and any
#: wildcard (PatientID=*US*, ?CT?, AccessionNumber=*) matched nothing;
#: StudyDate=-19991231 also matched studies without a StudyDate.
QUERIES = [
    ("studies", {}),
    ("studies", {"PatientID": "4MR1"}),
    ("studies", {"PatientID": "13US1"}),
    ("studies", {"ModalitiesInStudy": "US"}),
    ("studies", {"ModalitiesInStudy": "MR"}),
    ("studies", {"StudyDate": "20000101-20201231"}),
    ("studies", {"StudyDate": "20040826"}),
    ("series", {"Modality": "MR"}),
    ("series", {"Modality": "OT"}),
    ("instances", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}),
    ("instances", {"Modality": "US"}),
]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    require_tool(have_orthanc(), "Debian's orthanc and orthanc-dicomweb are not installed; .ci/run installs them")
    orthanc = OrthancProcess.start(tmp_path_factory.mktemp("orthanc"))
    for path in VALID:
        orthanc.upload(path)
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def pacsdash_loaded(base_url):
    body, content_type = multipart([p.read_bytes() for p in VALID])
    response = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 202)
    return base_url


def uids(results: list[dict], resource: str) -> set[str]:
    return {r[KEYS[resource]]["Value"][0] for r in results}


@pytest.mark.parametrize("resource, params", QUERIES, ids=[f"{r}-{p}" for r, p in QUERIES])
def test_same_matches_as_orthanc(orthanc, pacsdash_loaded, resource, params):
    theirs = requests.get(f"http://127.0.0.1:{orthanc.http_port}/dicom-web/{resource}", params=params, timeout=30)
    ours = session_for("viewer").get(f"{pacsdash_loaded}/dicom-web/{resource}", params=params, timeout=30)
    assert theirs.status_code == ours.status_code == 200
    assert uids(ours.json(), resource) == uids(theirs.json(), resource)
    assert uids(ours.json(), resource)  # each query matches something
