"""Encode display values as rendered media types (PS3.18 8.3.5, 9.7 thumbnails).

Serves WADO-RS ``/rendered`` and ``/thumbnail``, WADO-URI (PS3.18 9) and the
dashboard viewer alike: decode one frame, apply the display pipeline, fit the
viewport, encode with Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from pacsdash.imaging.attributes import frame_count, require_pixels
from pacsdash.imaging.decoding import decode_frame
from pacsdash.imaging.display import WindowArg, to_display
from pacsdash.imaging.errors import InvalidParameter, UnsupportedMediaType

#: Rendered media types produced here, and their Pillow format (PS3.18 8.7.4, Table 8.7.4-1).
MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}

Viewport = Sequence[int | None]


def normalize_media_type(media_type: str) -> str:
    """Return the media type without parameters, lower case.

    Raises
    ------
    UnsupportedMediaType
        When it is not one of :data:`MEDIA_TYPES` (a 406, PS3.18 8.7.4).
    """
    name = str(media_type).split(";", 1)[0].strip().lower()
    if name == "image/jpg":
        name = "image/jpeg"
    if name not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"rendered media type {media_type!r} is not supported: use one of {', '.join(MEDIA_TYPES)}"
        )
    return name


def fit_viewport(columns: int, rows: int, viewport: Viewport | None) -> tuple[int, int]:
    """Return the ``(columns, rows)`` of an image scaled to fit a viewport.

    PS3.18 8.3.5.1.2: the image is scaled to fit the viewport while keeping
    its aspect ratio, so one side equals the viewport and the other is at
    most the viewport.

    Parameters
    ----------
    columns, rows : int
        Size of the image.
    viewport : (int or None, int or None) or None
        ``(viewport columns, viewport rows)``; ``None`` for a side leaves it
        free; ``None`` altogether keeps the image size.

    Returns
    -------
    tuple of int
        ``(columns, rows)``, each at least 1.

    Raises
    ------
    InvalidParameter
        When the viewport is not two positive integers (or ``None``).
    """
    if viewport is None:
        return columns, rows
    try:
        width, height = viewport
        width = None if width is None else int(width)
        height = None if height is None else int(height)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"viewport must be (columns, rows), got {viewport!r}") from exc
    if (width is not None and width <= 0) or (height is not None and height <= 0):
        raise InvalidParameter(f"viewport sides must be positive, got {viewport!r}")
    scales = [side / size for side, size in ((width, columns), (height, rows)) if side is not None]
    if not scales:
        return columns, rows
    scale = min(scales)
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def encode(display: np.ndarray, media_type: str = "image/png", quality: int = 90) -> bytes:
    """Encode ``uint8`` display values with Pillow.

    Parameters
    ----------
    display : numpy.ndarray
        ``(rows, columns)`` grayscale or ``(rows, columns, 3)`` RGB, ``uint8``.
    media_type : str, optional
        ``"image/png"`` or ``"image/jpeg"``.
    quality : int, optional
        JPEG quality 1-100 (PS3.18 8.3.5.1.4); ignored for PNG.

    Returns
    -------
    bytes
        The encoded image.

    Raises
    ------
    UnsupportedMediaType, InvalidParameter
    """
    fmt = MEDIA_TYPES[normalize_media_type(media_type)]
    picture = Image.fromarray(np.ascontiguousarray(display))
    buffer = io.BytesIO()
    if fmt == "JPEG":
        picture.save(buffer, format="JPEG", quality=_quality(quality))
    else:
        picture.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _quality(quality: int) -> int:
    try:
        value = int(quality)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"quality must be an integer 1-100, got {quality!r}") from exc
    if not 1 <= value <= 100:
        raise InvalidParameter(f"quality must be 1-100 (PS3.18 8.3.5.1.4), got {value}")
    return value


def resize(display: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample display values to ``size = (columns, rows)``.

    Lanczos when shrinking, bicubic when enlarging; a no-op when the size
    does not change.
    """
    rows, columns = display.shape[:2]
    if (columns, rows) == tuple(size):
        return display
    picture = Image.fromarray(np.ascontiguousarray(display))
    shrinking = size[0] < columns or size[1] < rows
    method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    return np.asarray(picture.resize(size, method, reducing_gap=3.0 if shrinking else None))


def render_array(
    ds: Dataset, index: int = 0, window: WindowArg = None, viewport: Viewport | None = None
) -> np.ndarray:
    """Return one frame as ``uint8`` display values fitted to a viewport.

    Parameters
    ----------
    ds, index, window, viewport
        As for :func:`render`.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` grayscale or ``(rows, columns, 3)`` RGB ``uint8``,
        for the dashboard viewer which draws arrays itself.
    """
    pixels = decode_frame(ds, index)
    rows, columns = pixels.shape[:2]
    size = fit_viewport(columns, rows, viewport)
    step = decimation(columns, rows, size)
    if step > 1:  # a thumbnail of a large frame: the display arithmetic on what will be seen
        pixels = pixels[::step, ::step]
    return resize(to_display(ds, pixels, window, index=index), size)


def decimation(columns: int, rows: int, size: tuple[int, int]) -> int:
    """The step that takes every n-th stored pixel of a frame shown at
    ``size`` and still leaves at least twice the pixels shown, for the
    resampling filter to smooth: 1 unless the frame is 4x larger or more."""
    return max(1, min(columns // max(size[0], 1), rows // max(size[1], 1)) // 2)


def render(
    ds: Dataset,
    index: int = 0,
    window: WindowArg = None,
    viewport: Viewport | None = None,
    media_type: str = "image/png",
    quality: int = 90,
) -> bytes:
    """Render one frame as a PNG or JPEG (PS3.18 8.3.5 rendered resources).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data and its File Meta Information.
    index : int, optional
        0-based frame index.
    window : Window, tuple, str or None, optional
        ``(center, width[, function])`` (PS3.18 8.3.5.1.3), see
        :func:`~pacsdash.imaging.to_display`.
    viewport : (int, int) or None, optional
        ``(columns, rows)`` to fit into, keeping the aspect ratio
        (PS3.18 8.3.5.1.2).
    media_type : str, optional
        ``"image/png"`` (default) or ``"image/jpeg"``.
    quality : int, optional
        JPEG quality 1-100 (PS3.18 8.3.5.1.4).

    Returns
    -------
    bytes
        The encoded image.

    Raises
    ------
    UnsupportedMediaType
        For another media type (checked before decoding).
    InvalidParameter
        For a malformed window, viewport or quality.
    NoPixelData, FrameOutOfRange, UnsupportedEncoding, CorruptPixelData
        See :func:`~pacsdash.imaging.decode_frame`.
    """
    normalize_media_type(media_type)
    _quality(quality)
    return encode(render_array(ds, index, window, viewport), media_type, quality)


def thumbnail(
    ds: Dataset, size: int = 128, index: int | None = None, media_type: str = "image/jpeg", quality: int = 85
) -> bytes:
    """Render a thumbnail that fits a ``size`` x ``size`` square (PS3.18 9.7 / 10.4.1.1.4).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data.
    size : int, optional
        Longest side in pixels (small images are enlarged to it too).
    index : int or None, optional
        0-based frame; ``None`` takes the middle frame of a multi-frame
        instance (cine loops often start on a blank frame).
    media_type : str, optional
        ``"image/jpeg"`` (default) or ``"image/png"``.
    quality : int, optional
        JPEG quality.

    Returns
    -------
    bytes
        The encoded thumbnail.

    Raises
    ------
    Same as :func:`render`.
    """
    require_pixels(ds)
    if index is None:
        index = frame_count(ds) // 2
    return render(ds, index, viewport=(size, size), media_type=media_type, quality=quality)
