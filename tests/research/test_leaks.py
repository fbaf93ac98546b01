"""Property: nothing identifying survives de-identification, anywhere in the
output bytes, except what Table E.1-1 keeps (PS3.15 E.1.1).

Each generated data set has a distinct value in every attribute of Table
E.1-1 that a data set can hold (text, person names, UIDs, dates, binary),
inside the items of every listed sequence too, in unlisted sequences one to
three levels deep, and in a private block (with its creator), with code
items (Code Value, Coding Scheme Designator, Code Meaning) in every listed
sequence: a dummy (D) sequence must not keep them.
"""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.options import DEFAULT_OPTIONS, Option
from pacsdash.research.profile import confidentiality_table
from pacsdash.research.pseudonyms import Pseudonymizer
from tests.research.generated import PRIVATE_CREATOR, Pools, generate, table_attributes
from tests.research.strategies import (
    element_at, may_survive, pools, read_back, shifted, walk, without_225_uids,
)

SECRET = bytes(range(32))
TABLE = confidentiality_table()
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _deidentify(drawn: Pools, rnd: random.Random, options) -> tuple:
    generated = generate(TABLE, drawn, rnd)
    source = generated.bytes_of()
    pseudonyms = Pseudonymizer(SECRET)
    done = Deidentifier(pseudonyms, options).deidentify_bytes(source)
    out = done.to_bytes()
    return generated, source, out, done


def test_the_generated_data_set_holds_every_row_of_the_table():
    """The generator really covers the table (so the property covers it)."""
    drawn = Pools(["ABC"], ["free text"], [dt.date(2001, 2, 3)], [dt.time(1, 2, 3)], [7], "PID", "ISS", b"\x00" * 8)
    generated = generate(TABLE, drawn, random.Random(1))
    tags = {p.tag for p in generated.placed if not p.path}
    attributes = table_attributes(TABLE)
    assert {a.tag for a in attributes if a.vr != "SQ"} <= tags
    assert {a.tag for a in attributes if a.vr == "SQ"} <= set(generated.dataset.keys())
    # Every row but the command group's and the file meta's (checked apart) and "private attributes".
    left_out = [r.tag for r in TABLE.rules() if r.tag[:4] in ("0000", "0002")]
    assert len(attributes) == len(TABLE.rules()) - len(left_out) and len(left_out) <= 4
    assert any(len(p.path) >= 3 for p in generated.placed)  # three levels deep
    assert PRIVATE_CREATOR in generated.bytes_of().decode("latin-1")


@PROPERTY
@given(drawn=pools, rnd=st.randoms(use_true_random=True))
def test_no_identifying_value_survives(drawn: Pools, rnd: random.Random):
    """With the default options (Retain Longitudinal Temporal Information with Modified Dates)."""
    _no_identifying_value_survives(DEFAULT_OPTIONS, drawn, rnd)


@settings(PROPERTY, max_examples=10)
@given(drawn=pools, rnd=st.randoms(use_true_random=True))
def test_no_identifying_value_survives_the_basic_profile(drawn: Pools, rnd: random.Random):
    """With no option: dates replaced, not moved."""
    _no_identifying_value_survives(frozenset(), drawn, rnd)


ALLOWED_OPTIONS = st.sets(st.sampled_from(list(Option))).filter(
    lambda chosen: not {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES} <= chosen)


@settings(PROPERTY, max_examples=10)
@given(options=ALLOWED_OPTIONS, drawn=pools, rnd=st.randoms(use_true_random=True))
def test_no_identifying_value_survives_any_options(options, drawn: Pools, rnd: random.Random):
    """With any allowed options: only what their columns keep (K) or clean (C) stays."""
    _no_identifying_value_survives(frozenset(options), drawn, rnd)


def _no_identifying_value_survives(options, drawn: Pools, rnd: random.Random) -> None:
    generated, source, out, done = _deidentify(drawn, rnd, options)
    back = read_back(out)  # readable without force
    survivors = []
    for placed in generated.placed:
        if may_survive(placed, TABLE, options):
            continue
        for token in placed.tokens:
            assert token in source  # the value really went in
            if token in out:
                survivors.append((placed.path, f"{placed.tag:08X}", placed.vr, token))
    assert not survivors, f"identifying values left in the output: {survivors[:10]}"

    # Pixel Data: the same bytes, in the file as they came; what the table
    # does not list stays as it was (E.1.1), the SOP Class UIDs of the
    # references inside kept sequences too.
    assert back.PixelData == drawn.pixels
    assert drawn.pixels in out
    original = read_back(source)
    for keyword in ("SOPClassUID", "Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "Modality"):
        assert back[keyword].value == original[keyword].value
    for item in back.get("ReferencedImageSequence", []):  # X/Z/U*: kept, UIDs replaced
        assert item.ReferencedSOPClassUID == original.ReferencedImageSequence[0].ReferencedSOPClassUID
        assert item.ReferencedSOPInstanceUID.startswith("2.25.") or Option.RETAIN_UIDS in options
    assert back.PatientIdentityRemoved == "YES"
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID

    # Dates: each one moved by the subject's whole days (Modified Dates), or gone.
    shift = done.subject.shift_days
    assert shift != 0
    originals = {d for p in generated.placed for d in p.dates}
    explained = {shifted(d, shift) for d in originals} | {"19000101"}
    explained |= {d for p in generated.placed if may_survive(p, TABLE, options) for d in p.dates}  # kept (K)
    for elem in walk(back):
        if elem.VR == "DT" and elem.value:
            text = str(elem.value)
            explained.update(text[i:i + 8] for i in range(1, len(text) - 7))  # a date across date and time
    hidden = without_225_uids(out)
    for placed in generated.placed:
        if not placed.dates or may_survive(placed, TABLE, options):
            continue
        elem = element_at(back, placed.path, placed.tag)
        day = placed.dates[0]
        if elem is not None and elem.value:
            text = str(elem.value)
            assert not text.startswith(day), (placed, text)
            rule = TABLE.rule(placed.tag)
            if rule is not None and rule.action(options)[0] == "C":
                assert text[:8] == shifted(day, shift), (placed, text)
                if placed.vr == "DT":
                    assert text[8:] == str(placed.value)[8:]  # time of day and offset kept
        if day not in explained:
            assert day.encode() not in hidden, f"date {day} of {placed.tag:08X} at {placed.path} survives"
