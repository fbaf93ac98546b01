"""Archive.read_range and Archive.verify: the doors' reads of stored bytes without paths (issue 16)."""

from __future__ import annotations

import pytest

from pacsdash.archive import Archive, DamagedFile, Level, MissingFile
from tests.factories import make_instance


@pytest.fixture
def stored(archive: Archive):
    raw = make_instance()
    archive.store_bytes(raw)
    [location] = archive.locate(Level.IMAGE, None)
    return archive, location, raw


def test_read_range_gives_the_stored_bytes_of_the_range(stored):
    archive, location, raw = stored
    assert archive.read_range(location, 0, 132) == raw[:132]
    assert archive.read_range(location, 200, 300) == raw[200:500]
    assert archive.read_range(location, len(raw) - 10, 10) == raw[-10:]
    assert archive.read_range(location, len(raw), 0) == b""
    assert archive.store.read_range(location.file, len(raw) - 4, 100) == raw[-4:]  # the store: fewer at the end


@pytest.mark.parametrize("offset,length", [(-1, 4), (0, -1), (1, 10**9)])
def test_read_range_outside_the_size_received_is_refused(stored, offset, length):
    archive, location, _ = stored
    with pytest.raises(ValueError):
        archive.read_range(location, offset, length)


def test_read_range_and_verify_of_a_missing_or_cut_file(stored):
    archive, location, raw = stored
    archive.verify(location)
    path = archive.local_path(location)
    path.write_bytes(raw[:-40])
    with pytest.raises(DamagedFile):
        archive.verify(location)
    with pytest.raises(DamagedFile):
        archive.read_range(location, len(raw) - 30, 30)
    assert archive.read_range(location, 0, 100) == raw[:100]  # the bytes that are there are read
    path.unlink()
    with pytest.raises(MissingFile):
        archive.verify(location)
    with pytest.raises(MissingFile):
        archive.read_range(location, 0, 10)
