"""WADO-RS frames (PS3.18 8.7.3.5): uncompressed octet-stream and stored bitstreams."""

from __future__ import annotations

from math import ceil

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import pack_bits, pixel_array

from pacsdash import imaging
from tests.imaging.samples import PIXEL_SAMPLES, Sample, frames_of_interest, load, open_image

NATIVE_LITTLE_ENDIAN = ("Explicit VR Little Endian", "Implicit VR Little Endian", "Deflated Explicit VR Little Endian")


def expected_length(ds, encapsulated: bool) -> int:
    """rows * columns * samples * ceil(bits allocated / 8), with the native exceptions."""
    rows, columns, samples, bits = ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated
    if bits == 1:
        return ceil(rows * columns * samples / 8)  # native 1-bit frames stay packed (PS3.5 8.1.1)
    if not encapsulated and ds.PhotometricInterpretation == "YBR_FULL_422":
        return rows * columns * 2 * ceil(bits / 8)  # Y1 Y2 Cb Cr per pixel pair (PS3.3 C.7.6.3.1.2)
    return rows * columns * samples * ceil(bits / 8)


def native_view(data: bytes, ds) -> np.ndarray:
    """An octet-stream frame as the array pydicom decodes (before colour conversion)."""
    bits, rows, columns, samples = ds.BitsAllocated, ds.Rows, ds.Columns, ds.SamplesPerPixel
    if bits == 1:
        return np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: rows * columns].reshape(rows, columns)
    dtype = np.dtype(f"<{'i' if ds.PixelRepresentation else 'u'}{bits // 8}")
    arr = np.frombuffer(data, dtype)
    if samples == 1:
        return arr.reshape(rows, columns)
    if ds.get("PlanarConfiguration", 0) == 1 and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return arr.reshape(samples, rows, columns).transpose(1, 2, 0)
    return arr.reshape(rows, columns, samples)


@pytest.mark.filterwarnings("ignore:The pixel data is")
@pytest.mark.parametrize("sample", PIXEL_SAMPLES, ids=str)
def test_frame_bytes(sample: Sample):
    ds = load(sample.file)
    encapsulated = ds.file_meta.TransferSyntaxUID.is_encapsulated
    length = expected_length(ds, encapsulated)
    assert imaging.frame_size(ds) == length
    for index in frames_of_interest(sample.frames):
        data = imaging.frame_bytes(ds, index)
        assert isinstance(data, bytes)
        assert len(data) == length
        if sample.transfer_syntax.split(" (")[1].startswith(NATIVE_LITTLE_ENDIAN):
            assert data == ds.PixelData[index * length : (index + 1) * length]
        if ds.PhotometricInterpretation == "YBR_FULL_422" and not encapsulated:
            continue  # still subsampled: compared with the slice above
        # the same values pydicom decodes, in little endian byte order
        expected = pixel_array(ds, index=index, raw=not encapsulated)
        np.testing.assert_array_equal(native_view(data, ds), expected)


def test_big_endian_frames_are_little_endian():
    assert imaging.frame_bytes(load("MR_small_bigendian.uidfix.dcm"), 0) == load("MR_small.dcm").PixelData
    odd = imaging.frame_bytes(load("SC_rgb_small_odd_big_endian.uidfix.dcm"), 0)
    assert odd == load("SC_rgb_small_odd.dcm").PixelData[:27]


def test_planar_configuration_is_kept_for_native_frames():
    ds = load("ExplVR_BigEnd.dcm")
    assert imaging.frame_attributes(ds) == {"PhotometricInterpretation": "RGB", "PlanarConfiguration": 1}
    assert imaging.frame_bytes(ds, 0) == ds.PixelData[: 60 * 80 * 3]


def test_ybr_full_422_frames_are_two_samples_per_pixel():
    ds = load("SC_ybr_full_422_uncompressed.dcm")
    one = bytes(ds.PixelData)
    assert len(one) == 100 * 100 * 2
    second = bytes(255 - b for b in one)
    ds.PixelData = one + second
    ds.NumberOfFrames = 2
    assert imaging.frame_count(ds) == 2
    assert imaging.frame_bytes(ds, 0) == one
    assert imaging.frame_bytes(ds, 1) == second
    assert imaging.frame_attributes(ds)["PhotometricInterpretation"] == "YBR_FULL_422"
    # and it decodes/renders frame by frame
    assert imaging.decode_frame(ds, 1).shape == (100, 100, 3)


def test_one_bit_frames_not_on_byte_boundaries():
    ds = load("liver_1frame.dcm")
    rng = np.random.default_rng(7)
    rows, columns, frames = 3, 5, 4  # 15 bits a frame
    bits = rng.integers(0, 2, size=(frames, rows, columns), dtype=np.uint8)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.PixelData = pack_bits(bits)
    for index in range(frames):
        data = imaging.frame_bytes(ds, index)
        assert len(data) == 2
        assert data[1] >> 7 == 0, "the bit after the frame must be cleared"
        unpacked = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:15].reshape(rows, columns)
        np.testing.assert_array_equal(unpacked, bits[index])
        np.testing.assert_array_equal(imaging.decode_frame(ds, index), bits[index])


def test_one_bit_frame_of_the_segmentation():
    ds = load("liver_1frame.dcm")
    assert imaging.frame_bytes(ds, 0) == ds.PixelData[: 512 * 512 // 8]


def test_multi_frame_native_slices():
    ds = load("rtdose.dcm")  # 15 frames of 10 x 10 x 32 bits
    frames = [imaging.frame_bytes(ds, i) for i in range(15)]
    assert b"".join(frames) == ds.PixelData
    assert len(set(frames)) > 1


def test_decoded_frames_of_a_compressed_multi_frame():
    ds = load("examples_ybr_color.dcm")
    assert imaging.frame_attributes(ds) == {"PhotometricInterpretation": "RGB", "PlanarConfiguration": 0}
    first, last = imaging.frame_bytes(ds, 0), imaging.frame_bytes(ds, 29)
    assert len(first) == len(last) == 240 * 320 * 3
    assert first != last


def test_compressed_frame():
    assert imaging.compressed_frame(load("CT_small.dcm"), 0) is None
    assert imaging.compressed_frame(load("image_dfl.dcm"), 0) is None  # deflate is not encapsulation

    ds = load("examples_ybr_color.dcm")
    frames = [imaging.compressed_frame(ds, i) for i in range(30)]
    assert all(f[:2] == b"\xff\xd8" and b"\xff\xd9" in f[-3:] for f in frames)
    assert len(set(frames)) > 20  # a cine loop repeats a few frames
    assert open_image(frames[29], "JPEG").size == (320, 240)

    j2k = imaging.compressed_frame(load("MR_small_jp2klossless.uidfix.dcm"), 0)
    assert j2k[:4] == b"\xff\x4f\xff\x51"  # SOC, SIZ: a JPEG 2000 codestream

    rle = load("SC_rgb_rle_2frame.uidfix.dcm")
    one, two = imaging.compressed_frame(rle, 0), imaging.compressed_frame(rle, 1)
    assert int.from_bytes(one[:4], "little") == 3 and int.from_bytes(two[:4], "little") == 3  # RLE segments
    assert one != two
    with pytest.raises(imaging.FrameOutOfRange):
        imaging.compressed_frame(rle, 2)


def test_compressed_frame_equals_its_decoded_frame():
    ds = load("SC_rgb_rle_2frame.uidfix.dcm")
    stream = imaging.compressed_frame(ds, 1)
    single = load("SC_rgb_rle_2frame.uidfix.dcm")
    single.PixelData = encapsulate([stream])
    single.NumberOfFrames = 1
    assert imaging.frame_bytes(single, 0) == imaging.frame_bytes(ds, 1)


def test_compressed_data_decoded_to_little_endian_native():
    ds = load("JPGExtended.dcm")  # 12 bits in 16
    data = imaging.frame_bytes(ds, 0)
    np.testing.assert_array_equal(np.frombuffer(data, "<u2").reshape(1024, 256), imaging.decode_frame(ds, 0))
