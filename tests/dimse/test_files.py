"""pacsdash.dimse.files: the stored bytes handed to pynetdicom's chunked file sending (issue 16)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pacsdash.dimse.files import DEFLATED, _split, file_to_send
from tests.helpers import VALID

CT = next(p for p in VALID if p.name == "CT_small.dcm")
DEFLATED_FILES = [p for p in VALID if p.name == "image_dfl.dcm"]


def test_a_local_stream_is_sent_as_its_own_open_file_without_a_copy():
    with open(CT, "rb") as stream, file_to_send(stream) as name:
        if not os.path.isdir("/dev/fd"):
            pytest.skip("no /dev/fd on this system")
        assert name == Path("/dev/fd", str(stream.fileno()))
        assert name.read_bytes() == CT.read_bytes()


def test_a_stream_without_a_file_is_sent_from_a_temporary_copy():
    raw = CT.read_bytes()
    with file_to_send(io.BytesIO(raw), len(raw)) as name:
        assert name.read_bytes() == raw
    assert not name.exists()  # removed after


@pytest.mark.parametrize("path", DEFLATED_FILES, ids=lambda p: p.name)
def test_an_odd_deflated_data_set_gets_its_pad_byte(path):
    raw = path.read_bytes()
    syntax, offset = _split(io.BytesIO(raw))
    assert syntax == DEFLATED
    odd = raw if (len(raw) - offset) % 2 else raw[:-1]  # a deflated data set of odd length, as some files are
    with file_to_send(io.BytesIO(odd)) as name:
        assert name.read_bytes() == odd + b"\x00"
