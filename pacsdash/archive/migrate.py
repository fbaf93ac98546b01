"""``pacsdash migrate``: move a home's archive to another index and store.

Between the embedded default (``duckdb:PATH`` + ``file:PATH``) and a site's
PostgreSQL and S3-compatible bucket (``postgresql://...`` + ``s3://bucket/prefix``),
either way. The source is only read, so an interruption loses nothing:

1. every instance is copied through the destination archive's own ingest
   (file or object first, then its index row, as any C-STORE), and read back:
   its SHA-256 must equal the source's;
2. instances already in the destination (a migration run again after an
   interruption) are not copied again but verified the same way, and a
   destination copy that differs is an error naming it;
3. the study labels, the audit trail (each entry keeping its time) and the
   pseudonym map follow; each is copied only where the destination lacks it;
4. only then is ``pacsdash.toml`` rewritten to name the destination, keeping
   the rest of the file.

The destination's own label rules are not applied (the labels are copied),
and each instance is recorded as received now, from ``migrate``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pacsdash.archive.attributes import Level
from pacsdash.archive.index import InstanceLocation
from pacsdash.config import ConfigError, IndexSettings, Settings, StorageSettings, check_storage

LOGGER = logging.getLogger(__name__)
#: Instances read from the source index at a time.
BATCH = 500
CHUNK = 1 << 20


class MigrationError(RuntimeError):
    """The migration cannot go on; nothing was changed in the source, and the config still names it."""


@dataclass
class MigrationReport:
    """What a migration did."""

    copied: int = 0
    verified: int = 0
    labels: int = 0
    records: int = 0
    subjects: int = 0
    problems: list[str] = field(default_factory=list)


def target_settings(settings: Settings, index_url: str, storage_url: str, endpoint_url: str = "",
                    region: str = "") -> Settings:
    """``settings`` with the index and store the URLs name (``duckdb:PATH`` or
    ``postgresql://...``; ``file:PATH`` or ``s3://bucket/prefix``)."""
    if index_url.startswith("duckdb:"):
        path = index_url[len("duckdb:"):]
        if not path:
            raise ConfigError("--index duckdb:PATH names no file")
        index = IndexSettings(path=path)
    elif index_url.startswith(("postgresql://", "postgres://")):
        index = IndexSettings(url=index_url)
    else:
        raise ConfigError(f"--index must be duckdb:PATH or postgresql://user@host:port/database, got {index_url!r}")
    if storage_url.startswith("s3://"):
        endpoint_url = endpoint_url or (settings.storage.endpoint_url if settings.storage.s3 else "")
        region = region or (settings.storage.region if settings.storage.s3 else "")
    storage = check_storage(StorageSettings(url=storage_url, endpoint_url=endpoint_url, region=region), {"url"})
    target = replace(settings, index=index, storage=storage, label_rules=())
    if index.url:  # the same checks as a config file's
        from pacsdash.config import check_index_url

        check_index_url(index.url)
    return target


def _same_place(a: Settings, b: Settings) -> bool:
    same_index = (a.index.url or str(a.index_path.resolve())) == (b.index.url or str(b.index_path.resolve()))
    same_store = (a.storage.url if a.storage.s3 else str(a.store_path.resolve())) == \
        (b.storage.url if b.storage.s3 else str(b.store_path.resolve()))
    return same_index or same_store


def _sha256(stream: Any) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _batches(locations: list[InstanceLocation]) -> Iterator[list[InstanceLocation]]:
    for start in range(0, len(locations), BATCH):
        yield locations[start:start + BATCH]


def migrate(source: Any, target: Any, progress: Callable[[int], None] | None = None) -> MigrationReport:
    """Copy every instance, label, audit entry and pseudonym of ``source``
    into ``target`` (two open archives), verifying each instance by SHA-256.

    Raises
    ------
    MigrationError
        When an instance cannot be copied or its destination copy differs.
    """
    report = MigrationReport()
    locations = source.locate(Level.IMAGE)
    for batch in _batches(locations):
        present = target.index.known([loc.SOPInstanceUID for loc in batch])
        for location in batch:
            with source.open(location) as stream:
                raw = stream.read()
            wanted = hashlib.sha256(raw).hexdigest()
            if location.SOPInstanceUID not in present:
                try:
                    target.store_bytes(raw, origin="migrate")
                except Exception as exc:  # named, then the whole run stops: the config still names the source
                    raise MigrationError(f"instance {location.SOPInstanceUID}: could not be stored in the "
                                         f"destination: {exc}") from None
                report.copied += 1
            copy = target.locate_instance(location.SOPInstanceUID)
            if copy is None:
                raise MigrationError(f"instance {location.SOPInstanceUID}: not in the destination after copying")
            with target.open(copy) as stream:
                if _sha256(stream) != wanted:
                    raise MigrationError(f"instance {location.SOPInstanceUID}: the destination's copy ({copy.file}) "
                                         "differs from the source's; remove it there and run migrate again")
            report.verified += 1
            if progress:
                progress(1)
    report.labels = _copy_labels(source, target, sorted({loc.StudyInstanceUID for loc in locations}))
    report.records = _copy_records(source, target)
    subjects = source.index.subjects()
    target.remember_subjects(subjects)
    report.subjects = len(subjects)
    return report


def _copy_labels(source: Any, target: Any, studies: list[str]) -> int:
    copied = 0
    for start in range(0, len(studies), BATCH):
        chunk = studies[start:start + BATCH]
        have = target.index.labels_of(chunk)
        for study, labels in source.index.labels_of(chunk).items():
            for label in labels:
                if label not in have.get(study, []):
                    target.add_label(study, label)
                    copied += 1
    return copied


def _copy_records(source: Any, target: Any) -> int:
    """The audit trail, oldest first, each entry with its time; an entry the
    destination has already (same time, actor, action, outcome, studies) is skipped."""

    def key(record: Any) -> tuple:
        return (record.time.timestamp() if record.time else None, record.actor, record.action, record.outcome,
                tuple(record.studies))

    def every(archive: Any) -> list[Any]:
        found, offset = [], 0
        while page := archive.records(limit=10_000, offset=offset):
            found.extend(page)
            offset += len(page)
        return found

    have = {key(r) for r in every(target)}
    copied = 0
    for record in reversed(every(source)):
        if key(record) in have:
            continue
        target.record(replace(record, id=None))
        copied += 1
    return copied


def rewrite_config(home: Path, target: Settings) -> None:
    """Make ``HOME/pacsdash.toml`` name the destination's index and store,
    keeping every other line (see :func:`pacsdash.config.set_option`)."""
    from pacsdash.config import remove_option, set_option

    if target.index.url:
        set_option(home, "index", "url", target.index.url)
        remove_option(home, "index", "path")
    else:
        set_option(home, "index", "path", target.index.path)
        remove_option(home, "index", "url")
    for key in ("backend", "path", "endpoint_url", "region"):
        remove_option(home, "storage", key)
    set_option(home, "storage", "url", target.storage.url or f"file:{target.storage.path}")
    for key in ("endpoint_url", "region"):
        value = getattr(target.storage, key)
        if value:
            set_option(home, "storage", key, value)


def check_target(settings: Settings, target: Settings) -> None:
    """Refuse a destination that is the source (or shares its index or store)."""
    if _same_place(settings, target):
        raise ConfigError("the destination shares the index or the store with the source: give other ones")
