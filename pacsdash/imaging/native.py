"""Cut frames out of native (uncompressed) pixel data (PS3.5 8.1.1, A.1-A.3).

No decoding: a frame is a byte range of (7FE0,0010), except that 1-bit data
packs frames back to back without byte alignment and that Explicit VR Big
Endian (retired, PS3.5 A.3) stores the samples in the other byte order.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacsdash.imaging.attributes import ImagePixel
from pacsdash.imaging.errors import CorruptPixelData


def is_encapsulated(image: ImagePixel, uid: UID) -> bool:
    """Whether the frames of `image` are encapsulated (PS3.5 8.2, A.4) in transfer syntax `uid`."""
    # Float pixel data is never encapsulated (PS3.5 8.2: only (7FE0,0010) is).
    return image.pixel_keyword == "PixelData" and uid.is_encapsulated


def native_frame_length(image: ImagePixel) -> int:
    """Return the size of one native frame, in bits for 1-bit data, else bytes.

    Parameters
    ----------
    image : ImagePixel
        The Image Pixel Module.

    Returns
    -------
    int
        ``Rows * Columns * SamplesPerPixel * BitsAllocated / 8`` (PS3.5 8.1.1),
        with YBR_FULL_422 holding two samples per pixel (PS3.3 C.7.6.3.1.2:
        each pair of pixels is Y1 Y2 Cb Cr), and in bits when *Bits
        Allocated* is 1, where frames need not start on a byte.
    """
    samples = image.Rows * image.Columns * image.SamplesPerPixel
    if image.PhotometricInterpretation == "YBR_FULL_422" and image.SamplesPerPixel == 3:
        samples = image.Rows * image.Columns * 2
    if image.BitsAllocated == 1:
        return samples
    return samples * image.BitsAllocated // 8


def _native_bits(data: memoryview, index: int, bits: int) -> bytes:
    """Cut frame `index` of `bits` bits from 1-bit packed data (PS3.5 8.1.1, D.2)."""
    start, end = index * bits, (index + 1) * bits
    if end > len(data) * 8:
        raise CorruptPixelData(
            f"(7FE0,0010) Pixel Data holds {len(data)} bytes; frame {index} needs bits {start}..{end}"
        )
    first, last = start // 8, ceil(end / 8)
    if start % 8 == 0:
        out = bytearray(data[first:last])
    else:
        unpacked = np.unpackbits(np.frombuffer(data[first:last], dtype=np.uint8), bitorder="little")
        offset = start % 8
        out = bytearray(np.packbits(unpacked[offset : offset + bits], bitorder="little").tobytes())
    if bits % 8:
        out[-1] &= (1 << (bits % 8)) - 1  # the rest of the byte belongs to the next frame
    return bytes(out)


def native_frame(ds: Dataset, index: int, image: ImagePixel, uid: UID) -> bytes:
    """Slice frame `index` from native pixel data, in little endian byte order.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance.
    index : int
        0-based frame index, already checked.
    image : ImagePixel
        Its Image Pixel Module.
    uid : pydicom.uid.UID
        Its transfer syntax, a native one (PS3.5 A.1, A.2, A.5; retired A.3).

    Returns
    -------
    bytes
        :func:`native_frame_length` bytes (bits rounded up to bytes for
        1-bit data, whose frames are re-aligned to start on a byte and whose
        trailing bits are cleared).

    Raises
    ------
    CorruptPixelData
        When the pixel data is too short for the frame.
    """
    data = memoryview(ds[image.pixel_keyword].value)
    length = native_frame_length(image)
    if image.BitsAllocated == 1:
        # pydicom reads 1-bit data byte by byte in either byte order; so do we.
        return _native_bits(data, index, length)
    start, end = index * length, (index + 1) * length
    if end > len(data):
        raise CorruptPixelData(
            f"(7FE0,0010) Pixel Data holds {len(data)} bytes, too short for frame {index} "
            f"(bytes {start}..{end} of {image.NumberOfFrames} frames of {length} bytes)"
        )
    if uid.is_little_endian:
        return bytes(data[start:end])
    width = image.BitsAllocated // 8
    if width == 1:
        if ds[image.pixel_keyword].VR != "OW":
            return bytes(data[start:end])
        # PS3.5 8.1.1 / Annex D: 8-bit data in OW is swapped in 16-bit words by
        # Big Endian, odd frame boundaries included (as pydicom reads it).
        low, high = start - start % 2, end + end % 2
        words = bytes(data[low:high]).ljust(high - low, b"\0")
        swapped = np.frombuffer(words, dtype=np.uint8).reshape(-1, 2)[:, ::-1].tobytes()
        return swapped[start - low : start - low + length]
    values = np.frombuffer(data[start:end], dtype=np.uint8).reshape(-1, width)
    return values[:, ::-1].tobytes()
