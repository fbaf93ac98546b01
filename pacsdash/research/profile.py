"""PS3.15 Table E.1-1 as data: which action each attribute gets.

The table is not typed here: ``data/ps315_<edition>.json`` was generated
from the standard's own DocBook source (part15.xml; its sha256 is in the
file) and ``data/safe_private_<edition>.csv`` lists Table E.3.10-1 (Safe
Private Attributes); the same JSON file holds Table E.3.4-1 (the content
items the Clean Structured Content Option protects); ``data/README.md`` says
where each comes from. Actions
(PS3.15 E.1.1): D dummy, Z zero length or dummy, X remove, K keep, C clean,
U replace the UID, and the combined ones (``Z/D``, ``X/Z``, ``X/D``,
``X/Z/D``, ``X/Z/U*``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from pacsdash.research.options import Option

TABLE_FILE = "ps315_2026d.json"
SAFE_PRIVATE_FILE = "safe_private_2025b.csv"
#: The table's column keys, as the data file names them.
_OPTION_KEYS = {
    "retain_safe_private": Option.RETAIN_SAFE_PRIVATE,
    "retain_uids": Option.RETAIN_UIDS,
    "retain_device_identity": Option.RETAIN_DEVICE_IDENTITY,
    "retain_institution_identity": Option.RETAIN_INSTITUTION_IDENTITY,
    "retain_patient_characteristics": Option.RETAIN_PATIENT_CHARACTERISTICS,
    "retain_longitudinal_full_dates": Option.RETAIN_FULL_DATES,
    "retain_longitudinal_modified_dates": Option.RETAIN_MODIFIED_DATES,
    "clean_descriptors": Option.CLEAN_DESCRIPTORS,
    "clean_structured_content": Option.CLEAN_STRUCTURED_CONTENT,
    "clean_graphics": Option.CLEAN_GRAPHICS,
}
#: When two chosen options both speak of one attribute, the later here wins:
#: cleaning beats keeping.
_PRECEDENCE = [
    Option.RETAIN_SAFE_PRIVATE, Option.RETAIN_UIDS, Option.RETAIN_DEVICE_IDENTITY, Option.RETAIN_INSTITUTION_IDENTITY,
    Option.RETAIN_PATIENT_CHARACTERISTICS, Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES,
    Option.CLEAN_GRAPHICS, Option.CLEAN_STRUCTURED_CONTENT, Option.CLEAN_DESCRIPTORS,
]


def _choose(basic: str, options: dict[Option, str], chosen: Iterable[Option]) -> tuple[str, str]:
    """``(action, column)`` of a row under the chosen options (:data:`_PRECEDENCE` decides between two)."""
    action, column = basic, "Basic Profile"
    chosen = set(chosen)
    for option in _PRECEDENCE:
        if option in chosen and option in options:
            action, column = options[option], option.value
    return action, column


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str  # eight hex digits, ``x`` for a repeating group's wildcard digits
    name: str
    basic: str
    options: dict[Option, str] = field(default_factory=dict)

    def action(self, chosen: Iterable[Option]) -> tuple[str, str]:
        """``(action, column)``: what to do with this attribute under the chosen options."""
        return _choose(self.basic, self.options, chosen)


@dataclass(frozen=True)
class ContentRule:
    """One row of Table E.3.4-1: a content item (by its concept name) that the
    Clean Structured Content Option protects, with its action per column."""

    code: str
    scheme: str
    meaning: str
    value_type: str
    basic: str
    options: dict[Option, str] = field(default_factory=dict)

    def action(self, chosen: Iterable[Option]) -> tuple[str, str]:
        """``(action, column)``: what to do with the content item's value under the chosen options."""
        return _choose(self.basic, self.options, chosen)


@dataclass(frozen=True)
class SafePrivate:
    """A private attribute that Table E.3.10-1 says is safe to keep."""

    group: int
    element: int  # the low byte only: the block is given by the creator
    creator: str
    name: str


class ConfidentialityTable:
    """Table E.1-1 of one edition, looked up by tag."""

    def __init__(self, edition: str, rules: list[Rule], safe_private: list[SafePrivate],
                 content: Iterable[ContentRule] = ()) -> None:
        self.edition = edition
        self._exact: dict[int, Rule] = {}
        self._repeating: list[tuple[int, int, Rule]] = []
        self.private: Rule | None = None
        for rule in rules:
            if rule.tag == "PRIVATE":
                self.private = rule
            elif "x" in rule.tag.lower():
                mask = int("".join("0" if c in "xX" else "F" for c in rule.tag), 16)
                value = int(rule.tag.lower().replace("x", "0"), 16)
                self._repeating.append((mask, value, rule))
            else:
                self._exact[int(rule.tag, 16)] = rule
        self._safe = {(s.group, s.element, s.creator.strip().upper()): s for s in safe_private}
        self._content = {(c.code.strip(), c.scheme.strip().upper(), c.value_type.strip().upper()): c for c in content}

    def __len__(self) -> int:
        return len(self._exact) + len(self._repeating) + (self.private is not None)

    def rule(self, tag: int) -> Rule | None:
        """The rule for a public attribute's tag, None when the table does not list it."""
        found = self._exact.get(tag)
        if found is not None:
            return found
        for mask, value, rule in self._repeating:
            if tag & mask == value and (tag >> 16) % 2 == 0:
                return rule
        return None

    def rules(self) -> list[Rule]:
        return [*self._exact.values(), *(r for _, _, r in self._repeating)]

    def content_rule(self, code: str, scheme: str, value_type: str) -> ContentRule | None:
        """The row of Table E.3.4-1 for a content item: its concept name and
        value type (a few concepts have rows for two value types; a "Finding"
        that is a code is not the free text the TEXT row is about)."""
        return self._content.get((str(code).strip(), str(scheme).strip().upper(), str(value_type).strip().upper()))

    def content_rules(self) -> list[ContentRule]:
        return list(self._content.values())

    def is_safe_private(self, group: int, element_low: int, creator: str) -> bool:
        """Whether Table E.3.10-1 lists ``(group, xx<element_low>)`` of ``creator``."""
        return (group, element_low, creator.strip().upper()) in self._safe


@cache
def confidentiality_table() -> ConfidentialityTable:
    """The table shipped with pacsdash (edition named in :attr:`ConfidentialityTable.edition`)."""
    data = json.loads(resources.files("pacsdash.research").joinpath("data", TABLE_FILE).read_text("utf-8"))
    rules = [Rule(tag=r["tag"], name=r["name"], basic=r["basic"],
                  options={_OPTION_KEYS[k]: v for k, v in r.get("options", {}).items() if k in _OPTION_KEYS})
             for r in data["rules"]]
    text = resources.files("pacsdash.research").joinpath("data", SAFE_PRIVATE_FILE).read_text("utf-8")
    safe = [SafePrivate(int(row["group"], 16), int(row["element"][-2:], 16), row["private_creator"], row["name"])
            for row in csv.DictReader(text.splitlines())]
    content = [ContentRule(code=c["code"], scheme=c["scheme"], meaning=c["meaning"], value_type=c["value_type"],
                           basic=c["basic"], options={_OPTION_KEYS[k]: v for k, v in c.get("options", {}).items()
                                                      if k in _OPTION_KEYS})
               for c in data.get("content_items", [])]
    return ConfidentialityTable(data["source"]["edition"], rules, safe, content)
