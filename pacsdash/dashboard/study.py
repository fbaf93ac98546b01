"""One study: its series with thumbnails beside the viewer, and the actions
the user's role allows. Laid out to fit a 1366 x 768 screen without scrolling
(the anonymization section, opened with "Anonymize…", comes in above the viewer);
messages take the room left in the actions row, so they never push the viewer
down. A link to the study (and the series shown) is given to copy."""

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
from pacsdash.archive.actions import ActionError, Actor
from pacsdash.archive.scoped import scope_of
from pacsdash.dashboard.history import LinkBox
from pacsdash.dashboard.links import valid_uid
from pacsdash.dashboard.research import AnonymizePanel, OptionsPicker, TagComparison
from pacsdash.dashboard.search import display_date, person_name
from pacsdash.dashboard.series_list import SeriesList
from pacsdash.dashboard.study_labels import StudyLabels

LOGGER = logging.getLogger(__name__)
#: Height of the viewer's image and of the series list beside it, in pixels.
CANVAS_HEIGHT = 430
SERIES_LIST_WIDTH = 400
MESSAGE_CSS = """
:host { overflow: hidden; }
.pd-message { padding: 6px 10px; border-radius: 4px; background: #e7f1fb; color: #0b4f8a; font-size: 13px;
  max-height: 52px; overflow: auto; }
.pd-message.pd-warn { background: #fdf0e6; color: #8a3b0b; }
"""
DELETE_CSS = ":host { border-left: 1px solid #e3c5c5; padding-left: 14px; margin-left: 24px; }"


def no_peers_hint(home: str = "") -> str:
    """What to do when there is no peer to send to (HTML, escaped)."""
    where = f" --home {html.escape(home)}" if home else " --home HOME"
    return ('<div class="pd-no-peers"><small>No peers to send to yet. An admin registers one on the '
            '<a href="/admin" target="_blank">admin page (/admin)</a> or with<br>'
            f"<code>pacsdash modalities add NAME --aet AET --host HOST --port N{where}</code></small></div>")


def message_html(text: str) -> str:
    """A message of the actions row (escaped); failures and refusals look different."""
    if not text:
        return ""
    warn = any(word in text for word in ("not", "No ", "Could", "Tick", "Choose"))
    return f'<div class="pd-message{" pd-warn" if warn else ""}" title="{html.escape(text)}">{html.escape(text)}</div>'


class StudyPanel(pn.viewable.Viewer):
    """The selected study's series and actions (download, send, delete, anonymize)."""

    archive = param.Parameter()
    accounts = param.Parameter()
    actions = param.Parameter(doc="The archive's StudyActions (send, delete, anonymize).")
    current_role = param.Callable(default=None, doc="The user's role now (None: gone); default: ``role``.")
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    user = param.String(default="anonymous", doc="Who acts (for the log).")
    study_uid = param.String(default="")
    series_uid = param.String(default="", doc="The series shown (follows the viewer; set it to show one).")
    home = param.String(default="", doc="The server's home folder, for the command in the no-peers hint.")
    link = param.String(default="", doc="Absolute URL of what is shown, to copy (set by the app).")
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
        self._send = pn.widgets.Button(label="Send", color="primary", width=100, margin=(24, 5, 5, 5))
        self._send.on_click(self._on_send)
        self._no_peers = pn.pane.HTML(no_peers_hint(self.home), width=330, visible=False, margin=(2, 10))
        # The confirmation sits above the button, apart from the other actions, and the
        # button stays disabled until it is ticked.
        self._delete = pn.widgets.Button(label="Delete study", color="danger", width=130, disabled=True,
                                         margin=(8, 5, 5, 5))
        self._confirm = pn.widgets.Checkbox(label="Yes, delete this study for good", margin=(2, 5))
        self._confirm.param.watch(lambda e: setattr(self._delete, "disabled", not e.new), "value")
        self._delete.on_click(self._on_delete)
        self._message = pn.pane.HTML("", sizing_mode="stretch_width", height=56, margin=(4, 10),
                                     stylesheets=[MESSAGE_CSS], css_classes=["pd-message-slot"])
        self._link = LinkBox(url=self.link)
        self._progress = pn.indicators.LoadingSpinner(value=False, size=24, visible=False)
        self._viewer_slot = pn.Column(sizing_mode="stretch_width", css_classes=["pd-viewer"])
        self._research_toggle = pn.widgets.Toggle(label="Anonymize…", width=120, css_classes=["pd-anonymize-toggle"])
        self._research_toggle.param.watch(lambda e: self._show_research(e.new), "value")
        # The anonymization section is built when first used (opening a study
        # never waits for it, nor does the browser draw it hidden).
        self._research_parts: tuple[Any, Any, Any, pn.Row] | None = None
        self._research_slot = pn.Column(sizing_mode="stretch_width", margin=0)
        self._shown_uid = ""
        self._labels = StudyLabels(archive=self.archive, actions=self.actions, user=self.user, role=self.role,
                                   current_role=self.current_role, show_message=False)
        self._labels.param.watch(lambda e: setattr(self, "message", e.new), "message")  # in the actions row
        self._load()

    def _build_research(self) -> tuple[Any, Any, Any, pn.Row]:
        """The options, the anonymization, the before/after view and their row (built once).

        The options are shared by the anonymization and the before/after view,
        so the view shows what the button would do.
        """
        if self._research_parts is None:
            options = OptionsPicker()
            shared = {"actions": self.actions, "picker": options, "current_role": self.current_role,
                      "role": self.role}
            anonymize = AnonymizePanel(user=self.user, study_uid=self._shown_uid, scope=scope_of(self.archive), **shared)
            anonymize.param.watch(self._on_open_new, "opened")
            compare = TagComparison(archive=self.archive, shown_instance=self._shown_instance,
                                    study_uid=self._shown_uid, **shared)
            row = pn.Row(pn.Column(anonymize, width=470), compare, visible=False,
                         sizing_mode="stretch_width", css_classes=["pd-research"])
            self._research_parts = (options, anonymize, compare, row)
            self._research_slot[:] = [row]
        return self._research_parts

    @property
    def _options(self) -> Any:
        return self._build_research()[0]

    @property
    def _anonymize(self) -> Any:
        return self._build_research()[1]

    @property
    def _compare(self) -> Any:
        return self._build_research()[2]

    @property
    def _research(self) -> pn.Row:
        return self._build_research()[3]

    @param.depends("message", watch=True)
    def _show_message(self) -> None:
        self._message.object = message_html(self.message)

    @param.depends("link", watch=True)
    def _show_link(self) -> None:
        self._link.url = self.link

    @param.depends("home", watch=True)
    def _show_hint(self) -> None:
        self._no_peers.object = no_peers_hint(self.home)

    @param.depends("series_uid", watch=True)
    def _series_asked(self) -> None:
        """Show the series asked for, if it is one of this study's."""
        if self._viewer is not None and self.series_uid and self.series_uid != self._viewer.series_uid \
                and self.series_uid in self._viewer.series_options.values():
            self._viewer.series_uid = self.series_uid

    def _viewer_series(self, event: Any) -> None:
        self._series.highlight(event.new)
        self.series_uid = event.new

    @param.depends("study_uid", watch=True)
    def _load(self) -> None:
        self.message = ""
        self._confirm.value = False
        self._research_toggle.value = False
        shown = self.study_uid if valid_uid(self.study_uid) else ""  # never asked of the index otherwise
        self._series.study_uid = shown
        self._labels.study_uid = shown  # shows nothing of a study the session may not see
        self._shown_uid = shown
        if self._research_parts is not None:
            self._anonymize.study_uid = self._compare.study_uid = shown
        e = html.escape
        study: dict[str, Any] | None = None
        if self.study_uid and valid_uid(self.study_uid):
            rows = self.archive.find(Query(Level.STUDY, {"StudyInstanceUID": self.study_uid},
                                           ["PatientName", "PatientID", "StudyDate", "StudyDescription"],
                                           include_defaults=False))
            study = rows[0] if rows else None
        if study is None:
            if not self.study_uid:
                self._title.object = "<p>Choose a study in the Studies tab.</p>"
            else:
                self._title.object = (
                    f'<p class="pd-no-study">No study with the UID <b>{e(self.study_uid[:80])}</b> in the archive: '
                    "it may have been deleted, or the link is incomplete.</p>")
            self._patient_id = ""
            self._to_patient.visible = False
            self._download.object = ""
            self._viewer, self._viewer_slot[:] = None, []
            self.series_uid = ""
            return
        self._patient_id = str(study.get("PatientID") or "")
        self._to_patient.visible = bool(self._patient_id)
        self._title.object = (
            f'<div class="pd-study-title"><b style="font-size: 1.2em">{e(study.get("StudyDescription") or "Study")}</b>'
            f" · {e(person_name(study.get('PatientName')))} · {e(self._patient_id)}"
            f" · {e(display_date(study.get('StudyDate')))}</div>"
        )
        self._download.object = (
            f'<a href="/api/studies/{e(quote(self.study_uid, safe=""))}/archive" download>Download the study (ZIP)</a>'
        )
        self._peer.options = [m.name for m in self.accounts.modalities()] if self.accounts else []
        self._peer.visible = self._send.visible = bool(self._peer.options)
        self._no_peers.visible = not self._peer.options
        from pacsdash.dashboard.viewer import SeriesViewer

        asked = self.series_uid
        self._viewer = SeriesViewer(archive=self.archive, study_uid=self.study_uid, canvas_height=CANVAS_HEIGHT,
                                    **({"series_uid": asked} if asked and valid_uid(asked) else {}))
        self._viewer.param.watch(self._viewer_series, "series_uid")
        self._series.highlight(self._viewer.series_uid)
        self.series_uid = self._viewer.series_uid
        self._viewer_slot[:] = [self._viewer]

    def _shown_instance(self) -> tuple[str, str]:
        """``(series_uid, sop_uid)`` of the image in the viewer (empty without one)."""
        if self._viewer is None:
            return "", ""
        return self._viewer.series_uid, self._viewer.current_instance

    def _show_research(self, shown: bool) -> None:
        """Open or close the anonymization section; the before/after view
        starts at the instance shown in the viewer."""
        if not shown and self._research_parts is None:
            return  # never opened: nothing to close
        self._research.visible = shown
        if shown:
            self._compare.follow()
        self._compare.active = shown

    def _on_open_new(self, event: Any) -> None:
        if event.new:
            self.study_uid = event.new

    async def _on_anonymize(self, *_: Any) -> Any:
        """Anonymize the study shown with the options chosen (see :class:`AnonymizePanel`)."""
        if not self._may(Action.ANONYMIZE):
            self.message = "Your role may not anonymize."
        return await self._anonymize.anonymize()

    def _on_series(self, event: Any) -> None:
        if self._viewer is not None and event.new:
            self._viewer.series_uid = event.new

    def _on_patient(self, *_: Any) -> None:
        if self.patient == self._patient_id:
            self.param.trigger("patient")
        else:
            self.patient = self._patient_id

    async def _on_send(self, *_: Any) -> None:
        if not self._may(Action.SEND):
            self.message = "Your role may not send."
            return
        if not self._peer.value or not self.study_uid:
            self.message = "Choose a peer."
            return
        name, uid = self._peer.value, self.study_uid
        self._progress.visible = self._progress.value = True
        try:
            summary = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.actions.send(uid, name, Actor(self.user, scope=scope_of(self.archive))))
            total = summary.sent + summary.failed
            self.message = f"Sent {summary.sent} of {total} instances to {summary.modality}."
        except ActionError as exc:
            self.message = f"Could not send to {name}: {exc}"
        finally:
            self._progress.visible = self._progress.value = False

    async def _on_delete(self, *_: Any) -> None:
        if not self._may(Action.DELETE):
            self.message = "Your role may not delete."
            return
        if not self._confirm.value:
            self.message = "Tick the box to confirm the deletion."
            return
        uid = self.study_uid
        try:
            removed = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.actions.delete(uid, Actor(self.user, scope=scope_of(self.archive))))
        except ActionError as exc:
            self.message = f"Could not delete: {exc}"
            return
        self.message = f"Deleted {removed} instances."
        self.study_uid = ""
        self.deleted = True

    def _may(self, action: Action) -> bool:
        """The role as the accounts say now (a role changed since the page opened counts)."""
        now = self.current_role() if self.current_role is not None else self.role
        return now is not None and now.may(action)

    def __panel__(self) -> pn.viewable.Viewable:
        actions: list[Any] = [self._to_patient, self._download]
        if self.role.may(Action.SEND):
            actions += [self._peer, self._send, self._no_peers]
        if self.role.may(Action.ANONYMIZE):  # never shown to a viewer; the anonymization checks again
            actions.append(self._research_toggle)
        actions += [self._progress, self._message]
        if self.role.may(Action.DELETE):
            actions.append(pn.Column(self._confirm, self._delete, width=250, stylesheets=[DELETE_CSS],
                                     css_classes=["pd-delete-zone"]))
        research = [self._research_slot] if self.role.may(Action.ANONYMIZE) else []
        return pn.Column(
            pn.Row(self._title, self._labels, self._link, sizing_mode="stretch_width"),
            pn.Row(*actions, sizing_mode="stretch_width", css_classes=["pd-study-actions"]), *research,
            pn.Row(self._series, self._viewer_slot, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
