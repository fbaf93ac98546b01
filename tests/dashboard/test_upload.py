"""Uploads from the browser, without a browser: ingest and the Panel component."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile

import pytest
from pydicom import dcmread

from pacsdash.archive import Level, Query
from pacsdash.dashboard.ingest import DUPLICATE, FAILED, STORED, UploadTooLarge, expand, ingest, is_zip
from pacsdash.dashboard.receiver import FileReceiver
from pacsdash.dashboard.upload import UploadPanel, report_html
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


def announce(receiver, files: dict[str, bytes], prefix: str = "f") -> list[str]:
    ids = [f"{prefix}-{k}" for k in range(len(files))]
    receiver._handle_msg({"type": "announce",
                          "files": [{"id": i, "name": n, "size": len(d)} for i, (n, d) in zip(ids, files.items())]})
    return ids


def read_all(arrived) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of what :meth:`FileReceiver.take` handed over (its files closed)."""
    out = []
    for name, spooled in arrived:
        out.append((name, spooled.read()))
        spooled.close()
    return out


def send(receiver, file_id: str, data: bytes, chunk: int = 1000) -> None:
    for offset in range(0, max(len(data), 1), chunk):
        receiver._handle_msg({"type": "chunk", "id": file_id, "offset": offset, "data": data[offset:offset + chunk]})


def test_the_panel_stores_and_reports(archive, caplog):
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    raw = make_instance(PatientName="PANEL^UPLOAD", PatientID="PU1")
    one, junk = announce(panel.receiver, {"one.dcm": raw, "junk.bin": b"\x00" * 300})
    assert panel._store.label == "Store 2 files in the archive" and not panel._store.disabled
    assert "2 still uploading" in panel._status.object
    send(panel.receiver, one, raw[: len(raw) // 2], chunk=len(raw))
    assert panel.receiver.arrived == 0  # not complete yet
    send(panel.receiver, one, raw)  # from the start again: out of order, so this file is damaged
    assert panel.receiver.files[one].state == "failed" and "out of order" in panel.receiver.files[one].reason
    two, = announce(panel.receiver, {"one.dcm": raw}, prefix="again")
    send(panel.receiver, two, raw)
    send(panel.receiver, junk, b"\x00" * 300)
    assert panel._store.label == "Store 3 files in the archive"
    assert "1 still uploading" in panel._status.object  # the damaged one never completes
    with caplog.at_level(logging.INFO, logger="pacsdash.dashboard.upload"):
        report = asyncio.run(panel.store())
    assert report.count(STORED) == 1 and report.count(FAILED) == 2
    assert "1 stored, 0 duplicates, 2 failed" in panel._result.object and "junk.bin" in panel._result.object
    assert "out of order" in panel._result.object  # the damaged copy is reported, not dropped
    assert panel.receiver.files == {} and panel._store.disabled  # an empty drop zone for the next upload
    assert any("dashboard upload by ed: 3 files received" in r.message and "1 stored" in r.message
               for r in caplog.records)
    stored = archive.find(Query(Level.STUDY, {"PatientID": "PU1"}, ["PatientName"]))
    assert [r["PatientName"] for r in stored] == ["PANEL^UPLOAD"]


def test_store_pressed_early_waits_for_every_picked_file(archive):
    """The lost-upload bug: 10 files picked, Store pressed after 2 arrived."""
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    raws = {f"IM{k:04d}": make_instance(PatientID="EARLY", PatientName="EARLY^STORE") for k in range(10)}
    ids = announce(panel.receiver, raws)
    for file_id, raw in list(zip(ids, raws.values()))[:2]:
        send(panel.receiver, file_id, raw)
    assert (panel.receiver.picked, panel.receiver.arrived) == (10, 2)

    async def scenario():
        storing = asyncio.ensure_future(panel.store())
        for file_id, raw in list(zip(ids, raws.values()))[2:]:
            await asyncio.sleep(0.05)
            assert not storing.done() and "Waiting for" in panel._status.object
            send(panel.receiver, file_id, raw)
        return await storing

    report = asyncio.run(scenario())
    assert report.count(STORED) == 10 and report.summary() == "10 stored, 0 duplicates, 0 failed"
    assert len(archive.find(Query(Level.IMAGE, {"PatientID": "EARLY"}, ["SOPInstanceUID"]))) == 10


def test_files_picked_during_a_store_wait_for_the_next(archive):
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    first, second = make_instance(PatientID="B1"), make_instance(PatientID="B2")
    [a] = announce(panel.receiver, {"a.dcm": first}, prefix="a")
    send(panel.receiver, a, first)

    async def scenario():
        storing = asyncio.ensure_future(panel.store())
        await asyncio.sleep(0)  # Store has taken what was picked
        [b] = announce(panel.receiver, {"b.dcm": second}, prefix="b")  # picked while the first is stored
        report = await storing
        return b, report

    b, report = asyncio.run(scenario())
    assert report.count(STORED) == 1 and list(panel.receiver.files) == [b]
    assert panel._store.label == "Store 1 file in the archive" and "1 still uploading" in panel._status.object


def test_a_closed_page_stores_what_arrived_and_reports_the_rest(archive, caplog):
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    raws = {"x.dcm": make_instance(PatientID="CL1"), "y.dcm": make_instance(PatientID="CL1")}
    x, y = announce(panel.receiver, raws)
    send(panel.receiver, x, raws["x.dcm"])

    async def scenario():
        storing = asyncio.ensure_future(panel.store())
        await asyncio.sleep(0.05)
        panel.receiver.closed = True  # what _cleanup sets when the last view is gone
        return await storing

    with caplog.at_level(logging.INFO, logger="pacsdash.dashboard.upload"):
        report = asyncio.run(scenario())
    assert report.count(STORED) == 1 and report.count(FAILED) == 1
    [missing] = [f for f in report.files if f.outcome == FAILED]
    assert missing.name == "y.dcm" and "page was closed" in missing.reason
    assert any("2 files received, 1 stored, 0 duplicates, 1 failed" in r.message for r in caplog.records)


def test_same_names_from_two_folders_are_both_stored(archive):
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64)
    a, b = make_instance(PatientID="SN1"), make_instance(PatientID="SN1")
    [first] = announce(panel.receiver, {"IM0001": a}, prefix="one")
    [second] = announce(panel.receiver, {"IM0001": b}, prefix="two")
    send(panel.receiver, first, a)
    send(panel.receiver, second, b)
    report = asyncio.run(panel.store())
    assert report.count(STORED) == 2


def test_a_viewer_cannot_upload_even_by_forcing_the_widget(archive, caplog):
    allowed = {"now": False}
    panel = UploadPanel(archive=archive, user="vi", may_upload=lambda: allowed["now"], limit_mb=64)
    raw = make_instance(PatientID="FORCED")
    with caplog.at_level(logging.WARNING):
        [x] = announce(panel.receiver, {"x.dcm": raw})
        send(panel.receiver, x, raw)
    assert panel.receiver.files == {} and "may not upload" in panel._status.object
    # Received while allowed, role taken away before storing: still refused.
    allowed["now"] = True
    [y] = announce(panel.receiver, {"y.dcm": raw}, prefix="y")
    send(panel.receiver, y, raw)
    allowed["now"] = False
    report = asyncio.run(panel.store())
    assert report.refused and studies(archive) == set()
    assert any("refused dashboard upload by vi" in r.message for r in caplog.records)


def test_the_receiver_refuses_files_beyond_the_limit_before_they_are_sent():
    receiver = FileReceiver(lambda: True, 1000)
    a, b, c = announce(receiver, {"a": b"x" * 600, "b": b"y" * 600, "c": b"z" * 300})
    assert receiver.files[b].state == "refused" and "larger than" in receiver.files[b].reason
    assert (receiver.picked, receiver.held()) == (2, 900)
    send(receiver, b, b"y" * 600)  # sent anyway: dropped, nothing held
    assert receiver.files[b].received == 0
    send(receiver, a, b"x" * 700)  # longer than announced
    assert receiver.files[a].state == "failed" and receiver.files[a].spool is None
    send(receiver, c, b"z" * 300)
    arrived, missing = receiver.take([a, b, c])
    assert read_all(arrived) == [("c", b"z" * 300)] and {m.name for m in missing} == {"a", "b"}


def test_a_shown_again_view_resumes_where_the_server_got_to(monkeypatch):
    receiver = FileReceiver(lambda: True, 10_000)
    sent = []
    monkeypatch.setattr(receiver, "_send_msg", sent.append)
    a, b = announce(receiver, {"a": b"a" * 3000, "b": b"b" * 10})
    receiver._handle_msg({"type": "chunk", "id": a, "offset": 0, "data": b"a" * 1000})
    sent.clear()
    receiver._handle_msg({"type": "resume", "files": [{"id": a, "name": "a", "size": 3000},
                                                      {"id": "new-1", "name": "n", "size": 5}]})
    acks = {m["id"]: m for m in sent if m["type"] == "ack"}
    assert acks[a]["received"] == 1000 and acks[a]["rewind"] and not acks[a]["done"]
    assert acks["new-1"]["received"] == 0 and receiver.files["new-1"].size == 5  # announced late
    assert sent[-1] == {"type": "resumed"}
    send(receiver, a, b"a" * 3000)  # from offset 0 again would be out of order ...
    assert receiver.files[a].state == "failed"


def test_an_empty_file_arrives():
    receiver = FileReceiver(lambda: True, 1000)
    [e] = announce(receiver, {"empty": b""})
    send(receiver, e, b"")
    assert receiver.arrived == 1 and read_all(receiver.take([e])[0]) == [("empty", b"")]


def test_a_large_file_is_spooled_to_disk_while_it_arrives_and_removed_once_stored(archive, tmp_path):
    """A file beyond a few MB is kept in a file of the spool folder, not in the
    server's memory, while it arrives; it is stored whole, and nothing is left
    in the folder afterwards."""
    import os

    from pacsdash.dashboard.receiver import IN_MEMORY

    spool = tmp_path / "spool"
    spool.mkdir()
    panel = UploadPanel(archive=archive, user="ed", may_upload=lambda: True, limit_mb=64, spool_dir=str(spool))
    big = make_instance(PatientID="SPOOL1", Rows=1024, Columns=2048, PixelData=os.urandom(1024 * 2048 * 2))
    assert len(big) > IN_MEMORY
    [file_id] = announce(panel.receiver, {"big.dcm": big})
    send(panel.receiver, file_id, big, chunk=2**20)
    picked = panel.receiver.files[file_id]
    assert picked.state == "arrived" and picked.spool._rolled  # on disk, not in memory
    assert picked.spool._file.name not in (None, "")  # a real file descriptor of the spool folder
    report = asyncio.run(panel.store())
    assert report.count(STORED) == 1
    [location] = archive.locate(Level.PATIENT, "SPOOL1")
    assert archive.local_path(location).read_bytes() == big
    assert list(spool.iterdir()) == []  # removed (unnamed while it lived, on Linux)


def test_a_zip_handed_over_as_a_spooled_file_is_opened_member_by_member(archive):
    import tempfile

    raws = [make_instance(PatientID="ZSPOOL"), make_instance(PatientID="ZSPOOL")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for k, raw in enumerate(raws):
            zipped.writestr(f"folder/{k}.dcm", raw)
    spooled = tempfile.SpooledTemporaryFile(max_size=16)  # on disk at once
    spooled.write(buffer.getvalue())
    spooled.seek(0)
    report = ingest(archive, [("both.zip", spooled)], "test", 64 * 2**20)
    assert report.count(STORED) == 2 and {f.name for f in report.files} == {"both.zip/folder/0.dcm",
                                                                            "both.zip/folder/1.dcm"}
