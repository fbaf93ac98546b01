"""Decode one frame of pixel data with pydicom's pixel handling.

pydicom 3 (:func:`pydicom.pixels.pixel_array` with ``index=``) slices a
native frame or extracts one encapsulated frame (PS3.5 A.4) and decodes only
that frame, through the pylibjpeg / Pillow plugins for compressed transfer
syntaxes.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pixel_array

from pacsdash.imaging.attributes import ImagePixel, check_frame, transfer_syntax
from pacsdash.imaging.errors import CorruptPixelData, OverBudget, UnsupportedEncoding
from pacsdash.imaging.native import is_encapsulated, native_frame

#: Colour spaces pydicom converts to RGB, or whose decoders already do
#: (YBR_RCT / YBR_ICT: the JPEG 2000 inverse component transform, PS3.5 8.2.4).
YBR_PHOTOMETRICS = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"})


#: The most samples (Rows x Columns x Samples per Pixel) one frame may decode to:
#: 36 M, a 6000 x 6000 radiograph or a 4000 x 3000 colour photograph.
MAX_FRAME_SAMPLES = 36_000_000


def check_budget(image: ImagePixel) -> None:
    """Raise :class:`OverBudget` before decoding a frame larger than
    :data:`MAX_FRAME_SAMPLES` (its header says how large, PS3.3 C.7.6.3)."""
    samples = image.Rows * image.Columns * image.SamplesPerPixel
    if samples > MAX_FRAME_SAMPLES:
        raise OverBudget(
            f"a frame of {image.Columns} x {image.Rows} x {image.SamplesPerPixel} samples is more than the "
            f"{MAX_FRAME_SAMPLES:,} this server decodes; its stored bytes can still be retrieved"
        )


def check_decodable(ds: Dataset) -> None:
    """Raise :class:`UnsupportedEncoding` when no installed codec can decode `ds`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data.

    Raises
    ------
    UnsupportedEncoding
        When the (0002,0010) *Transfer Syntax UID* is missing, not supported
        by pydicom (e.g. MPEG-2/4, HEVC video, PS3.5 A.4.5-A.4.13) or its
        decoder plugin is not installed.
    """
    uid = transfer_syntax(ds)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedEncoding(
            f"(0002,0010) Transfer Syntax UID {uid} ({uid.name}) cannot be decoded: no decoder exists"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin available"
        raise UnsupportedEncoding(
            f"(0002,0010) Transfer Syntax UID {uid} ({uid.name}) cannot be decoded: no codec installed ({missing})"
        )


def decode_frame(ds: Dataset, index: int = 0) -> np.ndarray:
    """Return the stored pixel values of one frame.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data and its File Meta Information.
    index : int, optional
        0-based frame index (PS3.18 frame numbers minus one).

    Returns
    -------
    numpy.ndarray
        Shape ``(Rows, Columns)`` for one sample per pixel, ``(Rows, Columns,
        3)`` for colour. Values are the stored values (before the Modality
        LUT, PS3.3 C.11.1) in a dtype of *Bits Allocated* and *Pixel
        Representation*, native byte order; 1-bit data is unpacked to
        ``uint8``. Colour is always RGB, colour-by-pixel: YBR_FULL and
        YBR_FULL_422 (PS3.3 C.7.6.3.1.2) are converted by pydicom, which
        knows when a JPEG decoder has already converted (JPEG baseline),
        and JPEG 2000 YBR_RCT/YBR_ICT come out of the decoder as RGB.
        *Planar Configuration* 1 is reordered to colour-by-pixel.

    Raises
    ------
    NoPixelData
        When the instance has no pixel data.
    FrameOutOfRange
        When `index` is not a frame of the instance.
    UnsupportedEncoding
        When the transfer syntax cannot be decoded here.
    CorruptPixelData
        When the data is truncated, inconsistent or the codec fails.
    OverBudget
        When the frame is larger than :data:`MAX_FRAME_SAMPLES`.
    """
    check_frame(ds, index)
    image = ImagePixel.from_dataset(ds)
    check_budget(image)
    check_decodable(ds)
    uid = transfer_syntax(ds)
    if image.BitsAllocated == 1 and not is_encapsulated(image, uid):
        # pydicom 3.0.2 cuts one byte short when a 1-bit frame starts inside
        # a byte (multi-frame SEG with Rows x Columns not a multiple of 8).
        return _unpack_bits(native_frame(ds, index, image, uid), image)
    try:
        arr = pixel_array(ds, index=index)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError, KeyError, TypeError, OSError) as exc:
        raise CorruptPixelData(
            f"frame {index} of (7FE0,0010) Pixel Data cannot be decoded "
            f"({uid.name}): {type(exc).__name__}: {exc}"
        ) from exc
    expected = (image.Rows, image.Columns) + ((image.SamplesPerPixel,) if image.is_color else ())
    if arr.shape != expected:
        if arr.size == np.prod(expected):
            arr = arr.reshape(expected)
        else:
            raise CorruptPixelData(
                f"frame {index} decoded to shape {arr.shape}, but (0028,0010) Rows, (0028,0011) Columns "
                f"and (0028,0002) Samples per Pixel say {expected}"
            )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _unpack_bits(data: bytes, image: ImagePixel) -> np.ndarray:
    """Unpack one 1-bit frame (PS3.5 8.1.1: first pixel in the least significant bit)."""
    count = image.Rows * image.Columns * image.SamplesPerPixel
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:count]
    shape = (image.Rows, image.Columns) + ((image.SamplesPerPixel,) if image.is_color else ())
    return bits.reshape(shape)
