"""The metadata index in PostgreSQL (``[index] url = "postgresql://user@host:port/db"``).

The same tables, matching and summaries as :class:`~pacsdash.archive.index.DuckDBIndex`,
behind the same :class:`~pacsdash.archive.index.Index` interface, on psycopg 3
with a connection pool. The query compiler writes PostgreSQL's SQL
(:data:`~pacsdash.archive.query.POSTGRESQL`); statements are written with
``?`` for each bound value, as for DuckDB, and turned into psycopg's ``%s``
here (:func:`pyformat`): values never reach SQL text.

The password is never in the URL (the config refuses one): libpq reads it
from ``PGPASSWORD`` or the password file (``PGPASSFILE``, ``~/.pgpass``).

Schema versions
    ``schema_version`` holds the migrations applied (:data:`MIGRATIONS`, in
    order). Every process that opens the index applies those missing, in one
    transaction holding an advisory lock (``pg_advisory_xact_lock``), so two
    commands starting at once neither apply a migration twice nor see half of
    one; ``users add`` may run before the first ``serve``.

Several writers
    PostgreSQL lets several processes (later, several servers) write. So
    nothing here trusts a process-local memory of the database: parents are
    inserted ``ON CONFLICT DO NOTHING`` and what a batch created is what the
    inserts return; a study's counts and lists change in place from its
    row's current values (:data:`pacsdash.archive.summaries._ADD_TO_STUDIES_PG`).
    One memory remains, :class:`~pacsdash.archive.summaries.SeriesValues`:
    it only spares inserting (series, tag, value) rows a series already has
    (the table's unique index refuses a repeat, so a stale memory cannot
    duplicate a row); after another process's ``remove_files`` recomputed a
    series' values it may wrongly believe a pair is still there, until it is
    forgotten. The archive state (``state``, ``journal_position``) is kept
    per server (``owner``, the home's id): each server has its own journal,
    and its clean or unclean stop is its own.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pacsdash.archive import labels, records, summaries
from pacsdash.archive.attributes import TABLE_ATTRIBUTES, Level
from pacsdash.archive.index import InstanceLocation, _columns, _schema
from pacsdash.archive.parsing import InstanceRecord
from pacsdash.archive.query import POSTGRESQL, Query, Scope, compile_count, compile_locate, compile_query

LOGGER = logging.getLogger(__name__)

#: Connections the pool keeps at most: the server's threads (DICOM
#: associations, HTTP handlers, dashboard sessions) wait for one beyond that.
POOL_SIZE = 10
#: Key of the advisory lock migrations hold (any constant; "pacsdash" in ASCII).
MIGRATION_LOCK = 0x7061637364617368
_SQL_TYPES = {"size": "BIGINT"}


class PostgresIndexError(RuntimeError):
    """The PostgreSQL index cannot be reached or prepared; the message says why and what to check."""


def check_url(url: str) -> str:
    """``url`` if it is a ``postgresql://`` URL without a password; else ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{url!r} is not a postgresql:// URL (postgresql://user@host:port/database)")
    if parts.password is not None:
        raise ValueError("the URL holds a password: give it through PGPASSWORD or a password file "
                         "(PGPASSFILE, ~/.pgpass) instead, never in the config")
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ValueError(f"{_without_secrets(url)!r} names no database (postgresql://user@host:port/database)")
    return url


def _without_secrets(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.username + '@' if parts.username else ''}{parts.hostname or ''}" \
           f"{':' + str(parts.port) if parts.port else ''}{parts.path}"


# -- statements -----------------------------------------------------------------
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@functools.lru_cache(maxsize=4096)
def pyformat(sql: str) -> str:
    """``sql`` with each ``?`` placeholder as psycopg's ``%s`` (and ``%`` as ``%%``);
    quoted literals and identifiers keep their question marks."""
    def swap(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _TOKENS.sub(swap, sql)


class _Cursor:
    """A psycopg cursor that takes the ``?`` statements the archive's modules write."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> "_Cursor":
        if params is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(pyformat(sql), list(params))
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list:
        return self._cursor.fetchall()

    def fetchmany(self, size: int) -> list:
        return self._cursor.fetchmany(size)

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


# -- schema ------------------------------------------------------------------------
_FUNCTIONS = [
    # Names as queries match them (query.Dialect.fold, query._pn_value): ^ as a
    # space, accents dropped (NFD, then the combining marks), lower case.
    # IMMUTABLE, so that expression indexes hold it.
    """CREATE OR REPLACE FUNCTION pacsdash_fold(value text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT lower(regexp_replace(normalize(replace(value, '^', ' '), NFD), '[\\u0300-\\u036f]', '', 'g')) $$""",
    # A number written as DICOM IS/DS text, else NULL (DuckDB's TRY_CAST(... AS DOUBLE)).
    """CREATE OR REPLACE FUNCTION pacsdash_number(value text) RETURNS double precision LANGUAGE sql IMMUTABLE
    PARALLEL SAFE AS $$ SELECT CASE WHEN value ~ '^\\s*[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?\\s*$'
    THEN CAST(value AS double precision) END $$""",
    # Two backslash-separated lists as one, distinct values sorted by code point (summaries._merged).
    """CREATE OR REPLACE FUNCTION pacsdash_merge(current text, added text) RETURNS text LANGUAGE sql IMMUTABLE
    PARALLEL SAFE AS $$ SELECT string_agg(DISTINCT v COLLATE "C", '\\' ORDER BY v COLLATE "C")
    FROM unnest(string_to_array(concat_ws('\\', current, added), '\\')) AS v WHERE v <> '' $$""",
]

_INDEXES = [
    # C-FIND / QIDO / the dashboard: identifiers looked up exactly...
    'CREATE INDEX IF NOT EXISTS studies_patient ON studies ("PatientID")',
    'CREATE INDEX IF NOT EXISTS studies_accession ON studies ("AccessionNumber")',
    # ... the study list, newest first (the dashboard's order), and date ranges (its leading column);
    'CREATE INDEX IF NOT EXISTS studies_date ON studies ("StudyDate" DESC NULLS LAST, "StudyTime" DESC NULLS LAST, '
    '"StudyInstanceUID")',
    # ... names, folded as they are matched: equality and prefix wildcards (DOE*);
    'CREATE INDEX IF NOT EXISTS studies_name ON studies (pacsdash_fold("PatientName") text_pattern_ops)',
    'CREATE INDEX IF NOT EXISTS patients_name ON patients (pacsdash_fold("PatientName") text_pattern_ops)',
    # ... the rows below an entity (joins, EXISTS ties, deletes) and by modality.
    'CREATE INDEX IF NOT EXISTS series_study ON series ("StudyInstanceUID")',
    'CREATE INDEX IF NOT EXISTS series_modality ON series ("Modality")',
    'CREATE INDEX IF NOT EXISTS instances_series ON instances ("SeriesInstanceUID")',
    'CREATE INDEX IF NOT EXISTS instances_study ON instances ("StudyInstanceUID")',
    'CREATE INDEX IF NOT EXISTS instances_file ON instances (file)',
    f'CREATE INDEX IF NOT EXISTS series_values_study ON {summaries.VALUES_TABLE} ("StudyInstanceUID", tag)',
    # One row per (series, tag, value): md5, as a value may be longer than an index row may hold.
    f'CREATE UNIQUE INDEX IF NOT EXISTS series_values_pair ON {summaries.VALUES_TABLE} '
    '("SeriesInstanceUID", tag, md5(value))',
    f"CREATE INDEX IF NOT EXISTS study_labels_label ON {labels.LABELS_TABLE} (label)",
]

#: With pg_trgm: names matched anywhere (*SMITH*), not only by prefix.
_TRIGRAM_INDEXES = [
    'CREATE INDEX IF NOT EXISTS studies_name_trgm ON studies USING gin (pacsdash_fold("PatientName") gin_trgm_ops)',
    'CREATE INDEX IF NOT EXISTS patients_name_trgm ON patients USING gin (pacsdash_fold("PatientName") gin_trgm_ops)',
]


def _create_schema(cur: _Cursor) -> None:
    """Migration 1: the tables, functions and indexes of this version."""
    for statement in _FUNCTIONS:
        cur.execute(statement)
    for statement in _schema():
        cur.execute(statement)
    # The order instances were indexed in (DuckDB's rowid): the first value of a series.
    cur.execute("ALTER TABLE instances ADD COLUMN IF NOT EXISTS rowid BIGINT GENERATED ALWAYS AS IDENTITY")
    cur.execute(
        f'CREATE TABLE IF NOT EXISTS {summaries.VALUES_TABLE} ("StudyInstanceUID" VARCHAR, "SeriesInstanceUID" VARCHAR, '
        "tag VARCHAR, value VARCHAR, rowid BIGINT GENERATED ALWAYS AS IDENTITY)"
    )
    cur.execute(labels.SCHEMA)
    for statement in records.SCHEMA:
        cur.execute(statement)
    cur.execute("CREATE TABLE IF NOT EXISTS archive_state (name VARCHAR PRIMARY KEY, value VARCHAR)")
    for statement in _INDEXES:
        cur.execute(statement)
    _trigram_indexes(cur)


def _trigram_indexes(cur: _Cursor) -> None:
    """pg_trgm's indexes when the extension is there or may be created; else a note (prefix search stays fast)."""
    available = cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone()
    if available:
        cur.execute("SAVEPOINT trgm")
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as exc:  # no privilege: the database owner may create it
            cur.execute("ROLLBACK TO SAVEPOINT trgm")
            LOGGER.warning("pg_trgm cannot be created (%s): names are searched by prefix with an index, "
                           "*within* a name without one", str(exc).strip())
            return
        cur.execute("RELEASE SAVEPOINT trgm")
        for statement in _TRIGRAM_INDEXES:
            cur.execute(statement)
    else:
        LOGGER.warning("the pg_trgm extension is not installed: names are searched by prefix with an index, "
                       "*within* a name without one")


#: The migrations, in order: version i + 1 is ``MIGRATIONS[i]``. Append, never change one.
MIGRATIONS: list[tuple[str, Callable[[_Cursor], None]]] = [
    ("tables, matching functions and indexes", _create_schema),
]


def _add_missing_columns(cur: _Cursor) -> None:
    """Columns of attributes added to :data:`TABLE_ATTRIBUTES` since the tables were made
    (the summaries recomputed when a summary column is new)."""
    present: dict[str, set[str]] = {}
    for table, column in cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
    ).fetchall():
        present.setdefault(table, set()).add(column)
    refresh = False
    for level, attrs in TABLE_ATTRIBUTES.items():
        for attr in attrs:
            if attr.keyword in present.get(level.table, set()):
                continue
            sql_type = summaries.SUMMARY_COLUMNS[level][attr.keyword] if attr.derived else "VARCHAR"
            cur.execute(f'ALTER TABLE {level.table} ADD COLUMN IF NOT EXISTS "{attr.keyword}" {sql_type}')
            refresh = refresh or attr.derived
    if refresh:
        summaries.refresh(cur, None, None, POSTGRESQL)


def migrate(cur: _Cursor) -> int:
    """Apply the migrations the database lacks, inside the caller's transaction,
    holding the migration lock; return the schema version."""
    cur.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
    encoding = cur.execute("SELECT current_setting('server_encoding')").fetchone()[0]
    if encoding != "UTF8":  # names are folded with normalize(), which needs it
        raise PostgresIndexError(f"the index's database is encoded {encoding}: pacsdash needs UTF8 "
                                 "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)")
    cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), description VARCHAR NOT NULL)")
    current = cur.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise PostgresIndexError(
            f"the index's schema is version {current}, newer than this pacsdash knows ({len(MIGRATIONS)}): "
            "upgrade pacsdash")
    for version in range(current + 1, len(MIGRATIONS) + 1):
        description, apply = MIGRATIONS[version - 1]
        LOGGER.info("index schema: applying migration %d (%s)", version, description)
        apply(cur)
        cur.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)", [version, description])
    _add_missing_columns(cur)
    return len(MIGRATIONS)


def _insert_columns(cur: _Cursor, table: str, columns: list[str], rows: list[list], conflict: str = "") -> None:
    """Insert ``rows`` in one statement, one array parameter per column (as the DuckDB index does)."""
    names = ", ".join(f'"{c}"' for c in columns)
    unnests = ", ".join(f"unnest(?::{_SQL_TYPES.get(c, 'VARCHAR')}[])" for c in columns)
    cur.execute(f'INSERT INTO {table} ({names}, "received_at") SELECT {unnests}, now() {conflict}',
                [list(values) for values in zip(*rows)])


class PostgresIndex:
    """The index in a PostgreSQL database (see the module's docstring)."""

    dialect = POSTGRESQL
    #: Several servers may write and delete through it (see Archive.locate_instance).
    shared = True

    def __init__(self, url: str, pool_size: int = POOL_SIZE, owner: str = "") -> None:
        from psycopg_pool import ConnectionPool, PoolTimeout

        #: Whose journal and open/closed state this index keeps (one server's home of several).
        self._state = {name: f"{name}:{owner}" if owner else name for name in ("state", "journal_position")}
        self.url = check_url(url)
        self.name = _without_secrets(url)
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="pacsdash-index",
                                    kwargs={"autocommit": True, "application_name": "pacsdash"})
        try:
            self._pool.open(wait=True, timeout=30)
        except PoolTimeout:
            self._pool.close()
            raise PostgresIndexError(
                f"cannot connect to the index {self.name} within 30 s: is PostgreSQL running there, does the "
                "database exist, and is the password in PGPASSWORD or the password file (PGPASSFILE)?") from None
        try:
            with self._transaction() as cur:
                self.schema_version = migrate(cur)
        except BaseException:
            self._pool.close()
            raise
        #: ``[[label_rules]]`` applied to each batch of new instances, compiled for PostgreSQL.
        self.label_rules: list[labels.CompiledRule] = []
        #: The writer's memory of the values its recent series have (see the module's docstring).
        self._values = summaries.SeriesValues(dialect=POSTGRESQL)

    # -- connections -------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        """A cursor inside one transaction: committed when the block ends, rolled back if it raises."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _Cursor(cur)

    def _read(self, sql: str, params: Iterable[Any] | None = None) -> list:
        """Every row of one statement (autocommit: no transaction around a read)."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            return _Cursor(cur).execute(sql, params).fetchall()

    def _read_one(self, sql: str, params: Iterable[Any] | None = None) -> Any:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    # -- writing ----------------------------------------------------------------
    def add(self, records: list[InstanceRecord], journal_position: int | None = None) -> list[bool]:
        """Insert ``records`` in one transaction (see :meth:`DuckDBIndex.add`): per record,
        True if added, False if its SOP Instance UID was indexed already (or came
        earlier in the batch), the first copy kept."""
        first: dict[str, InstanceRecord] = {}
        for record in records:
            first.setdefault(record.SOPInstanceUID, record)
        try:
            with self._transaction() as cur:
                inserted, values = self._insert(cur, list(first.values()), journal_position)
        except BaseException:
            self._values.forget()  # it may hold pairs of the rolled back rows
            raise
        self._values.remember(values)
        return [r.SOPInstanceUID in inserted and first[r.SOPInstanceUID] is r for r in records]

    def _insert(self, cur: _Cursor, records: list[InstanceRecord],
                journal_position: int | None) -> tuple[set[str], dict[str, set[tuple[str, str]]]]:
        created: dict[Level, set[str]] = {}
        for level in (Level.PATIENT, Level.STUDY, Level.SERIES):
            rows: dict[str, list] = {}
            for record in records:
                values = record.columns[level]
                rows.setdefault(values[level.unique_key] or "", [values[c] for c in _columns(level)])
            created[level] = set()
            if rows:  # in key order, so that two writers lock the same rows in the same order
                _insert_columns(cur, level.table, _columns(level), [rows[k] for k in sorted(rows)],
                                f'ON CONFLICT DO NOTHING RETURNING "{level.unique_key}"')
                created[level] = {r[0] for r in cur.fetchall()}
        inserted: set[str] = set()
        if records:
            image_columns = _columns(Level.IMAGE)
            rows_ = [
                [r.columns[Level.IMAGE][c] for c in image_columns]
                + [r.file, r.size, r.origin, json.dumps(r.attributes, ensure_ascii=False)]
                for r in records
            ]
            _insert_columns(cur, "instances", image_columns + ["file", "size", "origin", "attributes"], rows_,
                            'ON CONFLICT DO NOTHING RETURNING "SOPInstanceUID"')
            inserted = {r[0] for r in cur.fetchall()}
        fresh = [r for r in records if r.SOPInstanceUID in inserted]
        if self.label_rules and fresh:
            labels.apply_rules(cur, self.label_rules, [(r.SOPInstanceUID, r.origin) for r in fresh])
        labels.claim_new(cur, [(r.StudyInstanceUID, r.labels) for r in fresh
                               if r.labels and r.StudyInstanceUID in created[Level.STUDY]])
        summaries.add_instances(cur, fresh, created[Level.SERIES], POSTGRESQL)
        values = self._values.add(cur, fresh, created[Level.SERIES])
        if journal_position is not None:
            cur.execute("INSERT INTO archive_state VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        [self._state["journal_position"], str(journal_position)])
        return inserted, values

    def mark_open(self) -> bool:
        """Record that the archive is open; return whether the last stop was clean."""
        with self._transaction() as cur:
            row = cur.execute("SELECT value FROM archive_state WHERE name = ? FOR UPDATE",
                              [self._state["state"]]).fetchone()
            fresh = row is None and not cur.execute("SELECT 1 FROM instances LIMIT 1").fetchone()
            cur.execute("INSERT INTO archive_state VALUES (?, 'open') ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        [self._state["state"]])
        return fresh or (row is not None and row[0] == "closed")

    def mark_closed(self) -> None:
        """Record a clean stop."""
        with self._transaction() as cur:
            cur.execute("INSERT INTO archive_state VALUES (?, 'closed') ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        [self._state["state"]])

    def journal_position(self) -> int:
        """Sequence number of the last journal entry applied (0 if none)."""
        row = self._read_one("SELECT value FROM archive_state WHERE name = ?", [self._state["journal_position"]])
        return int(row[0]) if row else 0

    def remove_files(self, keys: list[str]) -> None:
        """Drop the index rows of instances stored under ``keys``."""
        if not keys:
            return
        try:
            with self._transaction() as cur:
                touched = cur.execute(
                    'DELETE FROM instances WHERE file IN (SELECT unnest(?::VARCHAR[])) '
                    'RETURNING "StudyInstanceUID", "SeriesInstanceUID"', [keys]).fetchall()
                studies = sorted({study for study, _ in touched})
                series = sorted({s for _, s in touched})
                cur.execute('DELETE FROM series t WHERE "SeriesInstanceUID" IN (SELECT unnest(?::VARCHAR[])) AND '
                            'NOT EXISTS (SELECT 1 FROM instances i WHERE i."SeriesInstanceUID" = t."SeriesInstanceUID")',
                            [series])
                gone = cur.execute(
                    'DELETE FROM studies t WHERE "StudyInstanceUID" IN (SELECT unnest(?::VARCHAR[])) AND NOT EXISTS '
                    '(SELECT 1 FROM instances i WHERE i."StudyInstanceUID" = t."StudyInstanceUID") RETURNING "PatientID"',
                    [studies]).fetchall()
                self._drop_patients(cur, [r[0] for r in gone])
                summaries.refresh(cur, studies, series, POSTGRESQL)
        finally:
            self._values.forget()

    @staticmethod
    def _drop_patients(cur: _Cursor, patient_ids: list[str]) -> None:
        if patient_ids:
            cur.execute('DELETE FROM patients p WHERE "PatientID" IN (SELECT unnest(?::VARCHAR[])) AND NOT EXISTS '
                        '(SELECT 1 FROM studies s WHERE s."PatientID" = p."PatientID")', [sorted(set(patient_ids))])

    def delete_study(self, study_uid: str) -> list[str]:
        """Remove a study, its series and instances; return their file keys."""
        try:
            with self._transaction() as cur:
                files = [r[0] for r in cur.execute(
                    'DELETE FROM instances WHERE "StudyInstanceUID" = ? RETURNING file', [study_uid]).fetchall()]
                cur.execute(f'DELETE FROM {summaries.VALUES_TABLE} WHERE "StudyInstanceUID" = ?', [study_uid])
                cur.execute('DELETE FROM series WHERE "StudyInstanceUID" = ?', [study_uid])
                gone = cur.execute('DELETE FROM studies WHERE "StudyInstanceUID" = ? RETURNING "PatientID"',
                                   [study_uid]).fetchall()
                labels.drop_studies(cur, [study_uid])
                self._drop_patients(cur, [r[0] for r in gone])
        finally:
            self._values.forget()
        return files

    # -- reading (any thread) -----------------------------------------------------
    def known(self, sop_uids: Iterable[str]) -> set[str]:
        """The subset of ``sop_uids`` already indexed."""
        uids = list(sop_uids)
        if not uids:
            return set()
        rows = self._read('SELECT "SOPInstanceUID" FROM instances WHERE "SOPInstanceUID" IN (SELECT unnest(?::VARCHAR[]))',
                          [uids])
        return {r[0] for r in rows}

    def all_sop_uids(self) -> Iterator[str]:
        """Every indexed SOP Instance UID, fetched in chunks (a server-side cursor)."""
        with self._pool.connection() as conn, conn.transaction(), \
                conn.cursor(name="pacsdash_all_sop_uids") as cur:
            cur.execute('SELECT "SOPInstanceUID" FROM instances')
            while rows := cur.fetchmany(50_000):
                yield from (r[0] for r in rows)

    def file_of(self, sop_uid: str) -> str | None:
        """Store key of an indexed instance, or None."""
        row = self._read_one('SELECT file FROM instances WHERE "SOPInstanceUID" = ?', [sop_uid])
        return row[0] if row else None

    def find(self, query: Query) -> list[dict[str, Any]]:
        """Rows matching ``query``: keyword -> DICOM string value (or None)."""
        compiled = compile_query(query, dialect=POSTGRESQL)
        rows = self._read(compiled.sql, compiled.params)
        keywords = [a.keyword for a in compiled.columns] + compiled.extra_keys
        return [{k: (None if v is None else str(v)) for k, v in zip(keywords, row)} for row in rows]

    def count(self, query: Query) -> int:
        """How many entities match ``query`` (paging ignored)."""
        sql, params = compile_count(query, POSTGRESQL)
        return int(self._read_one(sql, params)[0])

    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None,
               **keys: str) -> list[InstanceLocation]:
        """Instances under one entity, or matching UID keys (see :meth:`DuckDBIndex.locate`)."""
        sql, params = compile_locate(level, uid, scope, keys, POSTGRESQL)
        return [InstanceLocation(*row) for row in self._read(sql, params)]

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Instances matching an IMAGE-level ``query``, with their files."""
        if query.level is not Level.IMAGE:
            raise ValueError("locate_matching takes an IMAGE-level query")
        compiled = compile_query(
            Query(Level.IMAGE, query.filters, fields=["TransferSyntaxUID"], scope=query.scope),
            extra_columns=("i.file", "i.size"), dialect=POSTGRESQL,
        )
        names = [a.keyword for a in compiled.columns]
        out = []
        for row in self._read(compiled.sql, compiled.params):
            values = dict(zip(names, row))
            out.append(InstanceLocation(values["SOPInstanceUID"], values["SOPClassUID"], values["TransferSyntaxUID"],
                                        values["StudyInstanceUID"], values["SeriesInstanceUID"], row[-2], row[-1]))
        return out

    def files(self) -> set[str]:
        """Every file key the index refers to."""
        return {r[0] for r in self._read("SELECT file FROM instances")}

    # -- records of actions ---------------------------------------------------------
    def add_record(self, record: records.ActionRecord) -> int:
        """Append an action record; return its id."""
        with self._transaction() as cur:
            return records.append(cur, record)

    def records(self, action: str | None = None, actor: str | None = None, study: str | None = None,
                limit: int = 100, offset: int = 0, since: Any = None, until: Any = None) -> list[records.ActionRecord]:
        with self._transaction() as cur:
            return records.select(cur, action, actor, study, limit, offset, since, until, POSTGRESQL)

    def remember_subjects(self, subjects: list[tuple[str, str, str]]) -> None:
        """Keep whom each pseudonym stands for."""
        with self._transaction() as cur:
            for pseudonym, patient_id, issuer in subjects:
                records.remember_subject(cur, pseudonym, patient_id, issuer)

    def subject(self, pseudonym: str) -> dict[str, str] | None:
        with self._transaction() as cur:
            return records.subject(cur, pseudonym)

    def subjects(self) -> list[tuple[str, str, str]]:
        """Every pseudonym kept, with whom it stands for (for ``pacsdash migrate``)."""
        with self._transaction() as cur:
            return records.all_subjects(cur)

    # -- study labels -------------------------------------------------------------------
    def labels_of(self, study_uids: list[str]) -> dict[str, list[str]]:
        """StudyInstanceUID -> its labels, for those of ``study_uids`` that have any."""
        with self._transaction() as cur:
            return labels.of_studies(cur, list(study_uids))

    def add_label(self, study_uid: str, label: str) -> bool:
        """Label an indexed study; False if it had the label.

        Raises
        ------
        KeyError
            If no such study is indexed.
        """
        with self._transaction() as cur:
            if not cur.execute('SELECT 1 FROM studies WHERE "StudyInstanceUID" = ? FOR SHARE', [study_uid]).fetchone():
                raise KeyError(study_uid)
            return labels.add(cur, study_uid, label)

    def remove_label(self, study_uid: str, label: str) -> bool:
        """Take a label from a study; False if it did not have it."""
        with self._transaction() as cur:
            return labels.remove(cur, study_uid, label)

    def summary(self, scope: Scope | None = None) -> dict[str, Any]:
        """Totals; ``by_modality`` as (modality, studies); ``by_month`` as (YYYYMM, studies);
        of the studies ``scope`` may see."""
        visible, params = ("", []) if scope is None else scope.studies_sql()
        within = f' AND "StudyInstanceUID" IN ({visible})' if scope is not None else ""
        by_modality = [tuple(r) for r in self._read(
            'SELECT coalesce("Modality", \'(none)\') AS modality, count(DISTINCT "StudyInstanceUID") AS studies '
            f"FROM series WHERE true{within} GROUP BY 1 ORDER BY 2 DESC", params)]
        by_month = [tuple(r) for r in self._read(
            'SELECT substr("StudyDate", 1, 6) AS month, count(*) AS studies FROM studies '
            f"WHERE \"StudyDate\" ~ '^[0-9]{{8}}$'{within} GROUP BY 1 ORDER BY 1", params)]
        return {"totals": self.totals(scope), "by_modality": by_modality, "by_month": by_month}

    def totals(self, scope: Scope | None = None) -> dict[str, int]:
        """Number of patients, studies, series and instances (that ``scope`` may see)."""
        if scope is None:
            return {level.table: int(self._read_one(f"SELECT count(*) FROM {level.table}")[0]) for level in Level}
        visible, params = scope.studies_sql()
        row = self._read_one(
            'SELECT count(DISTINCT "PatientID"), count(*), coalesce(sum("NumberOfStudyRelatedSeries"), 0), '
            f'coalesce(sum("NumberOfStudyRelatedInstances"), 0) FROM studies WHERE "StudyInstanceUID" IN ({visible})',
            params)
        return dict(zip((level.table for level in Level), (int(v) for v in row)))


__all__ = ["PostgresIndex", "PostgresIndexError", "MIGRATIONS", "check_url", "migrate", "pyformat"]
