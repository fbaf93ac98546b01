"""Read the Image Pixel Module and per-frame attributes of a dataset.

Only header attributes are read here; nothing is decoded. The functions are
tolerant of the usual damage (empty or non-numeric *Number of Frames*,
multi-valued *Window Center*) and raise :mod:`pacsdash.imaging.errors`
exceptions naming the attribute when something required is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacsdash.imaging.errors import CorruptPixelData, FrameOutOfRange, NoPixelData, UnsupportedEncoding

#: The three pixel data elements of PS3.3 C.7.6.3: (7FE0,0010), (7FE0,0008), (7FE0,0009).
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Tags of :data:`PIXEL_KEYWORDS`, used in messages.
PIXEL_TAGS = {"PixelData": "(7FE0,0010)", "FloatPixelData": "(7FE0,0008)", "DoubleFloatPixelData": "(7FE0,0009)"}


def pixel_keyword(ds: Dataset) -> str | None:
    """Return the keyword of the pixel data element present in `ds`, if any.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.

    Returns
    -------
    str or None
        ``"PixelData"``, ``"FloatPixelData"`` or ``"DoubleFloatPixelData"``
        (PS3.3 C.7.6.3) when present with a non-empty value, else ``None``.
    """
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            value = ds[keyword].value
            if value is not None and len(value) > 0:
                return keyword
    return None


def has_pixels(ds: Dataset) -> bool:
    """Return whether `ds` holds pixel data (PS3.3 C.7.6.3).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.

    Returns
    -------
    bool
        ``True`` when (7FE0,0010) *Pixel Data*, (7FE0,0008) *Float Pixel Data*
        or (7FE0,0009) *Double Float Pixel Data* is present and not empty.
    """
    return pixel_keyword(ds) is not None


def frame_count(ds: Dataset) -> int:
    """Return the number of frames of `ds`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.

    Returns
    -------
    int
        ``0`` when `ds` has no pixel data; otherwise (0028,0008) *Number of
        Frames* (PS3.3 C.7.6.6), or ``1`` when that is absent, empty or not a
        positive integer (single-frame IODs do not carry it).
    """
    return declared_frames(ds) if has_pixels(ds) else 0


def declared_frames(ds: Dataset) -> int:
    """Return (0028,0008) *Number of Frames* of `ds` as :func:`frame_count` reads it, for an
    instance known to have pixel data: ``1`` when absent, empty or not a positive integer
    (a header question only: the pixel data itself is not looked at)."""
    value = ds.get("NumberOfFrames")
    try:
        number = int(value) if value not in (None, "") else 1
    except (TypeError, ValueError):
        return 1
    return number if number > 0 else 1


def require_pixels(ds: Dataset) -> str:
    """Return the pixel data keyword of `ds` or raise :class:`NoPixelData`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.

    Returns
    -------
    str
        The keyword, see :func:`pixel_keyword`.

    Raises
    ------
    NoPixelData
        When none of (7FE0,0010), (7FE0,0008), (7FE0,0009) holds a value.
    """
    keyword = pixel_keyword(ds)
    if keyword is None:
        sop_class = ds.get("SOPClassUID")
        what = f" ({UID(sop_class).name})" if sop_class else ""
        raise NoPixelData(f"the instance{what} has no (7FE0,0010) Pixel Data")
    return keyword


def check_frame(ds: Dataset, index: int) -> int:
    """Validate a 0-based frame `index` against :func:`frame_count`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    index : int
        0-based frame index (PS3.18 frame numbers are 1-based: subtract one).

    Returns
    -------
    int
        The number of frames.

    Raises
    ------
    NoPixelData
        When `ds` has no pixel data.
    FrameOutOfRange
        When `index` is not in ``range(frame_count(ds))``.
    """
    require_pixels(ds)
    count = frame_count(ds)
    check_index(index, count)
    return count


def check_index(index: int, count: int) -> None:
    """Raise :class:`FrameOutOfRange` unless `index` is in ``range(count)``
    (:func:`check_frame` once the number of frames is known)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise FrameOutOfRange(
            f"frame index {index!r} is out of range: (0028,0008) Number of Frames is {count} "
            f"(valid 0-based indexes 0..{count - 1})"
        )


def transfer_syntax(ds: Dataset) -> UID:
    """Return the (0002,0010) *Transfer Syntax UID* of `ds`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance, with its File Meta Information (PS3.10 7.1).

    Returns
    -------
    pydicom.uid.UID
        The transfer syntax the pixel data is encoded in (PS3.5 10).

    Raises
    ------
    UnsupportedEncoding
        When the file meta has no transfer syntax.
    """
    file_meta = getattr(ds, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if not uid:
        raise UnsupportedEncoding("the dataset has no (0002,0010) Transfer Syntax UID: its pixel encoding is unknown")
    return UID(str(uid))


def _int(ds: Dataset, keyword: str, tag: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value in (None, ""):
        if default is None:
            raise CorruptPixelData(f"{tag} {keyword} is missing: the pixel data cannot be interpreted")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptPixelData(f"{tag} {keyword} has an invalid value {value!r}") from exc


@dataclass(frozen=True)
class ImagePixel:
    """The Image Pixel Module attributes of PS3.3 C.7.6.3 that describe a frame.

    Attributes
    ----------
    Rows, Columns : int
        (0028,0010), (0028,0011).
    SamplesPerPixel : int
        (0028,0002).
    BitsAllocated, BitsStored : int
        (0028,0100), (0028,0101).
    PixelRepresentation : int
        (0028,0103): 0 unsigned, 1 two's complement.
    PlanarConfiguration : int
        (0028,0006), 0 (colour-by-pixel) when absent.
    PhotometricInterpretation : str
        (0028,0004), upper case; ``"MONOCHROME2"`` when absent.
    NumberOfFrames : int
        See :func:`frame_count`.
    pixel_keyword : str
        Which pixel data element holds the frames.
    """

    Rows: int
    Columns: int
    SamplesPerPixel: int
    BitsAllocated: int
    BitsStored: int
    PixelRepresentation: int
    PlanarConfiguration: int
    PhotometricInterpretation: str
    NumberOfFrames: int
    pixel_keyword: str

    @classmethod
    def from_dataset(cls, ds: Dataset) -> ImagePixel:
        """Read the module from `ds`.

        Raises
        ------
        NoPixelData
            When `ds` has no pixel data.
        CorruptPixelData
            When *Rows*, *Columns* or *Bits Allocated* is missing or invalid.
        """
        return cls.from_header(ds, require_pixels(ds), frame_count(ds))

    @classmethod
    def from_header(cls, ds: Dataset, keyword: str, number_of_frames: int) -> ImagePixel:
        """Read the module from a header read without its pixel data (``stop_before_pixels``):
        `keyword` and `number_of_frames` say what :func:`pixel_keyword` and :func:`frame_count`
        would of the whole instance (see :mod:`pacsdash.imaging.stored`).

        Raises
        ------
        CorruptPixelData
            As :meth:`from_dataset`.
        """
        float_bits = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}.get(keyword)
        bits_allocated = _int(ds, "BitsAllocated", "(0028,0100)", float_bits)
        photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
        image = cls(
            Rows=_int(ds, "Rows", "(0028,0010)"),
            Columns=_int(ds, "Columns", "(0028,0011)"),
            SamplesPerPixel=_int(ds, "SamplesPerPixel", "(0028,0002)", 1),
            BitsAllocated=bits_allocated,
            BitsStored=_int(ds, "BitsStored", "(0028,0101)", bits_allocated),
            PixelRepresentation=_int(ds, "PixelRepresentation", "(0028,0103)", 0),
            PlanarConfiguration=_int(ds, "PlanarConfiguration", "(0028,0006)", 0),
            PhotometricInterpretation=photometric,
            NumberOfFrames=number_of_frames,
            pixel_keyword=keyword,
        )
        if image.Rows <= 0 or image.Columns <= 0:
            raise CorruptPixelData(f"(0028,0010) Rows {image.Rows} x (0028,0011) Columns {image.Columns} is empty")
        if image.BitsAllocated != 1 and (image.BitsAllocated <= 0 or image.BitsAllocated % 8):
            raise CorruptPixelData(
                f"(0028,0100) Bits Allocated {image.BitsAllocated} is neither 1 nor a multiple of 8 (PS3.5 8.1.1)"
            )
        return image

    @property
    def is_color(self) -> bool:
        """Whether a frame has more than one sample per pixel."""
        return self.SamplesPerPixel > 1


def _items(value: Any) -> list[Dataset]:
    return list(value) if isinstance(value, Iterable) and not isinstance(value, str | bytes) else []


def frame_value(ds: Dataset, sequence: str, keyword: str, index: int = 0) -> Any:
    """Return an attribute that may be top-level or in a functional group.

    Enhanced multi-frame IODs (PS3.3 C.7.6.16) move *Rescale Slope*,
    *Window Center* and their friends into a functional group macro: the
    item of (5200,9230) *Per-Frame Functional Groups Sequence* for the frame
    wins over (5200,9229) *Shared Functional Groups Sequence*, which wins
    over the top-level attribute of classic IODs.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    sequence : str
        Keyword of the functional group macro sequence, e.g.
        ``"PixelValueTransformationSequence"`` (PS3.3 C.7.6.16.2.9) or
        ``"FrameVOILUTSequence"`` (PS3.3 C.7.6.16.2.10).
    keyword : str
        The attribute inside it, e.g. ``"RescaleSlope"``.
    index : int, optional
        0-based frame index.

    Returns
    -------
    Any
        The value, or ``None`` when absent everywhere or empty.
    """
    groups: list[Dataset] = []
    per_frame = _items(ds.get("PerFrameFunctionalGroupsSequence"))
    if 0 <= index < len(per_frame):
        groups.append(per_frame[index])
    groups.extend(_items(ds.get("SharedFunctionalGroupsSequence"))[:1])
    for group in groups:
        for item in _items(group.get(sequence))[:1]:
            value = item.get(keyword)
            if value not in (None, ""):
                return value
    value = ds.get(keyword)
    return None if value in (None, "") else value


def first_number(value: Any) -> float | None:
    """Return the first value of a possibly multi-valued DS/IS/US attribute.

    PS3.3 C.11.2.1.2: *Window Center* and *Window Width* may hold several
    alternative windows; the first is the default one.

    Parameters
    ----------
    value : Any
        The attribute value (``MultiValue``, ``DSfloat``, ``str``, ...).

    Returns
    -------
    float or None
        ``None`` when empty or not a finite number.
    """
    if value is None:
        return None
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        values = list(value)
        if not values:
            return None
        value = values[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
