"""Encoded DICOM JSON of instances, kept between WADO-RS metadata requests.

A viewer asks for a series' metadata again and again (OHIF at every open),
and reading each header with pydicom and converting it to DICOM JSON costs a
few milliseconds per instance. A stored file never changes (its store key is
new for every instance), so its JSON can be kept: encoded, with a marker
where the instance's URL goes, because that URL depends on how the client
reached the server. The cache holds at most ``max_bytes`` and forgets the
least recently used entries first.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable

#: Stands for the instance's URL in cached JSON (a private-use character, which
#: JSON keeps as it is and DICOM text never needs).
URL_MARK = "\ue000instance\ue000"
_URL_MARK_BYTES = URL_MARK.encode()


class MetadataCache:
    """A size-bounded LRU of encoded DICOM JSON objects keyed by store key."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str, build: Callable[[], bytes]) -> bytes:
        """The cached JSON of ``key``, built (outside the lock) when absent."""
        with self._lock:
            blob = self._entries.get(key)
            if blob is not None:
                self._entries.move_to_end(key)
                return blob
        blob = build()
        if len(blob) <= self.max_bytes:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = blob
                    self._size += len(blob)
                    while self._size > self.max_bytes:
                        _, old = self._entries.popitem(last=False)
                        self._size -= len(old)
        return blob

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size


def with_url(blob: bytes, instance_url: str) -> bytes:
    """Cached JSON with the instance's URL put in (escaped as a JSON string's inside)."""
    if _URL_MARK_BYTES not in blob:
        return blob
    return blob.replace(_URL_MARK_BYTES, json.dumps(instance_url, ensure_ascii=False)[1:-1].encode())
