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


def passes_through(tag: int, table: ConfidentialityTable, options: Iterable[Option]) -> bool:
    """Whether what is inside sequence ``tag`` can stay as it was (not
    listed, kept, or cleaned item by item); not so for a removed, emptied or
    dummy sequence, nor a private one."""
    if is_private(tag):
        return False
    rule = table.rule(tag)
    return rule is None or rule.action(options)[0] in ("K", "X/Z/U*", "C")


def may_survive(placed: Placed, table: ConfidentialityTable, options: Iterable[Option]) -> bool:
    """Whether the table lets this value stay: untouched (not listed) or K,
    and inside nothing that goes."""
    options = frozenset(options)
    if not all(passes_through(tag, table, options) for tag, _ in placed.path):
        return False
    if is_private(placed.tag):
        return False
    rule = table.rule(placed.tag)
    return rule is None or rule.action(options)[0] == "K"


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
