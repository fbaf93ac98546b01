"""One frame as the browser viewer needs it: modality values, shipped once.

The viewer applies the VOI window in the browser, so a frame goes to the
browser once, at full bit depth, instead of one rendered PNG per window:

* grayscale: the Modality LUT output (PS3.3 C.11.1), e.g. Hounsfield units
  for CT, in the smallest integer type that holds it exactly (``uint8``,
  ``int16``, ``uint16``, ``int32``), else ``float32``; a 512 x 512 CT frame
  is 512 KiB;
* colour: 8-bit RGB, colour-by-pixel (YBR and PALETTE COLOR converted).

Nothing here imports Panel: the data layer is usable anywhere.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from pacsdash.imaging.display import padding_mask
from pacsdash.imaging import decode_frame, to_display
from pacsdash.imaging.attributes import ImagePixel, first_number, frame_value
from pacsdash.imaging.display import modality_lut
from pacsdash.imaging.window import normalize_function

#: Integer types tried, smallest first, for exact grayscale values.
INTEGER_TYPES = (np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.int32))
#: Little-endian dtype names the browser maps to typed arrays.
BROWSER_DTYPES = {"u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32", "f4": "float32"}


@dataclass(frozen=True)
class VOIWindow:
    """A (0028,1050) *Window Center* / (0028,1051) *Window Width* pair.

    Attributes
    ----------
    center, width : float
        In modality output units (e.g. HU).
    explanation : str
        (0028,1055) *Window Center & Width Explanation*, or a preset name.
    function : str
        ``"linear"``, ``"linear-exact"`` or ``"sigmoid"`` ((0028,1056) *VOI
        LUT Function*, PS3.3 C.11.2.1.3).
    """

    center: float
    width: float
    explanation: str = ""
    function: str = "linear"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the browser."""
        return {"center": self.center, "width": self.width, "explanation": self.explanation, "function": self.function}


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame ready for the browser.

    Attributes
    ----------
    SOPInstanceUID : str
        The instance the frame belongs to.
    frame : int
        0-based frame index within the instance.
    Rows, Columns : int
        Size of the frame.
    PhotometricInterpretation : str
        As stored; colour frames are shipped as RGB whatever it says.
    pixels : numpy.ndarray
        ``(Rows, Columns)`` modality values, or ``(Rows, Columns, 3)`` ``uint8`` RGB.
    windows : tuple of VOIWindow
        The dataset's own windows, in dataset order (the first is the default).
    minimum, maximum : float
        Range of the modality values (padding excluded, PS3.3 C.7.5.1.1.2);
        0 and 255 for colour.
    RescaleSlope, RescaleIntercept : float
        The linear Modality LUT (1 and 0 when absent).
    units : str
        Unit of the values: (0028,1054) *Rescale Type*, ``"HU"`` for CT.
    PixelSpacing : tuple of float or None
        Row and column spacing in mm (PS3.3 10.7.1.3).
    Modality : str
        (0008,0060).
    FrameTime : float or None
        (0018,1063) in ms, for cine.
    modality_lut_sequence : bool
        Whether a (0028,3000) *Modality LUT Sequence* produced the values.
    """

    SOPInstanceUID: str
    frame: int
    Rows: int
    Columns: int
    PhotometricInterpretation: str
    pixels: np.ndarray = field(repr=False)
    windows: tuple[VOIWindow, ...] = ()
    minimum: float = 0.0
    maximum: float = 0.0
    RescaleSlope: float = 1.0
    RescaleIntercept: float = 0.0
    units: str = ""
    PixelSpacing: tuple[float, float] | None = None
    Modality: str = ""
    FrameTime: float | None = None
    modality_lut_sequence: bool = False

    @property
    def is_color(self) -> bool:
        """Whether the shipped values are RGB."""
        return self.pixels.ndim == 3

    @property
    def invert(self) -> bool:
        """MONOCHROME1: low values are shown white (PS3.3 C.7.6.3.1.2)."""
        return not self.is_color and self.PhotometricInterpretation == "MONOCHROME1"

    @property
    def SamplesPerPixel(self) -> int:
        """Samples of the shipped values: 3 for RGB, else 1."""
        return 3 if self.is_color else 1

    @property
    def dtype(self) -> str:
        """Browser name of the sample type (``"int16"``, ``"float32"``, ...)."""
        return BROWSER_DTYPES[self.pixels.dtype.newbyteorder("<").str[1:]]

    @property
    def nbytes(self) -> int:
        """Bytes shipped for the pixel values."""
        return int(self.pixels.nbytes)

    @property
    def default_window(self) -> VOIWindow:
        """The first dataset window, else the value range (PS3.4 N.2.1.1)."""
        if self.windows:
            return self.windows[0]
        low, high = self.minimum, self.maximum
        return VOIWindow((low + high) / 2.0, max(high - low, 1.0), "min/max")

    def to_bytes(self) -> bytes:
        """Pixel values as raw little-endian bytes, row by row (RGB interleaved)."""
        return np.ascontiguousarray(self.pixels, dtype=self.pixels.dtype.newbyteorder("<")).tobytes()

    def to_base64(self) -> str:
        """:meth:`to_bytes` as base64 text, for transports without binary buffers."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    def metadata(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-ready."""
        return {
            "sop_instance_uid": self.SOPInstanceUID,
            "frame": self.frame,
            "rows": self.Rows,
            "columns": self.Columns,
            "samples": self.SamplesPerPixel,
            "dtype": self.dtype,
            "photometric": self.PhotometricInterpretation,
            "invert": self.invert,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "windows": [w.as_dict() for w in self.windows],
            "default_window": self.default_window.as_dict(),
            "slope": self.RescaleSlope,
            "intercept": self.RescaleIntercept,
            "units": self.units,
            "pixel_spacing": list(self.PixelSpacing) if self.PixelSpacing else None,
            "modality": self.Modality,
            "frame_time": self.FrameTime,
            "nbytes": self.nbytes,
        }

    def to_message(self, index: int | None = None) -> dict[str, Any]:
        """The frame as sent to the browser: :meth:`metadata` plus ``pixels`` bytes.

        Parameters
        ----------
        index : int, optional
            Series-wide frame index the browser caches it under.
        """
        message = self.metadata()
        message["index"] = self.frame if index is None else index
        message["pixels"] = self.to_bytes()
        return message


def estimate_frame_bytes(rows: int, columns: int, samples_per_pixel: int = 1, bits_allocated: int = 16) -> int:
    """Estimate what one frame costs to ship, before decoding it.

    Parameters
    ----------
    rows, columns : int
        Frame size.
    samples_per_pixel : int, optional
        3 for colour.
    bits_allocated : int, optional
        (0028,0100).

    Returns
    -------
    int
        Colour: 3 bytes a pixel; grayscale: 1 byte up to 8 bits, 2 up to 16,
        else 4 (the actual type depends on the values, see :func:`load_frame`).
    """
    if samples_per_pixel > 1:
        per_pixel = 3
    else:
        per_pixel = 1 if bits_allocated <= 8 else 2 if bits_allocated <= 16 else 4
    return int(rows) * int(columns) * per_pixel


def smallest_exact_dtype(values: np.ndarray) -> np.dtype:
    """Return the smallest type that holds `values` exactly.

    Parameters
    ----------
    values : numpy.ndarray
        Modality values (``float64``).

    Returns
    -------
    numpy.dtype
        ``uint8``, ``int16``, ``uint16`` or ``int32`` for integral values in
        range, else ``float32`` (exact for the integers and the few decimal
        digits modality values carry).
    """
    if values.size == 0:
        return np.dtype(np.uint8)
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.rint(values)):
        return np.dtype(np.float32)
    low, high = float(values.min()), float(values.max())
    for dtype in INTEGER_TYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return np.dtype(np.float32)


def _numbers(value: Any) -> list[float | None]:
    """All values of a possibly multi-valued DS/IS attribute."""
    if value is None:
        return []
    values = list(value) if isinstance(value, Iterable) and not isinstance(value, str | bytes) else [value]
    return [first_number(v) for v in values]


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [str(v) for v in value]
    return [str(value)]


def dataset_windows(ds: Dataset, index: int = 0) -> tuple[VOIWindow, ...]:
    """Return every usable window of `ds` for frame `index`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    index : int, optional
        0-based frame, for the (0028,9132) *Frame VOI LUT Sequence*.

    Returns
    -------
    tuple of VOIWindow
        Each (0028,1050)/(0028,1051) pair with its (0028,1055) explanation,
        in order; pairs with a missing value or a width out of range for the
        function (PS3.3 C.11.2.1.2.1) are left out.
    """
    centers = _numbers(frame_value(ds, "FrameVOILUTSequence", "WindowCenter", index))
    widths = _numbers(frame_value(ds, "FrameVOILUTSequence", "WindowWidth", index))
    explanations = _texts(frame_value(ds, "FrameVOILUTSequence", "WindowCenterWidthExplanation", index))
    try:
        function = normalize_function(frame_value(ds, "FrameVOILUTSequence", "VOILUTFunction", index))
    except ValueError:
        function = "linear"
    windows = []
    for number, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if center is None or width is None or width <= 0 or (function == "linear" and width < 1):
            continue
        explanation = explanations[number] if number < len(explanations) else ""
        windows.append(VOIWindow(center, width, explanation.strip() or f"Window {number + 1}", function))
    return tuple(windows)


def _value_range(values: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    selected = values if mask is None else values[~mask]
    selected = selected[np.isfinite(selected)]
    if selected.size == 0:
        return 0.0, 0.0
    return float(selected.min()), float(selected.max())


def pixel_spacing(ds: Dataset, index: int = 0) -> tuple[float, float] | None:
    """Row and column spacing in mm: (0028,0030), else (0018,1164) *Imager Pixel Spacing*."""
    value = frame_value(ds, "PixelMeasuresSequence", "PixelSpacing", index) or ds.get("ImagerPixelSpacing")
    numbers = _numbers(value)
    if len(numbers) >= 2 and all(n is not None and n > 0 for n in numbers[:2]):
        return float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
    return None


def value_units(ds: Dataset) -> str:
    """Unit of the modality values: (0028,1054) *Rescale Type*, HU for CT, (0054,1001) for PET."""
    rescale_type = str(ds.get("RescaleType") or "").strip()
    if rescale_type and rescale_type.upper() != "US":
        return rescale_type
    modality = str(ds.get("Modality") or "").upper()
    if modality == "CT":
        return "HU"
    if modality == "PT":
        return str(ds.get("Units") or "").strip()
    return ""


def load_frame(ds: Dataset, index: int = 0) -> Frame:
    """Decode frame `index` of `ds` into a :class:`Frame`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data and its File Meta Information.
    index : int, optional
        0-based frame index within the instance.

    Returns
    -------
    Frame
        Grayscale: Modality LUT output in :func:`smallest_exact_dtype`;
        colour (RGB, YBR, PALETTE COLOR): ``uint8`` RGB.

    Raises
    ------
    pacsdash.imaging.ImagingError
        ``NoPixelData``, ``FrameOutOfRange``, ``UnsupportedEncoding`` or
        ``CorruptPixelData`` (each with an ``http_status``).
    """
    stored = decode_frame(ds, index)
    image = ImagePixel.from_dataset(ds)
    photometric = image.PhotometricInterpretation
    slope = first_number(frame_value(ds, "PixelValueTransformationSequence", "RescaleSlope", index))
    intercept = first_number(frame_value(ds, "PixelValueTransformationSequence", "RescaleIntercept", index))
    frame_time = first_number(ds.get("FrameTime"))
    common: dict[str, Any] = {
        "SOPInstanceUID": str(ds.get("SOPInstanceUID") or ""),
        "frame": index,
        "Rows": image.Rows,
        "Columns": image.Columns,
        "PhotometricInterpretation": photometric,
        "PixelSpacing": pixel_spacing(ds, index),
        "Modality": str(ds.get("Modality") or ""),
        "FrameTime": frame_time if frame_time and frame_time > 0 else None,
    }
    if stored.ndim == 3 or photometric == "PALETTE COLOR":
        rgb = np.ascontiguousarray(to_display(ds, stored, index=index))
        return Frame(pixels=rgb, minimum=0.0, maximum=255.0, **common)
    values = modality_lut(ds, stored, index)
    low, high = _value_range(values, padding_mask(ds, stored))
    pixels = np.ascontiguousarray(values.astype(smallest_exact_dtype(values)))
    lut_sequence = bool(ds.get("ModalityLUTSequence")) and stored.dtype.kind != "f"
    return Frame(
        pixels=pixels,
        windows=dataset_windows(ds, index),
        minimum=low,
        maximum=high,
        RescaleSlope=1.0 if slope in (None, 0.0) or lut_sequence else slope,
        RescaleIntercept=0.0 if intercept is None or lut_sequence else intercept,
        units=value_units(ds),
        modality_lut_sequence=lut_sequence,
        **common,
    )
