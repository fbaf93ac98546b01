"""pacsdash.imaging.stored: what the header says of the pixel data, and one frame alone,
give what the whole instance gives (every sample, every frame)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsdash import imaging
from pacsdash.imaging.attributes import frame_count, pixel_keyword
from pacsdash.imaging.stored import (header_frame_count, header_has_pixels, header_pixel_keyword, one_frame,
                                     read_pixel_elements, read_stored, stored_frames)
from tests.imaging.samples import VALID, manifest

SAMPLES = [sample.file for sample in manifest()]
#: What the header way leaves to the whole read, and why.
WHOLE_READ = {
    "ExplVR_BigEnd.dcm": "big endian", "MR_small_bigendian.uidfix.dcm": "big endian",
    "SC_rgb_small_odd_big_endian.uidfix.dcm": "big endian", "image_dfl.dcm": "deflated",
    "liver_1frame.dcm": "1-bit", "reportsi.dcm": "no pixels", "rtplan.dcm": "no pixels",
    "test-SR.dcm": "no pixels", "waveform_ecg.dcm": "no pixels",
}


def _raw(name: str) -> bytes:
    return (VALID / name).read_bytes()


@pytest.mark.parametrize("name", SAMPLES)
def test_the_header_says_what_the_pixel_data_says(name):
    raw = _raw(name)
    full = pydicom.dcmread(io.BytesIO(raw))
    read = read_stored(io.BytesIO(raw))
    if full.file_meta.TransferSyntaxUID.is_deflated or not full.file_meta.TransferSyntaxUID.is_little_endian:
        assert read is None
        return
    header, elements = read
    assert "PixelData" not in header
    assert header_pixel_keyword(elements) == pixel_keyword(full)
    assert header_has_pixels(elements) == imaging.has_pixels(full)
    assert header_frame_count(header, elements) == frame_count(full)


@pytest.mark.parametrize("name", SAMPLES)
def test_one_frame_alone_gives_what_the_whole_instance_gives(name):
    raw = _raw(name)
    full = pydicom.dcmread(io.BytesIO(raw))
    stored = stored_frames(io.BytesIO(raw))
    if name in WHOLE_READ:
        assert stored is None, WHOLE_READ[name]
        return
    assert stored is not None and stored.count == frame_count(full)
    for index in range(stored.count):
        if stored.encapsulated:
            data = stored.encapsulated_frame(io.BytesIO(raw), index)
            assert data == imaging.compressed_frame(full, index)
        else:
            offset, length = stored.native_span(index)
            data = raw[offset:offset + length]
        alone = one_frame(stored, index, data)
        try:
            expected = imaging.frame_bytes(full, index)
        except imaging.ImagingError as exc:  # no codec here: the same refusal
            with pytest.raises(type(exc)):
                imaging.frame_bytes(alone, 0)
            continue
        assert imaging.frame_bytes(alone, 0) == expected
        assert imaging.render(alone, 0, media_type="image/png") == imaging.render(full, index, media_type="image/png")


def _element(tag: int, vr: bytes, value: bytes, implicit: bool) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    return head + vr + b"\0\0" + struct.pack("<I", len(value)) + value


@pytest.mark.parametrize("implicit", [False, True])
def test_an_empty_float_pixel_data_gives_way_to_the_pixel_data_after_it(implicit):
    body = (_element(0x7FE00008, b"OF", b"", implicit) + _element(0x7FE00010, b"OW", b"\1\2\3\4", implicit)
            + _element(0xFFFCFFFC, b"OB", b"\0\0", implicit))
    elements = read_pixel_elements(io.BytesIO(body), implicit)
    assert [(e.keyword, e.offset, e.length) for e in elements] == [("FloatPixelData", 12 - 4 * implicit, 0),
                                                                    ("PixelData", 24 - 8 * implicit, 4)]
    assert header_pixel_keyword(elements) == "PixelData"
    assert elements[1].vr == (None if implicit else "OW")


def test_float_pixel_data_before_pixel_data_loses_to_it_as_pixel_keyword_says():
    body = _element(0x7FE00008, b"OF", b"\0" * 8, False) + _element(0x7FE00010, b"OW", b"\1\2", False)
    assert header_pixel_keyword(read_pixel_elements(io.BytesIO(body), False)) == "PixelData"
    ds = Dataset()
    ds.FloatPixelData, ds.PixelData = b"\0" * 8, b"\1\2"
    assert pixel_keyword(ds) == "PixelData"


def test_no_pixel_data_and_empty_pixel_data_are_no_pixels():
    assert header_pixel_keyword(read_pixel_elements(io.BytesIO(b""), False)) is None
    body = _element(0x7FE00010, b"OW", b"", False) + _element(0xFFFCFFFC, b"OB", b"\0\0", False)
    elements = read_pixel_elements(io.BytesIO(body), False)
    assert not header_has_pixels(elements)
    assert header_frame_count(Dataset(), elements) == 0


def _multiframe(syntax, frames: int = 5) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = 7, 5, 1, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(frames * 35, dtype="<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_native_frames_are_byte_ranges_of_the_value(syntax):
    raw = _multiframe(syntax)
    stored = stored_frames(io.BytesIO(raw))
    full = pydicom.dcmread(io.BytesIO(raw))
    assert stored.count == 5 and not stored.encapsulated
    for index in range(5):
        offset, length = stored.native_span(index)
        assert length == 70 and raw[offset:offset + length] == imaging.frame_bytes(full, index)


def test_native_data_too_short_for_a_frame_is_left_to_the_whole_read():
    raw = _multiframe(ExplicitVRLittleEndian)
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.NumberOfFrames = 6  # the value holds five
    buffer = io.BytesIO()
    ds.save_as(buffer)
    stored = stored_frames(io.BytesIO(buffer.getvalue()))
    assert stored.native_span(4) is not None and stored.native_span(5) is None


def test_per_frame_functional_groups_follow_the_frame():
    ds = pydicom.dcmread(io.BytesIO(_multiframe(ExplicitVRLittleEndian)))
    groups = []
    for index in range(5):
        item, voi = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = 10 * index + 5, 10
        item.FrameVOILUTSequence = [voi]
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = groups
    buffer = io.BytesIO()
    ds.save_as(buffer)
    raw = buffer.getvalue()
    stored = stored_frames(io.BytesIO(raw))
    full = pydicom.dcmread(io.BytesIO(raw))
    for index in range(5):
        offset, length = stored.native_span(index)
        alone = one_frame(stored, index, raw[offset:offset + length])
        assert len(alone.PerFrameFunctionalGroupsSequence) == 1
        assert imaging.render(alone, 0, media_type="image/png") == imaging.render(full, index, media_type="image/png")
    assert len(stored.header.PerFrameFunctionalGroupsSequence) == 5  # the header is left as read
    assert stored.header.NumberOfFrames == 5
