"""Counts and plots of what the archive (or any DICOMweb server) holds."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models import SingleIntervalTicker

from pacsdash.dashboard.sources import as_source


def archive_summary(archive: Any) -> dict[str, Any]:
    """Totals, studies per modality and per month, from the data source."""
    return as_source(archive).summary()


def _integer_ticks(plot: Any, element: Any) -> None:
    """Counts are whole numbers: no 0.5 ticks on a count axis."""
    axis = plot.state.yaxis[0] if plot.state.yaxis else None
    top = max([1] + [float(v) for v in element.dimension_values(1)])
    if axis is not None and top <= 10:
        axis.ticker = SingleIntervalTicker(interval=1)


def _plotting() -> None:
    """Register ``DataFrame.hvplot`` when a plot is first drawn (hvplot costs a third of a
    second to import: a server that only starts, or a login page, does not pay it)."""
    import hvplot.pandas  # noqa: F401


def modality_plot(by_modality: list[tuple[str, int]]) -> Any:
    _plotting()
    frame = pd.DataFrame(by_modality, columns=["modality", "studies"])
    return frame.hvplot.bar(x="modality", y="studies", title="Studies per modality", height=280, responsive=True,
                            hover_cols=["studies"], ylabel="studies", xlabel="").opts(hooks=[_integer_ticks],
                                                                                      toolbar=None)


def month_plot(by_month: list[tuple[str, int]]) -> Any:
    """Studies per month on a real time axis (months without studies included)."""
    _plotting()
    frame = pd.DataFrame(by_month, columns=["month", "studies"])
    frame["month"] = pd.to_datetime(frame["month"], format="%Y%m", errors="coerce")
    frame = frame.dropna()
    if not frame.empty:
        months = pd.date_range(frame["month"].min(), frame["month"].max(), freq="MS")
        frame = frame.set_index("month").reindex(months, fill_value=0).rename_axis("month").reset_index()
    return frame.hvplot.step(x="month", y="studies", where="mid", title="Studies per month", height=280,
                             responsive=True, hover_cols=["studies"], xlabel="", ylabel="studies").opts(
        hooks=[_integer_ticks], toolbar=None)


class Overview(pn.viewable.Viewer):
    """Totals and plots; ``refresh`` re-reads them."""

    archive = param.Parameter(doc="A pacsdash Archive, a pacsdash.client.Client or a DataSource.")
    shown = param.Boolean(default=True, doc="Read and plotted only once shown (the dashboard sets it when its "
                                            "tab opens, so that a session starts without the summary).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._body = pn.Column(sizing_mode="stretch_width")
        self._stale = True
        self.refresh()

    @param.depends("shown", watch=True)
    def _on_shown(self) -> None:
        if self.shown and self._stale:
            self.refresh()

    def refresh(self, *_: Any) -> None:
        """Read the totals and plot them again (later, once shown, if not shown yet)."""
        if not self.shown:
            self._stale = True
            return
        self._stale = False
        summary = archive_summary(self.archive)
        totals = summary["totals"]
        numbers = pn.Row(*[
            pn.indicators.Number(name=label, value=totals[key], format="{value:,}", font_size="28pt", title_size="11pt")
            for key, label in (("patients", "Patients"), ("studies", "Studies"), ("series", "Series"), ("instances", "Instances"))
        ])
        plots = pn.Row(pn.pane.HoloViews(modality_plot(summary["by_modality"]), sizing_mode="stretch_width"),
                       pn.pane.HoloViews(month_plot(summary["by_month"]), sizing_mode="stretch_width"),
                       sizing_mode="stretch_width")
        self._body[:] = [numbers, plots]

    def __panel__(self) -> pn.viewable.Viewable:
        button = pn.widgets.Button(name="Refresh", width=100)
        button.on_click(self.refresh)
        return pn.Column(button, self._body, sizing_mode="stretch_width")
