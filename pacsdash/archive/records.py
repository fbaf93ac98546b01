"""What was done to studies, and by whom: records kept in the index.

Each anonymization and export leaves one :class:`ActionRecord` (who, when,
which studies, profile and options, counts), appended and never changed.
The map from a subject pseudonym back to the patient is kept here too, for
an admin's look-up; it never leaves in an export.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

SCHEMA = [
    "CREATE SEQUENCE IF NOT EXISTS action_records_id START 1",
    """CREATE TABLE IF NOT EXISTS action_records (
        id BIGINT PRIMARY KEY DEFAULT nextval('action_records_id'),
        time TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        address VARCHAR,
        action VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL,
        studies VARCHAR NOT NULL,
        details VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS subjects (
        pseudonym VARCHAR PRIMARY KEY,
        "PatientID" VARCHAR NOT NULL,
        "IssuerOfPatientID" VARCHAR NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL
    )""",
]
MAX_PAGE = 10_000


@dataclass(frozen=True)
class ActionRecord:
    """One action on studies."""

    actor: str
    action: str  # anonymize, export, send, delete, repair, login, upload, user_change (see archive.audit)
    studies: list[str]
    outcome: str = "success"
    address: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    time: dt.datetime | None = None
    id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time.astimezone(dt.timezone.utc).isoformat() if self.time else None,
                "actor": self.actor, "address": self.address, "action": self.action, "outcome": self.outcome,
                "studies": self.studies, "details": self.details}


def create(con: duckdb.DuckDBPyConnection) -> None:
    for statement in SCHEMA:
        con.execute(statement)


def append(cur: duckdb.DuckDBPyConnection, record: ActionRecord) -> int:
    """Add ``record`` (stamped now, in UTC, unless it carries its time: one
    moved by ``pacsdash migrate`` keeps when it happened); return its id."""
    row = cur.execute(
        "INSERT INTO action_records (time, actor, address, action, outcome, studies, details) "
        "VALUES (coalesce(CAST(? AS TIMESTAMPTZ), now()), ?, ?, ?, ?, ?, ?) RETURNING id",
        [record.time, record.actor, record.address, record.action, record.outcome, json.dumps(record.studies),
         json.dumps(record.details, default=str)],
    ).fetchone()
    return int(row[0])


def select(cur: duckdb.DuckDBPyConnection, action: str | None = None, actor: str | None = None,
           study: str | None = None, limit: int = 100, offset: int = 0,
           since: dt.datetime | None = None, until: dt.datetime | None = None,
           dialect: object = None) -> list[ActionRecord]:
    """Records, newest first, filtered by exact action, actor or study, and by
    time (``since`` included, ``until`` excluded). ``dialect``: the index's
    (:mod:`pacsdash.archive.query`; DuckDB when None)."""
    where, params = [], []
    if since is not None:
        where.append("time >= ?")
        params.append(since)
    if until is not None:
        where.append("time < ?")
        params.append(until)
    if action:
        where.append("action = ?")
        params.append(action)
    if actor:
        where.append("actor = ?")
        params.append(actor)
    if study:
        if getattr(dialect, "name", "duckdb") == "postgresql":
            where.append("CAST(studies AS jsonb) @> jsonb_build_array(CAST(? AS text))")
        else:
            where.append("list_contains(CAST(studies AS VARCHAR[]), ?)")
        params.append(study)
    sql = ("SELECT id, time, actor, address, action, outcome, studies, details FROM action_records"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ? OFFSET ?")
    params += [max(0, min(int(limit), MAX_PAGE)), max(0, int(offset))]
    return [ActionRecord(id=r[0], time=r[1], actor=r[2], address=r[3] or "", action=r[4], outcome=r[5],
                         studies=json.loads(r[6]), details=json.loads(r[7]))
            for r in cur.execute(sql, params).fetchall()]


def remember_subject(cur: duckdb.DuckDBPyConnection, pseudonym: str, patient_id: str, issuer: str) -> None:
    cur.execute('INSERT INTO subjects (pseudonym, "PatientID", "IssuerOfPatientID", first_seen) '
                "VALUES (?, ?, ?, now()) ON CONFLICT DO NOTHING", [pseudonym, patient_id, issuer])


def all_subjects(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """Every ``(pseudonym, PatientID, IssuerOfPatientID)`` kept, oldest first."""
    return [tuple(r) for r in cur.execute('SELECT pseudonym, "PatientID", "IssuerOfPatientID" FROM subjects '
                                          "ORDER BY first_seen, pseudonym").fetchall()]


def subject(cur: duckdb.DuckDBPyConnection, pseudonym: str) -> dict[str, str] | None:
    row = cur.execute('SELECT pseudonym, "PatientID", "IssuerOfPatientID", first_seen FROM subjects '
                      "WHERE pseudonym = ?", [pseudonym]).fetchone()
    if row is None:
        return None
    return {"pseudonym": row[0], "PatientID": row[1], "IssuerOfPatientID": row[2],
            "first_seen": row[3].astimezone(dt.timezone.utc).isoformat()}
