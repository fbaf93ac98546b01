"""The data layer: what goes to the browser, once, at full bit depth."""

from __future__ import annotations

import base64
import datetime as dt
import json

import numpy as np
import pydicom
import pytest

from pacsdash.dashboard.viewer.frames import (
    estimate_frame_bytes,
    load_frame,
    smallest_exact_dtype,
)
from pacsdash.demo.generate import PATIENTS, _study, volume_series
from pacsdash.imaging import NoPixelData
from tests.imaging.samples import NO_PIXEL_SAMPLES, PIXEL_SAMPLES, VALID, load

COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR"}

#: Known oddities of the sample corpus, not of the viewer.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The pixel data is .* excess padding:UserWarning"),
]


def test_ct_values_are_hounsfield_units():
    ds = load("CT_small.dcm")
    frame = load_frame(ds)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert frame.pixels.dtype == np.int16
    np.testing.assert_array_equal(frame.pixels, expected)
    assert frame.units == "HU"
    assert (frame.RescaleSlope, frame.RescaleIntercept) == (1.0, -1024.0)
    assert (frame.Rows, frame.Columns) == (128, 128)
    assert frame.minimum == expected.min() and frame.maximum == expected.max()
    assert frame.PixelSpacing == pytest.approx((0.661468, 0.661468))
    assert not frame.invert and not frame.is_color


def test_shipped_bytes_are_the_values_little_endian():
    ds = load("CT_small.dcm")
    frame = load_frame(ds)
    message = frame.to_message(7)
    assert message["index"] == 7 and message["dtype"] == "int16"
    decoded = np.frombuffer(message["pixels"], dtype="<i2").reshape(128, 128)
    np.testing.assert_array_equal(decoded, frame.pixels)
    assert base64.b64decode(frame.to_base64()) == message["pixels"]
    json.dumps(frame.metadata())  # the metadata travels as JSON


def test_a_512_ct_frame_ships_as_512_kib_not_a_png():
    study = _study(0, "CT", dt.date(2026, 1, 1))
    [ds] = volume_series(PATIENTS[0], study, "CT", 1, 512, 2, "one slice")
    frame = load_frame(ds)
    assert frame.pixels.dtype == np.int16
    assert frame.nbytes == 512 * 512 * 2 == len(frame.to_bytes())
    assert estimate_frame_bytes(512, 512, 1, 16) == frame.nbytes
    assert not frame.to_bytes().startswith(b"\x89PNG")


def test_dataset_windows_keep_every_pair_with_its_explanation():
    study = _study(0, "CT", dt.date(2026, 1, 1))
    [ds] = volume_series(PATIENTS[0], study, "CT", 1, 32, 2, "one slice")
    frame = load_frame(ds)
    assert [(w.center, w.width, w.explanation) for w in frame.windows] == [
        (40.0, 400.0, "SOFT TISSUE"), (-600.0, 1500.0, "LUNG")]
    assert frame.default_window.center == 40.0 and frame.default_window.width == 400.0
    overlay = load_frame(load("examples_overlay.dcm"))
    assert [(w.center, w.width) for w in overlay.windows] == [(450.0, 790.0), (200.0, 443.0)]


def test_without_a_window_the_default_is_the_value_range():
    frame = load_frame(load("CT_small.dcm"))
    window = frame.default_window
    assert window.center == pytest.approx((frame.minimum + frame.maximum) / 2)
    assert window.width == pytest.approx(frame.maximum - frame.minimum)


def test_monochrome1_sets_the_invert_flag():
    ds = load("CT_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    frame = load_frame(ds)
    assert frame.invert and frame.metadata()["invert"] is True
    assert frame.metadata()["photometric"] == "MONOCHROME1"
    assert not load_frame(load("CT_small.dcm")).invert


def test_fractional_rescale_ships_exact_float32():
    ds = load("CT_small.dcm")
    ds.RescaleSlope = 0.5
    frame = load_frame(ds)
    assert frame.pixels.dtype == np.float32 and frame.dtype == "float32"
    np.testing.assert_array_equal(frame.pixels, ds.pixel_array * 0.5 - 1024)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0, 255], np.uint8),
        ([-1024, 3071], np.int16),
        ([0, 65535], np.uint16),
        ([-1, 40000], np.int32),
        ([0.5, 1], np.float32),
        ([np.nan, 1], np.float32),
        ([0, 2**40], np.float32),
    ],
)
def test_smallest_exact_dtype(values, dtype):
    assert smallest_exact_dtype(np.array(values, dtype=np.float64)) == np.dtype(dtype)


@pytest.mark.parametrize("sample", PIXEL_SAMPLES, ids=str)
def test_every_sample_frame_has_rows_times_columns_values(sample):
    ds = load(sample.file)
    frame = load_frame(ds, sample.frames - 1)
    colour = sample.photometric in COLOUR
    assert frame.is_color == colour
    assert frame.pixels.size == sample.rows * sample.columns * (3 if colour else 1)
    assert frame.pixels.shape[:2] == (sample.rows, sample.columns)
    assert len(frame.to_bytes()) == frame.nbytes == frame.pixels.size * frame.pixels.dtype.itemsize
    if colour:
        assert frame.pixels.dtype == np.uint8 and frame.dtype == "uint8"


@pytest.mark.parametrize("sample", NO_PIXEL_SAMPLES, ids=str)
def test_instances_without_pixels_say_so(sample):
    with pytest.raises(NoPixelData):
        load_frame(pydicom.dcmread(VALID / sample.file))
