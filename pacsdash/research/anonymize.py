"""Anonymize a study into the archive: a de-identified copy beside the original.

Each instance is read from the archive, de-identified with
:class:`~pacsdash.research.deidentify.Deidentifier` and stored like any
other instance (durable before it counts). Instances whose pixels may show
identifying text are left out unless asked for, each with its reason.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from pacsdash.archive import InvalidInstance, Level, Outcome
from pacsdash.research.deidentify import Deidentified, Deidentifier, burned_in_reason, patient_key

LOGGER = logging.getLogger(__name__)
#: Instances de-identified at once (pydicom holds the GIL most of the time;
#: two overlap the reading and the durable write).
THREADS = 2


class NoSuchStudy(LookupError):
    """The archive has no study with that StudyInstanceUID."""


@dataclass(frozen=True)
class Excluded:
    """An instance left out of a de-identified copy, and why."""

    SOPInstanceUID: str
    SeriesInstanceUID: str
    reason: str


@dataclass
class AnonymizedStudy:
    """What one anonymization of a study gave."""

    original: str
    StudyInstanceUID: str
    PatientID: str
    stored: int = 0
    duplicates: int = 0
    excluded: list[Excluded] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"StudyInstanceUID": self.StudyInstanceUID, "PatientID": self.PatientID, "stored": self.stored,
                "duplicates": self.duplicates,
                "excluded": [{"SOPInstanceUID": e.SOPInstanceUID, "reason": e.reason} for e in self.excluded]}


SubjectSeen = Callable[[str, str, str], None]


def deidentify_instance(raw: bytes, deidentifier: Deidentifier, include_burned_in: bool,
                        seen: SubjectSeen | None = None) -> tuple[Deidentified | None, str]:
    """``(the de-identified instance, "")``, or ``(None, reason)`` when left out.

    ``seen(pseudonym, PatientID, IssuerOfPatientID)`` learns whom each
    pseudonym stands for (for an admin's look-up; never exported).
    """
    try:
        ds = dcmread(io.BytesIO(raw))
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        return None, f"cannot be read: {exc}"
    reason = None if include_burned_in else burned_in_reason(ds)
    if reason:
        return None, reason
    patient = patient_key(ds)
    done = deidentifier.deidentify(ds)
    if seen is not None:
        seen(done.subject.PatientID, *patient)
    return done, ""


def anonymize_study(
    archive: Any,
    study_uid: str,
    deidentifier: Deidentifier,
    origin: str,
    include_burned_in: bool = False,
    progress: Callable[[int, int], None] | None = None,
    seen: SubjectSeen | None = None,
) -> AnonymizedStudy:
    """Store a de-identified copy of ``study_uid`` in ``archive``.

    Raises
    ------
    NoSuchStudy
        If the study is not in the archive.
    """
    locations = archive.locate(Level.STUDY, study_uid)
    if not locations:
        raise NoSuchStudy(f"no study {study_uid[:80]!r}")
    new_study = deidentifier.pseudonyms.uid(study_uid) if deidentifier.replaces_uids else study_uid
    result = AnonymizedStudy(original=study_uid, StudyInstanceUID=new_study, PatientID="")

    def one(location: Any) -> tuple[Any, str, str]:
        with archive.open(location) as handle:
            raw = handle.read()
        done, reason = deidentify_instance(raw, deidentifier, include_burned_in, seen)
        if done is None:
            return location, "", reason
        try:
            stored = archive.store_bytes(done.to_bytes(), origin=origin)
        except InvalidInstance as exc:
            return location, "", f"the de-identified copy could not be stored: {exc}"
        return location, done.subject.PatientID, stored.outcome.value

    count = 0
    with ThreadPoolExecutor(THREADS, thread_name_prefix="pacsdash-anonymize") as pool:
        for location, subject, outcome in pool.map(one, locations):
            count += 1
            if not subject:
                result.excluded.append(Excluded(location.SOPInstanceUID, location.SeriesInstanceUID, outcome))
            elif outcome == Outcome.DUPLICATE.value:
                result.duplicates += 1
            else:
                result.stored += 1
            result.PatientID = result.PatientID or subject
            if progress:
                progress(count, len(locations))
    return result
