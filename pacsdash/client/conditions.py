"""Cohort conditions: DICOM matching plus numeric comparisons, on any attribute.

A condition is a value as QIDO takes it (exact, ``*``/``?`` wildcards,
``lo-hi`` ranges for dates and times, ``a\\b`` lists of UIDs or code
strings) or a numeric comparison (``<=1``, ``<1``, ``>=1.5``, ``>1.5``,
``!=0``). pacsdash evaluates all of them in the server; for another server,
what it cannot evaluate is checked here, on the attributes it returns
(:func:`matches`), with the same rules (PS3.4 C.2.2.2).
"""

from __future__ import annotations

import fnmatch
import operator
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

COMPARISON = re.compile(r"^\s*(<=|>=|<|>|!=)\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)\s*$")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "!=": operator.ne}
NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
OLD_DATE = re.compile(r"^\d{4}\.\d{2}\.\d{2}$")
#: Attributes every QIDO-RS server must match, per level (PS3.18 Table 10.6.1-5).
STANDARD_KEYS = {
    "study": {"StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
              "PatientName", "PatientID", "StudyInstanceUID", "StudyID"},
    "series": {"Modality", "SeriesInstanceUID", "SeriesNumber", "PerformedProcedureStepStartDate",
               "PerformedProcedureStepStartTime"},
    "instance": {"SOPClassUID", "SOPInstanceUID", "InstanceNumber"},
}
LEVELS = ("study", "series", "instance")


@dataclass(frozen=True)
class Condition:
    """One condition on one attribute."""

    keyword: str
    value: str
    vr: str

    @property
    def is_comparison(self) -> bool:
        return self.vr in NUMBER_VRS and COMPARISON.match(self.value) is not None

    @property
    def is_range(self) -> bool:
        """A date, time or date-time range (``lo-hi``, ``lo-``, ``-hi``)."""
        return self.vr in RANGE_VRS and "-" in self.value.strip()

    def standard_at(self, level: str) -> bool:
        """Whether every QIDO-RS server matches it at ``level`` (and the levels above)."""
        if self.is_comparison:
            return False
        upto = LEVELS[: LEVELS.index(level) + 1]
        return any(self.keyword in STANDARD_KEYS[lvl] for lvl in upto)


def parse(conditions: dict[str, Any]) -> list[Condition]:
    """Conditions from ``keyword=value`` (a number is taken as an exact value).

    Raises
    ------
    ValueError
        For a name that is neither a keyword nor a tag.
    """
    out = []
    for name, value in conditions.items():
        tag = tag_for_keyword(name)
        if tag is None:
            try:
                tag = int(name, 16)
            except ValueError:
                raise ValueError(f"{name!r} is neither a DICOM keyword nor a tag") from None
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        out.append(Condition(name, str(value), vr))
    return out


def _texts(value: Any) -> list[str]:
    """Each value as text; a person name's alphabetic group."""
    if value is None:
        return []
    # pydicom's MultiValue is a sequence but neither a list nor a tuple
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
    return [v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in items]


def _fold(text: str) -> str:
    text = text.replace("^", " ").lower()
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _one(condition: Condition, value: str) -> bool:
    wanted = condition.value.strip()
    if condition.is_comparison:
        op, number = COMPARISON.match(wanted).group(1, 2)
        try:
            return OPERATORS[op](float(value), float(number))
        except ValueError:
            return False
    if condition.vr == "DA" and OLD_DATE.match(value):
        value = value.replace(".", "")  # ACR-NEMA's YYYY.MM.DD, as archives read it
    if condition.vr in RANGE_VRS and "-" in wanted:
        low, _, high = wanted.partition("-")
        return (not low or value >= low) and (not high or value <= high or value.startswith(high))
    options = wanted.split("\\") if condition.vr in ("UI", "CS") else [wanted]
    for option in options:
        if condition.vr == "PN":
            option, value = _fold(option), _fold(value)
        if ("*" in option or "?" in option) and condition.vr != "UI":
            if fnmatch.fnmatchcase(value, option.replace("[", "[[]")):
                return True
        elif value == option:
            return True
    return False


def matches(condition: Condition, value: Any) -> bool:
    """Whether an attribute's value (any of its values) meets ``condition``.

    ``value`` is as the DICOM JSON model or pydicom gives it (text, number,
    list, or ``{"Alphabetic": ...}`` for names).
    """
    if condition.value.strip() in ("", "*"):
        return True
    return any(_one(condition, text) for text in _texts(value))
