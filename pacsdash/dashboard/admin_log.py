"""The server's log and the records of actions on studies, read and filtered for the admin page.

The log files are those :func:`pacsdash.logs.configure_logging` writes in
``HOME/logs``: ``pacsdash.log`` of the server and ``dicom-worker-N.log`` of
each DICOM worker, lines of ``time LEVEL [process] logger: message`` (a
traceback continues its entry on the following lines). Only the tail of each
file is read, so a large log opens as fast as a small one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

#: How much of the end of each log file is read.
TAIL_BYTES = 2_000_000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Choices of the time filters: label -> how far back (None: everything).
PERIODS: dict[str, dt.timedelta | None] = {
    "last hour": dt.timedelta(hours=1),
    "last 24 hours": dt.timedelta(days=1),
    "last 7 days": dt.timedelta(days=7),
    "last 30 days": dt.timedelta(days=30),
    "everything": None,
}
_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) \[(?P<process>[^\]]*)\] "
    r"(?P<logger>[^:\s]+): ?(?P<message>.*)$"
)
LOG_COLUMNS = ["Time", "Level", "Process", "Logger", "Message"]
RECORD_COLUMNS = ["Time", "User", "Address", "Action", "Outcome", "Studies", "Details"]


@dataclass(frozen=True)
class LogEntry:
    """One logged event (with its traceback, if any, in ``message``)."""

    time: dt.datetime
    level: str
    process: str
    logger: str
    message: str


def fold(text: str) -> str:
    """``Müller`` -> ``muller``: text as people type it (no case, no accents)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def since(period: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """The start of ``period`` (a key of :data:`PERIODS`) before ``now``, or None for everything."""
    span = PERIODS[period]
    return None if span is None else (now or dt.datetime.now().astimezone()) - span


def _tail_lines(path: Path, limit: int = TAIL_BYTES) -> list[str]:
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - limit))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > limit else lines  # the first line read may be cut


def parse_log(lines: Iterable[str]) -> list[LogEntry]:
    """Entries of log ``lines``; lines that start no entry continue the previous one."""
    entries: list[LogEntry] = []
    for line in lines:
        match = _LINE.match(line)
        if match:
            stamp = dt.datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S,%f").astimezone()
            entries.append(LogEntry(stamp, match["level"], match["process"], match["logger"], match["message"]))
        elif entries and line.strip():
            last = entries[-1]
            entries[-1] = LogEntry(last.time, last.level, last.process, last.logger, f"{last.message}\n{line}")
    return entries


def read_logs(folder: Path) -> list[LogEntry]:
    """The recent entries of every current log file in ``folder``, oldest first."""
    entries: list[LogEntry] = []
    for path in sorted(folder.glob("*.log")):
        try:
            entries += parse_log(_tail_lines(path))
        except OSError as exc:
            logging.getLogger(__name__).warning("cannot read %s: %s", path, exc)
    return sorted(entries, key=lambda e: e.time)


def filter_log(entries: list[LogEntry], level: str = "INFO", text: str = "",
               start: dt.datetime | None = None, end: dt.datetime | None = None) -> pd.DataFrame:
    """Entries at ``level`` or above, containing ``text`` (any case or accents), in [start, end]; newest first."""
    least = LEVELS.index(level) if level in LEVELS else 0
    wanted = fold(text.strip())
    rows = [
        {"Time": e.time.strftime("%Y-%m-%d %H:%M:%S"), "Level": e.level, "Process": e.process,
         "Logger": e.logger, "Message": e.message}
        for e in reversed(entries)
        if (LEVELS.index(e.level) if e.level in LEVELS else len(LEVELS)) >= least
        and (start is None or e.time >= start) and (end is None or e.time <= end)
        and (not wanted or wanted in fold(f"{e.logger} {e.process} {e.message}"))
    ]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def filter_records(records: Iterable[Any], user: str = "", action: str = "", text: str = "",
                   start: dt.datetime | None = None, end: dt.datetime | None = None) -> pd.DataFrame:
    """Action records (:class:`~pacsdash.archive.records.ActionRecord`) by user (part of the
    name), exact action, text anywhere and time; newest first as given."""
    who, wanted = fold(user.strip()), fold(text.strip())
    rows = []
    for record in records:
        when = record.time
        details = json.dumps(record.details, default=str, ensure_ascii=False)
        studies = ", ".join(record.studies)
        if (who and who not in fold(record.actor)) or (action and record.action != action):
            continue
        if when is not None and ((start and when < start) or (end and when > end)):
            continue
        if wanted and wanted not in fold(" ".join([record.actor, record.address, studies, details, record.outcome])):
            continue
        rows.append({"Time": when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "",
                     "User": record.actor, "Address": record.address, "Action": record.action,
                     "Outcome": record.outcome, "Studies": studies, "Details": details})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)
