"""Hypothesis strategies and checks shared by the de-identification tests."""

from __future__ import annotations

import datetime as dt
import io
import re
import string
from collections.abc import Iterable

from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsdash.research.options import Option
from pacsdash.research.profile import ConfidentialityTable
from tests.research.generated import FREE, UPPER, Placed, Pools

pools = st.builds(
    Pools,
    words=st.lists(st.text(UPPER, min_size=1, max_size=12), min_size=1, max_size=20),
    free=st.lists(st.text(FREE, max_size=30), min_size=1, max_size=8),
    dates=st.lists(st.dates(dt.date(1901, 1, 1), dt.date(2099, 12, 31)), min_size=1, max_size=30),
    times=st.lists(st.times(), min_size=1, max_size=8),
    numbers=st.lists(st.integers(1, 10**18), min_size=1, max_size=8),
    patient_id=st.text(UPPER + string.digits, min_size=1, max_size=10),
    issuer=st.text(UPPER, max_size=8),
    pixels=st.binary(min_size=8, max_size=8),
)


def is_private(tag: int) -> bool:
    return bool((tag >> 16) & 1)


#: Text that C cleans and keeps (binary, dates and UIDs it removes or moves).
CLEANED_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})


def passes_through(tag: int, table: ConfidentialityTable, options: Iterable[Option]) -> bool:
    """Whether sequence ``tag`` keeps its items (not listed, kept, cleaned,
    X/Z/U* or a dummy); not so for a removed or emptied one, nor a private one."""
    if is_private(tag):
        return False
    rule = table.rule(tag)
    if rule is None:
        return True
    action = rule.action(options)[0]
    return action in ("K", "X/Z/U*", "C") or action.split("/")[-1] == "D"


def is_dummy(tag: int, table: ConfidentialityTable, options: Iterable[Option]) -> bool:
    """Whether sequence ``tag`` is replaced by a dummy (D, X/D, X/Z/D): what
    its items hold that the table does not list must go too."""
    rule = table.rule(tag)
    return rule is not None and rule.action(options)[0] != "X/Z/U*" and rule.action(options)[0].split("/")[-1] == "D"


def may_survive(placed: Placed, table: ConfidentialityTable, options: Iterable[Option]) -> bool:
    """Whether the table lets this value stay: inside nothing removed or
    emptied, and kept (K), cleaned text (C: a token is no identifying value
    to strike out), or not listed and inside no dummy sequence."""
    options = frozenset(options)
    if not all(passes_through(tag, table, options) for tag, _ in placed.path) or is_private(placed.tag):
        return False
    rule = table.rule(placed.tag)
    if rule is None:
        return not any(is_dummy(tag, table, options) for tag, _ in placed.path)
    action = rule.action(options)[0]
    cleaned_text = action == "C" and placed.vr in CLEANED_TEXT_VRS and placed.tag != 0x00080201  # not a timezone
    return action == "K" or cleaned_text


def shifted(day: str, days: int) -> str:
    """``YYYYMMDD`` moved by whole days (the test's own arithmetic)."""
    moved = dt.date(int(day[:4]), int(day[4:6]), int(day[6:8])) + dt.timedelta(days=days)
    return moved.strftime("%Y%m%d")


def read_back(raw: bytes) -> Dataset:
    """The output as any reader sees it: pydicom without force."""
    return dcmread(io.BytesIO(raw))


def element_at(ds: Dataset, path: tuple[tuple[int, int], ...], tag: int):
    """The element at ``path`` + ``tag`` in ``ds``, or None when it (or an item on the way) is gone."""
    for seq_tag, number in path:
        if seq_tag not in ds:
            return None
        items = ds[seq_tag].value or []
        if number >= len(items):
            return None
        ds = items[number]
    return ds[tag] if tag in ds else None


def walk(ds: Dataset) -> Iterable:
    """Every element, items included."""
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from walk(item)


UID_225 = re.compile(rb"2\.25\.\d+")


def without_225_uids(raw: bytes) -> bytes:
    """The bytes with every ``2.25.`` UID's digits hidden (39 random digits hold any 8-digit date by chance)."""
    return UID_225.sub(b"2.25.#", raw)
