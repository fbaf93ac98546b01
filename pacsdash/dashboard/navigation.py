"""The dashboard's state in its URL: what a link opens, what the address bar
shows, and the browser's back and forward buttons.

Every change a user makes (a filter, a sort, a page, a study, a series, a
patient, a tab) becomes one history entry, ``/study/{uid}?series=...&name=...``
(see :mod:`pacsdash.dashboard.links`); changes made together (a study and its
first series) are written as one. Going back or forward shows that entry's
state again, without writing a new one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import panel as pn

from pacsdash.dashboard.history import BrowserHistory, absolute
from pacsdash.dashboard.links import ViewState, link, parse_link, split_url
from pacsdash.dashboard.search import MODALITIES, SORT_KEYS

#: Tab label -> the view name a link uses.
VIEW_OF_TAB = {"Studies": "studies", "Study": "study", "Patient": "patient", "Export": "export",
               "Upload": "upload", "Overview": "overview"}
SEARCH_PARAMS = ["patient_name", "patient_id", "accession", "description", "modality", "date_from", "date_to",
                 "order_by", "page", "where"]


def read_link(path: str, route: dict[str, str], args: dict[str, Sequence[Any]]) -> ViewState:
    """The state a request for ``path`` asks for, validated (see :func:`parse_link`)."""
    return parse_link(path, route, args, MODALITIES, list(SORT_KEYS.values()))


def request_link() -> ViewState:
    """The state asked for by the request that opened this session."""
    route = dict(pn.state.route_params or {})
    path = "/study/" if "uid" in route else "/patient/" if "patient_id" in route else "/"
    return read_link(path, route, dict(pn.state.session_args or {}))


class Navigation:
    """Keeps the search, study and patient views, the tabs and the URL in step."""

    def __init__(self, search: Any, study: Any, patient: Any, tabs: pn.Tabs, names: list[str]) -> None:
        self.search, self.study, self.patient, self.tabs, self.names = search, study, patient, tabs, names
        self.history = BrowserHistory()
        self._applying = False
        self._scheduled = False
        search.param.watch(self._changed, SEARCH_PARAMS)
        study.param.watch(self._changed, ["study_uid", "series_uid"])
        patient.param.watch(self._changed, ["patient_id"])
        tabs.param.watch(self._changed, ["active"])
        self.history.param.watch(self._popped, ["pops"])

    # -- state ----------------------------------------------------------------
    def state(self) -> ViewState:
        """What is shown now."""
        view = VIEW_OF_TAB.get(self.names[self.tabs.active], "studies") if self.names else "studies"
        return ViewState(view=view, study=self.study.study_uid, series=self.study.series_uid,
                         patient=self.patient.patient_id, search=self.search.state())

    def url(self) -> str:
        """The path and query string of what is shown."""
        return link(self.state())

    def apply(self, state: ViewState) -> None:
        """Show ``state`` (from a link, or from going back), writing no history."""
        self._applying = True
        try:
            self.search.restore(state.search)
            if state.study:
                self.study.series_uid = state.series  # read by the study's viewer as it loads
                self.study.study_uid = state.study
                if state.series:
                    self.study.series_uid = state.series
            if state.patient and state.patient != self.patient.patient_id:
                self.patient.patient_id = state.patient
            tab = next((name for name, view in VIEW_OF_TAB.items() if view == state.view), "Studies")
            if tab in self.names:
                self.tabs.active = self.names.index(tab)
        finally:
            self._applying = False
        self._show_links()

    def start(self, state: ViewState) -> None:
        """Show the state a link asked for; the address bar gets its canonical form."""
        self.apply(state)
        self.history.write(self.url())

    # -- writing and reading history -----------------------------------------
    def _changed(self, *_: Any) -> None:
        if self._applying:
            return
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            self._write()
        elif not self._scheduled:  # changes made together become one entry
            self._scheduled = True
            doc.add_next_tick_callback(self._write)

    def _write(self) -> None:
        self._scheduled = False
        self.history.write(self.url())
        self._show_links()

    def _show_links(self) -> None:
        """The study's and the patient's own links (with the search), to copy."""
        state = self.state()
        self.study.link = absolute(link(replace(state, view="study"))) if state.study else ""
        self.patient.link = absolute(link(replace(state, view="patient"))) if state.patient else ""

    def _popped(self, *_: Any) -> None:
        """Back or forward: show that entry's state; the address bar keeps it (nothing is written)."""
        path, route, args = split_url(self.history.popped)
        self.apply(read_link(path, route, args))
