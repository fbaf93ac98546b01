"""Header parsing: the kept conversions give exactly what pydicom's converter gives."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread

from pacsdash.archive import parsing
from tests.factories import make_instance
from tests.helpers import VALID


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
