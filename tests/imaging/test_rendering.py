"""Rendering (PS3.18 8.3.5) and the display pipeline (PS3.4 N.2) on the sample corpus."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, UID

from pacsdash import imaging
from pacsdash.imaging.display import modality_lut
from pacsdash.imaging.window import Window, apply_window
from tests.imaging.samples import (
    BROKEN,
    NO_PIXEL_SAMPLES,
    PIXEL_SAMPLES,
    VALID,
    Sample,
    as_array,
    frames_of_interest,
    load,
    manifest,
    open_image,
)

#: The same 100 x 100 test picture in several encodings; the lossless RGB one is the truth.
RGB_TRUTH = "SC_rgb_jpeg_gdcm.dcm"
SAME_PICTURE = [
    ("SC_rgb_jpeg_dcmtk.dcm", 0),  # YBR_FULL, JPEG baseline
    ("SC_ybr_full_422_uncompressed.dcm", 0),  # YBR_FULL_422, native
    ("SC_rgb_dcmtk_+eb+cr.dcm", 0),  # RGB JPEG baseline without colour transform
    ("SC_rgb_gdcm_KY.dcm", 0),  # RGB JPEG 2000
    ("SC_rgb_rle_16bit.uidfix.dcm", 0),  # 16 bits per sample
    ("SC_rgb_rle_2frame.uidfix.dcm", 0),
]
#: MR_small in every transfer syntax of the corpus: the display must be identical.
MR_VARIANTS = [
    "MR_small_RLE.uidfix.dcm",
    "MR_small_bigendian.uidfix.dcm",
    "MR_small_implicit.uidfix.dcm",
    "MR_small_jp2klossless.uidfix.dcm",
    "MR_small_jpeg_ls_lossless.uidfix.dcm",
    "MR_small_padded.uidfix.dcm",
]


def test_manifest_matches_the_valid_folder():
    listed = {s.file for s in manifest()}
    assert listed == {p.name for p in VALID.glob("*.dcm")}
    assert len(PIXEL_SAMPLES) == 32 and len(NO_PIXEL_SAMPLES) == 4


@pytest.mark.parametrize("sample", PIXEL_SAMPLES, ids=str)
def test_header_questions(sample: Sample):
    ds = load(sample.file)
    assert imaging.has_pixels(ds)
    assert imaging.frame_count(ds) == sample.frames
    assert (ds.Rows, ds.Columns) == (sample.rows, sample.columns)


@pytest.mark.filterwarnings("ignore:The pixel data is")
@pytest.mark.parametrize("sample", PIXEL_SAMPLES, ids=str)
def test_render_png(sample: Sample):
    ds = load(sample.file)
    color = ds.SamplesPerPixel == 3 or sample.photometric == "PALETTE COLOR"
    for index in frames_of_interest(sample.frames):
        picture = open_image(imaging.render(ds, index), "PNG")
        assert picture.size == (sample.columns, sample.rows)
        assert picture.mode == ("RGB" if color else "L")
        pixels = np.asarray(picture)
        assert pixels.std() > 0, f"frame {index} renders blank"
        # render is decode + display + encode, nothing else, at full size
        expected = imaging.to_display(ds, imaging.decode_frame(ds, index), index=index)
        np.testing.assert_array_equal(pixels, expected)


@pytest.mark.filterwarnings("ignore:The pixel data is")
@pytest.mark.parametrize("sample", PIXEL_SAMPLES, ids=str)
def test_render_jpeg(sample: Sample):
    ds = load(sample.file)
    index = sample.frames - 1
    full = open_image(imaging.render(ds, index, media_type="image/jpeg", quality=95), "JPEG")
    assert full.size == (sample.columns, sample.rows)
    assert np.asarray(full).std() > 0
    # PS3.18 8.3.5.1.2: fit the viewport, keep the aspect ratio
    viewport = (50, 40)
    fitted = open_image(imaging.render(ds, index, viewport=viewport, media_type="image/jpeg", quality=80), "JPEG")
    scale = min(viewport[0] / sample.columns, viewport[1] / sample.rows)
    assert fitted.size == (round(sample.columns * scale), round(sample.rows * scale))
    assert fitted.size[0] == viewport[0] or fitted.size[1] == viewport[1]


@pytest.mark.parametrize("sample", NO_PIXEL_SAMPLES, ids=str)
def test_no_pixel_data_is_a_404(sample: Sample):
    ds = load(sample.file)
    assert not imaging.has_pixels(ds)
    assert imaging.frame_count(ds) == 0
    for call in (
        lambda: imaging.render(ds),
        lambda: imaging.thumbnail(ds),
        lambda: imaging.decode_frame(ds, 0),
        lambda: imaging.frame_bytes(ds, 0),
        lambda: imaging.compressed_frame(ds, 0),
        lambda: imaging.to_display(ds, np.zeros((2, 2), np.uint8)),
    ):
        with pytest.raises(imaging.NoPixelData, match=r"\(7FE0,0010\) Pixel Data") as info:
            call()
        assert info.value.http_status == 404


# -- grayscale pipeline -------------------------------------------------------------------


def test_ct_windows_change_the_picture():
    ds = load("CT_small.dcm")
    soft = as_array(imaging.render(ds, window=(40, 400)))
    bone = as_array(imaging.render(ds, window=(500, 2000)))
    assert soft.std() > 0 and bone.std() > 0
    assert np.abs(soft.astype(int) - bone.astype(int)).mean() > 20


@pytest.mark.parametrize("function", ["linear", "linear-exact", "sigmoid"])
def test_window_far_away_gives_black_or_white(function):
    ds = load("CT_small.dcm")
    black = as_array(imaging.render(ds, window=(100_000, 100, function)))
    white = as_array(imaging.render(ds, window=(-100_000, 100, function)))
    assert black.max() == 0
    assert white.min() == 255


def test_rescale_intercept_is_applied_before_the_window():
    ds = load("CT_small.dcm")
    pixels = imaging.decode_frame(ds, 0)
    # Hounsfield units: CT_small's intercept is -1024
    hu = pixels.astype(float) + float(ds.RescaleIntercept)
    window = (40, 400)
    expected = np.clip(np.rint(apply_window(hu, Window(40, 400))), 0, 255)
    np.testing.assert_array_equal(imaging.to_display(ds, pixels, window), expected)
    shifted = load("CT_small.dcm")
    shifted.RescaleIntercept = float(ds.RescaleIntercept) + 1000
    np.testing.assert_array_equal(
        imaging.to_display(shifted, pixels, (1040, 400)), imaging.to_display(ds, pixels, window)
    )


def test_dataset_window_is_the_default_and_explicit_window_wins():
    ds = load("MR_small.dcm")  # Window Center 600, Width 1600
    pixels = imaging.decode_frame(ds, 0)
    default = imaging.to_display(ds, pixels)
    np.testing.assert_array_equal(default, imaging.to_display(ds, pixels, (600, 1600)))
    assert not np.array_equal(default, imaging.to_display(ds, pixels, (300, 200)))
    # without a window: min/max of the frame
    del ds.WindowCenter, ds.WindowWidth
    minmax = imaging.to_display(ds, pixels)
    assert minmax.min() == 0 and minmax.max() == 255
    assert not np.array_equal(default, minmax)


def test_first_of_several_windows_is_used():
    ds = load("examples_overlay.dcm")  # Window Center [450, 200], Width [790, 443]
    pixels = imaging.decode_frame(ds, 0)
    np.testing.assert_array_equal(imaging.to_display(ds, pixels), imaging.to_display(ds, pixels, (450, 790)))


def test_voi_lut_function_sigmoid_from_the_dataset():
    ds = load("MR_small.dcm")
    pixels = imaging.decode_frame(ds, 0)
    ds.VOILUTFunction = "SIGMOID"
    expected = np.clip(np.rint(apply_window(pixels, Window(600, 1600, "sigmoid"))), 0, 255)
    np.testing.assert_array_equal(imaging.to_display(ds, pixels), expected)


def test_voi_lut_sequence_when_there_is_no_window():
    ds = load("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    pixels = imaging.decode_frame(ds, 0)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [min(i * 16, 65535) for i in range(4096)]
    ds.VOILUTSequence = Sequence([item])
    expected = np.rint(np.minimum(pixels.astype(np.int64), 4095) * 16 * 255 / 65535)
    np.testing.assert_array_equal(imaging.to_display(ds, pixels), expected)


def test_modality_lut_sequence():
    ds = load("MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    pixels = imaging.decode_frame(ds, 0)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [4095 - i for i in range(4096)]  # an inverting modality LUT
    ds.ModalityLUTSequence = Sequence([item])
    np.testing.assert_array_equal(modality_lut(ds, pixels), 4095 - pixels)


def test_enhanced_functional_group_window_and_rescale():
    ds = load("MR_small.dcm")
    pixels = imaging.decode_frame(ds, 0)
    reference = imaging.to_display(ds, pixels, (600 + 50, 1600))
    del ds.WindowCenter, ds.WindowWidth
    voi, transform, shared = Dataset(), Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = 600, 1600
    transform.RescaleSlope, transform.RescaleIntercept = 1, -50
    shared.FrameVOILUTSequence = Sequence([voi])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    np.testing.assert_array_equal(imaging.to_display(ds, pixels), reference)


def test_pixel_padding_is_left_out_of_min_max():
    ds = load("CT_small.dcm")  # Pixel Padding Value -2000, no window
    pixels = imaging.decode_frame(ds, 0).copy()
    low, high = int(pixels.min()), int(pixels.max())
    pixels[:4, :4] = -2000
    display = imaging.to_display(ds, pixels)
    assert (display[:4, :4] == 0).all()
    assert display[pixels == low].max() == 0  # the darkest real pixel is black, not grey
    assert display[pixels == high].min() == 255


def test_monochrome1_inverts():
    for name, window in (("MR_small.dcm", None), ("CT_small.dcm", (40, 400))):
        ds = load(name)
        normal = as_array(imaging.render(ds, window=window))
        ds.PhotometricInterpretation = "MONOCHROME1"
        inverted = as_array(imaging.render(ds, window=window))
        assert normal.std() > 0
        assert np.abs(inverted.astype(int) - (255 - normal.astype(int))).max() <= 1


def test_signed_pixels():
    ds = load("J2K_pixelrep_mismatch.dcm")  # Pixel Representation 1, values below 0
    pixels = imaging.decode_frame(ds, 0)
    assert pixels.dtype.kind == "i" and pixels.min() < 0
    display = imaging.to_display(ds, pixels, (0, 100))
    assert (display[pixels < -50] == 0).all() and (display[pixels > 50] == 255).all()


@pytest.mark.filterwarnings("ignore:The pixel data is")
def test_transfer_syntaxes_of_one_picture_display_the_same():
    truth = as_array(imaging.render(load("MR_small.dcm")))
    for name in MR_VARIANTS:
        np.testing.assert_array_equal(as_array(imaging.render(load(name))), truth, err_msg=name)


# -- colour --------------------------------------------------------------------------------


def test_palette_color_renders_rgb():
    ds = load("examples_palette.dcm")
    picture = open_image(imaging.render(ds), "PNG")
    assert picture.mode == "RGB"
    rgb = np.asarray(picture)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1
    # a real palette, not a grey ramp
    assert (np.ptp(rgb.astype(int), axis=2) > 30).sum() > 100


@pytest.mark.parametrize(("name", "index"), SAME_PICTURE)
def test_encodings_of_one_colour_picture_render_alike(name, index):
    truth = as_array(imaging.render(load(RGB_TRUTH))).astype(int)
    other = as_array(imaging.render(load(name), index)).astype(int)
    assert np.abs(other - truth).mean() < 3.0


def test_unconverted_ybr_would_fail_the_colour_comparison():
    """The tolerance above is tight enough to catch a missing YBR -> RGB conversion."""
    truth = as_array(imaging.render(load(RGB_TRUTH))).astype(int)
    raw = pixel_array(load("SC_ybr_full_422_uncompressed.dcm"), raw=True).astype(int)
    assert np.abs(raw - truth).mean() > 20


def test_jpeg_ybr_full_422_is_converted_exactly_once():
    # A grey-scale ultrasound loop: as RGB the three channels agree; left in
    # YCbCr (or converted twice) the chroma channels sit near 128.
    ds = load("examples_ybr_color.dcm")
    rgb = as_array(imaging.render(ds, 15)).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).mean() < 3
    assert np.abs(rgb[..., 2] - rgb[..., 1]).mean() < 3
    assert rgb[..., 1].mean() < 40


def test_jpeg2000_ybr_rct_colours():
    rgb = as_array(imaging.render(load("GDCMJ2K_TextGBR.dcm"))).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert ((r > 200) & (g < 60) & (b < 60)).sum() > 500  # "red" is red
    assert ((g > 200) & (r < 60) & (b < 60)).sum() > 500
    assert ((b > 200) & (r < 60) & (g < 60)).sum() > 500


def test_big_endian_and_odd_length_rgb():
    little = as_array(imaging.render(load("SC_rgb_small_odd.dcm")))
    big = as_array(imaging.render(load("SC_rgb_small_odd_big_endian.uidfix.dcm")))
    np.testing.assert_array_equal(little, big)
    assert little.shape == (3, 3, 3)


def test_planar_configuration_1_big_endian():
    ds = load("ExplVR_BigEnd.dcm")
    assert ds.PlanarConfiguration == 1
    rgb = imaging.decode_frame(ds, 0)
    planes = np.frombuffer(ds.PixelData, np.uint8)[: 60 * 80 * 3].reshape(3, 60, 80)
    np.testing.assert_array_equal(rgb, planes.transpose(1, 2, 0))


def test_16_bit_rgb_is_scaled_to_8_bits():
    ds = load("SC_rgb_rle_16bit.uidfix.dcm")
    stored = imaging.decode_frame(ds, 0)
    display = imaging.to_display(ds, stored)
    assert display.dtype == np.uint8
    np.testing.assert_array_equal(display, np.rint(stored / 257.0))


# -- viewport, thumbnail, parameters, errors --------------------------------------------


def test_viewport_keeps_aspect_ratio():
    ds = load("examples_palette.dcm")  # 800 columns x 350 rows
    assert open_image(imaging.render(ds, viewport=(400, 400)), "PNG").size == (400, 175)
    assert open_image(imaging.render(ds, viewport=(1600, 350)), "PNG").size == (800, 350)
    assert open_image(imaging.render(ds, viewport=(None, 70)), "PNG").size == (160, 70)
    assert imaging.fit_viewport(3, 3, (128, 128)) == (128, 128)


def test_thumbnail():
    small = open_image(imaging.thumbnail(load("SC_rgb_small_odd.dcm"), size=64), "JPEG")
    assert small.size == (64, 64)
    wide = open_image(imaging.thumbnail(load("examples_palette.dcm"), media_type="image/png"), "PNG")
    assert wide.size == (128, 56)
    ds = load("examples_ybr_color.dcm")
    assert imaging.thumbnail(ds) == imaging.render(ds, 15, viewport=(128, 128), media_type="image/jpeg", quality=85)


def test_bad_parameters():
    ds = load("CT_small.dcm")
    with pytest.raises(imaging.UnsupportedMediaType, match="image/gif") as info:
        imaging.render(ds, media_type="image/gif")
    assert info.value.http_status == 406
    assert imaging.render(ds, media_type="image/jpeg; charset=x")[:2] == b"\xff\xd8"
    for bad in dict(quality=0), dict(quality=101), dict(window=(40, 0)), dict(window="40"), dict(viewport=(0, 5)):
        with pytest.raises(imaging.InvalidParameter) as info:
            imaging.render(ds, **bad)
        assert info.value.http_status == 400
    with pytest.raises(imaging.InvalidParameter):
        imaging.render(ds, window=(40, 400, "cubic"))


@pytest.mark.parametrize("index", [-1, 1, 2, True, "0"])
def test_frame_out_of_range(index):
    ds = load("CT_small.dcm")
    with pytest.raises(imaging.FrameOutOfRange, match="Number of Frames is 1") as info:
        imaging.render(ds, index)
    assert info.value.http_status == 404
    with pytest.raises(imaging.FrameOutOfRange):
        imaging.frame_bytes(ds, index)
    multi = load("rtdose.dcm")
    imaging.render(multi, 14)
    with pytest.raises(imaging.FrameOutOfRange, match="Number of Frames is 15"):
        imaging.render(multi, 15)


def test_unsupported_transfer_syntax_is_a_406():
    ds = load("examples_ybr_color.dcm")
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile
    with pytest.raises(imaging.UnsupportedEncoding, match=r"1\.2\.840\.10008\.1\.2\.4\.100") as info:
        imaging.render(ds)
    assert info.value.http_status == 406
    with pytest.raises(imaging.UnsupportedEncoding):
        imaging.frame_bytes(ds, 0)
    # the stored bitstream can still be served as is
    assert imaging.compressed_frame(ds, 0)[:2] == b"\xff\xd8"
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(imaging.UnsupportedEncoding, match=r"\(0002,0010\)"):
        imaging.render(ds)


def test_truncated_pixel_data():
    ds = load("MR_truncated.uidfix.dcm", BROKEN)
    with pytest.raises(imaging.CorruptPixelData, match="8130"):
        imaging.render(ds)
    with pytest.raises(imaging.CorruptPixelData, match="8130 bytes"):
        imaging.frame_bytes(ds, 0)


def test_missing_rows_is_named():
    ds = load("CT_small.dcm")
    del ds.Rows
    with pytest.raises(imaging.CorruptPixelData, match=r"\(0028,0010\) Rows"):
        imaging.render(ds)


def test_all_errors_are_imaging_errors():
    for error in (
        imaging.NoPixelData,
        imaging.FrameOutOfRange,
        imaging.UnsupportedEncoding,
        imaging.UnsupportedMediaType,
        imaging.InvalidParameter,
        imaging.CorruptPixelData,
    ):
        assert issubclass(error, imaging.ImagingError)


def test_float_pixel_data():
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 6, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 1, "MONOCHROME2", 32
    values = (np.arange(48, dtype="<f4") / 7).reshape(2, 4, 6)
    ds.FloatPixelData = values.tobytes()
    assert imaging.frame_count(ds) == 2
    display = as_array(imaging.render(ds, 1))
    assert display.shape == (4, 6) and display.min() == 0 and display.max() == 255
    assert imaging.frame_bytes(ds, 1) == values[1].tobytes()
    assert imaging.compressed_frame(ds, 1) is None
