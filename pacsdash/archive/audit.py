"""The audit trail: who did what to which studies, when, from where, and how it went.

Entries are the archive's append-only action records (:mod:`pacsdash.archive.records`)
shown in the shape of CONTRACT.md's ``GET /api/audit`` and ``pacsdash audit``:
``{"time": ISO-8601 UTC, "user", "address", "action", "outcome", "studies"}``,
after the DICOM audit messages of PS3.15 A.5 (who: the active participant;
what: the event; the studies: the participant objects). Recorded: logins
and failed logins, anonymizations, exports, sends, deletions, repairs,
associations refused to peers, the queries, retrievals and uploads of every
door (DICOMweb, WADO-URI, the JSON API, C-FIND/C-MOVE/C-GET, the dashboard),
changes to users and peers (``user_change``) and to study labels
(``label_change``).
With ``[audit] syslog`` set, each entry is also sent to the site's collector
as a PS3.15 A.5.1 audit message in an RFC 5424 syslog message
(:mod:`pacsdash.archive.audit_syslog`, which maps each action to its A.5.3 event).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pacsdash.archive.records import ActionRecord

LOGGER = logging.getLogger(__name__)

#: The actions the contract names (``action=`` filter values).
ACTIONS = ("login", "query", "retrieve", "export", "anonymize", "delete", "upload", "send", "peer_refused",
           "user_change", "label_change", "repair")
COLUMNS = ("time", "user", "address", "action", "outcome", "studies")
MAX_LIMIT = 10_000


class BadFilter(ValueError):
    """An audit filter that cannot be used (an unknown action, a bad time); the message says which."""


def parse_time(text: str, name: str) -> dt.datetime:
    """An ISO-8601 date or date-time (UTC when no zone is given)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{name} must be an ISO-8601 date or time, e.g. 2026-12-01 or 2026-12-01T08:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def filters(user: str = "", action: str = "", study: str = "", since: str = "", until: str = "",
            limit: str | int = 100, offset: str | int = 0) -> dict[str, Any]:
    """Checked keyword arguments of :meth:`Archive.records` from text filters."""
    if action and action not in ACTIONS:
        raise BadFilter(f"action must be one of {', '.join(ACTIONS)}")
    try:
        limit, offset = int(str(limit)[:9]), int(str(offset)[:12])
    except ValueError:
        raise BadFilter("limit and offset must be whole numbers") from None
    if not 0 < limit <= MAX_LIMIT or offset < 0:
        raise BadFilter(f"limit must be 1 to {MAX_LIMIT} and offset 0 or more")
    if len(user) > 256 or len(study) > 64:
        raise BadFilter("user or study too long")
    return {"actor": user or None, "action": action or None, "study": study or None, "limit": limit,
            "offset": offset, "since": parse_time(since, "since") if since else None,
            "until": parse_time(until, "until") if until else None}


def entry(record: ActionRecord) -> dict[str, Any]:
    """One record as an audit entry."""
    time = record.time.astimezone(dt.timezone.utc).isoformat() if record.time else None
    return {"time": time, "user": record.actor, "address": record.address, "action": record.action,
            "outcome": record.outcome, "studies": list(record.studies)}


#: First characters that make a spreadsheet read a cell as a formula (CWE-1236).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a failed login's user name is
    whatever a stranger typed, and ``=HYPERLINK(...)`` must not become a formula."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def as_csv(entries: Iterable[dict[str, Any]]) -> str:
    """The entries as CSV (studies joined by ``\\``, as DICOM joins values); a
    cell that a spreadsheet would take for a formula starts with ``'``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in entries:
        writer.writerow([_cell(v) for v in (item["time"], item["user"], item["address"], item["action"],
                                            item["outcome"], "\\".join(item["studies"]))])
    return out.getvalue()


#: Records that must not hold up their caller (a login on the event loop) are written from here, in order.
_LATER = ThreadPoolExecutor(1, thread_name_prefix="pacsdash-audit")


def login_recorder(archive: Any) -> Callable[[str, str, bool], None]:
    """``record(user, address, succeeded)``: a login or a failed login in the
    audit trail, written in the background (PS3.15 A.5.3.12 User Authentication)."""

    def record(user: str, address: str, succeeded: bool) -> None:
        entry = ActionRecord(actor=user[:256], action="login", studies=[], address=address,
                             outcome="success" if succeeded else "failure")
        _LATER.submit(_quietly, archive, entry)

    return record


def _quietly(archive: Any, record: ActionRecord) -> None:
    try:
        archive.record(record)
    except Exception:  # the archive closing at shutdown: an audit entry lost, said in the log
        LOGGER.warning("audit: could not record %s of %s", record.action, record.actor, exc_info=True)


#: Seconds during which the same peer refused for the same reason is recorded once (a flood stays a few rows).
REFUSAL_QUIET_SECONDS = 60.0


class _OncePer:
    """Whether a key was seen less than ``seconds`` ago (a flood stays a few rows); bounded memory."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds, self.clock = seconds, clock
        self._last: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def first(self, key: tuple) -> bool:
        """True the first time ``key`` comes in a period (and remembers it)."""
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, -self.seconds) < self.seconds:
                return False
            self._last[key] = now
            if len(self._last) > 10_000:
                self._last.clear()
        return True


def peer_refusal_recorder(archive: Any, clock: Callable[[], float] = time.monotonic) -> Callable[[Any], None]:
    """``record(rejected)``: an association refused (``AssociationRejected`` from
    :mod:`pacsdash.traffic`) as a ``peer_refused`` entry, the calling AE title
    as the user (PS3.15 A.5.3.11 Security Alert, Node Authentication); the same
    AE title, address and reason at most once a minute."""
    seen = _OncePer(REFUSAL_QUIET_SECONDS, clock)

    def record(rejected: Any) -> None:
        key = (str(rejected.calling_aet)[:16], str(rejected.address)[:64], str(rejected.reason)[:200])
        if not seen.first(key):
            return
        entry = ActionRecord(actor=key[0], action="peer_refused", studies=[], address=key[1], outcome="failure",
                             details={"reason": key[2], "called_aet": str(rejected.called_aet)[:16]})
        _LATER.submit(_quietly, archive, entry)

    return record


#: Seconds during which the same query, retrieval or upload by the same user is recorded once:
#: a viewer fetching a study's frames one by one is one retrieval in the trail.
REQUEST_QUIET_SECONDS = 60.0


def request_recorder(archive: Any, clock: Callable[[], float] = time.monotonic
                     ) -> Callable[[str, str, str, bool, list[str], dict[str, Any]], None]:
    """``record(user, address, action, succeeded, studies, details)``: a query,
    retrieval or upload through a door (PS3.15 A.5.3.10 Query, A.5.3.7 DICOM
    Instances Transferred), written in the background; the same
    one again (user, address, action, outcome, studies and query alike)
    within :data:`REQUEST_QUIET_SECONDS` is not repeated."""
    seen = _OncePer(REQUEST_QUIET_SECONDS, clock)

    def record(user: str, address: str, action: str, succeeded: bool, studies: list[str],
               details: dict[str, Any]) -> None:
        outcome = "success" if succeeded else "failure"
        studies = [str(uid)[:64] for uid in studies[:1000]]
        key = (user[:256], address[:64], action, outcome, tuple(studies), str(details.get("query", ""))[:1000])
        if not seen.first(key):
            return
        _LATER.submit(_quietly, archive, ActionRecord(actor=key[0], action=action, studies=studies, address=key[1],
                                                      outcome=outcome, details=details))

    return record
