"""pacsdash.client's pure parts, without a server: conditions on pydicom
values, frames decoded from the bytes a server sends, error details."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from pacsdash.client import conditions as cond
from pacsdash.client.client import _header_value, _pixels, _recheck
from tests.helpers import VALID


def sample(name: str):
    return next(p for p in VALID if p.name == name)


def test_conditions_on_pydicom_multivalues_and_tags():
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "0.625"
    [image_type] = cond.parse({"ImageType": "AXIAL"})
    assert cond.matches(image_type, ds.ImageType)  # any of the values, not the list's text
    assert not cond.matches(cond.parse({"ImageType": "LOCALIZER"})[0], ds.ImageType)
    [by_tag] = cond.parse({"00180050": "<=1"})
    assert by_tag.vr == "DS" and by_tag.is_comparison
    assert cond.matches(by_tag, _header_value(ds, "00180050"))
    assert _header_value(ds, "ConvolutionKernel") is None
    assert not cond.matches(by_tag, None)


def test_ranges_on_empty_and_old_style_dates():
    [before] = cond.parse({"StudyDate": "-20040120"})
    assert before.is_range
    assert cond.matches(before, ["20040119"]) and not cond.matches(before, ["20040121"])
    assert cond.matches(before, ["1997.04.24"])
    assert not cond.matches(before, None)
    results = [{"00080020": {"vr": "DA", "Value": ["20030101"]}}, {"00080020": {"vr": "DA"}}, {}]
    kept, failed = _recheck(results, [before])
    assert kept == [results[0], results[2]]  # empty fails; not returned is taken on trust
    assert failed == [before]


@pytest.mark.parametrize("name", ["liver_1frame.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_rgb_color.dcm",
                                  "CT_small.dcm"])
def test_uncompressed_frame_bytes_decode_as_pydicom_does(name):
    ds = dcmread(sample(name))
    got = _pixels(bytes(ds.PixelData), ds, rescale=False)
    assert got.shape == ds.pixel_array.shape
    assert np.array_equal(got, ds.pixel_array)


def test_a_short_frame_says_so():
    ds = dcmread(sample("CT_small.dcm"))
    with pytest.raises(ValueError, match="needs 32768 bytes, the server sent 100"):
        _pixels(bytes(ds.PixelData)[:100], ds, rescale=False)


def test_ybr_422_as_stored_is_pydicom_rgb():
    ds = dcmread(sample("SC_ybr_full_422_uncompressed.dcm"))
    assert np.array_equal(_pixels(bytes(ds.PixelData), ds, rescale=False), pixel_array(ds))
