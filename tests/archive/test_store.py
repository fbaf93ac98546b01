"""The local file store: keys it makes itself, files written durably, never a path from outside."""

from __future__ import annotations

import shutil

import pytest

from pacsdash.archive.store import KEY_PATTERN, LocalStore


def test_written_bytes_come_back_under_a_fresh_key(tmp_path):
    store = LocalStore(tmp_path / "store")
    key = store.write(b"DICM bytes")
    assert KEY_PATTERN.match(key)
    assert store.read(key) == b"DICM bytes"
    assert list(store.keys()) == [key]
    assert not list((tmp_path / "store").glob("*/*/*.tmp"))  # no temporary file left


@pytest.mark.parametrize("key", ["../escape.dcm", "20261202/08/../../../x.dcm", "/etc/passwd", "20261202/08/ab.dcm"])
def test_a_key_that_is_not_the_stores_own_is_refused(tmp_path, key):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(KeyError):
        store.write(b"x", key)
    with pytest.raises(KeyError):
        store.open(key)
    assert not any(tmp_path.rglob("*.dcm"))


def test_a_folder_removed_after_a_write_is_made_again(tmp_path):
    """The store remembers the folders it made; one removed since (by hand) is made again."""
    store = LocalStore(tmp_path / "store")
    first = store.write(b"first")
    shutil.rmtree(tmp_path / "store" / first.split("/")[0])
    second = store.write(b"second", first.replace(first.rsplit("/", 1)[1], "0" * 32 + ".dcm"))
    assert store.read(second) == b"second"
    assert not store.exists(first)
