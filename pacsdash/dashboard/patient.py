"""One patient: their attributes and all their studies together.

Patients are keyed by Patient ID, as in the index. An ID holding ``*`` or
``?`` would be a wildcard to the index, so rows are also compared exactly.
"""

from __future__ import annotations

import datetime as dt

import html
from typing import Any

import pandas as pd
import panel as pn
import param

from pacsdash.archive import Level, Query
from pacsdash.dashboard.history import LinkBox
from pacsdash.dashboard.sources import as_source
from pacsdash.dashboard.search import COLUMNS, display_date, person_name

#: Most studies shown for one patient.
MAX_STUDIES = 1000
PATIENT_FIELDS = ["PatientName", "PatientBirthDate", "PatientSex", "IssuerOfPatientID", "OtherPatientIDs",
                  "NumberOfPatientRelatedStudies"]
#: The search table's study columns, without the patient's own.
STUDY_COLUMNS = {k: v for k, v in COLUMNS.items() if k not in ("PatientName", "PatientID")}


def dicom_date(value: Any) -> str:
    """``19700131`` -> ``1970-01-31``; anything else as it is."""
    return display_date(value)


def age(birth: Any, on: Any = None) -> str:
    """Whole years from a DA birth date to ``on`` (a DA, default today), or ``""``."""
    try:
        born = dt.datetime.strptime(str(birth or ""), "%Y%m%d").date()
        day = dt.datetime.strptime(str(on), "%Y%m%d").date() if on else dt.date.today()
    except ValueError:
        return ""
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return str(years) if years >= 0 else ""


def patient_record(archive: Any, patient_id: str) -> dict[str, Any] | None:
    """The patient's attributes from the index, or None."""
    if not patient_id:
        return None
    rows = as_source(archive).find(Query(Level.PATIENT, {"PatientID": patient_id}, PATIENT_FIELDS, include_defaults=False))
    return next((r for r in rows if r.get("PatientID") == patient_id), None)


def patient_studies(archive: Any, patient_id: str) -> list[dict[str, Any]]:
    """The patient's studies, newest first."""
    if not patient_id:
        return []
    rows = as_source(archive).find(Query(Level.STUDY, {"PatientID": patient_id}, ["PatientID", *STUDY_COLUMNS],
                              limit=MAX_STUDIES, order_by=[("StudyDate", True), ("StudyTime", True)],
                              include_defaults=False))
    return [r for r in rows if r.get("PatientID") == patient_id]


def patient_html(patient: dict[str, Any] | None, patient_id: str) -> str:
    """The patient's attributes as HTML, every value escaped."""
    e = html.escape
    if not patient_id:
        return "<p>Choose a patient: click a name or a patient ID in the studies table.</p>"
    if patient is None:
        return f"<p>No patient with the ID <b>{e(patient_id)}</b> in the archive.</p>"
    years = age(patient.get("PatientBirthDate"))
    facts = [("Patient ID", patient_id), ("Issuer", patient.get("IssuerOfPatientID")),
             ("Other IDs", patient.get("OtherPatientIDs")),
             ("Birth date", dicom_date(patient.get("PatientBirthDate")) + (f" (age {years})" if years else "")),
             ("Sex", patient.get("PatientSex")), ("Studies", patient.get("NumberOfPatientRelatedStudies"))]
    items = "".join(f"<dt>{e(label)}</dt><dd>{e(str(value))}</dd>" for label, value in facts if value not in (None, ""))
    return (f'<h3 class="pd-patient-name">{e(person_name(patient.get("PatientName")) or "(no name)")}</h3>'
            f'<dl class="pd-patient">{items}</dl>')


CSS = """
dl.pd-patient { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 0; }
dl.pd-patient dt { color: #555; } dl.pd-patient dd { margin: 0; }
"""


class PatientView(pn.viewable.Viewer):
    """A patient's attributes and studies; clicking a study sets ``selected``."""

    archive = param.Parameter()
    patient_id = param.String(default="")
    selected = param.String(default="", doc="StudyInstanceUID of the study clicked last.")
    link = param.String(default="", doc="Absolute URL of this patient, to copy (set by the app).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._link = LinkBox(url=self.link)
        self.param.watch(lambda e: setattr(self._link, "url", e.new), "link")
        self._info = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS])
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["StudyInstanceUID", *STUDY_COLUMNS.values(), "Age then"]),
            hidden_columns=["StudyInstanceUID"], show_index=False, disabled=True, selectable=1,
            sizing_mode="stretch_width", max_height=480, sorters=[], css_classes=["pd-patient-studies"],
        )
        self._table.on_click(self._on_click)
        self.refresh()

    @param.depends("patient_id", watch=True)
    def refresh(self) -> None:
        """Re-read the patient and their studies."""
        found = patient_record(self.archive, self.patient_id)
        self._info.object = patient_html(found, self.patient_id)
        record = found or {}
        self._table.value = pd.DataFrame(
            [{"StudyInstanceUID": r["StudyInstanceUID"],
              **{label: display_date(r.get(key)) if key == "StudyDate" else str(r.get(key) or "")
                 for key, label in STUDY_COLUMNS.items()},
              "Age then": age(record.get("PatientBirthDate"), r.get("StudyDate"))}
             for r in patient_studies(self.archive, self.patient_id)],
            columns=["StudyInstanceUID", *STUDY_COLUMNS.values(), "Age then"],
        )

    def open_row(self, row: int) -> None:
        """Open the study on row ``row`` (even if it is open already)."""
        uid = str(self._table.value.iloc[row]["StudyInstanceUID"])
        if uid == self.selected:
            self.param.trigger("selected")
        else:
            self.selected = uid

    def _on_click(self, event: Any) -> None:
        if event.row is not None and 0 <= event.row < len(self._table.value):
            self.open_row(event.row)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self._info, self._link, sizing_mode="stretch_width"),
                         pn.pane.HTML("<b>Studies</b> <small>(click one to open it)</small>"),
                         self._table, sizing_mode="stretch_width")
