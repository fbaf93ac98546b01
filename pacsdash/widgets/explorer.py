"""Explore a DICOMweb server: connect, search, pick a series, look at it."""

from __future__ import annotations

import html
from typing import Any

import panel as pn
import param

from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.series_list import SeriesList
from pacsdash.dashboard.viewer import SeriesViewer

#: Height of the viewer's image, in pixels.
CANVAS_HEIGHT = 420


class Explorer(pn.viewable.Viewer):
    """A query form, the studies found, the series of the chosen study with
    thumbnails, and the viewer; on any DICOMweb server.

    Give a :class:`pacsdash.client.Client`, or nothing and fill in the
    server's URL and credentials in the form.
    """

    client = param.Parameter(default=None, doc="A pacsdash.client.Client (None: connect with the form).")
    study_uid = param.String(default="", doc="The study shown.")
    series_uid = param.String(default="", doc="The series shown.")
    message = param.String(default="")

    def __init__(self, client: Any = None, **params: Any) -> None:
        from dicomweb_client.api import DICOMwebClient

        if isinstance(client, DICOMwebClient):  # a dicomweb-client of the caller's own
            from pacsdash.dashboard.sources import _wrap_dicomweb_client

            client = _wrap_dicomweb_client(client)
        super().__init__(client=client, **params)
        self._url = pn.widgets.TextInput(name="DICOMweb URL", placeholder="http://127.0.0.1:8042/dicom-web",
                                         width=320)
        self._user = pn.widgets.TextInput(name="User", width=140)
        self._password = pn.widgets.PasswordInput(name="Password", width=140)
        self._connect = pn.widgets.Button(label="Connect", button_type="primary", width=100, margin=(24, 5, 5, 5))
        self._connect.on_click(self._on_connect)
        self._status = pn.pane.HTML("", css_classes=["pd-explorer-status"], sizing_mode="stretch_width")
        self._body = pn.Column(sizing_mode="stretch_width")
        self._build()

    def _on_connect(self, *_: Any) -> None:
        from pacsdash.client import ClientError, connect

        url = self._url.value.strip()
        if not url:
            self.message = "Give the server's DICOMweb URL."
            self._status.object = html.escape(self.message)
            return
        client = connect(url, user=self._user.value or None, password=self._password.value or None)
        try:
            client.extensions  # noqa: B018 - one QIDO-RS request: the server answers and we may search
        except ClientError as exc:
            self.message = str(exc)
            self._status.object = f'<p style="color:#a00">{html.escape(self.message)}</p>'
            return
        self.client = client

    @param.depends("client", watch=True)
    def _build(self) -> None:
        if self.client is None:
            self._body[:] = []
            return
        self.message = f"Connected to {self.client.url}"
        self._status.object = html.escape(self.message)
        self.search = StudySearch(archive=self.client)
        self.series = SeriesList(archive=self.client, width=360, height=CANVAS_HEIGHT + 120)
        self.viewer = SeriesViewer(archive=self.client, canvas_height=CANVAS_HEIGHT)
        self.search.param.watch(lambda e: self.param.update(study_uid=e.new), "selected")
        self.series.param.watch(lambda e: self.param.update(series_uid=e.new), "series_uid")
        self._body[:] = [self.search, pn.Row(self.series, self.viewer, sizing_mode="stretch_width")]

    @param.depends("study_uid", watch=True)
    def _show_study(self) -> None:
        self.series.study_uid = self.study_uid
        self.viewer.study_uid = self.study_uid

    @param.depends("series_uid", watch=True)
    def _show_series(self) -> None:
        if self.series_uid:
            self.viewer.series_uid = self.series_uid
            self.series.highlight(self.series_uid)

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Row(self._url, self._user, self._password, self._connect, visible=self.client is None)
        return pn.Column(form, self._status, self._body, sizing_mode="stretch_width")
