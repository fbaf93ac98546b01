"""The metadata index: patients, studies, series and instances in DuckDB.

DuckDB lets one process write a database file. The server owns it; inside
the process every thread reads through its own cursor and exactly one thread
(the archive's writer) changes it, committing whole batches at a time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb

from pacsdash.archive.attributes import TABLE_ATTRIBUTES, Level
from pacsdash.archive import labels, records, summaries
from pacsdash.archive.parsing import InstanceRecord
from pacsdash.archive.query import DUCKDB, Dialect, Query, Scope, compile_count, compile_locate, compile_query

#: Columns beside the DICOM attributes. Counts and ModalitiesInStudy are
#: stored too, kept up to date by :mod:`pacsdash.archive.summaries`.
_HOUSEKEEPING = {
    Level.PATIENT: {"received_at": "TIMESTAMPTZ"},
    Level.STUDY: {"received_at": "TIMESTAMPTZ"},
    Level.SERIES: {"received_at": "TIMESTAMPTZ"},
    Level.IMAGE: {
        "file": "VARCHAR NOT NULL",
        "size": "BIGINT",
        "origin": "VARCHAR",
        "received_at": "TIMESTAMPTZ",
        "attributes": "VARCHAR",
    },
}
#: Column types other than VARCHAR, for :func:`_insert_columns`.
_SQL_TYPES = {"size": "BIGINT"}


@dataclass(frozen=True)
class InstanceLocation:
    """Where an instance's file is and how it is encoded."""

    SOPInstanceUID: str
    SOPClassUID: str
    TransferSyntaxUID: str
    StudyInstanceUID: str
    SeriesInstanceUID: str
    file: str
    size: int


class Index(Protocol):
    """What the archive needs of a metadata index (:class:`DuckDBIndex`,
    :class:`~pacsdash.archive.pg_index.PostgresIndex`)."""

    #: The SQL the index speaks (label rules are compiled in it).
    dialect: Dialect
    #: Whether other servers change it too (then nothing found is remembered across requests).
    shared: bool
    #: ``[[label_rules]]`` applied to each batch of new instances.
    label_rules: list[labels.CompiledRule]

    def add(self, records: list[InstanceRecord], journal_position: int | None = None) -> list[bool]: ...
    def find(self, query: Query) -> list[dict[str, Any]]: ...
    def count(self, query: Query) -> int: ...
    def known(self, sop_uids: Iterable[str]) -> set[str]: ...
    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None, **keys: str) -> list[InstanceLocation]: ...
    def locate_matching(self, query: Query) -> list[InstanceLocation]: ...
    def delete_study(self, study_uid: str) -> list[str]: ...
    def remove_files(self, keys: list[str]) -> None: ...
    def mark_open(self) -> bool: ...
    def journal_position(self) -> int: ...
    def file_of(self, sop_uid: str) -> str | None: ...
    def all_sop_uids(self) -> Iterator[str]: ...
    def mark_closed(self) -> None: ...
    def files(self) -> set[str]: ...
    def add_record(self, record: records.ActionRecord) -> int: ...
    def records(self, action: str | None = None, actor: str | None = None, study: str | None = None,
                limit: int = 100, offset: int = 0, since: Any = None, until: Any = None) -> list[records.ActionRecord]: ...
    def remember_subjects(self, subjects: list[tuple[str, str, str]]) -> None: ...
    def subject(self, pseudonym: str) -> dict[str, str] | None: ...
    def subjects(self) -> list[tuple[str, str, str]]: ...
    def summary(self, scope: Scope | None = None) -> dict[str, Any]: ...
    def labels_of(self, study_uids: list[str]) -> dict[str, list[str]]: ...
    def add_label(self, study_uid: str, label: str) -> bool: ...
    def remove_label(self, study_uid: str, label: str) -> bool: ...
    def close(self) -> None: ...


def _schema() -> list[str]:
    statements = []
    for level, attrs in TABLE_ATTRIBUTES.items():
        cols = []
        for attr in attrs:
            if attr.derived:
                cols.append(f'"{attr.keyword}" {summaries.SUMMARY_COLUMNS[level][attr.keyword]}')
            elif attr.keyword == level.unique_key:
                cols.append(f'"{attr.keyword}" VARCHAR PRIMARY KEY')
            else:
                cols.append(f'"{attr.keyword}" VARCHAR')
        for name, sql_type in _HOUSEKEEPING[level].items():
            cols.append(f'"{name}" {sql_type}')
        statements.append(f"CREATE TABLE IF NOT EXISTS {level.table} ({', '.join(cols)})")
    return statements


def _columns(level: Level) -> list[str]:
    return [a.keyword for a in TABLE_ATTRIBUTES[level] if not a.derived]


def _insert_columns(cur: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: list[list], conflict: str = "") -> None:
    """Insert ``rows`` (values in ``columns`` order, received now) in one statement.

    The values travel column by column as list parameters, unnested by
    DuckDB: one short statement to plan whatever the number of rows, where a
    VALUES list of as many placeholders costs more to parse and bind than
    the insert itself.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    unnests = ", ".join(f"unnest(?::{_SQL_TYPES.get(c, 'VARCHAR')}[])" for c in columns)
    cur.execute(
        f'INSERT INTO {table} ({names}, "received_at") SELECT {unnests}, now() {conflict}',
        [list(values) for values in zip(*rows)],
    )


class DuckDBIndex:
    """The index in one DuckDB file."""

    dialect = DUCKDB
    #: One process owns the file: what it remembers stays true until it changes it.
    shared = False

    def __init__(self, path: Path | str, memory_limit: str = "1GB") -> None:
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path, config={"memory_limit": memory_limit})
        except duckdb.IOException as exc:
            raise RuntimeError(
                f"cannot open the index {self.path}: {exc}. Is a pacsdash server "
                "already running on this home?"
            ) from None
        for statement in _schema():
            self._con.execute(statement)
        records.create(self._con)
        labels.create(self._con)
        self._migrate()
        #: ``[[label_rules]]`` applied to each batch of new instances (see :mod:`pacsdash.archive.labels`).
        self.label_rules: list[labels.CompiledRule] = []
        #: The writer's memory of the values its recent series have (see :class:`summaries.SeriesValues`).
        self._values = summaries.SeriesValues()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Bring an index written by an older pacsdash up to date, in one transaction
        (a stop half-way leaves it as it was, to be migrated at the next start)."""
        self._con.execute("BEGIN TRANSACTION")
        try:
            values_missing = summaries.create_values(self._con)
            if summaries.add_missing_columns(self._con):
                summaries.refresh(self._con, None, None)
            elif values_missing:  # written before the values table: fill it once, from the instances' JSON
                summaries.refresh_values(self._con, None)
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise

    # -- connections -------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
            with self._lock:
                self._cursors.append(cursor)
        return cursor

    def close(self) -> None:
        """Close every cursor and the database."""
        with self._lock:
            for cursor in self._cursors:
                try:
                    cursor.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
        self._con.close()

    # -- writing (the archive's writer thread only) ---------------------------
    def _load_caches(self) -> None:
        """Keys of the parent tables, so the writer inserts a parent only once."""
        cur = self._cursor()
        self._parents: dict[Level, set[str]] = {
            level: {r[0] for r in cur.execute(f'SELECT "{level.unique_key}" FROM {level.table}').fetchall()}
            for level in (Level.PATIENT, Level.STUDY, Level.SERIES)
        }

    def add(self, records: list[InstanceRecord], journal_position: int | None = None) -> list[bool]:
        """Insert ``records`` in one transaction.

        Returns, per record, True if it was added and False if its SOP
        Instance UID was already indexed (or came earlier in the batch): the
        archive keeps the first copy it received. ``journal_position``, the
        sequence number of the last journal entry among ``records``, is
        stored in the same transaction (see :mod:`pacsdash.archive.journal`).
        """
        if not hasattr(self, "_parents"):
            self._load_caches()
        first: dict[str, InstanceRecord] = {}
        for record in records:
            first.setdefault(record.SOPInstanceUID, record)
        fresh = list(first.values())
        cur = self._cursor()
        try:
            self._insert(cur, fresh, journal_position)
        except duckdb.ConstraintException:
            # Some instances are indexed already (rare): insert only the others.
            known = self._known(cur, list(first))
            fresh = [r for r in fresh if r.SOPInstanceUID not in known]
            self._insert(cur, fresh, journal_position)
        inserted = {r.SOPInstanceUID for r in fresh}
        return [r.SOPInstanceUID in inserted and first[r.SOPInstanceUID] is r for r in records]

    def _insert(self, cur: duckdb.DuckDBPyConnection, records: list[InstanceRecord], journal_position: int | None) -> None:
        """Insert new parents, then the instances, in one transaction."""
        new_parents: dict[Level, dict[str, list]] = {Level.PATIENT: {}, Level.STUDY: {}, Level.SERIES: {}}
        for record in records:
            for level, rows in new_parents.items():
                values = record.columns[level]
                key = values[level.unique_key] or ""
                if key not in self._parents[level] and key not in rows:
                    rows[key] = [values[c] for c in _columns(level)]
        cur.execute("BEGIN TRANSACTION")
        try:
            for level, rows in new_parents.items():
                if rows:
                    _insert_columns(cur, level.table, _columns(level), list(rows.values()), "ON CONFLICT DO NOTHING")
            if records:
                image_columns = _columns(Level.IMAGE)
                rows = [
                    [r.columns[Level.IMAGE][c] for c in image_columns]
                    + [r.file, r.size, r.origin, json.dumps(r.attributes, ensure_ascii=False)]
                    for r in records
                ]
                _insert_columns(cur, "instances", image_columns + ["file", "size", "origin", "attributes"], rows)
            if self.label_rules and records:
                labels.apply_rules(cur, self.label_rules, [(r.SOPInstanceUID, r.origin) for r in records])
            labels.claim_new(cur, [(r.StudyInstanceUID, r.labels) for r in records
                                   if r.labels and r.StudyInstanceUID in new_parents[Level.STUDY]])
            summaries.add_instances(cur, records, new_parents[Level.SERIES])
            values = self._values.add(cur, records, new_parents[Level.SERIES])
            if journal_position is not None:
                # An UPDATE of the row (made once): a DuckDB INSERT OR REPLACE
                # costs several times more CPU, at every commit.
                position = [str(journal_position)]
                updated = cur.execute("UPDATE archive_state SET value = ? WHERE name = 'journal_position'", position)
                if not updated.fetchone()[0]:
                    cur.execute("INSERT INTO archive_state VALUES ('journal_position', ?)", position)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            self._values.forget()  # it may hold pairs of the rolled back rows
            raise
        self._values.remember(values)
        for level, rows in new_parents.items():
            self._parents[level].update(rows)

    def mark_open(self) -> bool:
        """Record that the archive is open; return whether the last stop was clean."""
        cur = self._cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS archive_state (name VARCHAR PRIMARY KEY, value VARCHAR)")
        row = cur.execute("SELECT value FROM archive_state WHERE name = 'state'").fetchone()
        fresh = row is None and cur.execute("SELECT count(*) FROM instances").fetchone()[0] == 0
        cur.execute("INSERT OR REPLACE INTO archive_state VALUES ('state', 'open')")
        return fresh or (row is not None and row[0] == "closed")

    def journal_position(self) -> int:
        """Sequence number of the last journal entry applied (0 if none)."""
        row = self._cursor().execute("SELECT value FROM archive_state WHERE name = 'journal_position'").fetchone()
        return int(row[0]) if row else 0

    def all_sop_uids(self) -> Iterator[str]:
        """Every indexed SOP Instance UID, fetched in chunks."""
        cur = self._con.cursor()
        try:
            cur.execute('SELECT "SOPInstanceUID" FROM instances')
            while rows := cur.fetchmany(50_000):
                yield from (r[0] for r in rows)
        finally:
            cur.close()

    def file_of(self, sop_uid: str) -> str | None:
        """Store key of an indexed instance, or None."""
        row = self._cursor().execute('SELECT file FROM instances WHERE "SOPInstanceUID" = ?', [sop_uid]).fetchone()
        return row[0] if row else None

    def mark_closed(self) -> None:
        """Record a clean stop."""
        self._cursor().execute("INSERT OR REPLACE INTO archive_state VALUES ('state', 'closed')")

    def remove_files(self, keys: list[str]) -> None:
        """Drop the index rows of instances stored under ``keys``."""
        if not keys:
            return
        cur = self._cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            touched = cur.execute(
                'SELECT DISTINCT "StudyInstanceUID", "SeriesInstanceUID" FROM instances WHERE file IN (SELECT unnest(?))',
                [keys],
            ).fetchall()
            cur.execute("DELETE FROM instances WHERE file IN (SELECT unnest(?))", [keys])
            for level, key in ((Level.SERIES, "SeriesInstanceUID"), (Level.STUDY, "StudyInstanceUID")):
                cur.execute(f'DELETE FROM {level.table} t WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i."{key}" = t."{key}")')
            cur.execute('DELETE FROM patients p WHERE NOT EXISTS (SELECT 1 FROM studies s WHERE s."PatientID" = p."PatientID")')
            summaries.refresh(cur, {study for study, _ in touched}, {series for _, series in touched})
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            self._values.forget()
        self._load_caches()

    def delete_study(self, study_uid: str) -> list[str]:
        """Remove a study, its series and instances; return their file keys."""
        cur = self._cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            files = [r[0] for r in cur.execute('SELECT file FROM instances WHERE "StudyInstanceUID" = ?', [study_uid]).fetchall()]
            row = cur.execute('SELECT "PatientID" FROM studies WHERE "StudyInstanceUID" = ?', [study_uid]).fetchone()
            cur.execute('DELETE FROM instances WHERE "StudyInstanceUID" = ?', [study_uid])
            cur.execute(f'DELETE FROM {summaries.VALUES_TABLE} WHERE "StudyInstanceUID" = ?', [study_uid])
            cur.execute('DELETE FROM series WHERE "StudyInstanceUID" = ?', [study_uid])
            cur.execute('DELETE FROM studies WHERE "StudyInstanceUID" = ?', [study_uid])
            labels.drop_studies(cur, [study_uid])
            if row is not None:
                cur.execute(
                    'DELETE FROM patients WHERE "PatientID" = ? AND NOT EXISTS '
                    '(SELECT 1 FROM studies WHERE "PatientID" = ?)',
                    [row[0], row[0]],
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            self._values.forget()
        if hasattr(self, "_parents"):
            self._load_caches()
        return files

    # -- reading (any thread) --------------------------------------------------
    @staticmethod
    def _known(cur: duckdb.DuckDBPyConnection, sop_uids: list[str]) -> set[str]:
        if not sop_uids:
            return set()
        rows = cur.execute(
            'SELECT "SOPInstanceUID" FROM instances WHERE "SOPInstanceUID" IN (SELECT unnest(?))', [sop_uids]
        ).fetchall()
        return {r[0] for r in rows}

    def known(self, sop_uids: Iterable[str]) -> set[str]:
        """The subset of ``sop_uids`` already indexed."""
        return self._known(self._cursor(), list(sop_uids))

    def find(self, query: Query) -> list[dict[str, Any]]:
        """Rows matching ``query``: keyword -> DICOM string value (or None)."""
        compiled = compile_query(query)
        rows = self._cursor().execute(compiled.sql, compiled.params).fetchall()
        keywords = [a.keyword for a in compiled.columns] + compiled.extra_keys
        return [{k: (None if v is None else str(v)) for k, v in zip(keywords, row)} for row in rows]

    def count(self, query: Query) -> int:
        """How many entities match ``query`` (paging ignored)."""
        sql, params = compile_count(query)
        return int(self._cursor().execute(sql, params).fetchone()[0])

    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None,
               **keys: str) -> list[InstanceLocation]:
        """Instances under one entity, or matching UID keys.

        Parameters
        ----------
        level
            Level of ``uid``.
        uid
            UID (or PatientID) of the entity whose instances are wanted.
        scope
            Whose request this is: only instances of studies it may see.
        keys
            Further exact keys: StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID.
        """
        sql, params = compile_locate(level, uid, scope, keys, DUCKDB)
        return [InstanceLocation(*row) for row in self._cursor().execute(sql, params).fetchall()]

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Instances matching an IMAGE-level ``query``, with their files."""
        if query.level is not Level.IMAGE:
            raise ValueError("locate_matching takes an IMAGE-level query")
        compiled = compile_query(
            Query(Level.IMAGE, query.filters, fields=["TransferSyntaxUID"], scope=query.scope),
            extra_columns=("i.file", "i.size"),
        )
        names = [a.keyword for a in compiled.columns]
        out = []
        for row in self._cursor().execute(compiled.sql, compiled.params).fetchall():
            values = dict(zip(names, row))
            out.append(
                InstanceLocation(
                    values["SOPInstanceUID"],
                    values["SOPClassUID"],
                    values["TransferSyntaxUID"],
                    values["StudyInstanceUID"],
                    values["SeriesInstanceUID"],
                    row[-2],
                    row[-1],
                )
            )
        return out

    def files(self) -> set[str]:
        """Every file key the index refers to."""
        return {r[0] for r in self._cursor().execute("SELECT file FROM instances").fetchall()}

    # -- records of actions (see :mod:`pacsdash.archive.records`) ----------------
    def add_record(self, record: records.ActionRecord) -> int:
        """Append an action record (writer thread); return its id."""
        return records.append(self._cursor(), record)

    def records(self, action: str | None = None, actor: str | None = None, study: str | None = None,
                limit: int = 100, offset: int = 0, since: Any = None, until: Any = None) -> list[records.ActionRecord]:
        return records.select(self._cursor(), action, actor, study, limit, offset, since, until)

    def remember_subjects(self, subjects: list[tuple[str, str, str]]) -> None:
        """Keep whom each pseudonym stands for (writer thread)."""
        cur = self._cursor()
        for pseudonym, patient_id, issuer in subjects:
            records.remember_subject(cur, pseudonym, patient_id, issuer)

    def subject(self, pseudonym: str) -> dict[str, str] | None:
        return records.subject(self._cursor(), pseudonym)

    def subjects(self) -> list[tuple[str, str, str]]:
        """Every pseudonym kept, with whom it stands for (for ``pacsdash migrate``)."""
        return records.all_subjects(self._cursor())

    # -- study labels (see :mod:`pacsdash.archive.labels`) ------------------------
    def labels_of(self, study_uids: list[str]) -> dict[str, list[str]]:
        """StudyInstanceUID -> its labels, for those of ``study_uids`` that have any."""
        return labels.of_studies(self._cursor(), list(study_uids))

    def add_label(self, study_uid: str, label: str) -> bool:
        """Label an indexed study (writer thread); False if it had the label.

        Raises
        ------
        KeyError
            If no such study is indexed.
        """
        cur = self._cursor()
        if not cur.execute('SELECT 1 FROM studies WHERE "StudyInstanceUID" = ?', [study_uid]).fetchone():
            raise KeyError(study_uid)
        return labels.add(cur, study_uid, label)

    def remove_label(self, study_uid: str, label: str) -> bool:
        """Take a label from a study (writer thread); False if it did not have it."""
        return labels.remove(self._cursor(), study_uid, label)

    def summary(self, scope: Scope | None = None) -> dict[str, Any]:
        """Totals; ``by_modality`` as (modality, studies); ``by_month`` as (YYYYMM, studies);
        of the studies ``scope`` may see."""
        cursor = self._cursor()
        visible, params = ("", []) if scope is None else scope.studies_sql()
        within = f' AND "StudyInstanceUID" IN ({visible})' if scope is not None else ""
        by_modality = cursor.execute(
            'SELECT coalesce("Modality", \'(none)\') AS modality, count(DISTINCT "StudyInstanceUID") AS studies '
            f"FROM series WHERE true{within} GROUP BY 1 ORDER BY 2 DESC", params
        ).fetchall()
        by_month = cursor.execute(
            'SELECT substr("StudyDate", 1, 6) AS month, count(*) AS studies FROM studies '
            f"WHERE regexp_full_match(\"StudyDate\", '[0-9]{{8}}'){within} GROUP BY 1 ORDER BY 1", params
        ).fetchall()
        return {"totals": self.totals(scope), "by_modality": by_modality, "by_month": by_month}

    def totals(self, scope: Scope | None = None) -> dict[str, int]:
        """Number of patients, studies, series and instances (that ``scope`` may see)."""
        cur = self._cursor()
        if scope is None:
            return {
                level.table: int(cur.execute(f"SELECT count(*) FROM {level.table}").fetchone()[0]) for level in Level
            }
        visible, params = scope.studies_sql()
        row = cur.execute(
            'SELECT count(DISTINCT "PatientID"), count(*), coalesce(sum("NumberOfStudyRelatedSeries"), 0), '
            f'coalesce(sum("NumberOfStudyRelatedInstances"), 0) FROM studies WHERE "StudyInstanceUID" IN ({visible})',
            params,
        ).fetchone()
        return dict(zip((level.table for level in Level), (int(v) for v in row)))
