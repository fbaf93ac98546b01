"""How a de-identified instance is written: pydicom's bytes without its copy of
the file meta, an empty preamble, and attributes the profile keeps as they were."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread

from pacsdash.research.deidentify import Deidentifier, part10_bytes
from pacsdash.research.options import DEFAULT_OPTIONS
from pacsdash.research.pseudonyms import Pseudonymizer

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"
FILES = sorted(SAMPLES.glob("*.dcm"))


def _deidentified(path: Path):
    return Deidentifier(Pseudonymizer(b"w" * 32), DEFAULT_OPTIONS).deidentify_bytes(path.read_bytes())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_written_as_pydicom_writes_it_after_the_preamble(path: Path):
    done = _deidentified(path)
    ours = part10_bytes(done.dataset)
    again = _deidentified(path).dataset  # save_as completes the file meta of a copy: a fresh one
    out = io.BytesIO()
    again.save_as(out, enforce_file_format=True)
    assert ours[:128] == b"\0" * 128
    assert ours[128:] == out.getvalue()[128:]


def test_a_preamble_with_content_does_not_go_out():
    """CT_small.dcm is also a TIFF file: its preamble holds a TIFF header
    pointing into the original's bytes (PS3.10 7.1)."""
    path = SAMPLES / "CT_small.dcm"
    assert path.read_bytes()[:4] == b"II*\0"
    out = _deidentified(path).to_bytes()
    assert out[:132] == b"\0" * 128 + b"DICM"
    assert dcmread(io.BytesIO(out)).PatientIdentityRemoved == "YES"


def test_attributes_the_profile_keeps_are_written_byte_for_byte():
    """An attribute Table E.1-1 does not list is kept (PS3.15 E.1.1): it is not
    even decoded, so its value is written back exactly as it was stored."""
    path = SAMPLES / "CT_small.dcm"
    original = dcmread(path)
    back = dcmread(io.BytesIO(_deidentified(path).to_bytes()))
    for keyword in ("ImagePositionPatient", "PixelSpacing", "RescaleSlope", "KVP", "Rows"):
        assert keyword in original, keyword
        assert back[keyword].value == original[keyword].value, keyword
    padded_raw = dcmread(path, stop_before_pixels=True)
    raw = padded_raw.get_item("ImagePositionPatient")
    written = dcmread(io.BytesIO(_deidentified(path).to_bytes())).get_item("ImagePositionPatient")
    assert written.value == raw.value  # the stored bytes, padding included
