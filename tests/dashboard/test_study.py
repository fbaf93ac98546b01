"""The study page without a browser: series list with thumbnails, the viewer beside it, actions."""

from __future__ import annotations

import html
from types import SimpleNamespace

import pytest

from pacsdash.access import Role
from pacsdash.archive import Level, Query
from pacsdash.archive.actions import StudyActions
from pacsdash.dashboard.series_list import middle_instances, series_table, thumbnail_html, thumbnail_url
from pacsdash.dashboard.study import CANVAS_HEIGHT, StudyPanel
from tests.dashboard.viewer.conftest import CINE_FRAMES, CT_SLICES, make_viewer_study
from tests.factories import make_instance


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    study = make_viewer_study(tmp_path_factory.mktemp("study") / "home")
    yield study
    study.archive.close()


def test_series_rows_have_thumbnails_of_the_middle_image(study):
    table = series_table(study.archive, study.study_uid)
    assert list(table["#"]) == ["1", "2", "90"]  # by Series Number
    assert list(table["Instances"]) == ["1", str(CT_SLICES), "1"]
    assert list(table["Modality"]) == ["SR", "CT", study.cine.Modality]
    middles = middle_instances(study.archive, study.study_uid)
    by_number = sorted(study.ct, key=lambda ds: int(ds.InstanceNumber))
    assert middles[study.ct_series_uid] == by_number[CT_SLICES // 2].SOPInstanceUID
    assert middles[study.cine_series_uid] == study.cine.SOPInstanceUID
    sr, ct, cine = table["Thumbnail"]
    assert "<img" not in sr and "SR" in sr  # a report has no image
    assert html.escape(thumbnail_url(study.study_uid, study.ct_series_uid, middles[study.ct_series_uid])) in ct
    assert "/thumbnail?viewport=64,64" in cine


def test_values_are_escaped_in_the_thumbnail_cell():
    cell = thumbnail_html('1"><script>', "2", "3", "CT")
    assert "<script>" not in cell and "%22%3E%3Cscript%3E" in cell
    assert thumbnail_html("1", "2", None, "<b>SR</b>") == '<div class="pd-thumb-none">&lt;b&gt;SR&lt;/b&gt;</div>'


def test_series_descriptions_stay_plain_text(archive):
    raw = make_instance(SeriesDescription="<img src=x onerror=alert(1)>", BodyPartExamined="HEAD", SeriesNumber=3)
    archive.store_bytes(raw)
    [uid] = [r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, {}, ["StudyInstanceUID"]))]
    table = series_table(archive, uid)
    assert table.iloc[0]["Description"] == "<img src=x onerror=alert(1)> (HEAD)"  # the table escapes it when drawing
    assert "onerror" not in table.iloc[0]["Thumbnail"]


def test_clicking_a_series_shows_it_in_the_viewer(study):
    panel = StudyPanel(archive=study.archive, role=Role.VIEWER, study_uid=study.study_uid)
    assert panel._viewer.series_uid == study.ct_series_uid  # the first image series
    assert panel._viewer.canvas.height == CANVAS_HEIGHT
    rows = list(panel._series.table.value["SeriesInstanceUID"])
    panel._series._on_click(SimpleNamespace(row=rows.index(study.cine_series_uid), column="Description"))
    assert panel._viewer.series_uid == study.cine_series_uid
    assert len(panel._viewer.series) == CINE_FRAMES
    assert panel._series.table.selection == [rows.index(study.cine_series_uid)]


def test_the_patient_button_and_an_empty_study(study):
    panel = StudyPanel(archive=study.archive, role=Role.VIEWER, study_uid=study.study_uid)
    heard = []
    panel.param.watch(lambda e: heard.append(e.new), "patient")
    assert panel._to_patient.visible
    panel._on_patient()
    panel._on_patient()  # asked again: heard again
    assert len(heard) == 2 and heard[0] == panel._patient_id != ""
    panel.study_uid = ""
    assert not panel._to_patient.visible and panel._viewer is None and len(panel._series.table.value) == 0


def test_an_admin_deletes_with_confirmation_and_it_is_logged(tmp_path, caplog):
    import asyncio
    import logging

    study = make_viewer_study(tmp_path / "home")
    try:
        actions = StudyActions(study.archive, tmp_path / "home")
        panel = StudyPanel(archive=study.archive, role=Role.ADMIN, user="ad", study_uid=study.study_uid,
                           actions=actions)
        deleted = []
        panel.param.watch(lambda e: deleted.append(True), "deleted")
        asyncio.run(panel._on_delete())
        assert "Tick the box" in panel.message and study.archive.locate(Level.STUDY, study.study_uid)
        panel._confirm.value = True
        with caplog.at_level(logging.INFO, logger="pacsdash.archive.actions"):
            asyncio.run(panel._on_delete())
        assert not study.archive.locate(Level.STUDY, study.study_uid) and deleted == [True]
        assert panel.study_uid == "" and any(f"delete by user:ad of study {study.study_uid}" in r.message
                                             for r in caplog.records)
        viewer = StudyPanel(archive=study.archive, role=Role.VIEWER, actions=actions)
        viewer._confirm.value = True
        viewer.study_uid = "1.2.3"
        asyncio.run(viewer._on_delete())
        assert "may not delete" in viewer.message
    finally:
        study.archive.close()


def test_send_goes_to_the_chosen_peer_under_our_own_ae_title(tmp_path):
    import asyncio

    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from pacsdash.access import Accounts
    from pacsdash.archive import Archive
    from pacsdash.dimse.scu import send_files

    received: list[tuple[str, str]] = []

    def on_store(event):
        received.append((event.assoc.requestor.ae_title.strip(), event.dataset.SOPInstanceUID))
        return 0x0000

    peer = AE(ae_title="PEERSCP")
    peer.supported_contexts = AllStoragePresentationContexts
    server = peer.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    try:
        stored = archive.store_bytes(make_instance())
        accounts = Accounts(tmp_path / "accounts.sqlite")
        accounts.add_modality("peer", "PEERSCP", "127.0.0.1", server.server_address[1])
        actions = StudyActions(archive, tmp_path, accounts, "OURS", sender=send_files)
        panel = StudyPanel(archive=archive, accounts=accounts, role=Role.EDITOR, study_uid=stored.StudyInstanceUID,
                           actions=actions)
        panel._peer.value = "peer"  # noqa: SLF001
        asyncio.run(panel._on_send())  # noqa: SLF001
        assert received == [("OURS", stored.SOPInstanceUID)]
        assert panel.message.startswith("Sent 1 of 1")
    finally:
        server.shutdown()
        archive.close()


def test_a_series_asked_for_is_shown_and_an_unknown_study_is_said(study):
    panel = StudyPanel(archive=study.archive, role=Role.VIEWER, series_uid=study.cine_series_uid,
                       study_uid=study.study_uid)
    assert panel._viewer.series_uid == panel.series_uid == study.cine_series_uid  # as a link asks
    panel.series_uid = study.ct_series_uid
    assert panel._viewer.series_uid == study.ct_series_uid
    panel.series_uid = "1.2.3.999"  # not one of this study's: the series shown stays
    assert panel._viewer.series_uid == study.ct_series_uid
    panel.study_uid = "1.2.3.4.5.6"
    assert "No study with the UID <b>1.2.3.4.5.6</b>" in panel._title.object and panel._viewer is None
    panel.study_uid = "<script>"  # not a UID: never asked of the index, shown escaped
    assert "&lt;script&gt;" in panel._title.object and "<script>" not in panel._title.object


def test_no_peers_hint_and_the_delete_confirmation(study, tmp_path):
    from pacsdash.access import Accounts
    from pacsdash.dashboard.study import message_html, no_peers_hint

    accounts = Accounts(tmp_path / "accounts.sqlite")
    panel = StudyPanel(archive=study.archive, role=Role.ADMIN, accounts=accounts, study_uid=study.study_uid,
                       home="/srv/<pacs>")
    assert panel._no_peers.visible and not panel._peer.visible and not panel._send.visible
    assert "pacsdash modalities add NAME --aet AET --host HOST --port N --home /srv/&lt;pacs&gt;" \
        in panel._no_peers.object and 'href="/admin"' in panel._no_peers.object
    accounts.add_modality("peer", "PEER", "127.0.0.1", 104)
    panel.study_uid = ""
    panel.study_uid = study.study_uid
    assert panel._peer.options == ["peer"] and panel._peer.visible and not panel._no_peers.visible
    assert panel._delete.disabled  # until the box is ticked
    panel._confirm.value = True
    assert not panel._delete.disabled
    panel._confirm.value = False
    assert panel._delete.disabled
    panel.message = "Could not send to <peer>"
    assert "pd-warn" in panel._message.object and "&lt;peer&gt;" in panel._message.object
    assert message_html("") == "" and "--home HOME" in no_peers_hint("")
