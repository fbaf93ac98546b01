"""The metadata cache: built once, bounded, URLs put in escaped."""

from __future__ import annotations

import json

from pacsdash.web.metadata_cache import URL_MARK, MetadataCache, with_url


def test_built_once_then_served_from_memory() -> None:
    cache = MetadataCache()
    calls = []

    def build() -> bytes:
        calls.append(1)
        return b'{"a":1}'

    assert cache.get("k", build) == b'{"a":1}'
    assert cache.get("k", build) == b'{"a":1}'
    assert len(calls) == 1


def test_least_recently_used_go_first_and_size_stays_bounded() -> None:
    cache = MetadataCache(max_bytes=30)
    for key in ("a", "b", "c"):
        cache.get(key, lambda key=key: key.encode() * 10)
    assert cache.size <= 30
    assert len(cache) == 3
    cache.get("a", lambda: b"never")  # a is now the most recent
    cache.get("d", lambda: b"d" * 10)
    assert cache.get("b", lambda: b"rebuilt") == b"rebuilt"  # b was evicted
    assert cache.get("a", lambda: b"never") == b"a" * 10
    assert cache.size <= 30
    assert cache.get("huge", lambda: b"x" * 100) == b"x" * 100  # too big to keep, still answered
    assert "huge" not in cache._entries  # noqa: SLF001


def test_url_is_escaped_as_json() -> None:
    blob = json.dumps({"BulkDataURI": f"{URL_MARK}/bulkdata/x"}, ensure_ascii=False).encode()
    hostile = 'http://a"b\\c/dicom-web'
    assert json.loads(with_url(blob, hostile))["BulkDataURI"] == hostile + "/bulkdata/x"
