"""Counts and simple plots of what the archive holds."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.plotting import figure


def archive_summary(archive: Any) -> dict[str, Any]:
    """Totals, studies per modality and per month, straight from the index."""
    cursor = archive.index._cursor()  # noqa: SLF001 - read-only summary queries
    totals = archive.index.totals()
    by_modality = cursor.execute(
        'SELECT coalesce("Modality", \'(none)\') AS modality, count(DISTINCT "StudyInstanceUID") AS studies '
        "FROM series GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    by_month = cursor.execute(
        'SELECT substr("StudyDate", 1, 6) AS month, count(*) AS studies FROM studies '
        "WHERE regexp_full_match(\"StudyDate\", '[0-9]{8}') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {"totals": totals, "by_modality": by_modality, "by_month": by_month}


class Overview(pn.viewable.Viewer):
    """Totals and plots; ``refresh`` re-reads them."""

    archive = param.Parameter()

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._body = pn.Column(sizing_mode="stretch_width")
        self.refresh()

    def refresh(self, *_: Any) -> None:
        summary = archive_summary(self.archive)
        totals = summary["totals"]
        numbers = pn.Row(*[
            pn.indicators.Number(name=label, value=totals[key], format="{value:,}", font_size="28pt", title_size="11pt")
            for key, label in (("patients", "Patients"), ("studies", "Studies"), ("series", "Series"), ("instances", "Instances"))
        ])
        modality = pd.DataFrame(summary["by_modality"], columns=["modality", "studies"])
        plot_m = figure(x_range=list(modality["modality"]), height=260, title="Studies per modality", toolbar_location=None)
        plot_m.vbar(x=modality["modality"], top=modality["studies"], width=0.8)
        month = pd.DataFrame(summary["by_month"], columns=["month", "studies"])
        plot_t = figure(x_range=list(month["month"]), height=260, title="Studies per month", toolbar_location=None)
        plot_t.vbar(x=month["month"], top=month["studies"], width=0.8)
        plot_t.xaxis.major_label_orientation = 0.8
        self._body[:] = [numbers, pn.Row(pn.pane.Bokeh(plot_m), pn.pane.Bokeh(plot_t), sizing_mode="stretch_width")]

    def __panel__(self) -> pn.viewable.Viewable:
        button = pn.widgets.Button(name="Refresh", width=100)
        button.on_click(self.refresh)
        return pn.Column(button, self._body, sizing_mode="stretch_width")
