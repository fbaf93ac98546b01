"""Turn stored pixel values into 8-bit display values (PS3.4 N.2, PS3.3 C.11).

The grayscale pipeline of PS3.4 N.2.1, in order:

1. Modality LUT (PS3.3 C.11.1): (0028,3000) *Modality LUT Sequence* or
   (0028,1053) *Rescale Slope* / (0028,1052) *Rescale Intercept*;
2. VOI LUT (PS3.3 C.11.2): an explicit window, else the first (0028,1050)
   *Window Center* / (0028,1051) *Window Width* with (0028,1056) *VOI LUT
   Function*, else the (0028,3010) *VOI LUT Sequence*, else the frame's
   minimum/maximum (ignoring (0028,0120) *Pixel Padding Value*);
3. MONOCHROME1 inversion (PS3.3 C.7.6.3.1.2, the INVERSE presentation LUT of
   PS3.3 C.11.6.1.2).

Colour bypasses it (PS3.4 N.2.2 / N.2.3): PALETTE COLOR goes through its
palette (PS3.3 C.7.9), RGB is passed through, scaled to 8 bits when
*Bits Stored* is not 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi

from pacsdash.imaging.attributes import ImagePixel, first_number, frame_value
from pacsdash.imaging.decoding import YBR_PHOTOMETRICS
from pacsdash.imaging.errors import CorruptPixelData, InvalidParameter, UnsupportedEncoding
from pacsdash.imaging.window import Window, apply_window, make_window, normalize_function

#: Display arithmetic is float32: a 4096x4096 frame is then 64 MB a copy, not 128.
DISPLAY_FLOAT = np.float32

#: Photometric interpretations of three-sample frames that decode to RGB.
RGB_PHOTOMETRICS = frozenset({"RGB"}) | YBR_PHOTOMETRICS

WindowArg = Window | Sequence[Any] | str | None


def _lut_items(ds: Dataset, keyword: str) -> Dataset | None:
    items = ds.get(keyword)
    if not items:
        return None
    item = items[0]
    if item.get("LUTDescriptor") is None or item.get("LUTData") is None:
        return None
    return item


def modality_lut(ds: Dataset, pixels: np.ndarray, index: int = 0) -> np.ndarray:
    """Apply the Modality LUT of PS3.3 C.11.1 to stored values.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    pixels : numpy.ndarray
        Stored values of one grayscale frame.
    index : int, optional
        0-based frame index, for the (0028,9145) *Pixel Value Transformation
        Sequence* of enhanced multi-frame IODs (PS3.3 C.7.6.16.2.9).

    Returns
    -------
    numpy.ndarray
        ``float32`` modality values (float pixel data is passed through:
        it already holds real-world values).

    Raises
    ------
    CorruptPixelData
        When a (0028,3000) *Modality LUT Sequence* is present but unusable.
    """
    if pixels.dtype.kind == "f":
        return pixels.astype(DISPLAY_FLOAT)
    if _lut_items(ds, "ModalityLUTSequence") is not None:
        try:
            return apply_modality_lut(pixels, ds).astype(DISPLAY_FLOAT)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise CorruptPixelData(f"(0028,3000) Modality LUT Sequence cannot be applied: {exc}") from exc
    slope = first_number(frame_value(ds, "PixelValueTransformationSequence", "RescaleSlope", index))
    intercept = first_number(frame_value(ds, "PixelValueTransformationSequence", "RescaleIntercept", index))
    values = pixels.astype(DISPLAY_FLOAT)
    if slope not in (None, 0.0, 1.0):
        values *= slope
    if intercept:
        values += intercept
    return values


def dataset_window(ds: Dataset, index: int = 0) -> Window | None:
    """Return the default window of `ds`, if it has a usable one.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    index : int, optional
        0-based frame index, for the (0028,9132) *Frame VOI LUT Sequence* of
        enhanced multi-frame IODs (PS3.3 C.7.6.16.2.10).

    Returns
    -------
    Window or None
        The first (0028,1050) *Window Center* / (0028,1051) *Window Width*
        pair (PS3.3 C.11.2.1.2) with (0028,1056) *VOI LUT Function*; ``None``
        when absent or invalid (e.g. a zero width), so that the next VOI
        source is used.
    """
    center = first_number(frame_value(ds, "FrameVOILUTSequence", "WindowCenter", index))
    width = first_number(frame_value(ds, "FrameVOILUTSequence", "WindowWidth", index))
    if center is None or width is None:
        return None
    try:
        function = normalize_function(frame_value(ds, "FrameVOILUTSequence", "VOILUTFunction", index))
        return make_window((center, width, function))
    except InvalidParameter:
        return None


def _voi_lut_sequence(ds: Dataset, values: np.ndarray) -> np.ndarray | None:
    item = _lut_items(ds, "VOILUTSequence")
    if item is None:
        return None
    try:
        depth = int(item.LUTDescriptor[2])
        mapped = apply_voi(np.rint(values).astype(np.int64), ds, 0)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, NotImplementedError):
        return None
    # PS3.3 C.11.2.1.1: the third descriptor value is the bit depth of the
    # LUT output; some writers declare fewer bits than their entries use.
    bits = max(depth, int(mapped.max(initial=0)).bit_length())
    return mapped.astype(DISPLAY_FLOAT) * (255.0 / (2**bits - 1))


def padding_mask(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """Pixels that are padding (PS3.3 C.7.5.1.1.2), not part of the image."""
    padding = first_number(ds.get("PixelPaddingValue"))
    if padding is None or stored.dtype.kind == "f":
        return None
    limit = first_number(ds.get("PixelPaddingRangeLimit"))
    if limit is None:
        mask = stored == padding
    else:
        mask = (stored >= min(padding, limit)) & (stored <= max(padding, limit))
    return mask if mask.any() and not mask.all() else None


def _min_max(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Linear window over the frame's value range (the VOI fallback of PS3.4 N.2.1.1)."""
    selected = values if mask is None else values[~mask]
    selected = selected[np.isfinite(selected)]
    if selected.size == 0:
        return np.zeros(values.shape, dtype=DISPLAY_FLOAT)
    low, high = float(selected.min()), float(selected.max())
    if high <= low:
        return np.zeros(values.shape, dtype=DISPLAY_FLOAT)
    return np.clip((values - low) * (255.0 / (high - low)), 0.0, 255.0)


def voi_lut(
    ds: Dataset, values: np.ndarray, window: WindowArg = None, *, index: int = 0, stored: np.ndarray | None = None
) -> np.ndarray:
    """Apply the VOI LUT stage of PS3.3 C.11.2 to modality values.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    values : numpy.ndarray
        Modality LUT output, see :func:`modality_lut`.
    window : Window, tuple, str or None, optional
        An explicit window, which wins over everything in the dataset.
    index : int, optional
        0-based frame index (enhanced multi-frame per-frame windows).
    stored : numpy.ndarray, optional
        The stored values, to exclude (0028,0120) *Pixel Padding Value*
        from the min/max fallback.

    Returns
    -------
    numpy.ndarray
        ``float32`` display values in ``[0, 255]``.

    Raises
    ------
    InvalidParameter
        When the explicit `window` is malformed.
    """
    if window is not None:
        return apply_window(values, make_window(window))
    default = dataset_window(ds, index)
    if default is not None:
        return apply_window(values, default)
    mapped = _voi_lut_sequence(ds, values)
    if mapped is not None:
        return mapped
    mask = padding_mask(ds, stored) if stored is not None else None
    return _min_max(values, mask)


def palette_to_rgb(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    """Map PALETTE COLOR indices to 8-bit RGB (PS3.3 C.7.6.3.1.5, C.7.9).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with the Palette Color Lookup Table Module (normal or
        segmented, (0028,1201)-(0028,1203) or (0028,1221)-(0028,1223)).
    pixels : numpy.ndarray
        Stored values of one frame.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(Rows, Columns, 3)``; 16-bit palette
        entries are scaled to 8 bits; an alpha palette is dropped.

    Raises
    ------
    CorruptPixelData
        When the palette lookup tables are missing or malformed.
    """
    try:
        rgb = apply_color_lut(pixels, ds)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CorruptPixelData(
            f"PALETTE COLOR needs (0028,1101)-(0028,1103) descriptors and (0028,1201)-(0028,1203) "
            f"Palette Color Lookup Table Data: {exc}"
        ) from exc
    rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        rgb = np.rint(rgb.astype(DISPLAY_FLOAT) / 257.0)
    return to_uint8(rgb)


def rgb_to_8bit(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """Scale RGB samples of *Bits Stored* bits to 8 bits (PS3.4 N.2.3).

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(Rows, Columns, 3)`` RGB samples.
    bits_stored : int
        (0028,0101) *Bits Stored*.

    Returns
    -------
    numpy.ndarray
        ``uint8`` RGB, unchanged when already 8-bit.
    """
    bits = min(max(int(bits_stored), 1), pixels.dtype.itemsize * 8)
    if pixels.dtype == np.uint8 and bits == 8:
        return np.ascontiguousarray(pixels)
    scaled = pixels.astype(DISPLAY_FLOAT) * (255.0 / (2**bits - 1))
    return to_uint8(scaled)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip display values to ``uint8`` (NaN becomes 0)."""
    values = np.asarray(values)
    if values.dtype.kind in "fc" and np.isnan(values).any():
        values = np.nan_to_num(values, nan=0.0)
    out = np.rint(values)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def to_display(ds: Dataset, pixels: np.ndarray, window: WindowArg = None, *, index: int = 0) -> np.ndarray:
    """Return 8-bit display values for one decoded frame (PS3.4 N.2).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance the frame comes from.
    pixels : numpy.ndarray
        One frame from :func:`~pacsdash.imaging.decode_frame`.
    window : Window, tuple, str or None, optional
        ``(center, width)`` or ``(center, width, function)`` with function
        ``"linear"``, ``"linear-exact"`` or ``"sigmoid"`` (PS3.18 8.3.5.1.3),
        or that text. It wins over the dataset's VOI LUT; ignored for colour
        frames, which have no VOI stage.
    index : int, optional
        0-based frame index of `pixels`, for per-frame functional groups.

    Returns
    -------
    numpy.ndarray
        ``uint8``: ``(Rows, Columns)`` for grayscale (P-values, dark = 0
        for MONOCHROME1 too), ``(Rows, Columns, 3)`` RGB for colour.

    Raises
    ------
    NoPixelData
        When `ds` has no pixel data.
    InvalidParameter
        When `window` is malformed.
    UnsupportedEncoding
        When the (0028,0004) *Photometric Interpretation* of a colour frame
        is not RGB/YBR (e.g. retired CMYK, ARGB, HSV).
    CorruptPixelData
        When `pixels` does not look like one frame, or a LUT is unusable.
    """
    image = ImagePixel.from_dataset(ds)
    pixels = np.asarray(pixels)
    photometric = image.PhotometricInterpretation
    if window is not None:
        make_window(window)  # validate even when it will not be used
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        return palette_to_rgb(ds, pixels)
    if pixels.ndim == 3:
        if photometric not in RGB_PHOTOMETRICS or pixels.shape[2] != 3:
            raise UnsupportedEncoding(
                f"(0028,0004) Photometric Interpretation {photometric!r} with {pixels.shape[2]} samples "
                "cannot be displayed"
            )
        return rgb_to_8bit(pixels, image.BitsStored)
    if pixels.ndim != 2:
        raise CorruptPixelData(f"expected one frame of shape (rows, columns[, 3]), got {pixels.shape}")
    values = modality_lut(ds, pixels, index)
    display = voi_lut(ds, values, window, index=index, stored=pixels)
    if photometric == "MONOCHROME1":
        display = 255.0 - display
    return to_uint8(display)
