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
studies and series it touched (:func:`refresh`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from pacsdash.archive.attributes import TABLE_ATTRIBUTES, Level
from pacsdash.archive.parsing import InstanceRecord

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
           string_agg(DISTINCT x."Modality", '\\' ORDER BY x."Modality") AS modalities
    FROM series x {where_x} GROUP BY 1
) se ON se.uid = t.uid
LEFT JOIN (
    SELECT x."StudyInstanceUID" AS uid, count(*) AS instance_count,
           string_agg(DISTINCT x."SOPClassUID", '\\' ORDER BY x."SOPClassUID") AS classes
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


def _run(cur: duckdb.DuckDBPyConnection, template: str, key: str, uids: Iterable[str] | None) -> None:
    if uids is None:
        cur.execute(template.format(where="", where_x=""))
        return
    keys = sorted(set(uids))
    if not keys:
        return
    condition = f'"{key}" IN (SELECT unnest(?::VARCHAR[]))'
    params = [keys] * (1 + template.count("{where_x}"))  # one list per placeholder
    cur.execute(template.format(where=f"WHERE k.{condition}", where_x=f"WHERE x.{condition}"), params)


def refresh(cur: duckdb.DuckDBPyConnection, studies: Iterable[str] | None, series: Iterable[str] | None) -> None:
    """Recompute the summaries of ``studies`` and ``series`` (None: all of them).

    Run inside the transaction that changed their rows.
    """
    _run(cur, _STUDY_SUMMARY, "StudyInstanceUID", studies)
    _run(cur, _SERIES_SUMMARY, "SeriesInstanceUID", series)


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


def add_instances(cur: duckdb.DuckDBPyConnection, records: list[InstanceRecord], new_series: Iterable[str]) -> None:
    """Count newly indexed ``records`` (never indexed before) into their study
    and series summaries; ``new_series`` are the series they created.

    Run inside the transaction that inserted them, after the inserts.
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
    cur.execute(
        'UPDATE series SET "NumberOfSeriesRelatedInstances" = coalesce(series."NumberOfSeriesRelatedInstances", 0) + d.added '
        "FROM (SELECT unnest(?::VARCHAR[]) AS uid, unnest(?::INTEGER[]) AS added) d "
        'WHERE series."SeriesInstanceUID" = d.uid',
        [list(series), list(series.values())],
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
