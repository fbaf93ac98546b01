"""The JSON API and who may call what (CONTRACT.md), against a real server."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests
from pydicom import dcmread

from pacsdash.web.base import parse_forwarded
from tests.helpers import VALID, StoreSCP, run_cli
from tests.web.conftest import session_for
from tests.web.test_dicomweb import multipart

MR = next(p for p in VALID if p.name == "MR_small.dcm")


@pytest.fixture(scope="module")
def loaded(base_url):
    body, content_type = multipart([p.read_bytes() for p in VALID])
    assert session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type}).ok
    return dcmread(MR, stop_before_pixels=True).StudyInstanceUID


def routes(study: str) -> list[tuple[str, str, str]]:
    """(method, path, the least role allowed)."""
    return [
        ("GET", "/api/studies", "viewer"),
        ("GET", "/dicom-web/studies", "viewer"),
        ("GET", f"/dicom-web/studies/{study}", "viewer"),
        ("GET", f"/dicom-web/studies/{study}/metadata", "viewer"),
        ("GET", f"/api/studies/{study}/archive", "viewer"),
        ("POST", "/dicom-web/studies", "editor"),
        ("POST", f"/api/studies/{study}/anonymize", "editor"),
        ("POST", f"/api/studies/{study}/send", "editor"),
        ("DELETE", "/api/studies/1.2.3.999", "admin"),
    ]


RANK = {"viewer": 0, "editor": 1, "admin": 2}


def test_every_role_against_every_route(loaded, base_url):
    for method, path, least in routes(loaded):
        url = base_url + path
        assert requests.request(method, url).status_code == 401, path
        assert requests.request(method, url, auth=("admin", "wrong")).status_code == 401, path
        response = requests.request(method, url)
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        for role in ("viewer", "editor", "admin"):
            status = session_for(role).request(method, url, data=b"{}").status_code
            if RANK[role] < RANK[least]:
                assert status == 403, (role, method, path)
            else:
                assert status not in (401, 403), (role, method, path, status)


def test_health_needs_no_login_and_tells_strangers_only_the_status(base_url, web_server):
    assert requests.get(f"{base_url}/api/health").json() == {"status": "ok"}
    wrong = requests.get(f"{base_url}/api/health", auth=("viewer", "not-the-password"))
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    body = session_for("viewer").get(f"{base_url}/api/health").json()
    assert body["status"] == "ok" and body["dicom_port"] == web_server.dicom_port and body["aet"] and body["version"]


def test_study_list_filters_and_pages(loaded, base_url):
    session = session_for("viewer")
    everything = session.get(f"{base_url}/api/studies").json()
    assert everything["total"] == len(everything["studies"]) > 10
    mr = session.get(f"{base_url}/api/studies", params={"PatientName": "*MR1"}).json()
    assert [s["StudyInstanceUID"] for s in mr["studies"]] == [loaded]
    assert mr["studies"][0]["NumberOfStudyRelatedInstances"] == "7"
    page = session.get(f"{base_url}/api/studies", params={"limit": 2, "offset": 2}).json()
    assert [s["StudyInstanceUID"] for s in page["studies"]] == [s["StudyInstanceUID"] for s in everything["studies"][2:4]]
    assert session.get(f"{base_url}/api/studies", params={"limit": -1}).status_code == 400
    assert session.get(f"{base_url}/api/studies", params={"StudyDate": "2020-01-01"}).status_code == 400


def test_archive_zip_holds_the_original_files(loaded, base_url):
    response = session_for("viewer").get(f"{base_url}/api/studies/{loaded}/archive")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        contents = {info.filename.rsplit("/", 1)[1]: archive.read(info) for info in archive.infolist()}
    originals = {dcmread(p, stop_before_pixels=True).SOPInstanceUID + ".dcm": p.read_bytes()
                 for p in VALID if dcmread(p, stop_before_pixels=True).StudyInstanceUID == loaded}
    assert contents == originals
    assert session_for("viewer").get(f"{base_url}/api/studies/1.2.3/archive").status_code == 404


def test_send_to_a_registered_peer(loaded, base_url, web_server, tmp_path):
    scp = StoreSCP.start(tmp_path / "received")
    try:
        assert run_cli("modalities", "add", "ws", "--home", str(web_server.home), "--aet", scp.aet,
                       "--host", "127.0.0.1", "--port", str(scp.port)).returncode == 0
        response = session_for("editor").post(f"{base_url}/api/studies/{loaded}/send", json={"modality": "ws"})
        assert response.status_code == 200, response.text
        assert response.json() == {"modality": "ws", "sent": 7, "failed": 0, "errors": []}
        assert session_for("editor").post(f"{base_url}/api/studies/{loaded}/send", json={"modality": "nope"}).status_code == 404
        assert session_for("editor").post(f"{base_url}/api/studies/{loaded}/send", data=b"[").status_code == 400
    finally:
        scp.stop()
    assert len(list((tmp_path / "received").iterdir())) == 7


def test_delete_removes_the_study_everywhere(base_url, web_server):
    path = next(p for p in VALID if p.name == "CT_small.dcm")
    body, content_type = multipart([path.read_bytes()])
    session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    ds = dcmread(path, stop_before_pixels=True)
    study = ds.StudyInstanceUID
    admin = session_for("admin")
    instance_url = (f"{base_url}/dicom-web/studies/{study}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}")
    frame = {"Accept": "application/octet-stream"}
    assert admin.get(f"{instance_url}/frames/1", headers=frame).status_code == 200  # its location is remembered
    assert admin.delete(f"{base_url}/api/studies/{study}").json()["deleted_instances"] == 1
    assert admin.get(f"{instance_url}/frames/1", headers=frame).status_code == 404
    assert admin.get(f"{instance_url}/rendered").status_code == 404
    assert admin.get(f"{base_url}/dicom-web/studies", params={"StudyInstanceUID": study}).json() == []
    assert admin.get(f"{base_url}/dicom-web/studies/{study}").status_code == 404
    assert admin.delete(f"{base_url}/api/studies/{study}").status_code == 404


def test_forwarded_header_parsing():
    assert parse_forwarded('for=192.0.2.60;proto=http;host="127.0.0.1:8080", for=1.2.3.4') == {
        "for": "192.0.2.60", "proto": "http", "host": "127.0.0.1:8080"}
    assert parse_forwarded('host="a;b:1";proto=https') == {"host": "a;b:1", "proto": "https"}
    assert parse_forwarded("") == {}


def test_dashboard_websocket_refuses_foreign_origins(web_server):
    import base64
    import os
    import socket

    def handshake(origin: str) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection(("127.0.0.1", web_server.http_port), timeout=10) as sock:
            sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{web_server.http_port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Origin: {origin}\r\n\r\n").encode())
            return sock.recv(200)

    assert handshake("http://evil.example").startswith(b"HTTP/1.1 403")


def test_unknown_api_routes_answer_json_404(base_url):
    for method in ("get", "post", "delete"):
        response = getattr(session_for("viewer"), method)(f"{base_url}/api/no/such/route")
        assert response.status_code == 404 and response.json()["error"] == "no such API route"
        assert response.headers["Content-Type"].startswith("application/json")


def test_searching_under_an_unknown_study_or_series_is_404(loaded, base_url):
    viewer = session_for("viewer")
    assert viewer.get(f"{base_url}/dicom-web/studies/1.2.3.4/series").status_code == 404
    assert viewer.get(f"{base_url}/dicom-web/studies/1.2.3.4/instances").status_code == 404
    series = viewer.get(f"{base_url}/dicom-web/studies/{loaded}/series").json()
    assert series  # the study exists: its series
    assert viewer.get(f"{base_url}/dicom-web/studies/{loaded}/series", params={"Modality": "XX"}).json() == []
    assert viewer.get(f"{base_url}/dicom-web/studies/{loaded}/series/1.2.3/instances").status_code == 404
