"""One frame of a stored instance without reading the others (issue 16).

A stored file is read up to its pixel data (``dcmread(stop_before_pixels=True)``);
then the pixel data element's own header, a few bytes at the stream's
position, says which element it is, its VR, its length and where its value
starts (:func:`read_pixel_elements`). From there:

* native little endian data: frame ``n`` is the byte range
  ``[offset + n * size, + size)`` (:meth:`StoredFrames.native_span`), read
  by the caller as a range;
* encapsulated data (PS3.5 A.4): pydicom's :func:`pydicom.encaps.get_frame`
  runs over the stream positioned at the value, so only the Basic Offset Table
  (or the fragment headers) and the wanted frame's fragments are read
  (:meth:`StoredFrames.encapsulated_frame`).

:func:`one_frame` then makes a data set of the header and that one frame's
bytes, which the functions of :mod:`pacsdash.imaging` (``frame_bytes``,
``render``...) take as they take the whole instance, at index 0.

What this module does not handle (deflated or big endian files, 1-bit data,
malformed elements) is said by :func:`read_stored` returning ``None``: the
caller then reads the instance whole, as before, and gets the same answers
and errors as always.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import UID

from pacsdash.imaging.attributes import PIXEL_KEYWORDS, ImagePixel, declared_frames
from pacsdash.imaging.errors import ImagingError
from pacsdash.imaging.native import is_encapsulated, native_frame_length

#: The pixel data elements by tag (PS3.3 C.7.6.3), in the order a file holds them.
PIXEL_ELEMENT_TAGS = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData", 0x7FE00010: "PixelData"}
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
UNDEFINED = 0xFFFFFFFF
#: Per-frame functional groups (PS3.3 C.7.6.16), cut to the one frame in :func:`one_frame`.
PER_FRAME = 0x52009230
NUMBER_OF_FRAMES = 0x00280008
EXTENDED_OFFSETS = (0x7FE00001, 0x7FE00002)


@dataclass(frozen=True)
class PixelElement:
    """A pixel data element of a stored file, as its header says.

    Attributes
    ----------
    keyword : str
        ``PixelData``, ``FloatPixelData`` or ``DoubleFloatPixelData``.
    vr : str or None
        Its VR (``None`` in Implicit VR files).
    offset : int
        Where its value starts in the file.
    length : int or None
        The value's length; ``None`` when undefined (encapsulated data, PS3.5 A.4).
    """

    keyword: str
    vr: str | None
    offset: int
    length: int | None

    @property
    def empty(self) -> bool:
        return self.length == 0


def read_pixel_elements(stream: BinaryIO, implicit_vr: bool) -> list[PixelElement]:
    """The pixel data elements starting at the stream's position (where
    ``dcmread(stop_before_pixels=True)`` leaves it), little endian.

    Reads element headers only, skipping defined-length values, and stops at
    the first element that is not a pixel data one, at the end of the file, at
    an undefined length (whose end is not known without walking it) or after
    a non-empty (7FE0,0010) *Pixel Data* (nothing after it can take its place).
    """
    elements: list[PixelElement] = []
    while True:
        start = stream.tell()
        head = stream.read(8)
        if len(head) < 8:
            return elements
        group, element = struct.unpack("<HH", head[:4])
        keyword = PIXEL_ELEMENT_TAGS.get(group << 16 | element)
        if keyword is None:
            return elements
        if implicit_vr:
            vr, length = None, struct.unpack("<I", head[4:])[0]
        else:
            raw_vr = head[4:6]
            if raw_vr in LONG_VRS:
                more = stream.read(4)
                if len(more) < 4:
                    return elements
                length = struct.unpack("<I", more)[0]
            else:
                length = struct.unpack("<H", head[6:])[0]
            vr = raw_vr.decode("ascii", "replace")
        offset = start + (12 if not implicit_vr and head[4:6] in LONG_VRS else 8)
        found = PixelElement(keyword, vr, offset, None if length == UNDEFINED else length)
        elements.append(found)
        if found.length is None or (keyword == "PixelData" and not found.empty):
            return elements
        stream.seek(offset + found.length)


def header_pixel_keyword(elements: list[PixelElement]) -> str | None:
    """What :func:`pacsdash.imaging.attributes.pixel_keyword` says of the
    whole instance, from its pixel data elements' headers: the first of
    :data:`PIXEL_KEYWORDS` present and not empty."""
    present = {element.keyword for element in elements if not element.empty}
    return next((keyword for keyword in PIXEL_KEYWORDS if keyword in present), None)


def header_has_pixels(elements: list[PixelElement]) -> bool:
    """What :func:`pacsdash.imaging.attributes.has_pixels` says, from the headers."""
    return header_pixel_keyword(elements) is not None


def header_frame_count(ds: Dataset, elements: list[PixelElement]) -> int:
    """What :func:`pacsdash.imaging.attributes.frame_count` says, from the
    header `ds` (read without pixel data) and the pixel elements' headers."""
    return declared_frames(ds) if header_has_pixels(elements) else 0


@dataclass(frozen=True)
class StoredFrames:
    """Where the frames of a stored instance lie.

    Attributes
    ----------
    header : pydicom.dataset.Dataset
        The instance up to its pixel data, with its File Meta Information.
    element : PixelElement
        The pixel data element holding the frames.
    image : ImagePixel
        Its Image Pixel Module (``NumberOfFrames`` as :func:`frame_count` says).
    syntax : pydicom.uid.UID
        Its transfer syntax.
    size : int
        The file's length.
    """

    header: Dataset
    element: PixelElement
    image: ImagePixel
    syntax: UID
    size: int

    @property
    def count(self) -> int:
        """The number of frames."""
        return self.image.NumberOfFrames

    @property
    def encapsulated(self) -> bool:
        return is_encapsulated(self.image, self.syntax)

    def native_span(self, index: int) -> tuple[int, int] | None:
        """``(offset, length)`` in the file of native frame `index`; ``None``
        when the pixel data is too short for it (the whole read says how)."""
        length = native_frame_length(self.image)
        start = index * length
        if self.element.length is None or start + length > self.element.length:
            return None
        return self.element.offset + start, length

    def encapsulated_frame(self, stream: BinaryIO, index: int) -> bytes:
        """Encapsulated frame `index` as stored (what
        :func:`pacsdash.imaging.compressed_frame` gives), read from `stream`,
        the stored file: its Basic Offset Table or fragment headers and the
        frame's fragments only.

        Raises
        ------
        ValueError, KeyError, IndexError, EOFError, OSError, struct.error
            As :func:`pydicom.encaps.get_frame` on damaged data, or the
            stream's errors.
        """
        offsets = None
        table, lengths = self.header.get("ExtendedOffsetTable"), self.header.get("ExtendedOffsetTableLengths")
        if table and lengths:
            offsets = (table, lengths)
        stream.seek(self.element.offset)
        return get_frame(stream, index, extended_offsets=offsets, number_of_frames=self.count)


def read_stored(stream: BinaryIO) -> tuple[Dataset, list[PixelElement]] | None:
    """The header of a stored file (read to its pixel data) and its pixel
    data elements' headers; ``None`` for a file whose element offsets are
    not the file's or are not read here (no transfer syntax, deflated, big
    endian).

    Raises
    ------
    Exception
        What pydicom raises for a file it cannot read.
    """
    size = stream.seek(0, 2)
    stream.seek(0)
    header = dcmread(stream, stop_before_pixels=True)
    syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
    if not syntax or syntax.is_deflated or not syntax.is_little_endian:
        return None
    implicit = bool(header.original_encoding[0])
    elements = read_pixel_elements(stream, implicit)
    if any(element.length is not None and element.offset + element.length > size for element in elements):
        return None  # a length beyond the file: the whole read says what is wrong
    return header, elements


def stored_frames(stream: BinaryIO) -> StoredFrames | None:
    """Where the frames of the stored file `stream` lie, read from its header;
    ``None`` for what the whole read must answer: no pixel data, 1-bit data,
    deflated or big endian files, an encapsulated transfer syntax without
    undefined-length (7FE0,0010) or native data with it, a broken Image Pixel
    Module (its error comes from the whole read).

    Raises
    ------
    Exception
        What pydicom raises for a file it cannot read.
    """
    size = stream.seek(0, 2)
    read = read_stored(stream)
    if read is None:
        return None
    header, elements = read
    keyword = header_pixel_keyword(elements)
    if keyword is None:
        return None
    element = next(element for element in elements if element.keyword == keyword)
    syntax = UID(str(header.file_meta.TransferSyntaxUID))
    try:
        image = ImagePixel.from_header(header, keyword, header_frame_count(header, elements))
    except ImagingError:
        return None
    if image.BitsAllocated == 1:
        return None
    encapsulated = is_encapsulated(image, syntax)
    if encapsulated != (element.length is None) or (encapsulated and element.vr is None):
        return None
    return StoredFrames(header, element, image, syntax, size)


def one_frame(stored: StoredFrames, index: int, data: bytes) -> Dataset:
    """A data set of the header of `stored` and frame `index` alone, `data`
    as stored (native bytes, or the encapsulated frame's fragments joined):
    what :mod:`pacsdash.imaging` answers of it at index 0 is what it answers
    of the whole instance at `index` (one frame, its per-frame functional
    group the only one).
    """
    header = stored.header
    ds = Dataset({tag: header.get_item(tag) for tag in header.keys()})  # the header's elements, not copied
    ds.file_meta = header.file_meta
    ds.set_original_encoding(*header.original_encoding, header.original_character_set)
    if NUMBER_OF_FRAMES in ds:
        ds[NUMBER_OF_FRAMES] = DataElement(NUMBER_OF_FRAMES, "IS", "1")
    if PER_FRAME in ds:
        items = list(header[PER_FRAME].value or ())
        ds[PER_FRAME] = DataElement(PER_FRAME, "SQ", items[index:index + 1])
    for tag in EXTENDED_OFFSETS:
        if tag in ds:
            del ds[tag]
    element = stored.element
    if stored.encapsulated:
        value, vr = encapsulate([data]), "OB"
    else:
        vr = element.vr or {"FloatPixelData": "OF", "DoubleFloatPixelData": "OD"}.get(
            element.keyword, "OW" if stored.image.BitsAllocated > 8 else "OB")
        value = data
    tag = next(tag for tag, keyword in PIXEL_ELEMENT_TAGS.items() if keyword == element.keyword)
    pixels = DataElement(tag, vr, value, is_undefined_length=stored.encapsulated)
    ds[tag] = pixels
    return ds
