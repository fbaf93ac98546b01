"""Uploads from the browser, without a browser: ingest and the Panel component."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from types import SimpleNamespace

import pytest
from pydicom import dcmread

from pacsdash.archive import Level, Query
from pacsdash.dashboard.ingest import DUPLICATE, FAILED, STORED, UploadTooLarge, expand, ingest, is_zip
from pacsdash.dashboard.upload import GuardedFileDropper, UploadPanel, report_html
from tests.factories import make_instance
from tests.helpers import VALID


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def studies(archive) -> set[str]:
    return {r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, {}, ["StudyInstanceUID"]))}


def test_files_and_nested_zip_folders_are_stored_byte_for_byte(archive):
    single = make_instance(PatientName="SINGLE^FILE", PatientID="UP1")
    a, b = make_instance(PatientID="UP2"), make_instance(PatientID="UP2")
    bundle = zip_of({"outer/inner/deeper/IM0001": a, "outer/IM0002.dcm": b, "outer/": b"",
                     "outer/readme.txt": b"not an image", "nested.zip": zip_of({"x.dcm": a})})
    report = ingest(archive, {"IM1.dcm": single, "study.zip": bundle, "notes.txt": "plain text"}, "dashboard:t", 2**30)
    outcomes = {f.name: f for f in report.files}
    assert {n for n, f in outcomes.items() if f.outcome == STORED} == {
        "IM1.dcm", "study.zip/outer/inner/deeper/IM0001", "study.zip/outer/IM0002.dcm"}
    assert outcomes["notes.txt"].outcome == FAILED and "DICOM Part 10" in outcomes["notes.txt"].reason
    assert outcomes["study.zip/outer/readme.txt"].outcome == FAILED
    assert "ZIP inside a ZIP" in outcomes["study.zip/nested.zip"].reason
    assert report.count(STORED) == 3 and report.count(FAILED) == 3
    for raw in (single, a, b):  # kept as received
        uid = dcmread(io.BytesIO(raw)).SOPInstanceUID
        [location] = archive.locate(Level.IMAGE, uid)
        assert archive.local_path(location).read_bytes() == raw
    assert len(report.studies) == 3


def test_duplicates_keep_the_first_copy(archive):
    raw = VALID[0].read_bytes()
    first = ingest(archive, {"a.dcm": raw}, "dashboard:t", 2**30)
    again = ingest(archive, {"copy.dcm": raw, "in.zip": zip_of({"a": raw})}, "dashboard:t", 2**30)
    assert first.count(STORED) == 1
    assert again.count(DUPLICATE) == 2 and again.count(STORED) == 0
    assert "0 stored, 2 duplicates, 0 failed" == again.summary()
    assert len(archive.locate(Level.STUDY, first.studies[0])) == 1


def test_a_zip_bomb_is_refused_before_unpacking(archive):
    bomb = zip_of({f"zeros{k}.dcm": bytes(20 * 2**20) for k in range(3)})
    assert len(bomb) < 2**20 and is_zip(bomb)
    report = ingest(archive, {"bomb.zip": bomb}, "dashboard:t", 16 * 2**20)
    assert report.refused and "unpacks to more than" in report.refused and "16.0 MB" in report.refused
    assert report.files == [] and studies(archive) == set()
    assert "Upload refused" in report_html(report)
    with pytest.raises(UploadTooLarge, match="received, more than"):
        expand({"big.dcm": bytes(2 * 2**20)}, 2**20)


def test_damaged_zips_and_members_are_reported(archive):
    good = make_instance(PatientID="Z1")
    bundle = bytearray(zip_of({"ok.dcm": good, "bad.dcm": make_instance(PatientID="Z2")}, zipfile.ZIP_STORED))
    second = bundle.find(b"PK\x03\x04", 10)
    bundle[second + 200] ^= 0xFF  # a byte of the second member: its CRC no longer matches
    report = ingest(archive, {"b.zip": bytes(bundle), "broken.zip": b"PK\x03\x04garbage"}, "dashboard:t", 2**30)
    outcomes = {f.name: f for f in report.files}
    assert outcomes["b.zip/ok.dcm"].outcome == STORED
    assert outcomes["b.zip/bad.dcm"].outcome == FAILED and "cannot be read from the ZIP" in outcomes["b.zip/bad.dcm"].reason
    assert outcomes["broken.zip"].outcome == FAILED and "not a readable ZIP" in outcomes["broken.zip"].reason


def test_names_and_reasons_are_escaped():
    from pacsdash.dashboard.ingest import FileOutcome, UploadReport

    html = report_html(UploadReport(files=[FileOutcome("<img src=x onerror=alert(1)>.dcm", FAILED, "<b>bad</b>")]))
    assert "<img" not in html and "&lt;img src=x" in html and "&lt;b&gt;bad" in html


def upload_event(name: str, data: bytes, chunk: int = 1, total: int = 1):
    return SimpleNamespace(event_name="upload_event",
                           data={"name": name, "data": data, "chunk": chunk, "total_chunks": total, "type": ""})


def test_the_panel_stores_and_reports(archive, caplog):
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    raw = make_instance(PatientName="PANEL^UPLOAD", PatientID="PU1")
    half = len(raw) // 2
    panel.dropper._process_event(upload_event("one.dcm", raw[:half], 1, 2))
    assert panel.dropper.value == {}  # not complete yet
    panel.dropper._process_event(upload_event("one.dcm", raw[half:], 2, 2))
    panel.dropper._process_event(upload_event("junk.bin", b"\x00" * 300))
    assert panel._store.label == "Store 2 files in the archive" and not panel._store.disabled
    old = panel.dropper
    with caplog.at_level(logging.INFO, logger="pacsdash.dashboard.upload"):
        report = asyncio.run(panel.store())
    assert report.count(STORED) == 1 and report.count(FAILED) == 1
    assert "1 stored, 0 duplicates, 1 failed" in panel._result.object and "junk.bin" in panel._result.object
    assert panel.dropper is not old and panel.dropper.value == {}  # a fresh drop zone
    assert any("dashboard upload by ed" in r.message and "1 stored" in r.message for r in caplog.records)
    stored = archive.find(Query(Level.STUDY, {"PatientID": "PU1"}, ["PatientName"]))
    assert [r["PatientName"] for r in stored] == ["PANEL^UPLOAD"]


def test_a_viewer_cannot_upload_even_by_forcing_the_widget(archive, caplog):
    allowed = {"now": False}
    panel = UploadPanel(archive=archive, user="vi", may_upload=lambda: allowed["now"], limit_mb=64)
    with caplog.at_level(logging.WARNING, logger="pacsdash.dashboard.upload"):
        panel.dropper._process_event(upload_event("x.dcm", make_instance(PatientID="FORCED")))
    assert panel.dropper.value == {} and "may not upload" in panel._status.object
    # Received while allowed, role taken away before storing: still refused.
    allowed["now"] = True
    panel.dropper._process_event(upload_event("y.dcm", make_instance(PatientID="FORCED")))
    allowed["now"] = False
    report = asyncio.run(panel.store())
    assert report.refused and studies(archive) == set()
    assert any("refused dashboard upload by vi" in r.message for r in caplog.records)


def test_the_dropper_refuses_chunks_beyond_the_limit():
    dropper = GuardedFileDropper(lambda: True, 1000, multiple=True)
    dropper._process_event(upload_event("a", b"x" * 600, 1, 2))
    dropper._process_event(upload_event("a", b"x" * 600, 2, 2))
    assert dropper.value == {} and dropper._file_buffer == {} and "larger than" in dropper.refusals[0]
    dropper._process_event(upload_event("a", b"x" * 600, 2, 3))  # the rest of the refused file: dropped quietly
    dropper._process_event(upload_event("a", b"x" * 600, 3, 3))
    assert dropper.value == {} and len(dropper.refusals) == 1
    dropper._process_event(upload_event("b", b"x" * 900))
    assert list(dropper.value) == ["b"]
