"""Does the index agree with the file store? (``pacsdash check [--repair]``)

:func:`check_archive` reads every indexed instance's file and every file in
the store, and returns a :class:`CheckReport` naming each :class:`Problem`
by SOP Instance UID and store key:

- ``orphan file``: a file in the store no index row refers to;
- ``missing file``: an index row whose file is gone (or names no store file);
- ``size mismatch``: the file holds another number of bytes than received;
- ``unreadable file``: the file is no longer a complete DICOM instance;
- ``identity mismatch``: the file's SOP Instance, Series or Study UID is not
  the one its row says;
- ``hash mismatch``: the file's SHA-256 differs from the one the first check
  saw (bit rot, or an edit on disk).

Hashes live in a side table of the index (``file_hashes``), filled by the
first check that sees a file intact ("first seen") and compared by every
later one. The first check therefore cannot tell a file changed before it
(a flipped bit in pixel data, say) from one received so: it finds only
what breaks the structure, the size or the identity. Hashes are kept only
with the DuckDB index.

Repair (``repair=True``) never deletes a file and never loses anything
silently; each problem says what was done:

- an orphan file that parses and whose instance is not indexed is indexed;
  an orphan that is unreadable, or a second copy of an indexed instance, is
  moved to the quarantine folder;
- a row whose file is gone is dropped (the instance is lost: the report says
  so, to restore it from a peer or a backup);
- a file of the wrong size, unreadable, or with another hash is moved to the
  quarantine folder (with a ``.json`` note naming the problem) and its row
  dropped;
- a file with another identity than its row keeps its bytes: the row is
  dropped and the file indexed from its own header (quarantined if that
  instance is indexed already).

While a server runs, files may be on their way in: a live check leaves out
store files younger than :data:`IN_FLIGHT_SECONDS` and confirms every
problem against the index once more before it reports or repairs it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pacsdash.archive.archive import Archive, Outcome
from pacsdash.archive.attributes import Level
from pacsdash.archive.index import InstanceLocation
from pacsdash.archive.parsing import InvalidInstance, parse_instance
from pacsdash.archive.store import is_key

LOGGER = logging.getLogger(__name__)
#: Store files younger than this are left out of a live check (still being stored) [s].
IN_FLIGHT_SECONDS = 60.0
#: A live check waits this long before it confirms a missing file (a write may be finishing) [s].
SETTLE_SECONDS = 1.0
#: Rows read, hashed and compared per round trip to the index.
CHUNK = 1000
HASH_TABLE = "file_hashes"
REPAIR_FAILED = "repair failed"
HASH_SCHEMA = f"""CREATE TABLE IF NOT EXISTS {HASH_TABLE} (
    file VARCHAR PRIMARY KEY,
    "SOPInstanceUID" VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL
)"""

Progress = Callable[[int, int], None]


class ProblemKind(enum.Enum):
    """What can be wrong between the index and the store."""

    ORPHAN_FILE = "orphan file"
    MISSING_FILE = "missing file"
    SIZE_MISMATCH = "size mismatch"
    UNREADABLE_FILE = "unreadable file"
    IDENTITY_MISMATCH = "identity mismatch"
    HASH_MISMATCH = "hash mismatch"


#: Kinds whose file is moved to the quarantine (and its row dropped) by a repair.
DAMAGED = frozenset({ProblemKind.SIZE_MISMATCH, ProblemKind.UNREADABLE_FILE, ProblemKind.HASH_MISMATCH})


@dataclass
class Problem:
    """One disagreement, named by SOP Instance UID (empty if unknown) and store key."""

    kind: ProblemKind
    SOPInstanceUID: str
    file: str
    detail: str
    #: What a repair did ("" when not repaired).
    repaired: str = ""
    #: The study the row names ("" for a file without row).
    StudyInstanceUID: str = ""

    def line(self) -> str:
        """One line for a person: kind, UID, file, detail, repair."""
        uid = self.SOPInstanceUID or "(SOP Instance UID unknown)"
        text = f"{self.kind.value}: {uid} file {self.file}: {self.detail}"
        return f"{text}; repaired: {self.repaired}" if self.repaired else text

    def as_json(self) -> dict[str, str]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Problem:
        return cls(ProblemKind(value["kind"]), str(value["SOPInstanceUID"]), str(value["file"]),
                   str(value["detail"]), str(value.get("repaired", "")), str(value.get("StudyInstanceUID", "")))


@dataclass
class CheckReport:
    """What a check looked at and found."""

    rows: int = 0
    files: int = 0
    #: Files hashed for the first time (nothing to compare them with yet).
    first_hashed: int = 0
    #: Files whose hash was compared with the first one seen.
    hash_verified: int = 0
    #: Store files left out as still arriving (live check only).
    in_flight: int = 0
    repair: bool = False
    hashes: bool = True
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The last line of the report."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.kind.value] = counts.get(problem.kind.value, 0) + 1
        found = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no problems"
        repaired = sum(1 for p in self.problems if p.repaired and not p.repaired.startswith(REPAIR_FAILED))
        hashes = (f"{self.hash_verified} hashes verified, {self.first_hashed} first seen" if self.hashes
                  else "hashes not kept with this index")
        text = f"checked {self.rows} index rows and {self.files} files ({hashes}): {found}"
        if self.repair and self.problems:
            text += f"; repaired {repaired}"
        if self.in_flight:
            text += f"; {self.in_flight} files still arriving were left out"
        return text

    def as_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "problems"}, "ok": self.ok,
                "problems": [p.as_json() for p in self.problems], "summary": self.summary()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> CheckReport:
        names = ("rows", "files", "first_hashed", "hash_verified", "in_flight", "repair", "hashes")
        return cls(**{k: value[k] for k in names if k in value},
                   problems=[Problem.from_json(p) for p in value.get("problems", [])])


# -- the hash side table (kept in the index, written by its writer thread) ----------
def _cursor(index: Any) -> Any | None:
    """The writer thread's cursor of a DuckDB index (None for other indexes)."""
    cursor = getattr(index, "_cursor", None)
    return cursor() if callable(cursor) else None


def _create_hashes(index: Any) -> bool:
    cur = _cursor(index)
    if cur is None:
        return False
    cur.execute(HASH_SCHEMA)
    return True


def _known_hashes(index: Any, keys: list[str]) -> dict[str, str]:
    rows = _cursor(index).execute(f"SELECT file, sha256 FROM {HASH_TABLE} WHERE file IN (SELECT unnest(?))",
                                  [keys]).fetchall()
    return dict(rows)


def _remember_hashes(index: Any, seen: list[tuple[str, str, int, str]]) -> None:
    """Keep ``(file, SOPInstanceUID, size, sha256)`` first seen now."""
    if seen:
        columns = [list(values) for values in zip(*seen)]
        _cursor(index).execute(
            f'INSERT INTO {HASH_TABLE} (file, "SOPInstanceUID", size, sha256, first_seen) '
            "SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[]), now() "
            "ON CONFLICT DO NOTHING", columns)


def _forget_hashes(index: Any, keys: list[str] | None = None) -> None:
    """Drop the hashes of ``keys``, or (None) of every file no longer indexed."""
    if keys is None:
        _cursor(index).execute(f"DELETE FROM {HASH_TABLE} WHERE file NOT IN (SELECT file FROM instances)")
    elif keys:
        _cursor(index).execute(f"DELETE FROM {HASH_TABLE} WHERE file IN (SELECT unnest(?))", [keys])


# -- looking -----------------------------------------------------------------------
@dataclass
class _Seen:
    """One indexed file as read now."""

    problem: Problem | None
    sha256: str = ""


def _examine(archive: Archive, location: InstanceLocation) -> _Seen:
    """Read one indexed instance's file and compare it with its row."""
    def problem(kind: ProblemKind, detail: str) -> _Seen:
        return _Seen(Problem(kind, location.SOPInstanceUID, location.file, detail,
                             StudyInstanceUID=location.StudyInstanceUID))

    if not is_key(location.file):
        return problem(ProblemKind.MISSING_FILE, "the row names no store file")
    try:
        raw = archive.store.read(location.file)
    except FileNotFoundError:
        return problem(ProblemKind.MISSING_FILE, "the file is not in the store")
    except OSError as exc:
        return problem(ProblemKind.UNREADABLE_FILE, f"the file cannot be read: {exc.strerror or exc}")
    if location.size is not None and len(raw) != location.size:
        return problem(ProblemKind.SIZE_MISMATCH, f"{len(raw)} bytes, {location.size} were received")
    try:
        record = parse_instance(raw)
    except InvalidInstance as exc:
        return problem(ProblemKind.UNREADABLE_FILE, str(exc)[:300])
    wrong = [f"{keyword} {found} (row: {expected})" for keyword, found, expected in (
        ("SOPInstanceUID", record.SOPInstanceUID, location.SOPInstanceUID),
        ("SeriesInstanceUID", record.SeriesInstanceUID, location.SeriesInstanceUID),
        ("StudyInstanceUID", record.StudyInstanceUID, location.StudyInstanceUID),
    ) if found != expected]
    digest = hashlib.sha256(raw).hexdigest()
    if wrong:
        seen = problem(ProblemKind.IDENTITY_MISMATCH, "the file holds " + ", ".join(wrong))
        seen.sha256 = digest
        return seen
    return _Seen(None, digest)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _check_rows(archive: Archive, rows: list[InstanceLocation], report: CheckReport,
                tick: Callable[[], None]) -> list[Problem]:
    """Examine every row's file; compare and keep hashes of intact files."""
    problems = []
    for chunk in _chunks(rows, CHUNK):
        known = archive.in_writer(lambda index, c=chunk: _known_hashes(index, [r.file for r in c])) \
            if report.hashes else {}
        first: list[tuple[str, str, int, str]] = []
        for location in chunk:
            seen = _examine(archive, location)
            tick()
            if seen.problem is None and seen.sha256 and report.hashes:
                before = known.get(location.file)
                if before is None:
                    first.append((location.file, location.SOPInstanceUID, location.size or 0, seen.sha256))
                elif before != seen.sha256:
                    seen.problem = Problem(ProblemKind.HASH_MISMATCH, location.SOPInstanceUID, location.file,
                                           f"SHA-256 {seen.sha256[:16]}..., first seen {before[:16]}...",
                                           StudyInstanceUID=location.StudyInstanceUID)
                else:
                    report.hash_verified += 1
            if seen.problem is not None:
                problems.append(seen.problem)
        if first:
            archive.in_writer(lambda index, f=first: _remember_hashes(index, f))
            report.first_hashed += len(first)
    return problems


def _orphan_problem(archive: Archive, key: str) -> Problem:
    """Name an unindexed store file by the instance it holds, if it parses."""
    try:
        record = parse_instance(archive.store.read(key))
    except (InvalidInstance, OSError) as exc:
        return Problem(ProblemKind.ORPHAN_FILE, "", key, f"no index row; not a readable instance: {str(exc)[:200]}")
    return Problem(ProblemKind.ORPHAN_FILE, record.SOPInstanceUID, key, "no index row refers to this file")


def _in_flight(archive: Archive, key: str, now: float) -> bool:
    try:
        return now - archive.store.modified(key) < IN_FLIGHT_SECONDS
    except FileNotFoundError:
        return True  # gone meanwhile: a duplicate dropped, or a study deleted


def _confirm(archive: Archive, problems: list[Problem], live: bool) -> list[Problem]:
    """Keep the problems that still hold now (a live archive changed meanwhile)."""
    if not live or not problems:
        return problems
    if any(p.kind is ProblemKind.MISSING_FILE for p in problems):
        time.sleep(SETTLE_SECONDS)  # a file write that raced its row
    archive.wait_indexed()
    indexed = archive.index.files()
    kept = []
    for problem in problems:
        if problem.kind is ProblemKind.ORPHAN_FILE:
            still = problem.file not in indexed and archive.store.exists(problem.file)
        elif problem.kind is ProblemKind.MISSING_FILE:
            still = problem.file in indexed and not (is_key(problem.file) and archive.store.exists(problem.file))
        else:
            still = problem.file in indexed
        if still:
            kept.append(problem)
    return kept


def check_archive(archive: Archive, *, repair: bool = False, quarantine: Path | None = None, live: bool = False,
                  actor: str = "check", progress: Progress | None = None) -> CheckReport:
    """Compare the index with the store; with ``repair``, make them agree.

    Parameters
    ----------
    archive
        The open archive (the server's, or one opened under the home's lock).
    repair
        Repair what is safe (see the module's documentation).
    quarantine
        Folder damaged and surplus files are moved to (required with ``repair``).
    live
        The archive is serving: leave out files still arriving, confirm each
        problem before reporting it.
    actor
        Who asked, for the record a repair leaves among the archive's actions.
    progress
        Called with ``(done, total)`` as files are examined.
    """
    if repair and quarantine is None:
        raise ValueError("a repair needs a quarantine folder")
    report = CheckReport(repair=repair)
    # A server reconciling after an unclean stop indexes (or removes) the orphan files
    # it listed; checked meanwhile, those would be reported, and repaired twice.
    archive.wait_reconciled()
    report.hashes = bool(archive.in_writer(_create_hashes))
    keys = list(archive.store.keys())  # listed before the rows: a file then indexed is not an orphan
    archive.wait_indexed()
    rows = archive.locate(Level.IMAGE)
    indexed = {location.file for location in rows}
    candidates = [key for key in keys if key not in indexed]
    now = time.time()
    if live:
        arriving = {key for key in candidates if _in_flight(archive, key, now)}
        report.in_flight = len(arriving)
        candidates = [key for key in candidates if key not in arriving]
    report.rows, report.files = len(rows), len(keys)
    total, done = len(rows) + len(candidates), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    problems = _check_rows(archive, rows, report, tick)
    for key in candidates:
        problems.append(_orphan_problem(archive, key))
        tick()
    report.problems = _confirm(archive, problems, live)
    if report.hashes:
        archive.in_writer(lambda index: _forget_hashes(index))
    if repair and report.problems:
        assert quarantine is not None
        _repair(archive, report.problems, quarantine, actor)
    for problem in report.problems:
        LOGGER.warning("check: %s", problem.line())
    return report


# -- repairing ---------------------------------------------------------------------
def _quarantine(archive: Archive, problem: Problem, folder: Path) -> str:
    """Move a file to ``folder`` (same key below it) with a note; say where."""
    destination = folder / problem.file
    archive.store.move_out(problem.file, destination)
    note = {**problem.as_json(), "quarantined_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    destination.with_name(destination.name + ".json").write_text(json.dumps(note, indent=1))
    return f"moved to {destination}"


def _adopt(archive: Archive, problem: Problem, folder: Path) -> str:
    """Index a store file from its own header, or quarantine it as a surplus copy."""
    try:
        result = archive.adopt(problem.file)
    except (InvalidInstance, OSError) as exc:
        return _quarantine(archive, problem, folder) + f" (not indexable: {str(exc)[:120]})"
    if result.outcome is Outcome.STORED:
        return (f"indexed as SOP Instance {result.SOPInstanceUID} of series {result.SeriesInstanceUID}, "
                f"study {result.StudyInstanceUID}")
    return _quarantine(archive, problem, folder) + f" (a second copy of indexed instance {result.SOPInstanceUID})"


def _repair_one(archive: Archive, problem: Problem, folder: Path) -> str:
    """Repair one problem; return what was done."""
    kind = problem.kind
    if kind is ProblemKind.ORPHAN_FILE:
        if not problem.SOPInstanceUID:
            return _quarantine(archive, problem, folder)
        return _adopt(archive, problem, folder)
    if kind is ProblemKind.MISSING_FILE:
        archive.drop_rows([problem.file])
        return "index row dropped: the instance is lost here, restore it from a peer or a backup"
    if kind in DAMAGED:
        # Moved first: a crash in between leaves a row without file, which the next check drops.
        where = _quarantine(archive, problem, folder)
        archive.drop_rows([problem.file])
        archive.in_writer(lambda index: _forget_hashes(index, [problem.file]))
        return f"{where}; index row dropped"
    # IDENTITY_MISMATCH: the bytes are kept, indexed by what they are.
    archive.drop_rows([problem.file])
    return "index row dropped; file " + _adopt(archive, problem, folder)


def _repair(archive: Archive, problems: list[Problem], folder: Path, actor: str) -> None:
    """Repair each problem in turn, noting what was done on it; keep a record."""
    from pacsdash.archive.records import ActionRecord

    for problem in problems:
        try:
            problem.repaired = _repair_one(archive, problem, folder)
        except Exception as exc:  # one failed repair must not stop the others; it is reported
            LOGGER.exception("check: repairing %s failed", problem.file)
            problem.repaired = f"{REPAIR_FAILED}: {exc}"
    try:
        studies = sorted({p.StudyInstanceUID for p in problems if p.StudyInstanceUID})
        archive.record(ActionRecord(actor=actor, action="repair", studies=studies,
                                    details={"problems": [p.as_json() for p in problems]}))
    except Exception:  # the report still says what was done
        LOGGER.exception("check: the record of the repair could not be kept")


def quarantine_folder(home: Path) -> Path:
    """Where a repair moves damaged and surplus files: ``HOME/quarantine``."""
    return Path(home) / "quarantine"


__all__ = ["CheckReport", "Problem", "ProblemKind", "check_archive", "quarantine_folder"]
