"""The browser half of the viewer: a <canvas> that windows frames itself.

:class:`FrameCanvas` is a ``pn.custom.JSComponent``. Python ships each frame
once (see :mod:`pacsdash.dashboard.viewer.frames`); the browser keeps them in
a cache keyed by series-wide index and applies window/level, zoom and pan
locally. The browser asks for the frames it lacks; Python decodes them in a
worker thread and pushes them ahead of the current one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from uuid import uuid4

import panel as pn
import param

from pacsdash.dashboard.viewer.esm import FRAME_CANVAS_CSS, FRAME_CANVAS_ESM
from pacsdash.dashboard.viewer.frames import Frame, VOIWindow
from pacsdash.dashboard.viewer.presets import window_presets
from pacsdash.dashboard.viewer.series import LOAD_ERRORS, SeriesFrames

LOGGER = logging.getLogger(__name__)

#: Decoding threads shared by every canvas of the process.
_DECODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pacsdash-viewer-decode")
#: Longest wish list accepted from the browser.
MAX_WISHLIST = 512
#: A frame sent is not sent again unless the browser says it dropped it (or
#: this many seconds passed: a message lost on the way).
RESEND_AFTER_SECONDS = 30.0

FrameSource = Callable[[int], Frame]


class FrameCanvas(pn.custom.JSComponent):
    """Show the frames of one series on a <canvas>, windowed in the browser.

    Mouse: drag = window (horizontal width, vertical center); right, middle
    or shift drag = pan; ctrl/shift + wheel = zoom; wheel = frames;
    double-click = fit. Keys: arrows / Page Up / Page Down / Home / End move
    between frames, 1-9 apply :attr:`presets`, ``r`` resets window and zoom,
    space plays/pauses cine, ``+``/``-``/``0`` zoom.

    Feed it with :meth:`show_series` (or :meth:`set_source`). The window
    and frame index are synced both ways, so Python can set and read them.
    In a notebook (after ``pn.extension()``)::

        canvas = FrameCanvas()
        canvas.show_series(SeriesFrames.from_files(sorted(folder.glob("*.dcm"))))
        canvas
    """

    frame_index = param.Integer(default=0, bounds=(0, None), doc="Series-wide 0-based frame on screen.")
    frame_count = param.Integer(default=0, bounds=(0, None), doc="Frames in the series.")
    window_center = param.Number(default=40.0, doc="VOI window center, in modality units (HU for CT).")
    window_width = param.Number(default=400.0, doc="VOI window width, in modality units.")
    voi_function = param.String(default="linear", doc="linear, linear-exact or sigmoid (PS3.3 C.11.2.1.3).")
    presets = param.List(default=[], item_type=dict,
                         doc="Windows for keys 1-9: {explanation, center, width, function}.")
    series_key = param.String(default="", doc="Changes with the series: the browser drops its cache.")
    playing = param.Boolean(default=False, doc="Cine running.")
    fps = param.Number(default=10.0, bounds=(0.5, 60.0), doc="Cine rate, frames per second.")
    prefetch = param.Integer(default=8, bounds=(0, 64), doc="Frames fetched ahead of the current one.")
    cache_megabytes = param.Integer(default=256, bounds=(16, 4096), doc="Browser frame cache budget.")
    drawn_index = param.Integer(default=-1, doc="Last frame the browser drew (set by the browser).")
    message = param.String(default="", doc="Shown when there is nothing to draw.")

    _esm = FRAME_CANVAS_ESM
    _stylesheets: ClassVar[list[str]] = [FRAME_CANVAS_CSS]

    def __init__(self, **params: Any) -> None:
        params.setdefault("height", 512)
        params.setdefault("min_width", 200)
        params.setdefault("sizing_mode", "stretch_width")
        super().__init__(**params)
        self._source: FrameSource | None = None
        self._lock = threading.Lock()
        self._wishlist: deque[int] = deque()
        self._sent: dict[int, float] = {}
        self._pumping = False

    # -- feeding -----------------------------------------------------------------
    def set_source(self, source: FrameSource | None, frame_count: int, **params: Any) -> None:
        """Show another series.

        Parameters
        ----------
        source : callable or None
            ``source(index) -> Frame`` for series-wide frame indexes; called
            in a worker thread.
        frame_count : int
            Frames in the series.
        **params
            Further parameters to set at the same time (window, presets, ...).
        """
        with self._lock:
            self._source = source
            self._wishlist.clear()
            self._sent.clear()
        params.setdefault("frame_index", 0)
        self.param.update(series_key=uuid4().hex, frame_count=frame_count, playing=False, **params)

    def show_series(self, series: SeriesFrames, frame_index: int = 0) -> None:
        """Show `series`, with its first frame's default window and presets.

        Decodes frame `frame_index` now, for its window and value range.
        """
        if not len(series):
            self.set_source(None, 0, message="This series has no image frames.", presets=[])
            return
        frame_index = min(max(frame_index, 0), len(series) - 1)
        params: dict[str, Any] = {"message": "", "frame_index": frame_index}
        try:
            first = series.frame(frame_index)
        except LOAD_ERRORS as exc:
            params["message"] = str(exc)
            first = None
        if first is not None:
            window = first.default_window
            params.update(window_center=window.center, window_width=window.width, voi_function=window.function)
            params["presets"] = [p.as_dict() for p in window_presets(first.Modality, first.windows, first.units)]
        try:
            frame_time = series.frame_time
        except LOAD_ERRORS:
            frame_time = None
        params["fps"] = min(max(1000.0 / frame_time, 0.5), 60.0) if frame_time else 10.0
        self.set_source(series.frame, len(series), **params)

    # -- Python-side commands ----------------------------------------------------
    def apply_window(self, window: VOIWindow | dict[str, Any]) -> None:
        """Set the window (the browser redraws without fetching anything)."""
        if isinstance(window, dict):
            window = VOIWindow(float(window["center"]), float(window["width"]), str(window.get("explanation", "")),
                               str(window.get("function") or "linear"))
        self.param.update(window_center=window.center, window_width=window.width, voi_function=window.function)

    def apply_preset(self, preset: int | str) -> VOIWindow:
        """Apply one of :attr:`presets`, by position or by explanation (case-insensitive).

        Raises
        ------
        KeyError
            When there is no such preset.
        """
        chosen = None
        if isinstance(preset, int) and not isinstance(preset, bool):
            if 0 <= preset < len(self.presets):
                chosen = self.presets[preset]
        else:
            wanted = str(preset).strip().lower()
            chosen = next((p for p in self.presets if str(p.get("explanation", "")).lower() == wanted), None)
        if chosen is None:
            names = ", ".join(str(p.get("explanation")) for p in self.presets)
            raise KeyError(f"no window preset {preset!r}; presets are: {names}")
        window = VOIWindow(float(chosen["center"]), float(chosen["width"]), str(chosen.get("explanation", "")),
                           str(chosen.get("function") or "linear"))
        self.apply_window(window)
        return window

    def reset_view(self) -> None:
        """Back to the current frame's default window, zoom to fit."""
        source = self._source
        if source is not None and self.frame_count:
            try:
                self.apply_window(source(self.frame_index).default_window)
            except LOAD_ERRORS:
                pass
        self._send_msg({"type": "reset", "window": False})

    def _cleanup(self, root: Any = None) -> None:
        super()._cleanup(root)
        if not self._models:  # the last view is gone (session closed): stop decoding for it
            with self._lock:
                self._wishlist.clear()

    # -- the frame protocol --------------------------------------------------
    def _handle_msg(self, data: Any) -> None:
        """Take a wish list ``{type: "need", series_key, indices, evicted, reset}`` from the browser."""
        if not isinstance(data, dict) or data.get("type") != "need":
            return
        if data.get("series_key") != self.series_key:
            return  # from before a series change
        with self._lock:
            if data.get("reset"):
                self._sent.clear()  # a new view with an empty cache
            for index in _indices(data.get("evicted"), self.frame_count):
                self._sent.pop(index, None)
            now = time.monotonic()
            wanted = [i for i in _indices(data.get("indices"), self.frame_count)
                      if now - self._sent.get(i, -RESEND_AFTER_SECONDS) >= RESEND_AFTER_SECONDS]
        self.request_frames(wanted)

    def request_frames(self, indices: list[int]) -> None:
        """Replace the queue of frames to push with `indices` (most urgent first)."""
        key = self.series_key
        with self._lock:
            self._wishlist = deque(dict.fromkeys(indices))
            start = bool(self._wishlist) and not self._pumping
            if start:
                self._pumping = True
        if not start:
            return
        if self._models:  # shown in a server session or a notebook: decode in a worker thread
            _DECODERS.submit(self._pump, key)
        else:  # not displayed (a test, a script): answer in this thread
            self._pump(key)

    def _pump(self, key: str) -> None:
        """Decode and send queued frames until the queue is empty or the series changes."""
        while True:
            with self._lock:
                if key != self.series_key or not self._wishlist or self._source is None:
                    self._pumping = False
                    return
                index = self._wishlist.popleft()
                source = self._source
                self._sent[index] = time.monotonic()
            try:
                message = {"type": "frame", "series_key": key, **source(index).to_message(index)}
            except LOAD_ERRORS as exc:
                message = {"type": "error", "series_key": key, "index": index, "message": str(exc)}
            except Exception as exc:  # never let the pump die silently
                LOGGER.exception("frame %d of the viewer could not be loaded", index)
                message = {"type": "error", "series_key": key, "index": index,
                           "message": f"frame {index} could not be loaded: {type(exc).__name__}"}
            try:
                self._send_msg(message)
            except Exception:
                LOGGER.exception("frame %d could not be sent to the browser", index)


def _indices(values: Any, count: int) -> list[int]:
    """Valid frame indexes from a browser message (anything else is dropped)."""
    if not isinstance(values, list | tuple):
        return []
    out = []
    for value in values[:MAX_WISHLIST]:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            continue
        if 0 <= int(value) < count:
            out.append(int(value))
    return out
