"""The image viewer of the dashboard, also usable in a notebook.

Frames go to the browser once, as Modality-LUT values at full bit depth
(:mod:`.frames`); the browser windows them on a canvas (:class:`FrameCanvas`),
so window/level, zoom and pan never need a new image from the server.

Public API
----------
Frame, VOIWindow, load_frame, estimate_frame_bytes, smallest_exact_dtype
    One frame for the browser (no Panel needed).
SeriesFrames, SeriesInstance, FrameRef, LRUCache
    A series as frames, decoded lazily, cached.
CT_PRESETS, window_presets
    Window presets.
TagNode, dataset_tree, tree_html
    Attributes as an escaped tree (no Panel needed).
FrameCanvas, TagBrowser, SeriesViewer
    The Panel components.
"""

from typing import TYPE_CHECKING

from pacsdash.dashboard.viewer.frames import (
    Frame,
    VOIWindow,
    dataset_windows,
    estimate_frame_bytes,
    load_frame,
    smallest_exact_dtype,
)
from pacsdash.dashboard.viewer.presets import CT_PRESETS, window_presets
from pacsdash.dashboard.viewer.series import FrameRef, LRUCache, SeriesFrames, SeriesInstance
from pacsdash.dashboard.viewer.tags import TagNode, dataset_tree, filter_tree, tree_html

if TYPE_CHECKING:
    from pacsdash.dashboard.viewer.canvas import FrameCanvas
    from pacsdash.dashboard.viewer.tag_browser import TagBrowser
    from pacsdash.dashboard.viewer.viewer import SeriesViewer

__all__ = [
    "CT_PRESETS",
    "Frame",
    "FrameCanvas",
    "FrameRef",
    "LRUCache",
    "SeriesFrames",
    "SeriesInstance",
    "SeriesViewer",
    "TagBrowser",
    "TagNode",
    "VOIWindow",
    "dataset_tree",
    "dataset_windows",
    "estimate_frame_bytes",
    "filter_tree",
    "load_frame",
    "smallest_exact_dtype",
    "tree_html",
    "window_presets",
]


def __getattr__(name: str):  # the Panel components import Panel only when asked for
    if name == "FrameCanvas":
        from pacsdash.dashboard.viewer.canvas import FrameCanvas

        return FrameCanvas
    if name == "TagBrowser":
        from pacsdash.dashboard.viewer.tag_browser import TagBrowser

        return TagBrowser
    if name == "SeriesViewer":
        from pacsdash.dashboard.viewer.viewer import SeriesViewer

        return SeriesViewer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
