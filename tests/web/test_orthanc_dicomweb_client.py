"""Orthanc's DICOMweb plugin as a client of pacsdash: STOW-RS into pacsdash,
WADO-RS from it, through Orthanc's own ``/dicom-web/servers/pacsdash/...``.

Orthanc sends its STOW-RS chunked, with a 73-character multipart boundary
(two UUIDs), longer than RFC 2046's 70 (INTEROP.md); pacsdash used to refuse
it with a 400.
"""

from __future__ import annotations


import pytest
import requests
from pydicom import dcmread

from tests.conftest import require_tool
from tests.helpers import VALID, OrthancProcess, have_orthanc
from tests.web.conftest import USERS, session_for
from tests.web.test_dicomweb import multipart, parts_of

#: Sent from Orthanc to pacsdash (a study of 7 instances in 7 transfer syntaxes).
SENT = sorted(p for p in VALID if p.name.startswith("MR_small"))
#: Pulled by Orthanc from pacsdash.
PULLED = next(p for p in VALID if p.name == "CT_small.dcm")


def start_orthanc(folder, pacsdash_url: str, user: str, password: str) -> OrthancProcess:
    """Orthanc (own config, loopback, TCP_NODELAY=1) with pacsdash registered
    as a DICOMweb server, as an Orthanc administrator would."""
    return OrthancProcess.start(folder, {"pacsdash": {"Url": pacsdash_url, "Username": user, "Password": password}})


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, base_url):
    require_tool(have_orthanc(), "Debian's orthanc and orthanc-dicomweb are not installed; .ci/run installs them")
    orthanc = start_orthanc(tmp_path_factory.mktemp("orthanc-client"), f"{base_url}/dicom-web/",
                            "editor", USERS["editor"])
    yield orthanc
    orthanc.stop()


def orthanc_url(orthanc: OrthancProcess, path: str) -> str:
    return f"http://127.0.0.1:{orthanc.http_port}{path}"


def pacsdash_instance(base_url: str, ds) -> requests.Response:
    return session_for("viewer").get(
        f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=30)


def test_orthanc_stows_a_study_into_pacsdash(orthanc, base_url):
    study_ids = set()
    for path in SENT:
        answer = requests.post(orthanc_url(orthanc, "/instances"), data=path.read_bytes(), timeout=30)
        assert answer.status_code == 200, answer.text
        study_ids.add(answer.json()["ParentStudy"])
    (study_id,) = study_ids

    answer = requests.post(orthanc_url(orthanc, "/dicom-web/servers/pacsdash/stow"),
                           json={"Resources": [study_id]}, timeout=120)
    assert answer.status_code == 200, (answer.status_code, answer.text, (orthanc.folder / "orthanc.log").read_text()[-3000:])

    for path in SENT:
        ds = dcmread(path, stop_before_pixels=True)
        response = pacsdash_instance(base_url, ds)
        assert response.status_code == 200, (path.name, response.text)
        [stored] = parts_of(response)
        # Orthanc sends each file as it stored it, which is as it received it.
        assert stored == path.read_bytes(), path.name


def test_orthanc_retrieves_a_study_from_pacsdash(orthanc, base_url):
    ds = dcmread(PULLED, stop_before_pixels=True)
    body, content_type = multipart([PULLED.read_bytes()])
    stored = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert stored.status_code == 200, stored.text
    found = requests.post(orthanc_url(orthanc, "/tools/lookup"), data=ds.SOPInstanceUID, timeout=30).json()
    assert found == []  # Orthanc does not have it yet

    answer = requests.post(orthanc_url(orthanc, "/dicom-web/servers/pacsdash/retrieve"),
                           json={"Resources": [{"Study": ds.StudyInstanceUID}]}, timeout=120)
    assert answer.status_code == 200, (answer.status_code, answer.text, (orthanc.folder / "orthanc.log").read_text()[-3000:])

    found = requests.post(orthanc_url(orthanc, "/tools/lookup"), data=ds.SOPInstanceUID, timeout=30).json()
    instances = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert len(instances) == 1, found
    pulled = requests.get(orthanc_url(orthanc, f"/instances/{instances[0]}/file"), timeout=30)
    assert pulled.status_code == 200
    assert pulled.content == PULLED.read_bytes()
