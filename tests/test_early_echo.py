"""The DICOM port answers before the archive is open (issue 15: "target the DICOM port
accepting within 1 s of start"): the worker processes take connections as soon as they
listen, while the server process still opens (and, after a crash, recovers) the
archive. A C-ECHO is answered at once; a C-STORE sent meanwhile is acknowledged once
the archive is open, and is then found."""

from __future__ import annotations

import io
import socket
import threading

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.presentation import build_context

from pacsdash.archive import Level, Query
from tests.factories import make_instance


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_c_echo_is_answered_while_the_archive_is_still_opening(tmp_path, monkeypatch):
    from pacsdash.archive import factory
    from pacsdash.config import load_settings
    from pacsdash.server import start_server

    opening, release = threading.Event(), threading.Event()
    real = factory.open_archive

    def slow_open(settings):
        opening.set()
        assert release.wait(120), "the test never let the archive open"
        return real(settings)

    monkeypatch.setattr(factory, "open_archive", slow_open)
    port = _free_port()
    settings = load_settings(tmp_path / "home", http_port=0, dicom_port=port, dicom_workers=2,
                             accept_unknown_store=True)
    started: dict = {}
    starter = threading.Thread(target=lambda: started.setdefault("server", start_server(settings)), daemon=True)
    starter.start()
    ae = AE(ae_title="EARLYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    contexts = [build_context("1.2.840.10008.1.1"), build_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])]
    assert opening.wait(60)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="PACSDASH", contexts=contexts)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assert not release.is_set() and "server" not in started  # answered while the archive was not open
        raw = make_instance(PatientID="EARLY")
        result: dict = {}
        sender = threading.Thread(target=lambda: result.setdefault(
            "status", assoc.send_c_store(dcmread(io.BytesIO(raw))).Status))
        sender.start()
        sender.join(2)
        assert "status" not in result  # acknowledged only once the archive can keep it
        release.set()
        sender.join(60)
        assert result.get("status") == 0x0000
        assoc.release()
        starter.join(60)
        archive = started["server"].app.archive
        assert archive.count(Query(Level.IMAGE, {"PatientID": "EARLY"})) == 1
    finally:
        release.set()
        starter.join(60)
        if "server" in started:
            started["server"].stop()
