"""Attributes of a study or series that summarise the rows below it.

ModalitiesInStudy, SOPClassesInStudy and the numbers of related series and
instances (PS3.4 C.6.1.1.4, C.6.1.1.5) are asked for by almost every study
query: C-FIND clients, QIDO-RS (PS3.18 Table 10.6.3-3 lists them among a
study's required attributes) and the dashboard's study list. Computing them
per query means correlated aggregates over every instance; here they are
stored columns of ``studies`` and ``series`` instead, changed inside the
transaction that changes the rows, so a reader never sees a count that
disagrees with them: an ingest adds what its new instances and series bring
(:func:`add_instances`, no scan of the instances), a removal recomputes the
studies and series it touched (:func:`refresh`). The distinct values of the
attributes kept only in the instances' JSON are summarised per series the
same way (:data:`VALUES_TABLE`, :class:`SeriesValues`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from pacsdash.archive.attributes import TABLE_ATTRIBUTES, Level
from pacsdash.archive.parsing import InstanceRecord

# The query module imports VALUES_TABLE from here: the dialects are imported
# where they are used.

#: SQL type of each stored summary column, per table.
SUMMARY_COLUMNS: dict[Level, dict[str, str]] = {
    level: {a.keyword: ("VARCHAR" if a.vr in ("CS", "UI") else "INTEGER") for a in attrs if a.derived}
    for level, attrs in TABLE_ATTRIBUTES.items()
    if any(a.derived for a in attrs)
}

_STUDY_SUMMARY = """
UPDATE studies SET
    "NumberOfStudyRelatedSeries" = coalesce(se.series_count, 0),
    "ModalitiesInStudy" = se.modalities,
    "NumberOfStudyRelatedInstances" = coalesce(i.instance_count, 0),
    "SOPClassesInStudy" = i.classes
FROM (SELECT k."StudyInstanceUID" AS uid FROM studies k {where}) t
LEFT JOIN (
    SELECT x."StudyInstanceUID" AS uid, count(*) AS series_count,
           {modalities} AS modalities
    FROM series x {where_x} GROUP BY 1
) se ON se.uid = t.uid
LEFT JOIN (
    SELECT x."StudyInstanceUID" AS uid, count(*) AS instance_count,
           {classes} AS classes
    FROM instances x {where_x} GROUP BY 1
) i ON i.uid = t.uid
WHERE studies."StudyInstanceUID" = t.uid
"""

_SERIES_SUMMARY = """
UPDATE series SET "NumberOfSeriesRelatedInstances" = coalesce(i.instance_count, 0)
FROM (SELECT k."SeriesInstanceUID" AS uid FROM series k {where}) t
LEFT JOIN (
    SELECT x."SeriesInstanceUID" AS uid, count(*) AS instance_count FROM instances x {where_x} GROUP BY 1
) i ON i.uid = t.uid
WHERE series."SeriesInstanceUID" = t.uid
"""


def _distinct_list(column: str, dialect: object) -> str:
    """SQL of the backslash-separated distinct values of ``column``, sorted by code point as
    :func:`_merged` sorts them (PostgreSQL: ``pacsdash_merge``, whatever the database's collation)."""
    if getattr(dialect, "name", "duckdb") == "postgresql":
        return f"pacsdash_merge(NULL, string_agg({column}, '\\'))"
    return f"string_agg(DISTINCT {column}, '\\' ORDER BY {column})"


def _run(cur: duckdb.DuckDBPyConnection, template: str, key: str, uids: Iterable[str] | None,
         dialect: object = None) -> None:
    lists = {"modalities": _distinct_list('x."Modality"', dialect), "classes": _distinct_list('x."SOPClassUID"', dialect)}
    if uids is None:
        cur.execute(template.format(where="", where_x="", **lists))
        return
    keys = sorted(set(uids))
    if not keys:
        return
    condition = f'"{key}" IN (SELECT unnest(?::VARCHAR[]))'
    params = [keys] * (1 + template.count("{where_x}"))  # one list per placeholder
    cur.execute(template.format(where=f"WHERE k.{condition}", where_x=f"WHERE x.{condition}", **lists), params)


def refresh(cur: duckdb.DuckDBPyConnection, studies: Iterable[str] | None, series: Iterable[str] | None,
            dialect: object = None) -> None:
    """Recompute the summaries of ``studies`` and ``series`` (None: all of them),
    the values of those series (:data:`VALUES_TABLE`) included.

    Run inside the transaction that changed their rows. ``dialect``: the
    database's (:mod:`pacsdash.archive.query`; DuckDB when None).
    """
    _run(cur, _STUDY_SUMMARY, "StudyInstanceUID", studies, dialect)
    _run(cur, _SERIES_SUMMARY, "SeriesInstanceUID", series, dialect)
    refresh_values(cur, series, dialect)


@dataclass
class _StudyChange:
    instances: int = 0
    series: int = 0
    modalities: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)


def _merged(current: str | None, added: set[str]) -> str | None:
    """A backslash-separated list of distinct values, sorted, with ``added`` in."""
    values = set(current.split("\\")) if current else set()
    values |= added
    values.discard("")
    return "\\".join(sorted(values)) or None


#: PostgreSQL: the study summaries changed in place, from the row's current
#: values (the row locked by the UPDATE), so that several servers adding to
#: one study at once add up (a read, then a write, would lose one's counts).
_ADD_TO_STUDIES_PG = (
    'UPDATE studies SET "NumberOfStudyRelatedSeries" = coalesce(studies."NumberOfStudyRelatedSeries", 0) + d.series_count, '
    '"NumberOfStudyRelatedInstances" = coalesce(studies."NumberOfStudyRelatedInstances", 0) + d.instance_count, '
    '"ModalitiesInStudy" = pacsdash_merge(studies."ModalitiesInStudy", d.modalities), '
    '"SOPClassesInStudy" = pacsdash_merge(studies."SOPClassesInStudy", d.classes) '
    "FROM (SELECT unnest(?::VARCHAR[]) AS uid, unnest(?::INTEGER[]) AS series_count, "
    "unnest(?::INTEGER[]) AS instance_count, unnest(?::VARCHAR[]) AS modalities, unnest(?::VARCHAR[]) AS classes) d "
    'WHERE studies."StudyInstanceUID" = d.uid'
)


def add_instances(cur: duckdb.DuckDBPyConnection, records: list[InstanceRecord], new_series: Iterable[str],
                  dialect: object = None) -> None:
    """Count newly indexed ``records`` (never indexed before) into their study
    and series summaries; ``new_series`` are the series they created.

    Run inside the transaction that inserted them, after the inserts.
    ``dialect``: the database's (DuckDB when None).
    """
    if not records:
        return
    created = set(new_series)
    studies: dict[str, _StudyChange] = {}
    series: dict[str, int] = {}
    for record in records:
        change = studies.setdefault(record.StudyInstanceUID, _StudyChange())
        change.instances += 1
        sop_class = record.columns[Level.IMAGE].get("SOPClassUID")
        if sop_class:
            change.classes.add(sop_class)
        series[record.SeriesInstanceUID] = series.get(record.SeriesInstanceUID, 0) + 1
        if record.SeriesInstanceUID in created:
            created.discard(record.SeriesInstanceUID)
            change.series += 1
            modality = record.columns[Level.SERIES].get("Modality")
            if modality:
                change.modalities.add(modality)
    keys = sorted(studies)
    if getattr(dialect, "name", "duckdb") == "postgresql":
        cur.execute(_ADD_TO_STUDIES_PG, [
            keys, [studies[k].series for k in keys], [studies[k].instances for k in keys],
            [_merged(None, studies[k].modalities) for k in keys], [_merged(None, studies[k].classes) for k in keys],
        ])
    else:
        _add_to_studies(cur, keys, studies)
    cur.execute(
        'UPDATE series SET "NumberOfSeriesRelatedInstances" = coalesce(series."NumberOfSeriesRelatedInstances", 0) + d.added '
        "FROM (SELECT unnest(?::VARCHAR[]) AS uid, unnest(?::INTEGER[]) AS added) d "
        'WHERE series."SeriesInstanceUID" = d.uid',
        [list(series), list(series.values())],
    )


def _add_to_studies(cur: duckdb.DuckDBPyConnection, keys: list[str], studies: dict[str, _StudyChange]) -> None:
    """DuckDB (one writer): the studies' new summaries, from their current ones read first."""
    current = {
        row[0]: row[1:]
        for row in cur.execute(
            'SELECT "StudyInstanceUID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", '
            '"ModalitiesInStudy", "SOPClassesInStudy" FROM studies WHERE "StudyInstanceUID" IN (SELECT unnest(?::VARCHAR[]))',
            [keys],
        ).fetchall()
    }
    columns: list[list] = [[], [], [], [], []]
    for key in keys:
        series_count, instance_count, modalities, classes = current.get(key, (None, None, None, None))
        change = studies[key]
        for column, value in zip(columns, (
            key,
            (series_count or 0) + change.series,
            (instance_count or 0) + change.instances,
            _merged(modalities, change.modalities),
            _merged(classes, change.classes),
        )):
            column.append(value)
    cur.execute(
        'UPDATE studies SET "NumberOfStudyRelatedSeries" = d.series_count, '
        '"NumberOfStudyRelatedInstances" = d.instance_count, "ModalitiesInStudy" = d.modalities, '
        '"SOPClassesInStudy" = d.classes FROM (SELECT unnest(?::VARCHAR[]) AS uid, unnest(?::INTEGER[]) AS series_count, '
        "unnest(?::INTEGER[]) AS instance_count, unnest(?::VARCHAR[]) AS modalities, unnest(?::VARCHAR[]) AS classes) d "
        'WHERE studies."StudyInstanceUID" = d.uid',
        columns,
    )


def add_missing_columns(cur: duckdb.DuckDBPyConnection) -> bool:
    """Add summary columns an older index lacks; True if any was added (then refresh all)."""
    added = False
    for level, columns in SUMMARY_COLUMNS.items():
        present = {
            row[0]
            for row in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [level.table]
            ).fetchall()
        }
        for name, sql_type in columns.items():
            if name not in present:
                cur.execute(f'ALTER TABLE {level.table} ADD COLUMN "{name}" {sql_type}')
                added = True
    return added


# -- every value of each series' other attributes ------------------------------------------
#: The distinct values that the instances of each series hold of each attribute
#: kept in their attribute JSON (tag -> DICOM text; see
#: :mod:`pacsdash.archive.parsing`), one row per (series, tag, value), in the
#: order they were first indexed. A series or study matches a condition on such
#: an attribute when any of its instances does (PS3.4 C.2.2.2, PS3.18 10.6.1.2:
#: QIDO-RS matches any attribute), and the condition depends on the value
#: alone: so the index matches it here, on a few rows per series, instead of
#: parsing every instance's JSON (see :mod:`pacsdash.archive.query`).
VALUES_TABLE = "series_values"
VALUES_SCHEMA = (
    f'CREATE TABLE IF NOT EXISTS {VALUES_TABLE} ("StudyInstanceUID" VARCHAR, "SeriesInstanceUID" VARCHAR, '
    "tag VARCHAR, value VARCHAR)"
)
#: Instances whose JSON one statement of :func:`refresh_values` reads (bounds its memory).
_FILL_CHUNK = 100_000
#: Distinct values of the series' instances, in the order first indexed (``first`` is the instance's rowid).
_FILL = """
INSERT INTO series_values
SELECT st, se, tag, value FROM (
    SELECT st, se, unnest(map_keys(m)) AS tag, unnest(map_values(m)) AS value, r FROM (
        SELECT "StudyInstanceUID" AS st, "SeriesInstanceUID" AS se, rowid AS r,
               CAST(CAST(attributes AS JSON) AS MAP(VARCHAR, VARCHAR)) AS m
        FROM instances WHERE "SeriesInstanceUID" IN (SELECT unnest(?::VARCHAR[])) AND attributes IS NOT NULL
    )
) GROUP BY st, se, tag, value ORDER BY min(r)
"""


def create_values(cur: duckdb.DuckDBPyConnection) -> bool:
    """Create the values table; True if it was missing (then fill it: :func:`refresh_values`)."""
    missing = not cur.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [VALUES_TABLE]
    ).fetchone()[0]
    cur.execute(VALUES_SCHEMA)
    return missing


def _chunks(sizes: list[tuple[str, int]]) -> Iterable[list[str]]:
    """Series keys in groups of at most :data:`_FILL_CHUNK` instances (a bigger series alone)."""
    chunk: list[str] = []
    total = 0
    for key, size in sizes:
        if chunk and total + size > _FILL_CHUNK:
            yield chunk
            chunk, total = [], 0
        chunk.append(key)
        total += size
    if chunk:
        yield chunk


#: :data:`_FILL` in PostgreSQL, whose instances have a ``rowid`` column (an identity).
_FILL_PG = """
INSERT INTO series_values ("StudyInstanceUID", "SeriesInstanceUID", tag, value)
SELECT st, se, tag, value FROM (
    SELECT i."StudyInstanceUID" AS st, i."SeriesInstanceUID" AS se, j.key AS tag, j.value AS value, min(i.rowid) AS r
    FROM instances i CROSS JOIN LATERAL jsonb_each_text(CAST(i.attributes AS jsonb)) AS j
    WHERE i."SeriesInstanceUID" IN (SELECT unnest(?::VARCHAR[])) AND i.attributes IS NOT NULL
    GROUP BY 1, 2, 3, 4
) v ORDER BY r
"""


def refresh_values(cur: duckdb.DuckDBPyConnection, series: Iterable[str] | None, dialect: object = None) -> None:
    """Recompute the values of ``series`` (None: all) from their instances' JSON.

    Run inside the transaction that changed their rows (or when an index
    written before the table existed is opened).
    """
    fill = _FILL_PG if getattr(dialect, "name", "duckdb") == "postgresql" else _FILL
    if series is None:
        cur.execute(f"DELETE FROM {VALUES_TABLE}")
        sizes = cur.execute('SELECT "SeriesInstanceUID", count(*) FROM instances GROUP BY 1 ORDER BY 1').fetchall()
    else:
        keys = sorted(set(series))
        if not keys:
            return
        cur.execute(f'DELETE FROM {VALUES_TABLE} WHERE "SeriesInstanceUID" IN (SELECT unnest(?::VARCHAR[]))', [keys])
        sizes = cur.execute(
            'SELECT "SeriesInstanceUID", count(*) FROM instances WHERE "SeriesInstanceUID" IN '
            "(SELECT unnest(?::VARCHAR[])) GROUP BY 1 ORDER BY 1",
            [keys],
        ).fetchall()
    for chunk in _chunks(sizes):
        cur.execute(fill, [chunk])


class SeriesValues:
    """The writer's memory of the (tag, value) pairs recent series have in the values table.

    An ingest adds only the pairs its instances bring that their series does
    not have yet, without reading the table, unless a series was indexed
    before and has been forgotten since (a restart; at most
    ``max_pairs`` pairs are remembered, the least recently used series
    forgotten first).
    """

    def __init__(self, max_pairs: int = 100_000, dialect: object = None) -> None:
        self.max_pairs = max_pairs
        #: PostgreSQL: the table has a unique index; another server may have added a pair.
        self._on_conflict = " ON CONFLICT DO NOTHING" if getattr(dialect, "name", "duckdb") == "postgresql" else ""
        self._seen: dict[str, set[tuple[str, str]]] = {}  # insertion order: least recently used first
        self._pairs = 0

    def forget(self) -> None:
        """Drop everything remembered (after rows were deleted)."""
        self._seen.clear()
        self._pairs = 0

    def _known(self, cur: duckdb.DuckDBPyConnection, records: list[InstanceRecord],
               created: set[str]) -> dict[str, set[tuple[str, str]]]:
        """The pairs stored for each series of ``records`` (read for forgotten, older series)."""
        known = {}
        unread = []
        for key in dict.fromkeys(r.SeriesInstanceUID for r in records):
            if key in created:  # (a series deleted and made again holds nothing of before)
                known[key] = set()
            elif key in self._seen:
                known[key] = self._seen[key]
            else:
                unread.append(key)
        if unread:
            for key in unread:
                known[key] = set()
            for key, tag, value in cur.execute(
                f'SELECT "SeriesInstanceUID", tag, value FROM {VALUES_TABLE} '
                'WHERE "SeriesInstanceUID" IN (SELECT unnest(?::VARCHAR[]))',
                [unread],
            ).fetchall():
                known[key].add((tag, value))
        return known

    def add(self, cur: duckdb.DuckDBPyConnection, records: list[InstanceRecord],
            created: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
        """Insert the new pairs of newly indexed ``records``; ``created``: the series they created.

        Run inside the transaction that inserted them; then :meth:`remember`
        what it returns once that has committed, or :meth:`forget` everything
        if it rolled back (the pairs of remembered series are added in place).
        """
        known = self._known(cur, records, set(created))
        rows: list[tuple[str, str, str, str]] = []
        for record in records:
            series = record.SeriesInstanceUID
            seen = known[series]
            for pair in record.attributes.items():
                if pair not in seen:
                    seen.add(pair)
                    rows.append((record.StudyInstanceUID, series, *pair))
        if rows:
            cur.execute(
                f'INSERT INTO {VALUES_TABLE} ("StudyInstanceUID", "SeriesInstanceUID", tag, value) '
                "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])"
                + self._on_conflict,
                [list(column) for column in zip(*rows)],
            )
        return known

    def remember(self, pairs: dict[str, set[tuple[str, str]]]) -> None:
        """Keep the committed pairs of each series, as the most recently used."""
        for key, values in pairs.items():
            self._seen.pop(key, None)
            self._seen[key] = values
        self._pairs = sum(len(values) for values in self._seen.values())  # the sets grow in place
        while self._pairs > self.max_pairs and len(self._seen) > 1:
            oldest = next(iter(self._seen))
            self._pairs -= len(self._seen.pop(oldest))
