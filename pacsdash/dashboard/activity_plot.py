"""Counts over time for the ``/activity`` page: one line per kind, per second, on a time axis."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

#: Seconds shown on the plot.
WINDOW = 600
SERIES = ("associations", "DIMSE messages", "HTTP requests")


def counts_frame(counts: list[tuple[int, int, int, int]], now: float | None = None,
                 window: int = WINDOW) -> pd.DataFrame:
    """Per-second counts over the last ``window`` seconds, seconds with nothing as zeros."""
    end = int(now if now is not None else time.time())
    seconds = pd.RangeIndex(end - window + 1, end + 1)
    frame = pd.DataFrame(0, index=seconds, columns=list(SERIES))
    for second, *values in counts:
        if second in frame.index:
            frame.loc[second] = values
    offset = time.localtime(end).tm_gmtoff  # local time, as the page's tables show it
    frame.index = pd.to_datetime(frame.index + offset, unit="s")
    frame.index.name = "time"
    return frame


def counts_plot(counts: list[tuple[int, int, int, int]], now: float | None = None) -> Any:
    """A HoloViews line plot of :func:`counts_frame`."""
    import hvplot.pandas  # noqa: F401 - registers .hvplot

    frame = counts_frame(counts, now)
    return frame.hvplot.line(
        y=list(SERIES), ylabel="per second", xlabel="time", responsive=True, height=220,
        legend="top_left", title="Traffic, last 10 minutes",
    ).opts(show_grid=True, hooks=[_whole_ticks])


def _whole_ticks(plot: Any, element: Any) -> None:
    """Counts tick at whole numbers only (never 0.5)."""
    plot.state.yaxis[0].ticker.min_interval = 1
