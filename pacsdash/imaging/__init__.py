"""Pixel data for display and transfer: the one rendering module of pacsdash.

Shared by the DICOMweb doors (WADO-RS ``/rendered``, ``/thumbnail``,
``/frames``, WADO-URI) and the dashboard viewer. It knows nothing of HTTP;
its exceptions carry an ``http_status`` hint instead.

Frame indexes are 0-based everywhere (PS3.18 frame numbers minus one).

Public API
----------
frame_count, has_pixels
    Header questions (PS3.3 C.7.6.3, C.7.6.6).
decode_frame
    Stored values of one frame, colour as RGB.
to_display
    PS3.4 N.2 / PS3.3 C.11 grayscale pipeline and colour to ``uint8``.
render, render_array, thumbnail
    PNG/JPEG rendered resources (PS3.18 8.3.5).
frame_bytes, compressed_frame, frame_size, frame_attributes
    ``/frames`` bulk data (PS3.18 8.7.3.5).
Window, parse_window
    VOI windows (PS3.3 C.11.2.1.2, PS3.18 8.3.5.1.3).
"""

from pacsdash.imaging.attributes import frame_count, has_pixels
from pacsdash.imaging.decoding import decode_frame
from pacsdash.imaging.display import to_display
from pacsdash.imaging.errors import (
    CorruptPixelData,
    FrameOutOfRange,
    ImagingError,
    InvalidParameter,
    NoPixelData,
    OverBudget,
    UnsupportedEncoding,
    UnsupportedMediaType,
)
from pacsdash.imaging.frames import compressed_frame, frame_attributes, frame_bytes, frame_size
from pacsdash.imaging.rendering import MEDIA_TYPES, fit_viewport, render, render_array, thumbnail
from pacsdash.imaging.window import Window, parse_window

__all__ = [
    "MEDIA_TYPES",
    "CorruptPixelData",
    "FrameOutOfRange",
    "ImagingError",
    "InvalidParameter",
    "NoPixelData",
    "OverBudget",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
    "Window",
    "compressed_frame",
    "decode_frame",
    "fit_viewport",
    "frame_attributes",
    "frame_bytes",
    "frame_count",
    "frame_size",
    "has_pixels",
    "parse_window",
    "render",
    "render_array",
    "thumbnail",
    "to_display",
]
