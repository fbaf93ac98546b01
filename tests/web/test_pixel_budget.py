"""A stored instance whose small JPEG declares an 8192 x 8192 frame: its
thumbnail and renderings are refused at once (406) without the server's memory
growing by the frame, and its stored bytes are still retrieved as they came."""

from __future__ import annotations

import io
import time
from pathlib import Path

from tests.imaging.test_budget import jpeg_instance
from tests.web.conftest import session_for
from tests.web.test_dicomweb import multipart


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_huge_declared_frame_is_refused_quickly_and_cheaply(web_server, base_url):
    ds = jpeg_instance(8192)
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "BUDGET", "2.25.7001", "2.25.7002"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    body, content_type = multipart([raw])
    editor = session_for("editor")
    response = editor.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text

    viewer = session_for("viewer")
    instance = f"{base_url}/dicom-web/studies/2.25.7001/series/2.25.7002/instances/{ds.SOPInstanceUID}"
    before = _rss_kib(web_server.process.pid)
    for path in ("thumbnail", "rendered", "frames/1/rendered"):
        started = time.perf_counter()
        answer = viewer.get(f"{instance}/{path}", headers={"Accept": "image/jpeg"}, timeout=30)
        assert answer.status_code == 406, (path, answer.status_code, answer.text[:200])
        assert "8192 x 8192" in answer.text
        assert time.perf_counter() - started < 5, path
    grown_mib = (_rss_kib(web_server.process.pid) - before) / 1024
    assert grown_mib < 100, f"the server grew by {grown_mib:.0f} MiB refusing it"  # decoding: over 1 GiB

    retrieved = viewer.get(instance, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert retrieved.status_code == 200
    assert raw in retrieved.content  # byte for byte, as stored
