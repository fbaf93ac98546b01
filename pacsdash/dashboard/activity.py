"""``/activity``: live DICOM associations and HTTP requests, for admins.

The page reads the server's :class:`~pacsdash.traffic.recorder.TrafficRecorder`
every three seconds (a periodic callback of the session, no reload) and redraws
only when something was recorded. Teaching mode hides identifying values
(see :mod:`pacsdash.dashboard.activity_names` for what is hidden and why);
``/activity?teaching=1`` opens in it.
"""

from __future__ import annotations

import html
import time
from typing import Any

import panel as pn
import param

from pacsdash.dashboard.activity_names import Masker
from pacsdash.dashboard.activity_plot import counts_plot
from pacsdash.dashboard.activity_render import (
    ASSOCIATIONS_SHOWN,
    CSS,
    associations_html,
    clock,
    http_html,
)
from pacsdash.dashboard.activity_story import story_html
from pacsdash.dashboard.app import only_admins
from pacsdash.traffic.recorder import AssociationRecord, Snapshot, TrafficRecorder

#: Milliseconds between looks at the recorder; seconds between plot redraws.
REFRESH_MS = 3000
PLOT_EVERY = 15.0
LATEST = "latest"


class ActivityView(pn.viewable.Viewer):
    """The traffic of one server, live (see the module docstring)."""

    teaching = param.Boolean(default=False, doc="Hide identifying values (for a classroom).")

    def __init__(self, recorder: TrafficRecorder, **params: Any) -> None:
        super().__init__(**params)
        self.recorder = recorder
        self.mask = Masker(self.teaching)
        self._version = -1
        self._plotted_at = 0.0
        self._plotted_version = -1
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS])
        self.plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=240)
        self.associations = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS],
                                         css_classes=["pd-activity"])
        self.http = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS], css_classes=["pd-activity"],
                                 max_height=700, styles={"overflow-y": "auto"})
        self.choice = pn.widgets.Select(name="Association to explain", options={"The latest one": LATEST},
                                        value=LATEST, width=420)
        self.story = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS], css_classes=["pd-activity"])
        self.switch = pn.widgets.Checkbox.from_param(self.param.teaching, name="Teaching mode (hide patients, "
                                                     "instance UIDs and addresses)", css_classes=["pd-teaching"])
        self.choice.param.watch(lambda _: self.refresh(force=True), "value")
        self.param.watch(self._teaching_changed, "teaching")
        self.refresh(force=True)

    def _teaching_changed(self, event: Any) -> None:
        self.mask.teaching = event.new
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Redraw what changed since the last look."""
        snapshot = self.recorder.snapshot(associations=ASSOCIATIONS_SHOWN)
        if snapshot.version == self._version and not force:
            return
        self._version = snapshot.version
        self.summary.object = self._summary(snapshot)
        self.associations.object = associations_html(snapshot.associations, self.mask)
        self.http.object = http_html(snapshot.http, self.mask)
        self._update_choices(snapshot.associations)
        self.story.object = story_html(self._chosen(snapshot.associations), self.mask)
        now = time.monotonic()
        if force or (now - self._plotted_at >= PLOT_EVERY and snapshot.version != self._plotted_version):
            self._plotted_at, self._plotted_version = now, snapshot.version
            self.plot.object = counts_plot(snapshot.counts)

    def _summary(self, snapshot: Snapshot) -> str:
        totals = snapshot.totals
        live = sum(1 for record in snapshot.associations if record.live)
        text = (f"<p>{live} association{'s' if live != 1 else ''} open · since the start: {totals['associations']} "
                f"associations, {totals['messages']} DIMSE messages, {totals['http']} HTTP requests")
        if snapshot.dropped:
            text += f' · <span class="pd-status failure">{snapshot.dropped} events dropped under load</span>'
        return text + "</p>"

    def _update_choices(self, records: list[AssociationRecord]) -> None:
        options = {"The latest one": LATEST}
        for record in records:
            opened = record.opened
            address = "hidden" if self.mask.teaching else opened.address
            label = f"{clock(opened.time)} {opened.calling_aet} at {address}:{opened.port} ({record.ended or 'open'})"
            options[label] = record.key
        if self.choice.value not in options.values():
            options[f"(ended) {self.choice.value}"] = self.choice.value  # kept while chosen
        if options != self.choice.options:
            self.choice.options = options

    def _chosen(self, records: list[AssociationRecord]) -> AssociationRecord | None:
        if self.choice.value == LATEST:
            return records[0] if records else None
        return next((r for r in records if r.key == self.choice.value), None) or self.recorder.association(
            self.choice.value)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(pn.pane.HTML("<h2 style='margin: 4px 0'>Activity</h2>"), pn.HSpacer(), self.switch,
                   pn.pane.HTML('<a href="/">Back to the archive</a>', margin=(12, 10)), sizing_mode="stretch_width"),
            self.summary,
            self.plot,
            pn.Row(
                pn.Column(pn.pane.HTML("<h3>DICOM associations</h3>"), self.associations, sizing_mode="stretch_width"),
                pn.Column(pn.pane.HTML("<h3>HTTP requests</h3>"), self.http, width=520),
                sizing_mode="stretch_width",
            ),
            pn.pane.HTML("<h3>One association, step by step</h3>"),
            self.choice,
            self.story,
            sizing_mode="stretch_width",
        )


def activity_page(context: Any) -> pn.viewable.Viewable:
    """One admin session's page (refused to other roles)."""
    refused = only_admins(context)
    if refused is not None:
        return refused
    recorder = getattr(context, "traffic", None)
    if recorder is None:
        return pn.pane.HTML("<h2>Activity</h2><p>This server keeps no traffic record "
                            f"({html.escape('PACSDASH_TRAFFIC=off')}).</p>")
    teaching = (pn.state.session_args or {}).get("teaching", [b""])[0] in (b"1", b"true", b"on")
    view = ActivityView(recorder, teaching=teaching)
    if pn.state.curdoc is not None:
        pn.state.add_periodic_callback(view.refresh, period=REFRESH_MS)
    return view
