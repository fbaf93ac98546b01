"""Study labels: what access by study is decided on.

A study holds any number of labels (``trial-7``, ``teaching``); a user or a
DICOM peer restricted to labels sees only the studies holding one of them
(:class:`~pacsdash.archive.query.Scope`, applied by the query compiler).
Labels are set by hand (``pacsdash labels add``, the JSON API, the dashboard)
or by rules in the config (``[[label_rules]]``): a new instance sent by a
calling AE title and matching attribute values gives its study the rule's
label, in the same transaction that indexes it, so that no restricted user
ever sees a study before, or without, its labels.

The statements here run on the index's connection; changes only from the
archive's writer thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from pacsdash.archive.attributes import Level
from pacsdash.archive.query import DUCKDB, LABELS_TABLE, Dialect, Query, conditions

SCHEMA = f"""CREATE TABLE IF NOT EXISTS {LABELS_TABLE} (
    "StudyInstanceUID" VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    PRIMARY KEY ("StudyInstanceUID", label)
)"""


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Make the labels table if absent."""
    con.execute(SCHEMA)


def of_study(cur: duckdb.DuckDBPyConnection, study_uid: str) -> list[str]:
    """The labels of one study, sorted."""
    rows = cur.execute(f'SELECT label FROM {LABELS_TABLE} WHERE "StudyInstanceUID" = ? ORDER BY label',
                       [study_uid]).fetchall()
    return [r[0] for r in rows]


def of_studies(cur: duckdb.DuckDBPyConnection, study_uids: list[str]) -> dict[str, list[str]]:
    """Labels of several studies: StudyInstanceUID -> sorted labels (studies without any left out)."""
    out: dict[str, list[str]] = {}
    rows = cur.execute(f'SELECT "StudyInstanceUID", label FROM {LABELS_TABLE} WHERE "StudyInstanceUID" IN '
                       f"(SELECT unnest(?::VARCHAR[])) ORDER BY label", [study_uids]).fetchall()
    for study, label in rows:
        out.setdefault(study, []).append(label)
    return out


def add(cur: duckdb.DuckDBPyConnection, study_uid: str, label: str) -> bool:
    """Give a study a label; False if it had it already."""
    if cur.execute(f'SELECT 1 FROM {LABELS_TABLE} WHERE "StudyInstanceUID" = ? AND label = ?',
                   [study_uid, label]).fetchone():
        return False
    cur.execute(f"INSERT INTO {LABELS_TABLE} VALUES (?, ?)", [study_uid, label])
    return True


def remove(cur: duckdb.DuckDBPyConnection, study_uid: str, label: str) -> bool:
    """Take a label from a study; False if it did not have it."""
    found = cur.execute(f'SELECT 1 FROM {LABELS_TABLE} WHERE "StudyInstanceUID" = ? AND label = ?',
                        [study_uid, label]).fetchone()
    if found:
        cur.execute(f'DELETE FROM {LABELS_TABLE} WHERE "StudyInstanceUID" = ? AND label = ?', [study_uid, label])
    return bool(found)


def drop_studies(cur: duckdb.DuckDBPyConnection, study_uids: Iterable[str]) -> None:
    """Forget the labels of studies that are gone (within the caller's transaction)."""
    uids = list(study_uids)
    if uids:
        cur.execute(f'DELETE FROM {LABELS_TABLE} WHERE "StudyInstanceUID" IN (SELECT unnest(?::VARCHAR[]))', [uids])


def drop_orphans(cur: duckdb.DuckDBPyConnection) -> None:
    """Forget the labels of studies no longer indexed (within the caller's transaction)."""
    cur.execute(f'DELETE FROM {LABELS_TABLE} l WHERE NOT EXISTS '
                f'(SELECT 1 FROM studies s WHERE s."StudyInstanceUID" = l."StudyInstanceUID")')


@dataclass(frozen=True)
class CompiledRule:
    """A ``[[label_rules]]`` entry ready to run: the label, the calling AE
    title it asks for (empty: any) and SQL conditions on the new instances."""

    label: str
    calling_aet: str
    where: str
    params: tuple

    def applies_to(self, origin: str) -> bool:
        """Whether an instance received from ``origin`` (``dicom:AET@host:port``, ``http:user``...) may match."""
        return not self.calling_aet or origin.startswith(f"dicom:{self.calling_aet}@")


def compile_rules(rules: Iterable[object], dialect: Dialect = DUCKDB) -> list[CompiledRule]:
    """Rules (:class:`pacsdash.config.LabelRule`) compiled once, in the index's
    SQL ``dialect``; a bad attribute or value raises
    :class:`~pacsdash.archive.query.InvalidQuery` when the server starts, not
    at the first instance."""
    out = []
    for rule in rules:
        where, params = conditions(Query(Level.IMAGE, dict(rule.where)), dialect)  # type: ignore[attr-defined]
        out.append(CompiledRule(rule.label, rule.calling_aet, " AND ".join(where) or "true", tuple(params)))  # type: ignore[attr-defined]
    return out


def claim_new(cur: duckdb.DuckDBPyConnection, claims: list[tuple[str, tuple[str, ...]]]) -> None:
    """Give studies made by this batch the labels of who stored them
    (``(StudyInstanceUID, labels)``, within the caller's transaction)."""
    pairs = sorted({(study, label) for study, wanted in claims for label in wanted})
    if pairs:
        cur.execute(f"INSERT INTO {LABELS_TABLE} SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]) ON CONFLICT DO NOTHING",
                    [[p[0] for p in pairs], [p[1] for p in pairs]])


def apply_rules(cur: duckdb.DuckDBPyConnection, rules: list[CompiledRule], new: list[tuple[str, str]]) -> None:
    """Label the studies of the new instances ``(SOPInstanceUID, origin)``
    that each rule matches (within the caller's transaction, after they are inserted)."""
    for rule in rules:
        uids = [uid for uid, origin in new if rule.applies_to(origin)]
        if not uids:
            continue
        cur.execute(
            f'INSERT INTO {LABELS_TABLE} SELECT DISTINCT i."StudyInstanceUID", ? FROM instances i '
            'JOIN series se ON i."SeriesInstanceUID" = se."SeriesInstanceUID" '
            'JOIN studies s ON i."StudyInstanceUID" = s."StudyInstanceUID" '
            f'WHERE i."SOPInstanceUID" IN (SELECT unnest(?::VARCHAR[])) AND {rule.where} ON CONFLICT DO NOTHING',
            [rule.label, uids, *rule.params],
        )
