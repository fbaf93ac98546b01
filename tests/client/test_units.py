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


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.uint8])
@pytest.mark.parametrize("slope,intercept", [(1.0, -1024.0), (2.5, -10.25), (0.1, 0.0), (1.0, 0.0), (-1.0, 3.3)])
def test_stacked_rescale_is_bit_for_bit_the_plain_float32_formula(dtype, slope, intercept):
    from pacsdash.client.volume import _stacked

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    pixels = [rng.integers(max(info.min, -40000), min(info.max, 40000), (5, 7), dtype=dtype) for _ in range(3)]
    headers = []
    for _ in pixels:
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
        headers.append(ds)
    got = _stacked(pixels, headers, rescale=True)
    plain = np.stack([p.astype(np.float32) * np.float32(float(ds.RescaleSlope)) + np.float32(float(ds.RescaleIntercept))
                      for p, ds in zip(pixels, headers)])
    assert got.dtype == np.float32
    assert got.tobytes() == plain.tobytes()  # the same bits, signs of zeros included
    assert np.array_equal(_stacked(pixels, headers, rescale=False), np.stack(pixels))


def test_lazy_headers_build_each_header_once_from_its_json():
    from pacsdash.client.headers import LazyHeaders, geometry_header

    items = [{"00080018": {"vr": "UI", "Value": [f"1.2.{k}"]}, "00180050": {"vr": "DS", "Value": [0.625]},
              "00280010": {"vr": "US", "Value": [4]}, "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk"}}
             for k in range(3)]
    headers = LazyHeaders(items)
    assert len(headers) == 3 and "0 built" in repr(headers)
    assert headers[1].SOPInstanceUID == "1.2.1" and float(headers[1].SliceThickness) == 0.625
    assert headers[1] is headers[1] and "1 built" in repr(headers)
    assert [h.SOPInstanceUID for h in headers] == ["1.2.0", "1.2.1", "1.2.2"]
    assert headers[-1].SOPInstanceUID == "1.2.2" and len(headers[:2]) == 2
    assert headers[0].PixelData in (b"", None)  # bulk data is not fetched
    light = geometry_header(items[0])
    assert light.Rows == 4 and light.get("RescaleSlope", 1) == 1 and "SliceThickness" not in light
    assert light.SOPInstanceUID == "1.2.0" and dict(light) == {"SOPInstanceUID": "1.2.0", "Rows": 4}
    with pytest.raises(AttributeError, match="no PixelSpacing"):
        light.PixelSpacing


def test_part_views_are_the_parts_without_copies():
    from pacsdash.web.multipart import closing, part_head, split_part_views, split_parts

    body = b"".join(part_head("b0", {"Content-Type": "application/octet-stream",
                                     "Content-Location": f"http://x/instances/1.{k}/bulkdata/7FE00010"})
                    + bytes([k]) * (k + 1) + b"\r\n" for k in range(3)) + closing("b0")
    views = split_part_views(body, "b0")
    assert [bytes(v.content) for v in views] == [p.content for p in split_parts(body, "b0")] == [b"\0", b"\1\1",
                                                                                                 b"\2\2\2"]
    assert all(isinstance(v.content, memoryview) and v.content.obj is body for v in views)
    assert views[2].headers["content-location"].endswith("/instances/1.2/bulkdata/7FE00010")
    with pytest.raises(ValueError, match="line break"):
        part_head("b0", {"Content-Location": "x\r\nSet-Cookie: y"})


def test_a_part_length_is_trusted_only_where_the_delimiter_follows_it():
    from pacsdash.web.multipart import MalformedMultipart, closing, part_head, split_parts

    content = b"0123456789"
    exact = part_head("b1", {"Content-Length": "10"}) + content + b"\r\n" + closing("b1")
    assert [p.content for p in split_parts(exact, "b1")] == [content]
    for declared in ("3", "999", "-1", "1e3", "9" * 40):  # lies and nonsense: searched, as with no length
        assert split_parts(part_head("b1", {"Content-Length": declared}) + content + b"\r\n" + closing("b1"),
                           "b1")[0].content == content
    with pytest.raises(MalformedMultipart):
        split_parts(part_head("b1", {"Content-Length": "10"}) + content, "b1")


@pytest.mark.parametrize("name", ["waveform_ecg.dcm", "CT_small.dcm", "examples_palette.dcm"])
def test_full_headers_are_what_from_json_gives_with_bulk_data_empty_and_no_warning(name, recwarn):
    import json

    from pacsdash.client.headers import full_header
    from pacsdash.web.dicomjson import dataset_to_json

    item = json.loads(json.dumps(dataset_to_json(dcmread(sample(name)), lambda path: f"http://x/bulkdata/{path}")))
    assert "BulkDataURI" in json.dumps(item)
    header = full_header(item)
    assert header == Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
    assert not [w for w in recwarn if "bulk data" in str(w.message).lower()]
    if name == "waveform_ecg.dcm":
        assert header.WaveformSequence[0].WaveformData == b""  # inside a sequence too


class _CappedServer:
    """A QIDO-RS answering at most ``cap`` results a page (as servers may,
    PS3.18 8.3.4.4.1), or ignoring ``offset`` when ``ignore_offset``."""

    def __init__(self, total: int, cap: int, ignore_offset: bool = False) -> None:
        self.rows = [{"0020000D": {"vr": "UI", "Value": [f"1.2.3.{n}"]}} for n in range(total)]
        self.cap, self.ignore_offset, self.calls = cap, ignore_offset, 0

    def search_for_studies(self, limit: int, offset: int, **_: object) -> list[dict]:
        self.calls += 1
        start = 0 if self.ignore_offset else offset
        return self.rows[start:start + min(limit, self.cap)]

    search_for_series = search_for_instances = search_for_studies


@pytest.mark.parametrize("total, cap", [(0, 100), (250, 100), (100, 100), (7, 5000), (12_345, 5000)])
def test_every_page_is_fetched_when_a_server_caps_pages_below_the_limit(monkeypatch, total, cap):
    from pacsdash.client.client import Client

    server = _CappedServer(total, cap)
    client = Client("http://127.0.0.1:1/dicom-web")
    monkeypatch.setattr(Client, "web", property(lambda self: server))
    found = client._search("study", {})  # noqa: SLF001
    assert [r["0020000D"]["Value"][0] for r in found] == [f"1.2.3.{n}" for n in range(total)]
    assert server.calls == -(-total // cap) + 1  # the pages, then the empty answer that ends it


def test_a_server_ignoring_offset_does_not_loop(monkeypatch):
    from pacsdash.client.client import Client

    server = _CappedServer(300, 100, ignore_offset=True)
    monkeypatch.setattr(Client, "web", property(lambda self: server))
    found = Client("http://127.0.0.1:1/dicom-web")._search("study", {})  # noqa: SLF001
    assert len(found) == 100 and server.calls == 2
