"""Names and masks for the ``/activity`` page: UIDs by their standard names,
statuses by category, and the teaching mode's hiding of identifying values.

Teaching mode (for a classroom projector) hides what identifies a patient or a
site, and keeps what the lesson is about:

- hidden: patient names, patient IDs and every other value of a query
  identifier or of an instance that is not on :data:`SHOWN_KEYS`; Study,
  Series and SOP Instance UIDs (replaced by numbered placeholders, the same
  number for the same UID throughout one page, so a class can still follow
  one study); peer host addresses (the port stays: it tells connections
  apart and identifies nobody);
- shown: AE titles (they name devices, and are the point of the lesson),
  SOP Class and Transfer Syntax UIDs (standard, with their names),
  presentation context IDs, message IDs, statuses, sizes, times, and HTTP
  routes (recorded as templates, never with UIDs or patient IDs).
"""

from __future__ import annotations

import functools
import html

from pydicom.uid import UID
from pynetdicom.status import code_to_category

#: Identifier keys whose values say nothing about a patient (PS3.15 E.1 keeps them).
SHOWN_KEYS = frozenset({
    "QueryRetrieveLevel", "Modality", "ModalitiesInStudy", "SOPClassUID", "SOPClassesInStudy",
    "SpecificCharacterSet", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances", "NumberOfPatientRelatedStudies", "MoveDestination",
    "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations", "ErrorComment", "InstanceNumber", "SeriesNumber",
})
#: Keys holding UIDs of a patient's data, replaced by placeholders.
INSTANCE_UID_KEYS = {
    "StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SOPInstanceUID": "instance",
    "AffectedSOPInstanceUID": "instance",
}
HIDDEN = "‹hidden›"


@functools.lru_cache(maxsize=1024)
def uid_name(uid: str) -> str:
    """The standard's name of a SOP Class or Transfer Syntax UID, else the UID."""
    try:
        name = UID(uid).name
    except Exception:  # not a UID at all
        return uid
    return name or uid


def status_text(status: int | None) -> str:
    """``0000 Success``, ``FF00 Pending``, ``A700 Failure`` (PS3.7 C; PS3.4 per service)."""
    if status is None:
        return ""
    try:
        category = code_to_category(status)
    except Exception:  # an out-of-range value from a peer
        category = "Unknown"
    return f"{status:04X} {category}"


def status_class(status: int | None) -> str:
    """A CSS class for a status: ok, pending, warning or failure."""
    if status is None:
        return ""
    category = status_text(status).split(" ", 1)[1]
    return {"Success": "ok", "Pending": "pending", "Cancel": "warning", "Warning": "warning"}.get(category, "failure")


class Masker:
    """Escapes every value for HTML and, in teaching mode, hides identifying ones.

    The placeholders' numbers are kept for the life of the masker (one page
    session), so the same study has the same number at every refresh.
    """

    def __init__(self, teaching: bool = False) -> None:
        self.teaching = teaching
        self._numbers: dict[tuple[str, str], int] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = sum(1 for k in self._numbers if k[0] == kind) + 1
        return f"‹{kind} {number}›"

    def text(self, value: object) -> str:
        """Any value from outside (AE titles included), escaped."""
        return html.escape(str(value))

    def patient(self, value: str, kind: str = "patient") -> str:
        """A patient's name or ID."""
        if not self.teaching or not value:
            return html.escape(value)
        return html.escape(self._placeholder(kind, value))

    def uid(self, value: str, kind: str) -> str:
        """A Study, Series or SOP Instance UID."""
        if not self.teaching or not value:
            return html.escape(value)
        return html.escape(self._placeholder(f"{kind} UID", value))

    def host(self, address: str) -> str:
        """A peer's host address."""
        return HIDDEN if self.teaching else html.escape(address)

    def value(self, keyword: str, value: str) -> str:
        """A value of a query identifier or a command set, by its keyword."""
        if not self.teaching or not value or keyword in SHOWN_KEYS:
            return html.escape(value)
        kind = INSTANCE_UID_KEYS.get(keyword)
        if kind is not None:
            return self.uid(value, kind)
        if keyword == "PatientName":
            return self.patient(value)
        if keyword == "PatientID":
            return self.patient(value, "patient ID")
        return HIDDEN

    def syntax(self, uid: str) -> str:
        """A SOP Class or Transfer Syntax UID, by name (never hidden: they are standard)."""
        name = uid_name(uid)
        if name == uid:
            return html.escape(uid)
        return f'<span title="{html.escape(uid)}">{html.escape(name)}</span>'
