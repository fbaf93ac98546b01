"""A search's whole result (every page) as CSV or Parquet, at the study,
series or instance level.

Columns are DICOM keywords, one row per entity, as
:func:`pacsdash.client.connect` returns them to a notebook. In the Parquet file
(and the DataFrame) numbers are numbers and dates are dates when every value
of the column reads as one; otherwise the column keeps the DICOM text, so
nothing is lost.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any, Callable

import pandas as pd
import panel as pn
import param

from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.archive.attributes import attribute_for
from pacsdash.dashboard.sources import as_source

#: The levels offered, by the name shown.
LEVELS = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.IMAGE}
#: Columns of each level (then the keywords filtered on).
FIELDS: dict[Level, list[str]] = {
    Level.STUDY: ["StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                  "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
                  "ReferringPhysicianName", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
    Level.SERIES: ["StudyInstanceUID", "SeriesInstanceUID", "PatientName", "PatientID", "StudyDate",
                   "AccessionNumber", "StudyDescription", "Modality", "SeriesNumber", "SeriesDescription",
                   "BodyPartExamined", "NumberOfSeriesRelatedInstances"],
    Level.IMAGE: ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "PatientID",
                  "StudyDate", "Modality", "SeriesNumber", "InstanceNumber", "Rows", "Columns"],
}
#: Order within a study, below the search's own order.
WITHIN: dict[Level, list[tuple[str, bool]]] = {
    Level.STUDY: [],
    Level.SERIES: [("SeriesNumber", False)],
    Level.IMAGE: [("SeriesNumber", False), ("InstanceNumber", False)],
}
INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL", "UV", "SV"})
FLOAT_VRS = frozenset({"DS", "FL", "FD"})
#: Largest file sent through the page's websocket (Bokeh refuses messages over 20 MB, base64 adds a third).
MAX_BYTES = 14 * 2**20


def result_query(query: Query, level: Level) -> Query:
    """``query`` (a page of studies) as its whole result at ``level``: the same
    filters, every row, the level's columns and the keywords filtered on."""
    extra = [k for k in query.filters if k not in FIELDS[level]]
    return replace(query, level=level, fields=FIELDS[level] + extra, limit=None, offset=0,
                   order_by=list(query.order_by) + WITHIN[level], include_defaults=False)


def _typed(column: pd.Series, vr: str) -> pd.Series:
    """``column`` as numbers or dates when every value reads as one, else as it is."""
    text = column.astype("string")
    present = text.dropna()
    present = present[present != ""]
    if present.empty or present.str.contains("\\", regex=False).any():
        return text
    if vr in INTEGER_VRS:
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all() and (numbers == numbers.round()).all():
            return pd.to_numeric(text.replace("", pd.NA), errors="coerce").astype("Int64")
    elif vr in FLOAT_VRS:
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():
            return pd.to_numeric(text.replace("", pd.NA), errors="coerce").astype("Float64")
    elif vr == "DA":
        dates = pd.to_datetime(present, format="%Y%m%d", errors="coerce")
        if dates.notna().all():
            return pd.to_datetime(text.replace("", pd.NA), format="%Y%m%d", errors="coerce")
    return text


def result_frame(source: Any, query: Query) -> pd.DataFrame:
    """Every row of ``query`` as a DataFrame: columns by keyword, typed (see the module)."""
    rows = as_source(source).find(query)
    columns = list(dict.fromkeys([query.level.unique_key, *query.fields]))
    frame = pd.DataFrame([{k: row.get(k) for k in columns} for row in rows], columns=columns)
    for name in columns:
        try:
            vr = attribute_for(name).vr
        except KeyError:
            vr = "UN"
        if name.startswith("NumberOf"):
            vr = "IS"
        frame[name] = _typed(frame[name], vr)
    return frame


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV with a header row of keywords; dates as YYYY-MM-DD."""
    return frame.to_csv(index=False, date_format="%Y-%m-%d").encode("utf-8")


def to_parquet(frame: pd.DataFrame) -> bytes:
    """Parquet (pyarrow), the column types kept."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


class ResultsOut(pn.viewable.Viewer):
    """CSV and Parquet download buttons for the current search's whole result."""

    archive = param.Parameter(doc="What was searched: an Archive, a Client or a DataSource.")
    query = param.Callable(doc="Returns the search's current Query (its page aside).")
    level = param.Selector(default="studies", objects=list(LEVELS), label="Level")
    error = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._csv = pn.widgets.FileDownload(callback=self._maker(to_csv), filename="studies.csv", label="CSV",
                                            width=90, css_classes=["pd-download-csv"])
        self._parquet = pn.widgets.FileDownload(callback=self._maker(to_parquet), filename="studies.parquet",
                                                label="Parquet", width=100,
                                                css_classes=["pd-download-parquet"])

    @param.depends("level", watch=True)
    def _rename(self) -> None:
        self._csv.filename = f"{self.level}.csv"
        self._parquet.filename = f"{self.level}.parquet"

    def frame(self) -> pd.DataFrame:
        """The whole current result at the chosen level."""
        return result_frame(self.archive, result_query(self.query(), LEVELS[self.level]))

    def _maker(self, encode: Callable[[pd.DataFrame], bytes]) -> Callable[[], io.BytesIO | None]:
        def make() -> io.BytesIO | None:
            try:
                data = encode(self.frame())
            except InvalidQuery as exc:
                self.error = str(exc)
                return None
            if len(data) > MAX_BYTES:
                self.error = (f"The result is {len(data) / 2**20:.0f} MB, more than the page can hand over "
                              f"({MAX_BYTES // 2**20} MB): narrow the search, or read it in a notebook with "
                              f"pacsdash.client.connect(...).{self.level}(...).")
                return None
            self.error = ""
            return io.BytesIO(data)

        return make

    def __panel__(self) -> pn.viewable.Viewable:
        level = pn.widgets.Select.from_param(self.param.level, label="", width=110, margin=(5, 5),
                                             css_classes=["pd-results-level"])
        error = pn.pane.Alert(self.param.error, alert_type="danger", visible=self.param.error.rx.bool(),
                              margin=(0, 10))
        return pn.Column(
            pn.Row(pn.pane.HTML("<small>Download the whole result as</small>", margin=(14, 5, 0, 10)),
                   level, self._csv, self._parquet),
            error, css_classes=["pd-results-out"],
        )
