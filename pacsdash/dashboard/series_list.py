"""A study's series as a list: thumbnail, number, modality, description, count.

Thumbnails are the middle image of each series, rendered by
:func:`pacsdash.imaging.thumbnail` behind the WADO-RS ``/thumbnail`` route;
the browser fetches them with the dashboard's login cookie (accepted for
GET), lazily and in parallel, so opening a study never waits for them.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any
from urllib.parse import quote

import pandas as pd
import panel as pn
import param

from pacsdash.archive import Level, Query
from pacsdash.dashboard.sources import as_source
from pacsdash.dashboard.viewer.viewer import NON_IMAGE_MODALITIES

#: Longest side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 64
COLUMNS = {"Thumbnail": "Thumbnail", "SeriesNumber": "#", "Modality": "Modality", "SeriesDescription": "Description",
           "NumberOfSeriesRelatedInstances": "Instances"}
SERIES_FIELDS = ["SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances", "BodyPartExamined"]
CSS = """
.pd-thumb { width: 64px; height: 64px; object-fit: contain; background: #000; display: block; }
.pd-thumb-none { width: 64px; height: 64px; background: #eee; color: #555; display: flex; align-items: center;
  justify-content: center; font-size: 12px; }
"""


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def middle_instances(archive: Any, study_uid: str) -> dict[str, str]:
    """Series UID -> SOP Instance UID of the middle image (by Instance Number)
    of each series of the study that has images."""
    fields = ["SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber", "Rows"]
    rows = as_source(archive).find(Query(Level.IMAGE, {"StudyInstanceUID": study_uid}, fields, include_defaults=False))
    by_series: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for row in rows:
        if row.get("Rows"):  # an image, not a report or a waveform
            key = (_number(row.get("InstanceNumber")), str(row["SOPInstanceUID"]))
            by_series[str(row["SeriesInstanceUID"])].append(key)
    return {series: sorted(items)[len(items) // 2][1] for series, items in by_series.items()}


def thumbnail_url(study: str, series: str, instance: str, size: int = THUMBNAIL_SIZE) -> str:
    """The WADO-RS thumbnail of an instance (UIDs quoted for the path)."""
    return (f"/dicom-web/studies/{quote(study, safe='')}/series/{quote(series, safe='')}"
            f"/instances/{quote(instance, safe='')}/thumbnail?viewport={size},{size}")


def thumbnail_html(study: str, series: str, instance: str | None, modality: str, src: str | None = None) -> str:
    """An <img> of the thumbnail (``src``, default the local WADO-RS route), or a
    box naming the modality when the series has no image."""
    if src is None and instance:
        src = thumbnail_url(study, series, instance)
    if not instance or not src:
        return f'<div class="pd-thumb-none">{html.escape(modality or "no image")}</div>'
    return f'<img class="pd-thumb" loading="lazy" alt="series thumbnail" src="{html.escape(src)}">'



def series_table(archive: Any, study_uid: str) -> pd.DataFrame:
    """One row per series, ordered by Series Number; every DICOM value is plain text
    (the table escapes it), only the thumbnail cell is HTML, built here."""
    source = as_source(archive)
    rows = source.find(Query(Level.SERIES, {"StudyInstanceUID": study_uid}, SERIES_FIELDS, include_defaults=False))
    rows.sort(key=lambda r: (_number(r.get("SeriesNumber")), str(r.get("SeriesInstanceUID"))))
    middles = middle_instances(source, study_uid) if rows else {}
    records = []
    for row in rows:
        uid = str(row["SeriesInstanceUID"])
        modality = str(row.get("Modality") or "")
        middle = middles.get(uid) if modality.upper() not in NON_IMAGE_MODALITIES else None
        description = str(row.get("SeriesDescription") or "")
        if row.get("BodyPartExamined"):
            description = f"{description} ({row['BodyPartExamined']})" if description else str(row["BodyPartExamined"])
        records.append({
            "SeriesInstanceUID": uid,
            "Thumbnail": thumbnail_html(study_uid, uid, middle, modality,
                                        source.thumbnail_src(study_uid, uid, middle) if middle else None),
            "#": str(row.get("SeriesNumber") or ""),
            "Modality": modality,
            "Description": description,
            "Instances": str(row.get("NumberOfSeriesRelatedInstances") or ""),
        })
    return pd.DataFrame(records, columns=["SeriesInstanceUID", *COLUMNS.values()])


class SeriesList(pn.viewable.Viewer):
    """The series of a study with thumbnails; clicking one sets ``series_uid``."""

    archive = param.Parameter()
    study_uid = param.String(default="")
    series_uid = param.String(default="", doc="The series clicked last.")

    def __init__(self, **params: Any) -> None:
        height, width = params.pop("height", 520), params.pop("width", None)
        super().__init__(**params)
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=["SeriesInstanceUID", *COLUMNS.values()]),
            hidden_columns=["SeriesInstanceUID"], show_index=False, disabled=True, selectable=1,
            # Only the thumbnail cell (built and escaped here) is HTML; "textarea" wraps escaped text.
            formatters={"Thumbnail": {"type": "html"}, "Description": {"type": "textarea"}},
            titles={"Thumbnail": ""}, widths={"Thumbnail": 76, "#": 40, "Modality": 78, "Instances": 80},
            layout="fit_columns",
            header_align="left", height=height, sorters=[], configuration={"columnDefaults": {"headerSort": False}},
            **({"width": width} if width else {"sizing_mode": "stretch_width"}),
            stylesheets=[CSS], css_classes=["pd-series-list"],
        )
        self.table.on_click(self._on_click)
        self._load()

    @param.depends("study_uid", watch=True)
    def _load(self) -> None:
        if self.archive is None or not self.study_uid:
            self.table.value = self.table.value.iloc[0:0]
            return
        self.table.value = series_table(self.archive, self.study_uid)

    def highlight(self, series_uid: str) -> None:
        """Mark the row of the series shown (without choosing it again)."""
        rows = list(self.table.value["SeriesInstanceUID"])
        self.table.selection = [rows.index(series_uid)] if series_uid in rows else []

    def _on_click(self, event: Any) -> None:
        if event.row is not None and 0 <= event.row < len(self.table.value):
            self.series_uid = str(self.table.value.iloc[event.row]["SeriesInstanceUID"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self.table
