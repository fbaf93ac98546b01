"""The series viewer: a study's series on a browser-windowed canvas."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from pacsdash.dashboard.sources import as_source
from pacsdash.dashboard.viewer.canvas import FrameCanvas
from pacsdash.dashboard.viewer.frames import VOIWindow
from pacsdash.dashboard.viewer.series import LOAD_ERRORS, SeriesFrames
from pacsdash.dashboard.viewer.tag_browser import TagBrowser

#: Modalities of series that hold no images to view.
NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "DOC", "RTPLAN", "RTSTRUCT", "RTRECORD", "REG", "ECG", "AU", "FID"})
SERIES_FIELDS = ["SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def series_label(row: dict[str, Any]) -> str:
    """``"2 · CT · Axial 5mm (40)"`` for a series row of the archive (plain text)."""
    parts = [str(row.get(k) or "").strip() for k in ("SeriesNumber", "Modality", "SeriesDescription")]
    label = " · ".join(p for p in parts if p) or str(row.get("SeriesInstanceUID", "?"))
    count = row.get("NumberOfSeriesRelatedInstances")
    return f"{label} ({count})" if count not in (None, "") else label


def _link(
    source: param.Parameterized,
    source_name: str,
    target: param.Parameterized,
    target_name: str,
    to_target: Callable[[Any], Any] = lambda v: v,
    to_source: Callable[[Any], Any] = lambda v: v,
) -> None:
    """Keep two parameters in step, both ways (no loop: param ignores unchanged values)."""

    def forward(event: param.parameterized.Event) -> None:
        value = to_target(event.new)
        if getattr(target, target_name) != value:
            setattr(target, target_name, value)

    def backward(event: param.parameterized.Event) -> None:
        value = to_source(event.new)
        if getattr(source, source_name) != value:
            setattr(source, source_name, value)

    source.param.watch(forward, source_name)
    target.param.watch(backward, target_name)


class SeriesViewer(pn.viewable.Viewer):
    """View a study's series: frame slider, window presets and sliders, attributes.

    Usable in the dashboard and in a notebook cell (after ``pn.extension()``),
    on the local archive or on any DICOMweb server (also pacsdash while it serves)::

        from pacsdash.client import connect
        SeriesViewer(archive=connect("http://127.0.0.1:8042/dicom-web", user=..., password=...),
                     study_uid="1.2.3...")

    Parameters
    ----------
    archive : DataSource, pacsdash.archive.Archive or pacsdash.client.Client
        Where the study is stored.
    study_uid : str
        (0020,000D); its first image series is shown unless `series_uid` is given.
    series_uid : str
        (0020,000E) of the series shown; its study is looked up when `study_uid` is empty.
    frame_index, window_center, window_width : int, float, float
        Synced with the canvas: set them from Python, or read what the user did.
    """

    archive = param.Parameter(default=None, doc="Where to read from: a pacsdash Archive, a pacsdash.client.Client "
                                                "(any DICOMweb server) or a DataSource.")
    study_uid = param.String(default="", doc="Study Instance UID.")
    series_uid = param.String(default="", doc="Series Instance UID shown.")
    frame_index = param.Integer(default=0, bounds=(0, None), doc="Series-wide 0-based frame shown.")
    window_center = param.Number(default=40.0, doc="Window center in modality units.")
    window_width = param.Number(default=400.0, doc="Window width in modality units.")
    series_options = param.Dict(default={}, doc="Series of the study: label -> Series Instance UID.")
    canvas_height = param.Integer(default=512, bounds=(64, None), constant=True, doc="Height of the image, pixels.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.series: SeriesFrames | None = None
        self._series_rows: dict[str, dict[str, Any]] = {}
        self._study_row: dict[str, Any] = {}
        self.canvas = FrameCanvas(height=self.canvas_height)
        self.tags = TagBrowser()
        self._series_select = pn.widgets.Select(label="Series", options={}, sizing_mode="stretch_width")
        self._frame_slider = pn.widgets.IntSlider(label="Image", start=1, end=2, value=1, disabled=True,
                                                  sizing_mode="stretch_width")
        self._center = pn.widgets.EditableFloatSlider(label="Window center", start=-1024.0, end=3071.0, step=1.0,
                                                      value=self.window_center, sizing_mode="stretch_width")
        self._width = pn.widgets.EditableFloatSlider(label="Window width", start=1.0, end=4096.0, step=1.0,
                                                     value=self.window_width, sizing_mode="stretch_width")
        self._presets = pn.FlexBox(sizing_mode="stretch_width")
        self._play = pn.widgets.Toggle(label="▶ Play", value=False, width=90)
        self._reset = pn.widgets.Button(label="Reset", width=90)
        self._reset.on_click(lambda _: self.canvas.reset_view())
        self._info = pn.pane.HTML("", sizing_mode="stretch_width")
        # The attribute browser joins the card when it is first opened (a viewer opens without drawing it).
        self._tags_card = pn.Card(title="Attributes", collapsed=True, sizing_mode="stretch_width")
        self._tags_card.param.watch(lambda _: self._update_tags(), "collapsed")

        _link(self, "frame_index", self.canvas, "frame_index")
        _link(self, "window_center", self.canvas, "window_center")
        _link(self, "window_width", self.canvas, "window_width")
        _link(self, "frame_index", self._frame_slider, "value", lambda i: i + 1, lambda v: max(int(v) - 1, 0))
        _link(self, "window_center", self._center, "value")
        _link(self, "window_width", self._width, "value")
        _link(self.canvas, "playing", self._play, "value")
        _link(self, "series_uid", self._series_select, "value", lambda uid: uid or None, lambda v: v or "")
        self._play.param.watch(lambda e: setattr(self._play, "label", "❚❚ Pause" if e.new else "▶ Play"), "value")
        self.canvas.param.watch(lambda _: self._show_presets(), "presets")
        self.param.watch(lambda _: self._frame_changed(), "frame_index")

        self._layout = pn.Column(
            pn.Row(self._series_select, self._info, sizing_mode="stretch_width"),
            pn.Row(
                pn.Column(self.canvas, self._frame_slider, sizing_mode="stretch_width"),
                pn.Column(
                    pn.pane.HTML("<b>Window</b> <small>(drag on the image; keys 1-9)</small>", margin=(5, 10, 0, 10)),
                    self._presets, self._center, self._width, pn.Row(self._play, self._reset),
                    pn.pane.HTML(
                        "<small>Wheel or ↑/↓: frames · drag: window · right/shift-drag: pan · "
                        "ctrl-wheel: zoom · r: reset · space: cine</small>", margin=(5, 10)),
                    width=280,
                ),
                sizing_mode="stretch_width",
            ),
            self._tags_card,
            sizing_mode="stretch_width",
        )
        if self.series_uid and not self.study_uid:
            self._find_study()
        self._load_study()

    # -- public ---------------------------------------------------------------
    def apply_preset(self, preset: int | str) -> VOIWindow:
        """Apply a window preset by position or name (``"Lung"``); see :meth:`FrameCanvas.apply_preset`."""
        return self.canvas.apply_preset(preset)

    @property
    def presets(self) -> list[dict[str, Any]]:
        """The window presets offered for the series shown."""
        return list(self.canvas.presets)

    @property
    def current_instance(self) -> str:
        """SOP Instance UID of the frame shown ("" without a series)."""
        if self.series is None or not len(self.series):
            return ""
        return self.series.ref(min(self.frame_index, len(self.series) - 1)).SOPInstanceUID

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    # -- loading --------------------------------------------------------------
    def _find_study(self) -> None:
        from pacsdash.archive import Level, Query

        rows = as_source(self.archive).find(Query(Level.SERIES, {"SeriesInstanceUID": self.series_uid}))
        if rows:
            self.study_uid = str(rows[0].get("StudyInstanceUID") or "")

    @param.depends("study_uid", "archive", watch=True)
    def _load_study(self) -> None:
        from pacsdash.archive import Level, Query

        rows: list[dict[str, Any]] = []
        self._study_row = {}
        if self.archive is not None and self.study_uid:
            source = as_source(self.archive)
            studies = source.find(Query(Level.STUDY, {"StudyInstanceUID": self.study_uid}))
            self._study_row = studies[0] if studies else {}
            rows = source.find(Query(Level.SERIES, {"StudyInstanceUID": self.study_uid}, SERIES_FIELDS))
            rows.sort(key=lambda r: (_number(r.get("SeriesNumber")), str(r.get("SeriesInstanceUID"))))
        self._series_rows = {str(r["SeriesInstanceUID"]): r for r in rows}
        chosen = self.series_uid
        if chosen not in self._series_rows:
            images = [r for r in rows if str(r.get("Modality") or "").upper() not in NON_IMAGE_MODALITIES]
            chosen = str((images or rows or [{}])[0].get("SeriesInstanceUID") or "")
        options = {series_label(r): str(r["SeriesInstanceUID"]) for r in rows}
        self.series_options = options
        previous = self.series_uid
        self._series_select.param.update(options=options, value=chosen or None)
        self.series_uid = chosen
        if previous == chosen:
            self._load_series()  # same UID, new study or archive: no change event

    @param.depends("series_uid", watch=True)
    def _load_series(self) -> None:
        if self.archive is None or not self.series_uid:
            self.series = None
            self.canvas.set_source(None, 0, message="No series selected.", presets=[])
        else:
            self.series = SeriesFrames.from_archive(self.archive, self.series_uid)
            self.canvas.show_series(self.series)
        count = len(self.series) if self.series is not None else 0
        self._frame_slider.param.update(end=max(count, 2), disabled=count <= 1)
        self._play.disabled = count <= 1
        self._set_ranges()
        self._show_presets()
        self._frame_changed()

    def _set_ranges(self) -> None:
        """Fit the window sliders to the first frame's values."""
        if self.series is None or not len(self.series):
            return
        try:
            frame = self.series.frame(self.frame_index)
        except LOAD_ERRORS:
            return
        low, high = frame.minimum, frame.maximum
        span = max(high - low, 1.0)
        step = 1.0 if frame.pixels.dtype.kind in "iu" else span / 1000.0
        self._center.param.update(start=min(low, self.window_center), end=max(high, self.window_center), step=step)
        self._width.param.update(start=step, end=max(2.0 * span, self.window_width), step=step)

    def _show_presets(self) -> None:
        buttons = []
        for number, preset in enumerate(self.canvas.presets):
            label = str(preset.get("explanation") or f"Preset {number + 1}")
            button = pn.widgets.Button(label=f"{number + 1} {label}" if number < 9 else label, color="default",
                                       margin=(2, 2), description=f"{preset['center']:g} / {preset['width']:g}")
            button.on_click(lambda _, n=number: self.apply_preset(n))
            buttons.append(button)
        self._presets.objects = buttons

    def _frame_changed(self) -> None:
        self._show_info()
        self._update_tags()

    def _show_info(self) -> None:
        e = html.escape
        if self.series is None or not len(self.series):
            self._info.object = f"<p>{e(self.canvas.message or 'No image.')}</p>"
            return
        ref = self.series.ref(min(self.frame_index, len(self.series) - 1))
        instance = self.series.instances[ref.instance]
        study, row = self._study_row, self._series_rows.get(self.series_uid, {})
        patient = " ".join(str(study.get(k) or "") for k in ("PatientName", "PatientID")).strip()
        where = f"image {ref.index + 1} / {len(self.series)}"
        if instance.InstanceNumber is not None:
            where += f" · instance {instance.InstanceNumber}"
        if ref.NumberOfFrames > 1:
            where += f" · frame {ref.frame + 1} / {ref.NumberOfFrames}"
        self._info.object = (
            f"<div><b>{e(patient)}</b> · {e(str(study.get('StudyDescription') or ''))} "
            f"{e(str(study.get('StudyDate') or ''))}<br>"
            f"{e(series_label(row)) if row else ''} · {e(where)}</div>"
        )

    def _update_tags(self) -> None:
        if self._tags_card.collapsed:
            return  # read the header only when someone looks
        if not self._tags_card.objects:
            self._tags_card.objects = [self.tags]
        uid = self.current_instance
        current = self.tags.dataset
        if not uid:
            self.tags.dataset = None
        elif current is None or str(current.get("SOPInstanceUID", "")) != uid:
            try:
                self.tags.dataset = self.series.dataset(min(self.frame_index, len(self.series) - 1))
            except LOAD_ERRORS:
                self.tags.dataset = None
