"""Frames as bulk data for WADO-RS ``/frames`` (PS3.18 8.7.3.5, 8.7.3.3.2).

:func:`frame_bytes` gives one frame as uncompressed ``application/octet-stream``:
the native encoding of PS3.5 8.1.1 in Explicit VR Little Endian byte order.
Native (uncompressed) pixel data is sliced from (7FE0,0010) without decoding;
encapsulated data (PS3.5 8.2, A.4) is decoded.

:func:`compressed_frame` gives one encapsulated frame exactly as stored, for a
server that answers in the stored transfer syntax (e.g. ``image/jp2``,
``image/jpeg``, ``image/dicom-rle``, PS3.18 8.7.3.5.2).
"""

from __future__ import annotations

import struct
from math import ceil

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

from pacsdash.imaging.attributes import ImagePixel, check_frame, transfer_syntax
from pacsdash.imaging.decoding import YBR_PHOTOMETRICS, decode_frame
from pacsdash.imaging.errors import CorruptPixelData
from pacsdash.imaging.native import is_encapsulated, native_frame, native_frame_length


def frame_size(ds: Dataset) -> int:
    """Return the length in bytes of every :func:`frame_bytes` result for `ds`.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data.

    Returns
    -------
    int
        For native data the native frame length (1-bit frames are packed:
        ``ceil(Rows * Columns * SamplesPerPixel / 8)``; YBR_FULL_422 frames
        are ``Rows * Columns * 2`` samples); for encapsulated data
        ``Rows * Columns * SamplesPerPixel * ceil(BitsAllocated / 8)``
        (decoded, so 4:2:2 is no longer subsampled and 1-bit is packed).

    Raises
    ------
    NoPixelData, CorruptPixelData, UnsupportedEncoding
    """
    image = ImagePixel.from_dataset(ds)
    if is_encapsulated(image, transfer_syntax(ds)):
        samples = image.Rows * image.Columns * image.SamplesPerPixel
        return ceil(samples / 8) if image.BitsAllocated == 1 else samples * image.BitsAllocated // 8
    length = native_frame_length(image)
    return ceil(length / 8) if image.BitsAllocated == 1 else length


def frame_attributes(ds: Dataset) -> dict[str, str | int]:
    """Describe the samples :func:`frame_bytes` returns for `ds`.

    A DICOMweb server needs this for the metadata of decompressed frames:
    PS3.5 8.2.1 lets a decoder convert JPEG YCbCr to RGB, and the decoded
    frames here are always RGB, colour-by-pixel.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data.

    Returns
    -------
    dict
        ``PhotometricInterpretation`` and, for colour, ``PlanarConfiguration``
        of the octet-stream frames (the stored values for native data).

    Raises
    ------
    NoPixelData, CorruptPixelData, UnsupportedEncoding
    """
    image = ImagePixel.from_dataset(ds)
    photometric, planar = image.PhotometricInterpretation, image.PlanarConfiguration
    if is_encapsulated(image, transfer_syntax(ds)):
        planar = 0
        if photometric in YBR_PHOTOMETRICS:
            photometric = "RGB"
    attributes: dict[str, str | int] = {"PhotometricInterpretation": photometric}
    if image.is_color:
        attributes["PlanarConfiguration"] = planar
    return attributes


def _decoded_frame(ds: Dataset, index: int, image: ImagePixel) -> bytes:
    arr = decode_frame(ds, index)
    if image.BitsAllocated == 1:
        return np.packbits(arr.astype(bool).ravel(), bitorder="little").tobytes()
    width = image.BitsAllocated // 8
    target = arr.dtype.newbyteorder("<")
    if target.itemsize != width:
        target = np.dtype(f"<{'i' if image.PixelRepresentation else 'u'}{width}")
    return np.ascontiguousarray(arr.astype(target, copy=False)).tobytes()


def frame_bytes(ds: Dataset, index: int) -> bytes:
    """Return one frame as uncompressed little endian bytes (PS3.18 8.7.3.5).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data and its File Meta Information.
    index : int
        0-based frame index (PS3.18 frame numbers minus one).

    Returns
    -------
    bytes
        The ``application/octet-stream`` frame, Explicit VR Little Endian
        byte order, see :func:`frame_size` for its length:

        * native data is sliced from (7FE0,0010) without decoding, stored
          *Planar Configuration* and YBR_FULL_422 subsampling kept; Big Endian
          samples are byte-swapped to little endian; 1-bit frames are
          re-aligned to start on a byte, trailing bits zero;
        * encapsulated data is decoded (see :func:`frame_attributes`: colour
          becomes RGB, colour-by-pixel).

    Raises
    ------
    NoPixelData
        When the instance has no pixel data (404).
    FrameOutOfRange
        When `index` is not a frame (404).
    UnsupportedEncoding
        When compressed data has no codec here, or the transfer syntax is unknown.
    CorruptPixelData
        When (7FE0,0010) is too short or cannot be decoded.
    """
    check_frame(ds, index)
    image = ImagePixel.from_dataset(ds)
    uid = transfer_syntax(ds)
    if is_encapsulated(image, uid):
        return _decoded_frame(ds, index, image)
    return native_frame(ds, index, image, uid)


def compressed_frame(ds: Dataset, index: int) -> bytes | None:
    """Return the encapsulated bitstream of one frame, as stored (PS3.5 A.4).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An instance with pixel data and its File Meta Information.
    index : int
        0-based frame index.

    Returns
    -------
    bytes or None
        The fragment(s) of the frame joined (located with the (7FE0,0001)
        *Extended Offset Table*, the Basic Offset Table, one fragment per
        frame, or JPEG EOI markers, in that order — PS3.5 A.4), including any
        trailing padding byte; ``None`` when the pixel data is native.

    Raises
    ------
    NoPixelData, FrameOutOfRange
        As for :func:`frame_bytes`.
    UnsupportedEncoding
        When the transfer syntax is unknown.
    CorruptPixelData
        When the encapsulated data has no such frame or is malformed.
    """
    count = check_frame(ds, index)
    image = ImagePixel.from_dataset(ds)
    uid = transfer_syntax(ds)
    if not is_encapsulated(image, uid):
        return None
    offsets = None
    if ds.get("ExtendedOffsetTable") and ds.get("ExtendedOffsetTableLengths"):
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        return get_frame(ds.PixelData, index, extended_offsets=offsets, number_of_frames=count)
    except (ValueError, KeyError, IndexError, EOFError, OSError, struct.error) as exc:
        raise CorruptPixelData(
            f"frame {index} not found in the encapsulated (7FE0,0010) Pixel Data ({uid.name}): {exc}"
        ) from exc
