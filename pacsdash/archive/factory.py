"""The archive of a home, built from its settings in one place.

Every process that opens a home's archive (the server, its DICOM workers,
the offline command line, the demo) asks here, so that the file store, the
index and what they are configured with (label rules) are chosen once: the
place a PostgreSQL index or an object store will be chosen from
``[index] url`` and ``[storage] url``.
"""

from __future__ import annotations

from typing import Any

from pacsdash.archive.archive import Archive
from pacsdash.archive.labels import compile_rules
from pacsdash.archive.query import InvalidQuery
from pacsdash.archive.store import LocalStore, Store
from pacsdash.config import ConfigError, Settings


def open_store(settings: Settings) -> Store:
    """The home's file store (``[storage]``)."""
    return LocalStore(settings.store_path)


def open_archive(settings: Settings) -> Archive:
    """The home's archive, owning its index (one process at a time: take the home's lock first).

    Raises
    ------
    ConfigError
        When a ``[[label_rules]]`` condition cannot be matched (an unknown attribute, a bad value).
    """
    try:
        compile_rules(settings.label_rules)  # before anything is opened
    except InvalidQuery as exc:
        raise ConfigError(f"[[label_rules]]: {exc}") from None
    return Archive.open_home(settings.store_path, settings.index_path, settings.label_rules)


def worker_archive(settings: Settings, index: Any) -> Archive:
    """A DICOM worker's archive: the home's store, and the server process's
    index reached through ``index`` (:class:`~pacsdash.archive.remote.RemoteIndex`)."""
    return Archive(open_store(settings), index)
