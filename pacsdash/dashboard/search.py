"""Study search: filters, a table of one page of studies, server-side paging.

Only the page shown is read from the index (``limit``/``offset``), so a
100,000-study archive pages as quickly as a small one. Besides the usual
boxes, a filter on any attribute by keyword (the index keeps them all), and
the whole result out as CSV or Parquet (:mod:`pacsdash.dashboard.results_out`).
The state (filters, order, page) goes to and from a link
(:class:`pacsdash.dashboard.links.SearchState`).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import panel as pn
import param

from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.dashboard.links import DEFAULT_ORDER, UNMATCHABLE_VRS, SearchState, parse_where
from pacsdash.dashboard.results_out import ResultsOut
from pacsdash.dashboard.sources import as_source

COLUMNS = {
    "PatientName": "Patient",
    "PatientID": "Patient ID",
    "StudyDate": "Date",
    "ModalitiesInStudy": "Modalities",
    "StudyDescription": "Description",
    "AccessionNumber": "Accession",
    "NumberOfStudyRelatedSeries": "Series",
    "NumberOfStudyRelatedInstances": "Instances",
}
#: The study labels' column (access by study), shown when a study of the page has any.
LABELS_COLUMN = "Labels"
#: Clicking these columns opens the patient rather than the study.
PATIENT_COLUMNS = ("Patient", "Patient ID")
MODALITIES = ["", "CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "OT", "SR", "SEG", "RTDOSE", "RTPLAN", "ECG"]


#: Table column -> the attribute a click on its header sorts by (in the index, across pages).
SORT_KEYS = {label: key for key, label in COLUMNS.items() if key != "ModalitiesInStudy"}
#: Rows shown without scrolling.
VISIBLE_ROWS = 15
ROW_HEIGHT = 30
#: Width of the filter boxes (the filter column is a little wider).
FILTER_WIDTH = 240


def matchable_keywords() -> list[str]:
    """Every current (not retired) keyword of pydicom's dictionary that can be
    matched by value: what the attribute filter offers."""
    from pydicom.datadict import DicomDictionary

    return sorted(entry[4] for entry in DicomDictionary.values()
                  if entry[4] and not set(entry[0].split(" or ")) & UNMATCHABLE_VRS and not entry[3])


def display_date(value: str | None) -> str:
    """``20261102`` (DA) or ``1997.04.24`` (ACR-NEMA) -> ``2026-11-02``; anything else as it is."""
    text = str(value or "").strip()
    digits = text.replace(".", "") if len(text) == 10 and text[4] == "." and text[7] == "." else text
    if len(digits) == 8 and digits.isdigit():
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return text


def person_name(value: str | None) -> str:
    """``DOE^JANE`` -> ``DOE, JANE`` for display."""
    if not value:
        return ""
    family, _, rest = value.partition("^")
    given = " ".join(p for p in rest.split("^") if p)
    return f"{family}, {given}" if given else family


def wildcard(text: str) -> str:
    """What people type -> a DICOM wildcard: ``smi`` finds ``SMITH^JOHN``."""
    text = text.strip()
    if not text:
        return ""
    return text if "*" in text or "?" in text else f"*{text}*"


class StudySearch(pn.viewable.Viewer):
    """Filters and a paged table of studies; ``selected`` is the chosen study."""

    archive = param.Parameter(doc="What to search: a pacsdash Archive, a pacsdash.client.Client or a DataSource.")
    patient_name = param.String(default="", label="Patient name",
                                doc="Name; wildcards, case and accents as people expect.")
    patient_id = param.String(default="", label="Patient ID")
    accession = param.String(default="", label="Accession number")
    description = param.String(default="", label="Study description")
    order_by = param.List(default=list(DEFAULT_ORDER),
                          doc="(keyword, descending) pairs: the order of the whole result, kept in the index.")
    modality = param.Selector(default="", objects=MODALITIES)
    date_from = param.Date(default=None, allow_None=True)
    date_to = param.Date(default=None, allow_None=True)
    page = param.Integer(default=0, bounds=(0, None))
    where = param.List(default=[], item_type=str,
                       doc="Filters on any attribute, as ``Keyword=value`` (DICOM matching: ``<=1``, ``B30*``).")
    page_size = param.Integer(default=25, bounds=(5, 500))
    total = param.Integer(default=0, constant=False)
    selected = param.String(default="", doc="StudyInstanceUID of the study opened last.")
    patient = param.String(default="", doc="PatientID of the patient opened last.")
    error = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["StudyInstanceUID", *COLUMNS.values()]),
            hidden_columns=["StudyInstanceUID"],
            show_index=False,
            disabled=True,
            selectable=1,
            sizing_mode="stretch_width",
            height=ROW_HEIGHT * VISIBLE_ROWS + 40,
            min_width=560,
            sorters=[],
            formatters={"Description": {"type": "textarea"}},
            css_classes=["pd-studies"],
        )
        self._table.on_click(self._on_click)
        self._table.param.watch(self._on_sort, "sorters")
        self._pager = pn.pane.Markdown("", margin=(8, 10))
        self._restoring = False
        self._keyword = pn.widgets.AutocompleteInput(
            label="Any attribute (keyword)", options=matchable_keywords(), min_characters=2, case_sensitive=False,
            search_strategy="includes", placeholder="e.g. SliceThickness", width=FILTER_WIDTH - 10, restrict=False)
        self._value = pn.widgets.TextInput(label="Value", placeholder="e.g. <=1, B30*, 120", width=150)
        self._add = pn.widgets.Button(label="Add", width=70, margin=(24, 5, 5, 5))
        self._add.on_click(self.add_where)
        self._value.param.watch(lambda e: self.add_where() if e.new else None, "enter_pressed")
        self._where_hint = pn.pane.HTML("", margin=(0, 10), css_classes=["pd-where-hint"])
        self._where_list = pn.widgets.MultiChoice(label="Attribute filters (remove with ×)", options=[], value=[],
                                                  width=FILTER_WIDTH - 10, css_classes=["pd-where"])
        self._where_list.param.watch(self._on_where_list, "value")
        self._show_where()
        self.results = ResultsOut(archive=self.archive, query=self.query)
        self.refresh()

    def add_where(self, *_: Any) -> None:
        """Add the keyword filter typed (checked against pydicom's dictionary)."""
        try:
            typed = self._keyword.value_input or self._keyword.value  # what is in the box, chosen or not
            keyword, value = parse_where(f"{typed}={self._value.value_input or self._value.value}")
        except ValueError as exc:
            self._where_hint.object = f'<small style="color:#b42318">{html.escape(str(exc))}</small>'
            return
        self._where_hint.object = ""
        kept = [w for w in self.where if w.partition("=")[0] != keyword]
        self.where = [*kept, f"{keyword}={value}"]
        self._value.param.update(value="", value_input="")

    def _on_where_list(self, event: Any) -> None:
        if list(event.new) != list(self.where):
            self.where = list(event.new)

    @param.depends("where", watch=True)
    def _show_where(self) -> None:
        self._where_list.param.update(options=list(self.where), value=list(self.where))

    def where_filters(self) -> dict[str, str]:
        """The attribute filters as keyword -> value (each checked again)."""
        out = {}
        for text in self.where:
            try:
                keyword, value = parse_where(text)
            except ValueError as exc:
                raise InvalidQuery(str(exc)) from None
            out[keyword] = value
        return out

    def state(self) -> SearchState:
        """Filters, order and page, as a link keeps them."""
        return SearchState(
            patient_name=self.patient_name, patient_id=self.patient_id, accession=self.accession,
            description=self.description, modality=self.modality, date_from=self.date_from, date_to=self.date_to,
            order_by=tuple((k, bool(d)) for k, d in self.order_by), page=self.page,
            where=tuple(tuple(w.partition("=")[::2]) for w in self.where),  # type: ignore[misc]
        )

    def restore(self, state: SearchState) -> None:
        """Show ``state`` (from a link): filters, order and page, read once."""
        values = dict(
            patient_name=state.patient_name, patient_id=state.patient_id, accession=state.accession,
            description=state.description, modality=state.modality, date_from=state.date_from,
            date_to=state.date_to, order_by=[tuple(o) for o in state.order_by], page=state.page,
            where=[f"{k}={v}" for k, v in state.where],
        )
        self._restoring = True
        try:
            # One by one, only those that differ: watchers of several names hear one event at a time.
            for name, value in values.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
            labels = {key: label for label, key in SORT_KEYS.items()}
            custom = [tuple(o) for o in self.order_by] != list(DEFAULT_ORDER)
            self._table.sorters = [{"field": labels[k], "dir": "desc" if d else "asc"}
                                   for k, d in self.order_by if k in labels] if custom else []
        finally:
            self._restoring = False
        self.refresh()

    def query(self) -> Query:
        """The index query of the current filters and page."""
        filters = {
            "PatientName": wildcard(self.patient_name),
            "PatientID": wildcard(self.patient_id),
            "AccessionNumber": wildcard(self.accession),
            "StudyDescription": wildcard(self.description),
            "ModalitiesInStudy": self.modality,
        }
        if self.date_from or self.date_to:
            start = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            end = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            filters["StudyDate"] = f"{start}-{end}"
        filters.update(self.where_filters())
        return Query(
            Level.STUDY,
            {k: v for k, v in filters.items() if v},
            fields=list(COLUMNS),
            limit=self.page_size,
            offset=self.page * self.page_size,
            order_by=list(self.order_by),
            include_defaults=False,
            fold_text=True,
        )

    @param.depends(
        "patient_name", "patient_id", "accession", "description", "modality", "date_from", "date_to", "where",
        watch=True,
    )
    def _filters_changed(self) -> None:
        if self._restoring:
            return
        if self.page:
            self.page = 0  # triggers refresh
        else:
            self.refresh()

    def _on_sort(self, event: Any) -> None:
        """A click on a column header sorts the whole result, in the index, from its first page."""
        if self._restoring:
            return
        order = [(SORT_KEYS[s["field"]], s.get("dir") == "desc") for s in event.new or [] if s.get("field") in SORT_KEYS]
        order = order or list(DEFAULT_ORDER)
        if order != [tuple(o) for o in self.order_by]:
            was = self.page
            self.param.update(order_by=order, page=0)
            if not was:
                self.refresh()

    @param.depends("page", "page_size", watch=True)
    def _page_changed(self) -> None:
        if not self._restoring:
            self.refresh()

    def refresh(self) -> None:
        """Read the current page (and the total) from the index."""
        try:
            query = self.query()
            source = as_source(self.archive)
            rows = source.find(query)
            self.total = source.count(query)
            self.error = ""
        except InvalidQuery as exc:
            rows, self.total, self.error = [], 0, str(exc)
        labels = self._labels_of([str(r["StudyInstanceUID"]) for r in rows])
        frame = pd.DataFrame(
            [
                {"StudyInstanceUID": r["StudyInstanceUID"],
                 **{label: person_name(r.get(key)) if key == "PatientName"
                    else display_date(r.get(key)) if key == "StudyDate" else (r.get(key) or "")
                    for key, label in COLUMNS.items()},
                 LABELS_COLUMN: ", ".join(labels.get(str(r["StudyInstanceUID"]), []))}
                for r in rows
            ],
            columns=["StudyInstanceUID", *COLUMNS.values(), LABELS_COLUMN],
        )
        if not labels:
            frame = frame.drop(columns=[LABELS_COLUMN])
        self._table.value = frame
        if self.error:
            self._pager.object = ""
            return
        pages = max(1, -(-self.total // self.page_size))
        self._pager.object = f"{self.total} studies, page {self.page + 1} of {pages}"

    def _labels_of(self, study_uids: list[str]) -> dict[str, list[str]]:
        """The labels of the page's studies, in one read (a source without labels, as DICOMweb: none)."""
        index = getattr(self.archive, "index", None)
        if not study_uids or not hasattr(index, "labels_of"):
            return {}
        return index.labels_of(study_uids)

    def _open(self, name: str, value: str) -> None:
        if getattr(self, name) == value:
            self.param.trigger(name)  # opened again: watchers hear of it too
        else:
            setattr(self, name, value)

    def open_row(self, row: int, column: str | None = None) -> None:
        """Open the study on row ``row``; its patient if ``column`` is a patient column."""
        record = self._table.value.iloc[row]
        if column in PATIENT_COLUMNS and record["Patient ID"]:
            self._open("patient", str(record["Patient ID"]))
        else:
            self._open("selected", str(record["StudyInstanceUID"]))

    def _on_click(self, event: Any) -> None:
        if event.row is not None and 0 <= event.row < len(self._table.value):
            self.open_row(event.row, event.column)

    def next_page(self, *_: Any) -> None:
        if (self.page + 1) * self.page_size < self.total:
            self.page += 1

    def previous_page(self, *_: Any) -> None:
        if self.page:
            self.page -= 1

    def __panel__(self) -> pn.viewable.Viewable:
        previous = pn.widgets.Button(name="◀ Previous", width=110)
        following = pn.widgets.Button(name="Next ▶", width=110)
        previous.on_click(self.previous_page)
        following.on_click(self.next_page)
        filters = pn.Param(
            self.param,
            parameters=["patient_name", "patient_id", "accession", "description", "modality", "date_from", "date_to"],
            widgets={
                "patient_name": {"type": pn.widgets.TextInput, "placeholder": "e.g. smith or müller*",
                                 "width": FILTER_WIDTH},
                **{name: {"width": FILTER_WIDTH} for name in ("patient_id", "accession", "description", "modality")},
                "date_from": {"type": pn.widgets.DatePicker, "width": FILTER_WIDTH},
                "date_to": {"type": pn.widgets.DatePicker, "width": FILTER_WIDTH},
            },
            show_name=False,
            width=FILTER_WIDTH + 10,
        )
        error = pn.pane.Alert(self.param.error, alert_type="danger", visible=self.param.error.rx.bool())
        attribute = pn.Column(self._keyword, pn.Row(self._value, self._add, margin=0), self._where_hint,
                              self._where_list, margin=(0, 0, 0, 10))  # lined up with the boxes above
        return pn.Row(
            pn.Column("### Find studies", filters, attribute,
                      width=270, margin=(0, 20, 0, 5), css_classes=["pd-filters"]),
            pn.Column(error, self._table, pn.Row(previous, following, self._pager), self.results,
                      pn.pane.HTML("<small>Click a study to open it; a name or patient ID to see all the "
                                   "patient's studies.</small>", margin=(0, 10)),
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

