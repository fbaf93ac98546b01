"""kill -9 during a parallel ingest (C-STORE and STOW-RS) loses no acknowledged instance."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from pynetdicom import AE
from pynetdicom.presentation import build_context

from pacsdash.archive import Archive, Level, Query
from pacsdash.dimse.sockets import NODELAY_HANDLERS
from tests.factories import make_dataset
from tests.helpers import ServerProcess, run_cli, wait_until

SENDERS = 4
PER_SENDER = 150


def sender(port: int, paths, acknowledged: list[str], stop: threading.Event) -> None:
    ae = AE(ae_title="CRASHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSDASH",
                         contexts=[build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])],
                         evt_handlers=NODELAY_HANDLERS)
    if not assoc.is_established:
        return
    for path, sop_uid in paths:
        if stop.is_set() or not assoc.is_established:
            break
        try:
            status = assoc.send_c_store(path)
        except Exception:
            break
        if status.get("Status") == 0x0000:
            acknowledged.append(sop_uid)
    if assoc.is_established:
        assoc.abort()


def stow_sender(http_port: int, paths, acknowledged: list[str], stop: threading.Event) -> None:
    """STOW-RS in batches of 5 as the editor; record what a 200 acknowledged."""
    from tests.web.test_dicomweb import multipart

    for start in range(0, len(paths), 5):
        if stop.is_set():
            break
        body, content_type = multipart([p.read_bytes() for p, _ in paths[start:start + 5]])
        try:
            response = requests.post(f"http://127.0.0.1:{http_port}/dicom-web/studies", data=body,
                                     headers={"Content-Type": content_type}, auth=("editor", "editor-password"), timeout=30)
        except requests.RequestException:
            break
        if response.status_code == 200:
            acknowledged.extend(item["00081155"]["Value"][0] for item in response.json()["00081199"]["Value"])


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_instance(tmp_path):
    home = tmp_path / "home"
    files = []
    for k in range(SENDERS):
        batch = []
        for j in range(PER_SENDER):
            ds = make_dataset(PatientID=f"CRASH{k}", InstanceNumber=j)
            path = tmp_path / f"{k}-{j}.dcm"
            ds.save_as(path, enforce_file_format=True)
            batch.append((path, ds.SOPInstanceUID))
        files.append(batch)

    assert run_cli("users", "add", "editor", "--role", "editor", "--password-stdin", "--home", str(home), input="editor-password\n").returncode == 0
    server = ServerProcess.start(home)
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(server.dicom_port, files[k], acknowledged, stop)) for k in range(SENDERS - 1)]
    threads.append(threading.Thread(target=stow_sender, args=(server.http_port, files[-1], acknowledged, stop)))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < SENDERS * PER_SENDER // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL, mid-ingest
    stop.set()
    for t in threads:
        t.join(30)
    assert 0 < len(acknowledged) < SENDERS * PER_SENDER, "the kill should land in the middle of the ingest"

    # A restart recovers: everything acknowledged is there. It serves first and
    # indexes the orphan files after (a stop before that leaves the home unclean).
    server = ServerProcess.start(home)
    log = home / "logs" / "pacsdash.log"
    wait_until(lambda: "after an unclean stop" in log.read_text(), 120, what="the reconcile's report")
    server.stop()
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        indexed = {r["SOPInstanceUID"] for r in archive.find(Query(Level.IMAGE))}
        missing = set(acknowledged) - indexed
        assert not missing, f"{len(missing)} acknowledged instances lost"
        # Index and file store agree: every row has its file, every file a row.
        assert archive.index.files() == set(archive.store.keys())
        assert not list((home / "store").rglob("*.tmp"))
        for location in archive.locate(Level.IMAGE, None):
            assert archive.local_path(location).stat().st_size == location.size
