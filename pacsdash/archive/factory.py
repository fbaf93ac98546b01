"""The archive of a home, built from its settings in one place.

Every process that opens a home's archive (the server, its DICOM workers,
the offline command line, the demo) asks here, so that the file store, the
index and what they are configured with (label rules) are chosen once: a
PostgreSQL index from ``[index] url``, an S3-compatible object store from
``[storage] url``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pacsdash.archive.archive import Archive
from pacsdash.archive.labels import compile_rules
from pacsdash.archive.query import InvalidQuery
from pacsdash.archive.store import LocalStore, Store
from pacsdash.config import ConfigError, Settings


def open_store(settings: Settings) -> Store:
    """The home's file store (``[storage]``): the bucket and prefix of
    ``url = "s3://..."`` (credentials from the AWS environment variables or
    credential files), else the local folder.

    Raises
    ------
    ConfigError
        When the object store cannot be reached with those credentials (no
        such bucket, access denied, no credentials, nothing at ``endpoint_url``).
    """
    s3 = settings.storage.s3
    if s3 is None:
        return LocalStore(settings.store_path)
    from pacsdash.archive.s3store import S3Store

    bucket, prefix = s3
    store = S3Store(bucket, prefix, endpoint_url=settings.storage.endpoint_url or None,
                    region=settings.storage.region or None)
    try:
        store.check()
    except OSError as exc:
        where = f" at {settings.storage.endpoint_url}" if settings.storage.endpoint_url else ""
        raise ConfigError(f"[storage] url {settings.storage.url}{where}: {exc}") from None
    return store


#: A home's own id (made once): whose journal position and clean stop a shared index keeps.
HOME_ID = "home.id"


def home_id(home: Path) -> str:
    """This home's id, made at the first call: servers sharing one PostgreSQL
    index each keep their own journal, so the index keeps each one's state apart."""
    path = home / HOME_ID
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        made = uuid.uuid4().hex
        try:
            with open(path, "x", encoding="ascii") as handle:  # one process makes it
                handle.write(made + "\n")
            return made
        except FileExistsError:
            return path.read_text(encoding="ascii").strip()


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
    if settings.index.url:
        # PostgreSQL: the index in the database (migrated as it opens), its journal in the home.
        from pacsdash.archive.pg_index import PostgresIndex

        index = PostgresIndex(settings.index.url, owner=home_id(settings.home))
        try:
            return Archive.open_index(open_store(settings), index, settings.index_path.with_name("index.journal"),
                                      settings.label_rules)
        except BaseException:
            index.close()
            raise
    return Archive.open_home(settings.store_path, settings.index_path, settings.label_rules,
                             store=open_store(settings))


def worker_archive(settings: Settings, index: Any) -> Archive:
    """A DICOM worker's archive: the home's store, and the server process's
    index reached through ``index`` (:class:`~pacsdash.archive.remote.RemoteIndex`)."""
    return Archive(open_store(settings), index)
