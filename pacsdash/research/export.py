"""Cohort export: studies or any matching instances, as ZIP, folder, DICOMDIR or NIfTI.

One pipeline for every door (CLI, JSON API, dashboard). It selects the
instances (StudyInstanceUIDs and/or QIDO-style conditions on any attribute),
optionally de-identifies them, and writes them out with a ``manifest.csv``
at the root (``subject,study,series,sop_instance,modality,path,sha256,note``):
one row per file written and one, with an empty path, per series or
instance left out and why.

Work happens in ``OUT.part/`` beside the destination, with the manifest
appended (and synced) as each file lands, so an interrupted export started
again with the same request resumes where it stopped; the destination
appears whole, by a rename, at the end. Memory stays flat: one instance
(or one series, for NIfTI) at a time.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from pacsdash.archive import InstanceLocation, Level, Query, StoredFileError
from pacsdash.research.anonymize import SubjectSeen, deidentify_instance
from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.options import Option

LOGGER = logging.getLogger(__name__)
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["subject", "study", "series", "sop_instance", "modality", "path", "sha256", "note"]
#: The request an unfinished export was started with (to resume only the same one).
REQUEST_FILE = ".pacsdash-export.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


#: What a file error says in a manifest note (never a path or an original UID).
_FILE_PROBLEMS = {"MissingFile": "missing", "DamagedFile": "damaged", "StoredFileError": "unreadable"}


class ExportError(ValueError):
    """The export cannot be done as asked; the message says why."""


class ExportFormat(enum.Enum):
    ZIP = "zip"
    FOLDER = "folder"
    DICOMDIR = "dicomdir"
    NIFTI = "nifti"


@dataclass
class ExportRequest:
    """What to export, where and how."""

    out: Path
    studies: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    format: ExportFormat = ExportFormat.ZIP
    anonymize: bool = False
    options: frozenset[Option] = frozenset()
    include_burned_in: bool = False

    def fingerprint(self) -> dict[str, Any]:
        return {"studies": sorted(self.studies), "where": dict(sorted(self.where.items())),
                "format": self.format.value, "anonymize": self.anonymize,
                "options": sorted(o.value for o in self.options), "include_burned_in": self.include_burned_in}


@dataclass
class ExportSummary:
    """What an export wrote."""

    out: Path
    format: ExportFormat
    studies: list[str]
    files: int = 0
    left_out: int = 0
    instances: int = 0
    resumed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "format": self.format.value, "studies": self.studies, "files": self.files,
                "left_out": self.left_out, "instances": self.instances, "resumed": self.resumed}


def safe_name(text: str, fallback: str = "unknown") -> str:
    """A path component made of letters, digits, ``.``, ``_`` and ``-`` only."""
    name = _SAFE.sub("_", text.strip()).strip("._")
    return name[:64] or fallback


def select(archive: Any, request: ExportRequest) -> list[InstanceLocation]:
    """The instances of the request: its studies, and those matching its conditions.

    Raises
    ------
    ExportError
        If a study is unknown or nothing matches.
    """
    chosen: dict[str, InstanceLocation] = {}
    for uid in request.studies:
        found = archive.locate(Level.STUDY, uid)
        if not found:
            raise ExportError(f"no study {uid[:80]!r} in the archive")
        chosen.update((loc.SOPInstanceUID, loc) for loc in found)
    if request.where:
        for loc in archive.locate_matching(Query(Level.IMAGE, dict(request.where))):
            chosen.setdefault(loc.SOPInstanceUID, loc)
    if not chosen:
        raise ExportError("nothing to export: no study given and no instance matches the conditions")
    return sorted(chosen.values(), key=lambda l: (l.StudyInstanceUID, l.SeriesInstanceUID, l.SOPInstanceUID))


class _Manifest:
    """``manifest.csv`` being written: rows appended and synced one by one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        self.rows: int = 0
        exists = path.exists()
        if exists:
            with open(path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    self.rows += 1
                    self.done.update(_row_keys(row))
        self._handle = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, MANIFEST_COLUMNS)
        if not exists:
            self._writer.writeheader()

    def add(self, **row: str) -> None:
        self._writer.writerow({c: row.get(c, "") for c in MANIFEST_COLUMNS})
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done.update(_row_keys(row))
        self.rows += 1

    def restart(self) -> None:
        """Forget every row (for a File-set, written again from the start)."""
        self._handle.seek(0)
        self._handle.truncate()
        self._writer.writeheader()
        self.done.clear()
        self.rows = 0

    def close(self) -> None:
        self._handle.close()


def _row_keys(row: dict) -> set[str]:
    """What a manifest row stands for, to skip it when resuming: an instance,
    or (a row without one) a whole series."""
    if row.get("sop_instance"):
        return {f"{row.get('series', '')}|{row['sop_instance']}"}
    return {f"series:{row.get('series', '')}"}


class Exporter:
    """Runs one :class:`ExportRequest` against an archive."""

    def __init__(self, archive: Any, request: ExportRequest, deidentifier: Deidentifier | None = None,
                 progress: Callable[[int, int], None] | None = None, seen: SubjectSeen | None = None) -> None:
        if request.anonymize and deidentifier is None:
            raise ExportError("an anonymized export needs a de-identifier")
        self.archive = archive
        self.request = request
        self.deidentifier = deidentifier if request.anonymize else None
        self.progress = progress or (lambda done, total: None)
        self.seen = seen
        self.out = Path(request.out)
        self.work = self.out.with_name(self.out.name + ".part")

    # -- the whole run ---------------------------------------------------------
    def run(self) -> ExportSummary:
        if self.out.exists():
            raise ExportError(f"{self.out} already exists; name a path that does not exist yet")
        locations = select(self.archive, self.request)
        self._prepare()
        manifest = _Manifest(self.work / MANIFEST)
        resumed = manifest.rows
        summary = ExportSummary(self.out, self.request.format,
                                sorted({l.StudyInstanceUID for l in locations}), instances=len(locations))
        try:
            if self.request.format is ExportFormat.NIFTI:
                self._nifti(locations, manifest)
            elif self.request.format is ExportFormat.DICOMDIR:
                self._dicomdir(locations, manifest)
            else:
                self._dicom(locations, manifest)
        finally:
            manifest.close()
        summary.resumed = resumed
        summary.files, summary.left_out = _count_rows(self.work / MANIFEST)
        self._finish()
        return summary

    def _prepare(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        wanted = self.request.fingerprint()
        marker = self.work / REQUEST_FILE
        if self.work.exists():
            try:
                started = json.loads(marker.read_text())
            except (OSError, ValueError):
                started = None
            if started != wanted:
                raise ExportError(f"{self.work} holds an unfinished export of another request; remove it or export "
                                  f"to another path")
            LOGGER.info("resuming the export into %s", self.out)
            return
        self.work.mkdir()
        marker.write_text(json.dumps(wanted))

    def _finish(self) -> None:
        (self.work / REQUEST_FILE).unlink(missing_ok=True)
        if self.request.format is ExportFormat.ZIP:
            partial = self.out.with_name(self.out.name + ".zip-part")
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
                for path in sorted(p for p in self.work.rglob("*") if p.is_file()):
                    bundle.write(path, path.relative_to(self.work).as_posix())
            os.replace(partial, self.out)
            shutil.rmtree(self.work)
        else:
            os.replace(self.work, self.out)

    # -- reading and de-identifying -------------------------------------------
    def _instance(self, location: InstanceLocation) -> tuple[bytes | None, dict[str, str], str]:
        """``(bytes to write, manifest identity, "")`` or ``(None, identity, reason)``."""
        try:
            with self.archive.open(location) as handle:
                raw = handle.read()
        except StoredFileError as exc:  # reported by `pacsdash check`; the export goes on without it
            return None, self._identity(location), f"the stored file is {_FILE_PROBLEMS[type(exc).__name__]}"
        if self.deidentifier is None:
            try:
                ds = dcmread(io.BytesIO(raw), stop_before_pixels=True)
            except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
                return None, _identity_of(location), f"cannot be read: {exc}"
            return raw, {"subject": str(ds.get("PatientID", "") or ""), "study": location.StudyInstanceUID,
                         "series": location.SeriesInstanceUID, "sop_instance": location.SOPInstanceUID,
                         "modality": str(ds.get("Modality", "") or "")}, ""
        done, reason = deidentify_instance(raw, self.deidentifier, self.request.include_burned_in, self.seen)
        if done is None:
            return None, self._pseudonymous_identity(location), reason
        ds = done.dataset
        return done.data, {"subject": done.subject.PatientID, "study": str(ds.get("StudyInstanceUID", "")),
                                 "series": str(ds.get("SeriesInstanceUID", "")),
                                 "sop_instance": str(ds.get("SOPInstanceUID", "")),
                                 "modality": str(ds.get("Modality", "") or "")}, ""

    def _pseudonymous_identity(self, location: InstanceLocation) -> dict[str, str]:
        """The manifest identity of an instance left out of an anonymized export:
        never an original identifier."""
        uid = self.deidentifier.pseudonyms.uid if self.deidentifier.replaces_uids else (lambda u: u)
        return {"subject": "", "study": uid(location.StudyInstanceUID), "series": uid(location.SeriesInstanceUID),
                "sop_instance": uid(location.SOPInstanceUID), "modality": ""}

    def _identity(self, location: InstanceLocation) -> dict[str, str]:
        return self._pseudonymous_identity(location) if self.deidentifier else _identity_of(location)

    # -- DICOM files (zip and folder) ------------------------------------------
    def _dicom(self, locations: list[InstanceLocation], manifest: _Manifest) -> None:
        for number, location in enumerate(locations, 1):
            identity = self._identity(location)
            if _instance_done(manifest, identity):
                self.progress(number, len(locations))
                continue
            data, identity, reason = self._instance(location)
            if data is None:
                manifest.add(**identity, note=f"left out: {reason}")
            else:
                relative = Path(safe_name(identity["subject"], "no-patient-id"), identity["study"], identity["series"],
                                f"{identity['sop_instance']}.dcm")
                _write_durably(self.work / relative, data)
                manifest.add(**identity, path=relative.as_posix(), sha256=hashlib.sha256(data).hexdigest())
            self.progress(number, len(locations))

    # -- DICOMDIR (PS3.10 File-set, written by pydicom) --------------------------
    def _dicomdir(self, locations: list[InstanceLocation], manifest: _Manifest) -> None:
        from pydicom.fileset import FileSet

        # A File-set is written in one go: an interrupted one starts again.
        for leftover in self.work.iterdir():
            if leftover.name not in (MANIFEST, REQUEST_FILE):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        manifest.restart()
        staging = self.work / ".staging"
        staging.mkdir(exist_ok=True)
        fileset = FileSet()
        staged: list[tuple[dict[str, str], str]] = []
        for number, location in enumerate(locations, 1):
            data, identity, reason = self._instance(location)
            if data is None:
                if not _instance_done(manifest, identity):
                    manifest.add(**identity, note=f"left out: {reason}")
            else:
                path = staging / f"{number:06d}.dcm"
                data, filled = complete_for_dicomdir(data, number)
                path.write_bytes(data)
                try:
                    fileset.add(path)
                    staged.append((identity, filled))
                except (ValueError, NotImplementedError, KeyError, AttributeError) as exc:
                    manifest.add(**identity, note=f"left out: no DICOMDIR record for it ({exc})")
            self.progress(number, len(locations))
        fileset.write(self.work)
        written = {i.ReferencedSOPInstanceUIDInFile: i.FileID for i in FileSet(self.work / "DICOMDIR")}
        for identity, filled in staged:
            relative = Path(*written[identity["sop_instance"]].split("\\"))
            data = (self.work / relative).read_bytes()
            manifest.add(**identity, path=relative.as_posix(), sha256=hashlib.sha256(data).hexdigest(),
                         note=f"empty in the instance, filled for its DICOMDIR record: {filled}" if filled else "")
        shutil.rmtree(staging, ignore_errors=True)

    # -- NIfTI through dcm2niix --------------------------------------------------
    def _nifti(self, locations: list[InstanceLocation], manifest: _Manifest) -> None:
        by_series: dict[str, list[InstanceLocation]] = defaultdict(list)
        for location in locations:
            by_series[location.SeriesInstanceUID].append(location)
        sessions = self._sessions(locations)
        done = 0
        for series_uid, members in by_series.items():
            key = f"series:{self._identity(members[0])['series']}"
            if key in manifest.done:
                done += len(members)
                self.progress(done, len(locations))
                continue
            self._nifti_series(members, sessions, manifest, key)
            done += len(members)
            self.progress(done, len(locations))

    def _sessions(self, locations: list[InstanceLocation]) -> dict[str, int]:
        """Each study's session number among its patient's studies (by StudyDate, then UID)."""
        studies = sorted({l.StudyInstanceUID for l in locations})
        rows = self.archive.find(Query(Level.STUDY, {"StudyInstanceUID": "\\".join(studies)},
                                       ["PatientID", "StudyDate"]))
        by_patient: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for row in rows:
            by_patient[str(row.get("PatientID") or "")].append((str(row.get("StudyDate") or ""),
                                                                 str(row["StudyInstanceUID"])))
        sessions = {}
        for studies_of in by_patient.values():
            for number, (_, uid) in enumerate(sorted(studies_of), 1):
                sessions[uid] = number
        return sessions

    def _nifti_series(self, members: list[InstanceLocation], sessions: dict[str, int], manifest: _Manifest,
                      key: str) -> None:
        with tempfile.TemporaryDirectory(prefix="pacsdash-nifti-", dir=self.work) as scratch:
            folder = Path(scratch)
            identity: dict[str, str] | None = None
            headers = []
            for number, location in enumerate(members):
                data, this, reason = self._instance(location)
                if data is None:
                    manifest.add(**this, note=f"left out: {reason}")
                    continue
                identity = identity or this
                (folder / f"{number:06d}.dcm").write_bytes(data)
                headers.append(dcmread(io.BytesIO(data), stop_before_pixels=True))
            if identity is None:
                return
            series_row = {**identity, "sop_instance": ""}
            reason = not_a_volume(headers)
            if reason:
                manifest.add(**series_row, note=f"series left out of the NIfTI export: {reason}")
                return
            modality = safe_name(identity["modality"].lower() or "unknown")
            session = sessions.get(members[0].StudyInstanceUID, 1)
            target = self.work / f"sub-{safe_name(identity['subject'], 'unknown')}" / f"ses-{session:02d}" / modality
            target.mkdir(parents=True, exist_ok=True)
            stem = f"series-{safe_name(str(headers[0].get('SeriesNumber', '') or ''), 'x')}-{identity['series'][-12:]}"
            for stale in target.glob(f"{stem}*"):  # from a run interrupted before its manifest row
                stale.unlink()
            written, message = run_dcm2niix(folder, target, stem)
            if not written:
                manifest.add(**series_row, note=f"series left out of the NIfTI export: {message}")
                return
            for path in written:
                relative = path.relative_to(self.work)
                manifest.add(**series_row, path=relative.as_posix(), sha256=_sha256(path),
                             note="" if len(written) == 1 else "dcm2niix split the series")


#: Type 1 keys of the DICOMDIR's PATIENT, STUDY, SERIES and IMAGE records
#: (PS3.3 F.5) and what stands in for them when an instance has none.
DIRECTORY_KEYS = {"PatientID": "UNKNOWN", "StudyDate": "19000101", "StudyTime": "000000", "StudyID": "1",
                  "Modality": "OT", "SeriesNumber": "1"}


def complete_for_dicomdir(data: bytes, number: int) -> tuple[bytes, str]:
    """The instance with the keys a DICOMDIR record needs filled in where
    empty (as dcmmkdir's ``+I`` does), and which were."""
    ds = dcmread(io.BytesIO(data))
    filled = []
    for keyword, value in DIRECTORY_KEYS.items():
        if not str(ds.get(keyword, "") or "").strip():
            setattr(ds, keyword, value)
            filled.append(f"{keyword}={value}")
    if not str(ds.get("InstanceNumber", "") or "").strip():
        ds.InstanceNumber = str(number)
        filled.append(f"InstanceNumber={number}")
    if not filled:
        return data, ""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), ", ".join(filled)


def not_a_volume(headers: list) -> str:
    """Why a series cannot become a volume, or ``""``: non-images, localizers,
    single 2D images, mixed orientations or sizes."""
    if not headers:
        return "no instances"
    if not all("Rows" in h and "Columns" in h for h in headers):
        return f"not images ({headers[0].get('Modality', '') or 'no modality'}, e.g. SR, RT or waveforms)"
    if any("LOCALIZER" in [str(v).upper() for v in (h.get("ImageType") or [])] for h in headers):
        return "a localizer"
    frames = sum(int(h.get("NumberOfFrames", 1) or 1) for h in headers)
    if frames < 2:
        return "a single 2D image"
    orientations = {tuple(round(float(v), 3) for v in h.get("ImageOrientationPatient") or ()) for h in headers}
    if len(orientations) > 1:
        return "mixed orientations"
    if len({(h.Rows, h.Columns) for h in headers}) > 1:
        return "mixed image sizes"
    if len(headers) > 1 and not all("ImagePositionPatient" in h for h in headers):
        return "no ImagePositionPatient to order the slices"
    return ""


def run_dcm2niix(folder: Path, target: Path, stem: str) -> tuple[list[Path], str]:
    """Convert one series' files with dcm2niix (compressed NIfTI and a BIDS
    JSON sidecar); return the ``.nii.gz`` written, or ``[]`` and why not."""
    try:
        from dcm2niix import bin as dcm2niix
    except ImportError:
        return [], "dcm2niix is not installed (pip install dcm2niix)"
    before = set(target.glob("*.nii.gz"))
    process = subprocess.run([dcm2niix, "-z", "y", "-b", "y", "-ba", "y", "-f", stem, "-o", str(target), str(folder)],
                             capture_output=True, text=True, timeout=600, check=False)
    written = sorted(set(target.glob("*.nii.gz")) - before)
    if not written:
        lines = [line for line in (process.stdout + process.stderr).splitlines()
                 if "warning" in line.lower() or "error" in line.lower()]
        return [], "dcm2niix wrote no volume" + (f" ({lines[-1].strip()[:200]})" if lines else "")
    return written, ""


def _identity_of(location: InstanceLocation) -> dict[str, str]:
    return {"subject": "", "study": location.StudyInstanceUID, "series": location.SeriesInstanceUID,
            "sop_instance": location.SOPInstanceUID, "modality": ""}


def _instance_done(manifest: _Manifest, identity: dict[str, str]) -> bool:
    return f"{identity['series']}|{identity['sop_instance']}" in manifest.done


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _count_rows(manifest: Path) -> tuple[int, int]:
    files = left_out = 0
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["path"]:
                files += 1
            else:
                left_out += 1
    return files, left_out


def read_manifest(path: Path | Iterable[str]) -> list[dict[str, str]]:
    """The rows of a ``manifest.csv`` (a path or its lines)."""
    if isinstance(path, Path):
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return list(csv.DictReader(path))
