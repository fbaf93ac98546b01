"""The research tools in the dashboard: anonymize a study, see what
de-identification does to one instance, export a cohort.

Each component calls :class:`~pacsdash.archive.actions.StudyActions` (the
one place that anonymizes and exports) in a worker thread, never on the
session's event loop, and asks the user's role again at each click:

:class:`AnonymizePanel`
    Stores a de-identified copy of a study (PS3.15 Annex E, Basic Profile and
    the chosen options of Table E.1-1) and reports the new StudyInstanceUID,
    the counts and the instances left out, each with its reason.
:class:`TagComparison`
    One instance's attributes before and after de-identification, with the
    action code and the column of Table E.1-1 that applied to each. Nothing
    is stored: a copy read from the archive is de-identified in memory with
    the project's pseudonymizer, so it shows what an anonymization would give.
:class:`ExportPanel`
    Exports the studies ticked, or every study matching the current search,
    as ZIP, folder, DICOMDIR or NIfTI; originals for every role, anonymized
    for editors and admins. It runs as a job of the JSON API's
    :class:`~pacsdash.web.research.ExportJobs`, so the result is downloaded
    from ``/api/exports/{id}/download`` with the dashboard's login cookie.

Every value shown comes from files: it is escaped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pandas as pd
import panel as pn
import param
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from pacsdash.access import Action, Role
from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.archive.actions import ActionError, Actor
from pacsdash.archive.scoped import scope_of
from pacsdash.dashboard.search import person_name
from pacsdash.research.deidentify import Deidentifier, burned_in_reason
from pacsdash.research.export import MANIFEST, ExportFormat, ExportRequest
from pacsdash.research.options import DEFAULT_OPTIONS, Option

LOGGER = logging.getLogger(__name__)
#: Seconds between looks at a running anonymization or export.
POLL = 0.2
#: Instances left out that are listed one by one (the rest are counted).
MAX_LISTED = 200
#: Longest value shown in the before/after table.
VALUE_CHARS = 120
#: The two options of Table E.1-1 that cannot be chosen together.
DATE_OPTIONS = frozenset({Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES})
#: The action codes of Table E.1-1, as PS3.15 E.1.1 explains them.
ACTION_CODES = {
    "D": "replaced with a non-zero-length dummy value",
    "Z": "replaced with a zero-length value, or a dummy value",
    "X": "removed",
    "K": "kept",
    "C": "cleaned: identifying information removed, dates shifted",
    "U": "replaced with a UID that is consistent within the set",
}
#: The attributes de-identification sets besides Table E.1-1 (PS3.15 E.1.1, PS3.3 C.7.1.1).
MARKING = "De-identification marking (PS3.15 E.1.1)"
MARKING_KEYWORDS = frozenset({"PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
                              "LongitudinalTemporalInformationModified", "PatientID", "PatientName"})
#: A value that changed with no change recorded for it (none is expected).
UNRECORDED = "changed, no rule recorded"
NOT_LISTED = "Not in Table E.1-1: kept"
FORMATS = {
    "ZIP": ExportFormat.ZIP.value,
    "Folder (downloaded as a ZIP)": ExportFormat.FOLDER.value,
    "DICOMDIR file-set (downloaded as a ZIP)": ExportFormat.DICOMDIR.value,
    "NIfTI through dcm2niix (downloaded as a ZIP)": ExportFormat.NIFTI.value,
}
SCOPE_TICKED = "The studies ticked below"
SCOPE_SEARCH = "Every study matching the current search"
CSS = """
table.pd-table { border-collapse: collapse; font-size: 13px; width: 100%; }
table.pd-table th, table.pd-table td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #ddd;
  vertical-align: top; word-break: break-word; }
table.pd-table th { position: sticky; top: 0; background: #fafafa; }
table.pd-compare { table-layout: fixed; }
table.pd-compare col.pd-col-attribute { width: 27%; }
table.pd-compare col.pd-col-value { width: 23%; }
table.pd-compare col.pd-col-action { width: 64px; }
tr.pd-unchanged td { color: #777; }
td.pd-after-changed { background: #fff4d6; }
.pd-removed { color: #a00; font-style: italic; }
.pd-added { color: #060; font-style: italic; }
.pd-code { font-family: monospace; font-weight: bold; }
.pd-refused, .pd-failed { color: #a00; }
.pd-small { font-size: 12px; color: #555; }
"""


# -- options ------------------------------------------------------------------
def option_problem(values: Iterable[str | Option]) -> str:
    """Why these options cannot be chosen together, or ``""``."""
    chosen = {v if isinstance(v, Option) else Option.parse(v) for v in values}
    if DATE_OPTIONS <= chosen:
        return (f"Choose one of “{Option.RETAIN_FULL_DATES.value}” and “{Option.RETAIN_MODIFIED_DATES.value}”, "
                "not both: the first keeps the real dates, the second shifts them by the subject's offset.")
    return ""


class OptionsPicker(pn.viewable.Viewer):
    """The options of Table E.1-1 beside the Basic Profile, the defaults ticked."""

    value = param.List(default=[], item_type=str, doc="Option values (column names of Table E.1-1).")
    problem = param.String(default="", doc="Why the options chosen cannot go together ('' when they can).")

    def __init__(self, **params: Any) -> None:
        params.setdefault("value", [o.value for o in Option if o in DEFAULT_OPTIONS])
        super().__init__(**params)
        self.widget = pn.widgets.CheckBoxGroup(options=[o.value for o in Option], value=list(self.value),
                                               inline=False, css_classes=["pd-options"])
        self.widget.param.watch(lambda e: setattr(self, "value", list(e.new)), "value")
        self.param.watch(lambda e: setattr(self.widget, "value", list(e.new)), "value")
        self._alert = pn.pane.Alert(self.param.problem, alert_type="danger", visible=self.param.problem.rx.bool(),
                                    css_classes=["pd-options-problem"], margin=(0, 10))
        self._check()

    @param.depends("value", watch=True)
    def _check(self) -> None:
        self.problem = option_problem(self.value)

    @property
    def options(self) -> frozenset[Option]:
        return frozenset(Option.parse(v) for v in self.value)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML("<b>Options</b> <span class='pd-small'>(columns of PS3.15 Table E.1-1 applied beside "
                         "the Basic Profile)</span>", margin=(5, 10, 0, 10)),
            self.widget, self._alert,
        )


# -- before/after ---------------------------------------------------------------
@dataclass(frozen=True)
class TagRow:
    """One attribute of an instance before and after de-identification."""

    path: str  # ``(0010,0010)``, or ``(0008,1140)[0].(0008,1155)`` inside a sequence
    keyword: str
    name: str
    before: str | None  # None: not there before (added)
    after: str | None  # None: removed
    action: str  # the action code that applied (``Z``, ``X/Z/D``, ``C``...); ``""`` if none
    column: str  # the column of Table E.1-1 it came from, or what else set it
    changed: bool


@dataclass
class Comparison:
    """What de-identification does to one instance (nothing stored)."""

    SOPInstanceUID: str
    rows: list[TagRow] = field(default_factory=list)
    left_out: str | None = None  # why an anonymization would leave the instance out
    method: str = ""

    @property
    def changed(self) -> list[TagRow]:
        return [r for r in self.rows if r.changed]

    def row(self, keyword: str) -> TagRow | None:
        """The top-level row of ``keyword``."""
        return next((r for r in self.rows if r.keyword == keyword and "[" not in r.path), None)


def shown(value: object, limit: int = VALUE_CHARS) -> str:
    """A value as text for the table (sequences and bytes summarised)."""
    if isinstance(value, Sequence):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)  # as DICOM writes several values
    text = str(value if value is not None else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tag_text(tag: Any) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def compare_instance(raw: bytes, deidentifier: Deidentifier) -> Comparison:
    """De-identify a copy of the instance ``raw`` in memory; list every
    attribute before and after, with the rule that changed it.

    The paths are those :class:`~pacsdash.research.deidentify.Deidentifier`
    records (``(gggg,eeee)``, items as ``[n].``), so each change is matched
    to the attribute it was made to.
    """
    before = dcmread(io.BytesIO(raw))
    after = dcmread(io.BytesIO(raw))
    done = deidentifier.deidentify(after, record=True)
    changes = {c.path: c for c in done.changes}
    table = deidentifier.table
    rows: list[TagRow] = []
    matched: set[str] = set()

    def unchanged_rule(elem: Any) -> tuple[str, str]:
        if elem.tag.is_private:
            return "K", Option.RETAIN_SAFE_PRIVATE.value
        if elem.tag == 0x7FE00010:
            return "K", "Pixel Data: never changed (burned-in text is not removed)"
        rule = table.rule(elem.tag)
        return rule.action(deidentifier.options) if rule is not None else ("", NOT_LISTED)

    def walk(old: Dataset, new: Dataset | None, path: str) -> None:
        for elem in old:
            where = f"{path}{_tag_text(elem.tag)}"
            change = changes.get(where)
            if change is not None:
                matched.add(where)
                rows.append(TagRow(where, change.keyword, change.name, change.before, change.after, change.action,
                                   change.column, True))
                continue  # a sequence removed or emptied: its items went with it
            twin = new[elem.tag] if new is not None and elem.tag in new else None
            action, column = unchanged_rule(elem)
            if twin is None:
                rows.append(TagRow(where, elem.keyword or "", elem.name, shown(elem.value), None, "", UNRECORDED,
                                   True))
                continue
            old_text, new_text = shown(elem.value), shown(twin.value)
            if elem.VR == "SQ":  # fewer items after: content items removed (rows of their own below)
                rows.append(TagRow(where, elem.keyword or "", elem.name, old_text, new_text, action, column,
                                   old_text != new_text))
                items, kept = list(twin.value or []), 0
                for number, item in enumerate(elem.value or []):
                    removed = changes.get(f"{where}[{number}]")
                    if removed is not None:  # the whole item went (Clean Structured Content)
                        matched.add(removed.path)
                        rows.append(TagRow(removed.path, removed.keyword, removed.name, removed.before, None,
                                           removed.action, removed.column, True))
                        continue
                    walk(item, items[kept] if kept < len(items) else None, f"{where}[{number}].")
                    kept += 1
            elif old_text != new_text:
                why = MARKING if elem.keyword in MARKING_KEYWORDS else UNRECORDED
                rows.append(TagRow(where, elem.keyword or "", elem.name, old_text, new_text, "", why, True))
            else:
                rows.append(TagRow(where, elem.keyword or "", elem.name, old_text, new_text, action, column, False))
        if new is not None:
            for elem in new:
                if elem.tag not in old:
                    why = MARKING if elem.keyword in MARKING_KEYWORDS else UNRECORDED
                    rows.append(TagRow(f"{path}{_tag_text(elem.tag)}", elem.keyword or "", elem.name, None,
                                       shown(elem.value), "", why, True))

    walk(before, after, "")
    for path, change in changes.items():  # none expected; never hide a change
        if path not in matched:
            rows.append(TagRow(path, change.keyword, change.name, change.before, change.after, change.action,
                               change.column, True))
    return Comparison(str(before.get("SOPInstanceUID", "")), rows, burned_in_reason(before), deidentifier.method)


def comparison_html(comparison: Comparison | None, show_unchanged: bool = False) -> str:
    """The before/after table as HTML; every value escaped."""
    e = html.escape
    if comparison is None:
        return ""
    changed = comparison.changed
    hidden = len(comparison.rows) - len(changed)
    parts = [f'<p class="pd-compare-summary">Instance <code>{e(comparison.SOPInstanceUID)}</code>: '
             f"{len(changed)} attribute{'s' if len(changed) != 1 else ''} changed, {hidden} unchanged"
             f"{'' if show_unchanged else ' (hidden)'}. Nothing was stored.</p>"]
    if comparison.left_out:
        parts.append(f'<p class="pd-compare-left-out"><b>An anonymization would leave this instance out</b> '
                     f"unless instances that may show burned-in text are included: {e(comparison.left_out)}.</p>")
    body = []
    for row in comparison.rows:
        if not row.changed and not show_unchanged:
            continue
        before = '<span class="pd-added">absent</span>' if row.before is None else e(row.before)
        if row.after is None:
            after = '<span class="pd-removed">removed</span>'
        else:
            after = e(row.after)
        meaning = ACTION_CODES.get(row.action.split("/")[-1].rstrip("*"), "")
        code = (f'<span class="pd-code" title="{e(meaning)}">{e(row.action)}</span>' if row.action else "")
        body.append(
            f'<tr class="{"pd-changed" if row.changed else "pd-unchanged"}" data-keyword="{e(row.keyword)}" '
            f'data-path="{e(row.path)}"><td><code>{e(row.path)}</code> {e(row.keyword)}<br>'
            f'<span class="pd-small">{e(row.name)}</span></td><td>{before}</td>'
            f'<td class="{"pd-after-changed" if row.changed else ""}">{after}</td><td>{code}</td>'
            f"<td>{e(row.column)}</td></tr>")
    parts.append('<table class="pd-table pd-compare"><colgroup><col class="pd-col-attribute">'
                 '<col class="pd-col-value"><col class="pd-col-value"><col class="pd-col-action"><col></colgroup>'
                 "<thead><tr><th>Attribute</th><th>Before</th><th>After</th><th>Action</th>"
                 '<th>Table E.1-1 column</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>")
    legend = " · ".join(f"<b>{code}</b> {e(text)}" for code, text in ACTION_CODES.items())
    parts.append(f'<p class="pd-small">Actions (PS3.15 E.1.1): {legend}. A combined code such as X/Z/D applies '
                 f"the last that keeps the instance valid. {e(comparison.method)}</p>")
    return "".join(parts)


def _may(current_role: Any, role: Role, action: Action) -> bool:
    """The role as the accounts say now (a role changed since the page opened counts)."""
    now = current_role() if current_role is not None else role
    return now is not None and now.may(action)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _instances(archive: Any, series_uid: str) -> dict[str, str]:
    """Label -> SOP Instance UID of a series' instances, by Instance Number."""
    rows = archive.find(Query(Level.IMAGE, {"SeriesInstanceUID": series_uid}, ["SOPInstanceUID", "InstanceNumber"],
                              include_defaults=False))
    rows.sort(key=lambda r: (_number(r.get("InstanceNumber")), str(r["SOPInstanceUID"])))
    return {f"{k + 1} · #{r.get('InstanceNumber') or '?'} · {r['SOPInstanceUID']}": str(r["SOPInstanceUID"])
            for k, r in enumerate(rows)}


class TagComparison(pn.viewable.Viewer):
    """One instance's attributes before and after de-identification, and the
    rule of Table E.1-1 that changed each (for teaching; nothing is stored)."""

    archive = param.Parameter()
    actions = param.Parameter(doc="The archive's StudyActions (its pseudonymizer keys the pseudonyms).")
    picker = param.ClassSelector(class_=OptionsPicker, doc="The options applied.")
    current_role = param.Callable(default=None, doc="The user's role now (None: gone); default: ``role``.")
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    study_uid = param.String(default="")
    series_uid = param.String(default="", doc="The series chosen (set with :meth:`pick`).")
    sop_uid = param.String(default="", doc="The instance compared (set with :meth:`pick`).")
    show_unchanged = param.Boolean(default=False, doc="Also list the attributes left as they were.")
    active = param.Boolean(default=False, doc="Shown: compare when the instance or the options change.")
    comparison = param.Parameter(default=None, doc="The last Comparison.")
    message = param.String(default="")
    shown_instance = param.Callable(default=None, doc="``() -> (series_uid, sop_uid)`` of the image on screen.")

    def __init__(self, **params: Any) -> None:
        params.setdefault("picker", OptionsPicker())
        super().__init__(**params)
        self._series = pn.widgets.Select(label="Series", options={}, width=300)
        self._instance = pn.widgets.Select(label="Instance", options={}, width=360)
        self._follow = pn.widgets.Button(label="The image in the viewer", width=190, margin=(22, 10, 5, 10),
                                         visible=self.shown_instance is not None)
        self._follow.on_click(lambda _: self.follow())
        self._unchanged = pn.widgets.Checkbox(label="Show unchanged attributes too", value=self.show_unchanged,
                                              css_classes=["pd-show-unchanged"])
        self._unchanged.param.watch(lambda e: setattr(self, "show_unchanged", e.new), "value")
        self._picking = False
        self._series.param.watch(lambda e: None if self._picking else self.pick(e.new or ""), "value")
        self._instance.param.watch(lambda e: None if self._picking else self.pick(self.series_uid, e.new or ""),
                                   "value")
        self._table = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-compare-view"],
                                   stylesheets=[CSS], max_height=520, styles={"overflow-y": "auto"})
        self._generation = 0
        self._tasks: set[asyncio.Task] = set()  # held until done (the loop keeps weak references only)
        self.picker.param.watch(self._request, "value")
        self._load_series()

    @param.depends("study_uid", watch=True)
    def _load_series(self) -> None:
        from pacsdash.dashboard.viewer.viewer import SERIES_FIELDS, series_label

        options: dict[str, str] = {}
        if self.archive is not None and self.study_uid:
            rows = self.archive.find(Query(Level.SERIES, {"StudyInstanceUID": self.study_uid}, SERIES_FIELDS,
                                           include_defaults=False))
            rows.sort(key=lambda r: (_number(r.get("SeriesNumber")), str(r["SeriesInstanceUID"])))
            for row in rows:
                label = series_label(row)
                options[label if label not in options else f"{label} · {row['SeriesInstanceUID']}"] = str(
                    row["SeriesInstanceUID"])
        self._series.options = options
        self.comparison, self._table.object = None, ""
        self.pick(next(iter(options.values()), ""))

    def pick(self, series_uid: str, sop_uid: str = "") -> None:
        """Compare ``sop_uid`` of ``series_uid`` (default: its middle image)."""
        if series_uid not in self._series.options.values():
            series_uid = next(iter(self._series.options.values()), "")
        instances = _instances(self.archive, series_uid) if series_uid else {}
        if sop_uid not in instances.values():
            uids = list(instances.values())
            sop_uid = uids[len(uids) // 2] if uids else ""
        self._picking = True
        try:
            self._instance.options = instances
            self._series.value = series_uid or None
            self._instance.value = sop_uid or None
        finally:
            self._picking = False
        self.param.update(series_uid=series_uid, sop_uid=sop_uid)

    def follow(self) -> None:
        """Compare the image shown in the viewer."""
        if self.shown_instance is not None:
            self.pick(*self.shown_instance())

    @param.depends("sop_uid", "active", watch=True)
    def _request(self, *_: Any) -> None:
        """Compare again: in a worker thread in a session, at once otherwise."""
        if not self.active:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.compare()
            return
        task = loop.create_task(self.refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @param.depends("show_unchanged", watch=True)
    def _render(self) -> None:
        self._table.object = comparison_html(self.comparison, self.show_unchanged)

    def _compute(self, sop_uid: str, options: frozenset[Option]) -> Comparison:
        location = self.archive.locate_instance(sop_uid)
        if location is None:
            raise ActionError("the instance is no longer in the archive", 404)
        with self.archive.open(location) as handle:
            raw = handle.read()
        return compare_instance(raw, Deidentifier(self.actions.pseudonymizer(), options))

    def _check(self) -> bool:
        if not _may(self.current_role, self.role, Action.ANONYMIZE):
            self.message = "Your role may not anonymize, nor see what anonymization gives."
        elif self.actions is None or not self.sop_uid:
            self.message = "Choose an instance." if self.actions is not None else "Anonymization is not available."
        elif self.picker.problem:
            self.message = "Nothing to compare until the options go together (see the options)."
        else:
            return True
        self.comparison, self._table.object = None, ""
        return False

    def compare(self) -> Comparison | None:
        """Compare the chosen instance now (in this thread)."""
        if not self._check():
            return None
        try:
            self._show(self._compute(self.sop_uid, self.picker.options))
        except ActionError as exc:
            self.message = str(exc)
        except Exception:  # as refresh() does
            LOGGER.exception("before/after comparison of %s failed", self.sop_uid)
            self.message = "This instance could not be read."
        return self.comparison

    async def refresh(self) -> Comparison | None:
        """Compare the chosen instance in a worker thread."""
        if not self._check():
            return None
        self._generation += 1
        generation, sop_uid, options = self._generation, self.sop_uid, self.picker.options
        self.message = "Comparing…"
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, self._compute, sop_uid, options)
        except ActionError as exc:
            self.message = str(exc)
            return None
        except Exception:  # a file that cannot be read: said, logged, never a dead view
            LOGGER.exception("before/after comparison of %s failed", sop_uid)
            self.message = "This instance could not be read."
            return None
        if generation == self._generation:  # not overtaken by a later choice
            self._show(found)
        return found

    def _show(self, comparison: Comparison) -> None:
        self.message = ""
        self.comparison = comparison
        self._render()

    def __panel__(self) -> pn.viewable.Viewable:
        message = pn.pane.Alert(self.param.message, alert_type="info", visible=self.param.message.rx.bool(),
                                margin=(0, 10))
        return pn.Column(
            pn.pane.HTML("<h4 style='margin: 4px 0'>Before and after, one instance</h4><p class='pd-small'>What "
                         "de-identification with the options ticked does to each attribute, and which rule of "
                         "PS3.15 Table E.1-1 did it. Nothing is stored.</p>", margin=(0, 10)),
            pn.Row(self._series, self._instance, self._follow), self._unchanged, message, self._table,
            sizing_mode="stretch_width", css_classes=["pd-compare-panel"],
        )


# -- anonymize a study ------------------------------------------------------------
def anonymized_html(result: Any) -> str:
    """What an anonymization gave; every value escaped."""
    e = html.escape
    excluded = list(result.excluded)
    parts = [f'<p class="pd-anon-result">New study <code class="pd-new-study">{e(result.StudyInstanceUID)}</code> '
             f"(subject {e(result.PatientID or '—')}): {result.stored} instance{'s' if result.stored != 1 else ''} "
             f"stored, {result.duplicates} already there, {len(excluded)} left out.</p>"]
    if excluded:
        rows = "".join(f"<tr><td><code>{e(x.SOPInstanceUID)}</code></td><td><code>{e(x.SeriesInstanceUID)}</code></td>"
                       f"<td>{e(x.reason)}</td></tr>" for x in excluded[:MAX_LISTED])
        more = f"<p>… and {len(excluded) - MAX_LISTED} more.</p>" if len(excluded) > MAX_LISTED else ""
        parts.append('<table class="pd-table pd-anon-left-out"><thead><tr><th>Left out</th><th>Series</th>'
                     f"<th>Why</th></tr></thead><tbody>{rows}</tbody></table>{more}")
    return "".join(parts)


class AnonymizePanel(pn.viewable.Viewer):
    """Store a de-identified copy of a study, with the options chosen."""

    actions = param.Parameter(doc="The archive's StudyActions.")
    picker = param.ClassSelector(class_=OptionsPicker)
    current_role = param.Callable(default=None, doc="The user's role now (None: gone); default: ``role``.")
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    user = param.String(default="anonymous", doc="Who acts (recorded).")
    scope = param.Parameter(default=None, doc="The studies the user may see (None: all); see archive.scoped.")
    study_uid = param.String(default="")
    busy = param.Boolean(default=False)
    result = param.Parameter(default=None, doc="The last AnonymizedStudy.")
    message = param.String(default="")
    opened = param.String(default="", doc="StudyInstanceUID of the new study, set by \"Open the new study\".")

    def __init__(self, **params: Any) -> None:
        params.setdefault("picker", OptionsPicker())
        super().__init__(**params)
        self._burned_in = pn.widgets.Checkbox(label="Include instances that may show burned-in text "
                                                    "(ultrasound, secondary captures)", value=False,
                                          css_classes=["pd-anon-burned-in"])
        self._start = pn.widgets.Button(label="Anonymize this study", color="primary", width=220)
        self._start.on_click(self._on_start)
        self._progress = pn.indicators.Progress(value=0, max=1, visible=False, sizing_mode="stretch_width",
                                                bar_color="primary")
        self._result = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-anon-outcome"],
                                    stylesheets=[CSS])
        self._open = pn.widgets.Button(label="Open the new study", color="success", width=220, visible=False)
        self._open.on_click(self._on_open)
        self.picker.param.watch(self._enable, "problem")
        self._enable()

    def _enable(self, *_: Any) -> None:
        self._start.disabled = self.busy or bool(self.picker.problem)

    @param.depends("study_uid", watch=True)
    def reset(self) -> None:
        """Forget the last result (another study is shown)."""
        if not self.busy:
            self.result, self.message, self._result.object, self._open.visible = None, "", "", False

    async def _on_start(self, *_: Any) -> None:
        await self.anonymize()

    def _on_open(self, *_: Any) -> None:
        if self.result is not None:
            if self.opened == self.result.StudyInstanceUID:
                self.param.trigger("opened")
            else:
                self.opened = self.result.StudyInstanceUID

    async def anonymize(self) -> Any:
        """Anonymize the study shown, in a worker thread; return the result (None if refused)."""
        if not _may(self.current_role, self.role, Action.ANONYMIZE):
            self.message = "Your role may not anonymize."
            LOGGER.warning("refused dashboard anonymization by %s: role may not anonymize", self.user)
            return None
        if self.picker.problem:
            self.message = self.picker.problem
            return None
        if self.busy or not self.study_uid or self.actions is None:
            return None
        uid, options, burned_in = self.study_uid, list(self.picker.value), self._burned_in.value
        actor = Actor(self.user, scope=self.scope)
        self.busy = True
        self._enable()
        self._result.object, self._open.visible = "", False
        self.message = "Anonymizing…"
        self._progress.param.update(value=0, max=1, visible=True)
        done = {"done": 0, "total": 1}

        def progress(count: int, total: int) -> None:
            done.update(done=count, total=max(total, 1))

        job = asyncio.get_running_loop().run_in_executor(
            None, lambda: self.actions.anonymize(uid, actor, options, burned_in, progress))
        try:
            while not job.done():
                await asyncio.wait([job], timeout=POLL)
                self._progress.max = done["total"]  # the bound first, then the value
                self._progress.value = min(done["done"], done["total"])
                self.message = f"Anonymizing… {done['done']} of {done['total']} instances"
            result = job.result()
        except ActionError as exc:
            self.message = f"Could not anonymize: {exc}"
            return None
        except Exception:  # logged and said, never a page stuck on "Anonymizing…"
            LOGGER.exception("dashboard anonymization of %s by %s failed", uid, self.user)
            self.message = "Could not anonymize: internal error (see the server's log)."
            return None
        finally:
            self.busy = False
            self._progress.visible = False
            self._enable()
        self.message = ""
        self.result = result
        self._result.object = anonymized_html(result)
        self._open.visible = True
        return result

    def __panel__(self) -> pn.viewable.Viewable:
        message = pn.pane.Alert(self.param.message, alert_type="info", visible=self.param.message.rx.bool(),
                                margin=(0, 10), css_classes=["pd-anon-message"])
        return pn.Column(
            pn.pane.HTML("<h4 style='margin: 4px 0'>Anonymize this study</h4><p class='pd-small'>Stores a "
                         "de-identified copy beside the original (PS3.15 Annex E, Basic Application Level "
                         "Confidentiality Profile): same subject pseudonym and date shift as every other copy of "
                         "this patient.</p>", margin=(0, 10)),
            self.picker, self._burned_in, self._start, self._progress, message, self._result, self._open,
            css_classes=["pd-anonymize"], sizing_mode="stretch_width",
        )


# -- export -------------------------------------------------------------------------
def describe_filters(query: Query) -> str:
    """The search's conditions in words (plain text)."""
    if not query.filters:
        return "no conditions: every study"
    return "; ".join(f"{key} {value}" for key, value in query.filters.items())


class ExportPanel(pn.viewable.Viewer):
    """Export studies of the current search: the ones ticked, or all of them."""

    archive = param.Parameter()
    search = param.Parameter(doc="The StudySearch whose filters and page are used.")
    jobs = param.Parameter(doc="The server's ExportJobs (pacsdash.web.research.export_jobs).")
    current_role = param.Callable(default=None, doc="The user's role now (None: gone); default: ``role``.")
    role = param.ClassSelector(class_=Role, default=Role.VIEWER)
    user = param.String(default="anonymous", doc="Who exports (recorded; owns the download).")
    ticked = param.List(default=[], item_type=str, doc="StudyInstanceUIDs ticked, on any page.")
    matching = param.Integer(default=0, doc="Studies matching the current search.")
    busy = param.Boolean(default=False)
    job = param.Parameter(default=None, doc="The last ExportJob.")
    message = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._scope = pn.widgets.RadioBoxGroup(options=[SCOPE_TICKED, SCOPE_SEARCH], value=SCOPE_TICKED,
                                               inline=False, css_classes=["pd-export-scope"])
        self._format = pn.widgets.Select(label="Format", options=FORMATS, value=ExportFormat.ZIP.value, width=360)
        self._anonymize = pn.widgets.Checkbox(label="Anonymize (PS3.15 Annex E Basic Profile and the options "
                                                    "below)", value=False, css_classes=["pd-export-anonymize"])
        self.picker = OptionsPicker()
        self._burned_in = pn.widgets.Checkbox(label="Include instances that may show burned-in text", value=False,
                                              css_classes=["pd-export-burned-in"])
        self._anon_options = pn.Column(self.picker, self._burned_in, visible=False)
        self._anonymize.link(self._anon_options, value="visible")
        self._start = pn.widgets.Button(label="Export", color="primary", width=160)
        self._start.on_click(self._on_start)
        self._progress = pn.indicators.Progress(value=0, max=1, visible=False, sizing_mode="stretch_width",
                                                bar_color="primary")
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-export-summary"])
        self._result = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-export-result"],
                                    stylesheets=[CSS])
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["StudyInstanceUID", "Patient", "Patient ID", "Date", "Modalities", "Description"]),
            hidden_columns=["StudyInstanceUID"], show_index=False, disabled=True, selectable="checkbox",
            sizing_mode="stretch_width", height=260, sorters=[], css_classes=["pd-export-table"],
        )
        self._syncing = False
        self._table.param.watch(self._on_selection, "selection")
        self.param.watch(lambda _: self._describe(), ["ticked", "matching"])
        if self.search is not None:
            names = ["patient_name", "patient_id", "accession", "description", "modality", "date_from", "date_to",
                     "page", "page_size", "total", "where", "order_by"]
            self.search.param.watch(lambda *_: self.refresh(), names)  # one call per batch of changes
        self.refresh()

    # -- the studies ----------------------------------------------------------
    def refresh(self) -> None:
        """Show the search's current page, the ticks kept."""
        rows: list[dict[str, Any]] = []
        try:
            query = self.search.query()
            rows = self.archive.find(query)
            self.matching = self.archive.count(query)
        except InvalidQuery:
            self.matching = 0
        frame = pd.DataFrame(
            [{"StudyInstanceUID": r["StudyInstanceUID"], "Patient": person_name(r.get("PatientName")),
              "Patient ID": r.get("PatientID") or "", "Date": r.get("StudyDate") or "",
              "Modalities": r.get("ModalitiesInStudy") or "", "Description": r.get("StudyDescription") or ""}
             for r in rows],
            columns=["StudyInstanceUID", "Patient", "Patient ID", "Date", "Modalities", "Description"],
        )
        ticked = set(self.ticked)
        self._syncing = True
        try:
            self._table.value = frame
            self._table.selection = [k for k, uid in enumerate(frame["StudyInstanceUID"]) if uid in ticked]
        finally:
            self._syncing = False
        self._describe()

    def _on_selection(self, event: Any) -> None:
        if self._syncing:
            return
        page = list(self._table.value["StudyInstanceUID"])
        keep = [uid for uid in self.ticked if uid not in page]
        self.ticked = keep + [page[k] for k in event.new if 0 <= k < len(page)]

    def tick(self, uids: Iterable[str]) -> None:
        """Tick studies (as the checkboxes do)."""
        page = list(self._table.value["StudyInstanceUID"])
        self.ticked = list(dict.fromkeys([*self.ticked, *uids]))
        self._syncing = True
        try:
            self._table.selection = [k for k, uid in enumerate(page) if uid in self.ticked]
        finally:
            self._syncing = False

    def _describe(self) -> None:
        e = html.escape
        try:
            conditions = describe_filters(self.search.query())
        except InvalidQuery as exc:
            conditions = f"not valid: {exc}"
        self._summary.object = (
            f'<p>The current search of the Studies tab ({e(conditions)}) matches <b class="pd-export-matching">'
            f"{self.matching}</b> stud{'y' if self.matching == 1 else 'ies'}; "
            f'<b class="pd-export-ticked">{len(self.ticked)}</b> ticked.</p>')

    def studies(self) -> list[str]:
        """The StudyInstanceUIDs to export: the ones ticked, or every one matching the search."""
        if self._scope.value == SCOPE_TICKED:
            return list(self.ticked)
        query = dataclasses.replace(self.search.query(), fields=[], limit=None, offset=0, order_by=[],
                                    include_defaults=False)
        return [str(r["StudyInstanceUID"]) for r in self.archive.find(query)]

    # -- the export ---------------------------------------------------------------
    def request(self) -> ExportRequest:
        """The export asked for (its ``out`` is set by the job)."""
        anonymize = bool(self._anonymize.value)
        return ExportRequest(out=self.jobs.folder, studies=self.studies(), format=ExportFormat(self._format.value),
                             anonymize=anonymize, options=self.picker.options if anonymize else frozenset(),
                             include_burned_in=bool(self._burned_in.value) if anonymize else False)

    async def _on_start(self, *_: Any) -> None:
        await self.export()

    def _refuse(self, why: str) -> None:
        self.message = why
        LOGGER.warning("refused dashboard export by %s: %s", self.user, why)

    async def export(self) -> Any:
        """Start the export as a job, follow it; return the job (None if refused)."""
        if not _may(self.current_role, self.role, Action.DOWNLOAD):
            self._refuse("Your role may not export.")
            return None
        if self._anonymize.value and not _may(self.current_role, self.role, Action.ANONYMIZE):
            self._refuse("Your role may export originals only, not anonymized copies.")
            return None
        if self._anonymize.value and self.picker.problem:
            self.message = self.picker.problem
            return None
        if self.busy:
            return None
        try:
            request = self.request()
        except InvalidQuery as exc:
            self.message = f"The search is not valid: {exc}"
            return None
        if not request.studies:
            self.message = ("Tick at least one study, or choose “every study matching the current search”."
                            if self._scope.value == SCOPE_TICKED else "No study matches the current search.")
            return None
        self.busy, self._start.disabled = True, True
        self._result.object, self.message = "", f"Exporting {len(request.studies)} studies…"
        self._progress.param.update(value=0, max=1, visible=True)
        try:
            job = self.jobs.start(request, Actor(self.user, scope=scope_of(self.archive)), own_folder=True)
            self.job = job
            while job.state in ("queued", "running"):
                await asyncio.sleep(POLL)
                if job.total:
                    self._progress.max = job.total  # the bound first, then the value
                    self._progress.value = min(job.done, job.total)
                    self.message = f"Exporting… {job.done} of {job.total} instances"
        finally:
            self.busy, self._start.disabled = False, False
            self._progress.visible = False
        self.message = ""
        self._result.object = export_html(job)
        return job

    def __panel__(self) -> pn.viewable.Viewable:
        message = pn.pane.Alert(self.param.message, alert_type="info", visible=self.param.message.rx.bool(),
                                margin=(0, 10), css_classes=["pd-export-message"])
        choices: list[Any] = [self._format]
        if self.role.may(Action.ANONYMIZE):  # never shown to a viewer; the export checks again
            choices += [self._anonymize, self._anon_options]
        else:
            choices.append(pn.pane.HTML("<p class='pd-small'>Exports are of the original files; anonymized "
                                        "exports are for editors.</p>", margin=(0, 10)))
        return pn.Column(
            pn.pane.HTML("<h3 style='margin: 4px 0'>Export studies</h3>", margin=(0, 10)),
            self._summary,
            pn.Row(
                pn.Column(self._scope, self._table, sizing_mode="stretch_width"),
                pn.Column(*choices, self._start, width=460),
                sizing_mode="stretch_width",
            ),
            self._progress, message, self._result,
            sizing_mode="stretch_width", css_classes=["pd-export"],
        )


def export_html(job: Any) -> str:
    """A finished export job: what it wrote and the link to download it; escaped."""
    e = html.escape
    if job.state == "failed":
        return f'<p class="pd-failed"><b>The export failed:</b> {e(job.error)}</p>'
    summary = job.summary or {}
    kind = "anonymized" if job.request.anonymize else "original"
    files, left_out = int(summary.get("files", 0)), int(summary.get("left_out", 0))
    link = f"/api/exports/{quote(job.id, safe='')}/download"
    studies = len(summary.get("studies", []))
    return (f'<p class="pd-export-done">Exported {studies} stud{"y" if studies == 1 else "ies"} ({e(kind)} files, '
            f"{e(job.request.format.value)}): {files} file{'s' if files != 1 else ''} written, {left_out} "
            f"left out; {MANIFEST} lists each and why.</p>"
            f'<p><a class="pd-export-download" href="{e(link)}" download>Download the export (ZIP)</a></p>')
