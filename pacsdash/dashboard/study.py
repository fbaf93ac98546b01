"""One study: its series, and the actions the user's role allows."""

from __future__ import annotations

import asyncio
import html
from typing import Any

import pandas as pd
import panel as pn
import param

from pacsdash.access import Action, Role
from pacsdash.archive import Level, Query

SERIES_COLUMNS = {
    "SeriesNumber": "#",
    "Modality": "Modality",
    "SeriesDescription": "Description",
    "NumberOfSeriesRelatedInstances": "Instances",
    "BodyPartExamined": "Body part",
}


class StudyPanel(pn.viewable.Viewer):
    """The selected study's series and actions (download, send, delete)."""

    archive = param.Parameter()
    accounts = param.Parameter()
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    study_uid = param.String(default="")
    message = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._title = pn.pane.HTML("", sizing_mode="stretch_width")
        self._series = pn.widgets.Tabulator(
            pd.DataFrame(columns=["SeriesInstanceUID", *SERIES_COLUMNS.values()]),
            hidden_columns=["SeriesInstanceUID"], show_index=False, disabled=True, sizing_mode="stretch_width",
        )
        self._download = pn.pane.HTML("")
        self._peer = pn.widgets.Select(name="Send to", options=[], width=200)
        self._send = pn.widgets.Button(name="Send", button_type="primary", width=100)
        self._send.on_click(self._on_send)
        self._delete = pn.widgets.Button(name="Delete study", button_type="danger", width=130)
        self._confirm = pn.widgets.Checkbox(name="Yes, delete this study for good")
        self._delete.on_click(self._on_delete)
        self._progress = pn.indicators.LoadingSpinner(value=False, size=24, visible=False)
        self._viewer_slot = pn.Column(sizing_mode="stretch_width")
        self._load()

    @param.depends("study_uid", watch=True)
    def _load(self) -> None:
        self.message = ""
        self._confirm.value = False
        if not self.study_uid:
            self._title.object = "<p>Choose a study in the table.</p>"
            self._series.value = self._series.value.iloc[0:0]
            self._download.object = ""
            self._viewer_slot[:] = []
            return
        [study] = self.archive.find(Query(Level.STUDY, {"StudyInstanceUID": self.study_uid},
                                          ["PatientName", "PatientID", "StudyDate", "StudyDescription"],
                                          include_defaults=False)) or [{}]
        self._title.object = (
            f"<h3>{html.escape(study.get('StudyDescription') or 'Study')}</h3>"
            f"<p>{html.escape(study.get('PatientName') or '')} · {html.escape(study.get('PatientID') or '')}"
            f" · {html.escape(study.get('StudyDate') or '')}</p>"
        )
        rows = self.archive.find(Query(Level.SERIES, {"StudyInstanceUID": self.study_uid}, list(SERIES_COLUMNS),
                                       order_by=[("SeriesNumber", False)], include_defaults=False))
        self._series.value = pd.DataFrame(
            [{"SeriesInstanceUID": r["SeriesInstanceUID"], **{label: r.get(k) or "" for k, label in SERIES_COLUMNS.items()}}
             for r in rows],
            columns=["SeriesInstanceUID", *SERIES_COLUMNS.values()],
        )
        self._download.object = (
            f'<a href="/api/studies/{html.escape(self.study_uid)}/archive" download>Download the study (ZIP)</a>'
        )
        self._peer.options = [m.name for m in self.accounts.modalities()] if self.accounts else []
        from pacsdash.dashboard.viewer import SeriesViewer

        self._viewer_slot[:] = [SeriesViewer(archive=self.archive, study_uid=self.study_uid)]

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
                None, lambda: send_files(peer.host, peer.port, paths, peer.aet, "PACSDASH"))
            failed = sum(not r.ok for r in results)
            self.message = f"Sent {len(results) - failed} of {len(results)} instances to {peer.name}."
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
        self.message = f"Deleted {removed} instances."
        self.study_uid = ""

    def __panel__(self) -> pn.viewable.Viewable:
        actions: list[Any] = [self._download]
        if self.role.may(Action.SEND):
            actions += [self._peer, self._send]
        if self.role.may(Action.DELETE):
            actions += [self._confirm, self._delete]
        message = pn.pane.Alert(self.param.message, alert_type="info", visible=self.param.message.rx.bool())
        return pn.Column(self._title, pn.Row(*actions, self._progress), message, self._series,
                         self._viewer_slot, sizing_mode="stretch_width")
