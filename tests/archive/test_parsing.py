"""Header parsing: the kept conversions give exactly what pydicom's converter gives."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread

from pacsdash.archive import parsing
from tests.factories import make_instance
from tests.helpers import BROKEN, VALID


def uncached_texts(raw: bytes) -> dict[int, str]:
    ds = parsing.read_header(raw)
    encoding = ds._character_set  # noqa: SLF001
    texts = {}
    for tag, elem in ds._dict.items():  # noqa: SLF001
        if tag >> 16 == 0x0002:
            continue
        text = parsing._element_text(elem, encoding, ds)  # noqa: SLF001
        if text:
            texts[int(tag)] = text
    return texts


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_kept_conversions_equal_pydicoms(path):
    raw = path.read_bytes()
    parsing._converted.clear()  # noqa: SLF001
    first = parsing.element_texts(parsing.read_header(raw))
    again = parsing.element_texts(parsing.read_header(raw))  # now from the kept conversions
    assert first == again == uncached_texts(raw)
    ds = parsing.read_header(raw)
    explicit = any(getattr(e, "VR", None) for t, e in ds._dict.items() if t >> 16 != 2)  # noqa: SLF001
    assert bool(parsing._converted) == explicit  # noqa: SLF001 - kept for explicit VRs only


def test_the_character_set_is_part_of_what_is_kept():
    """The same bytes under another SpecificCharacterSet are converted anew."""
    name = "Müller^Jürgen"
    latin1 = make_instance(PatientName=name, SpecificCharacterSet="ISO_IR 100")
    ds = dcmread(io.BytesIO(latin1))
    raw_name = name.encode("latin-1")
    assert parsing.element_texts(parsing.read_header(latin1))[0x00100010] == name
    # The same bytes declared UTF-8 are not valid UTF-8: pydicom replaces what it cannot decode.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds["PatientName"].value = raw_name
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    as_utf8 = parsing.element_texts(parsing.read_header(buffer.getvalue()))[0x00100010]
    assert as_utf8 != name
    assert as_utf8 == uncached_texts(buffer.getvalue())[0x00100010]


def test_conversions_kept_are_bounded(monkeypatch):
    monkeypatch.setattr(parsing, "CONVERSIONS_KEPT", 5)
    parsing._converted.clear()  # noqa: SLF001
    for number in range(20):
        parsing.element_texts(parsing.read_header(make_instance(PatientID=f"ID{number}")))
        assert len(parsing._converted) <= 5  # noqa: SLF001


def lane_layout(path) -> tuple[bytes, tuple[str, int]]:
    """A sample as the C-STORE lane files it: our file meta, then the data set
    as sent; and the (transfer syntax, data set offset) the lane passes on."""
    from pacsdash.dimse import encoding
    from tests.helpers import sent_bytes

    try:
        meta_ds = dcmread(path, stop_before_pixels=True).file_meta
        syntax = str(meta_ds.TransferSyntaxUID)
        sop_class, sop_instance = str(meta_ds.MediaStorageSOPClassUID), str(meta_ds.MediaStorageSOPInstanceUID)
        data = sent_bytes(path)
    except Exception:  # no usable file meta: a peer could still send its bytes as a data set
        syntax, sop_class, sop_instance = "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.3"
        data = path.read_bytes()
        data = data[132:] if data[128:132] == b"DICM" else data
    head = b"\0" * 128 + b"DICM" + encoding.file_meta(sop_class, sop_instance, syntax)
    return head + data, (syntax, len(head))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_a_data_set_read_where_the_lane_says_gives_the_same_record(path):
    """The lane's data set, read without its file meta, gives the record the whole file gives."""
    raw, data_set = lane_layout(path)
    direct = parsing.parse_instance(raw, "lane", data_set)
    whole = parsing.parse_instance(raw, "lane")
    assert direct == whole
    assert direct.TransferSyntaxUID == data_set[0]


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_a_broken_data_set_read_where_the_lane_says_is_refused_as_a_whole_file(path):
    """What the whole-file reader refuses, the lane's direct reading refuses too."""
    raw, data_set = lane_layout(path)
    try:
        whole = parsing.parse_instance(raw)
    except parsing.InvalidInstance:
        whole = None
    try:
        direct = parsing.parse_instance(raw, "", data_set)
    except parsing.InvalidInstance:
        direct = None
    assert (direct is None) == (whole is None)
    if whole is not None:
        assert direct == whole


def test_a_truncated_data_set_read_where_the_lane_says_is_refused():
    raw, data_set = lane_layout(VALID[0])
    with pytest.raises(parsing.InvalidInstance, match="truncated"):
        parsing.parse_instance(raw[: len(raw) - 100], "", data_set)
