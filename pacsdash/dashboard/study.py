"""One study: its series with thumbnails beside the viewer, and the actions
the user's role allows. Laid out to fit a 1366 x 768 screen without scrolling."""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any
from urllib.parse import quote

import panel as pn
import param

from pacsdash.access import Action, Role
from pacsdash.archive import Level, Query
from pacsdash.dashboard.search import person_name
from pacsdash.dashboard.series_list import SeriesList

LOGGER = logging.getLogger(__name__)
#: Height of the viewer's image and of the series list beside it, in pixels.
CANVAS_HEIGHT = 430
SERIES_LIST_WIDTH = 400


class StudyPanel(pn.viewable.Viewer):
    """The selected study's series and actions (download, send, delete)."""

    archive = param.Parameter()
    accounts = param.Parameter()
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    user = param.String(default="anonymous", doc="Who acts (for the log).")
    calling_aet = param.String(default="PACSDASH", doc="Our AE title when sending to a peer.")
    study_uid = param.String(default="")
    message = param.String(default="")
    patient = param.String(default="", doc="PatientID asked for with \"All studies of this patient\".")
    deleted = param.Event(doc="Fires once a study was deleted.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._title = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self._patient_id = ""
        self._to_patient = pn.widgets.Button(label="All studies of this patient", width=190, visible=False)
        self._to_patient.on_click(self._on_patient)
        self._series = SeriesList(archive=self.archive, width=SERIES_LIST_WIDTH, height=CANVAS_HEIGHT + 120)
        self._series.param.watch(self._on_series, "series_uid")
        self._viewer: Any = None
        self._download = pn.pane.HTML("", margin=(12, 10))
        self._peer = pn.widgets.Select(label="Send to", options=[], width=200)
        self._send = pn.widgets.Button(label="Send", color="primary", width=100)
        self._send.on_click(self._on_send)
        self._delete = pn.widgets.Button(label="Delete study", color="danger", width=130)
        self._confirm = pn.widgets.Checkbox(label="Yes, delete this study for good")
        self._delete.on_click(self._on_delete)
        self._progress = pn.indicators.LoadingSpinner(value=False, size=24, visible=False)
        self._viewer_slot = pn.Column(sizing_mode="stretch_width")
        self._load()

    @param.depends("study_uid", watch=True)
    def _load(self) -> None:
        self.message = ""
        self._confirm.value = False
        self._series.study_uid = self.study_uid
        if not self.study_uid:
            self._title.object = "<p>Choose a study in the Studies tab.</p>"
            self._patient_id = ""
            self._to_patient.visible = False
            self._download.object = ""
            self._viewer, self._viewer_slot[:] = None, []
            return
        [study] = self.archive.find(Query(Level.STUDY, {"StudyInstanceUID": self.study_uid},
                                          ["PatientName", "PatientID", "StudyDate", "StudyDescription"],
                                          include_defaults=False)) or [{}]
        e = html.escape
        self._patient_id = str(study.get("PatientID") or "")
        self._to_patient.visible = bool(self._patient_id)
        self._title.object = (
            f'<div class="pd-study-title"><b style="font-size: 1.2em">{e(study.get("StudyDescription") or "Study")}</b>'
            f" · {e(person_name(study.get('PatientName')))} · {e(self._patient_id)}"
            f" · {e(study.get('StudyDate') or '')}</div>"
        )
        self._download.object = (
            f'<a href="/api/studies/{e(quote(self.study_uid, safe=""))}/archive" download>Download the study (ZIP)</a>'
        )
        self._peer.options = [m.name for m in self.accounts.modalities()] if self.accounts else []
        from pacsdash.dashboard.viewer import SeriesViewer

        self._viewer = SeriesViewer(archive=self.archive, study_uid=self.study_uid, canvas_height=CANVAS_HEIGHT)
        self._viewer.param.watch(lambda e: self._series.highlight(e.new), "series_uid")
        self._series.highlight(self._viewer.series_uid)
        self._viewer_slot[:] = [self._viewer]

    def _on_series(self, event: Any) -> None:
        if self._viewer is not None and event.new:
            self._viewer.series_uid = event.new

    def _on_patient(self, *_: Any) -> None:
        if self.patient == self._patient_id:
            self.param.trigger("patient")
        else:
            self.patient = self._patient_id

    async def _on_send(self, *_: Any) -> None:
        from pacsdash.dimse.scu import AssociationFailed, send_files

        peer = self.accounts.modality(self._peer.value) if self._peer.value else None
        if peer is None or not self.study_uid:
            self.message = "Choose a peer."
            return
        paths = [self.archive.local_path(loc) for loc in self.archive.locate(Level.STUDY, self.study_uid)]
        self._progress.visible = self._progress.value = True
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                None, lambda: send_files(peer.host, peer.port, paths, peer.aet, self.calling_aet))
            failed = sum(not r.ok for r in results)
            self.message = f"Sent {len(results) - failed} of {len(results)} instances to {peer.name}."
            LOGGER.info("dashboard send by %s of study %s to %s: %d sent, %d failed", self.user, self.study_uid,
                        peer.name, len(results) - failed, failed)
        except AssociationFailed as exc:
            self.message = f"Could not send to {peer.name}: {exc}"
        finally:
            self._progress.visible = self._progress.value = False

    async def _on_delete(self, *_: Any) -> None:
        if not self.role.may(Action.DELETE):
            self.message = "Your role may not delete."
            return
        if not self._confirm.value:
            self.message = "Tick the box to confirm the deletion."
            return
        uid = self.study_uid
        removed = await asyncio.get_running_loop().run_in_executor(None, self.archive.delete_study, uid)
        LOGGER.info("dashboard delete by %s of study %s: %d instances", self.user, uid, removed)
        self.message = f"Deleted {removed} instances."
        self.study_uid = ""
        self.deleted = True

    def __panel__(self) -> pn.viewable.Viewable:
        actions: list[Any] = [self._to_patient, self._download]
        if self.role.may(Action.SEND):
            actions += [self._peer, self._send]
        if self.role.may(Action.DELETE):
            actions += [self._confirm, self._delete]
        message = pn.pane.Alert(self.param.message, alert_type="info", visible=self.param.message.rx.bool(),
                                margin=(0, 10))
        return pn.Column(
            self._title, pn.Row(*actions, self._progress), message,
            pn.Row(self._series, self._viewer_slot, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
