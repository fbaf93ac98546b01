"""pacsdash against an independent implementation: KitwareMedical's
dicom-anonymizer (PyPI ``dicom-anonymizer``), its own copy of Table E.1-1
and what it does to the same data sets.

Two checks: the Basic Profile column of pacsdash's table equals
dicom-anonymizer's newest table tag by tag (only rows added by edition 2026d
differ), and every attribute dicom-anonymizer changes or removes, pacsdash
changes or removes too; each exception is listed below with its reason.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import io
import pkgutil
import random
import re
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.options import DEFAULT_OPTIONS
from pacsdash.research.profile import confidentiality_table
from pacsdash.research.pseudonyms import Pseudonymizer
from tests.research.generated import Attribute, Pools, concrete_tag, generate, vr_of

dicomanonymizer = pytest.importorskip("dicomanonymizer")
from dicomanonymizer import simpledicomanonymizer  # noqa: E402
from dicomanonymizer import dicom_anonymization_databases as databases  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"
TABLE = confidentiality_table()
#: Rows of edition 2026d that dicom-anonymizer's newest table (2026c) has not.
ADDED_IN_2026D = {"3004007F": "Dose Calculation Model Name"}
CATEGORIES = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
              "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}


def _newest_module() -> str:
    names = sorted(m.name for m in pkgutil.iter_modules(databases.__path__) if m.name.startswith("dicomfields_"))
    return names[-1]


def _their_table() -> dict[str, str]:
    """dicom-anonymizer's table as ``{tag pattern: action}`` (a masked tag as pacsdash writes it: ``60xx4000``)."""
    module = importlib.import_module(f"{databases.__name__}.{_newest_module()}")
    table = {}
    for category, action in CATEGORIES.items():
        for tag in getattr(module, category):
            if len(tag) == 2:
                key = f"{tag[0]:04X}{tag[1]:04X}"
            else:  # (group, element, group mask, element mask)
                value, mask = f"{tag[0]:04X}{tag[1]:04X}", f"{tag[2]:04X}{tag[3]:04X}"
                key = "".join(v if m != "0" else "x" for v, m in zip(value, mask, strict=True))
            assert key not in table, f"{key} twice in dicom-anonymizer's table"
            table[key] = action
    return table


def test_their_newest_table_is_the_edition_before():
    assert _newest_module() == "dicomfields_2026c"
    assert TABLE.edition == "2026d"


def test_the_basic_profile_column_matches_dicom_anonymizer_tag_by_tag():
    theirs = _their_table()
    ours = {rule.tag.upper().replace("X", "x"): rule.basic for rule in TABLE.rules()}
    assert len(theirs) > 600
    differences = {tag: (theirs.get(tag), ours.get(tag)) for tag in set(theirs) | set(ours)
                   if theirs.get(tag) != ours.get(tag)}
    assert set(differences) == set(ADDED_IN_2026D), differences
    for tag, name in ADDED_IN_2026D.items():
        assert tag not in theirs and TABLE.rule(int(tag, 16)).name == name
    assert TABLE.private is not None and TABLE.private.basic == "X"  # their delete_private_tags=True


# -- the same data sets through both ---------------------------------------------------------------------
def _theirs(ds: Dataset) -> Dataset:
    out = copy.deepcopy(ds)
    simpledicomanonymizer.dictionary.clear()
    simpledicomanonymizer.anonymize_dataset(
        out, base_rules_gen=lambda: simpledicomanonymizer.initialize_actions(_newest_module()))
    return out


def _ours(ds: Dataset, options) -> Dataset:
    out = copy.deepcopy(ds)
    Deidentifier(Pseudonymizer(b"x" * 32), options).deidentify(out)
    return out


def _leaves(ds: Dataset, prefix: tuple = ()) -> dict[tuple, object]:
    """Every value by its path (sequence tag, item number, ..., tag)."""
    found: dict[tuple, object] = {}
    for elem in ds:
        path = prefix + (int(elem.tag),)
        if elem.VR == "SQ":
            for number, item in enumerate(elem.value or []):
                found.update(_leaves(item, path + (number,)))
        else:
            value = elem.value
            found[path] = bytes(value) if isinstance(value, bytes | bytearray) else str(value)
    return found


def _vr_at(ds: Dataset, path: tuple) -> str:
    for step in range(0, len(path) - 1, 2):
        ds = ds[path[step]].value[path[step + 1]]
    return ds[path[-1]].VR


def _explain(path: tuple, value: object, original: Dataset, options) -> str | None:
    """Why pacsdash may keep what dicom-anonymizer changed: the allow-list."""
    tag, vr = path[-1], _vr_at(original, path)
    if value in ("", b"", "None"):
        # Empty in the original: nothing to protect. dicom-anonymizer writes
        # 00010101 into an empty date (it never leaves a date empty); pacsdash
        # leaves an empty Z attribute empty.
        return "empty value"
    parents = [path[i] for i in range(0, len(path) - 1, 2)]
    listed = TABLE.rule(tag)
    if listed is not None:
        action = listed.action(options)[0]
        if vr == "TM" and action == "C":
            # Retain Longitudinal Temporal Information with Modified Dates: the
            # day moves, the time of day stays (pacsdash); dicom-anonymizer has
            # no options and zeroes every time.
            return "time of day kept with Modified Dates"
        if tag == 0x00080201 and action == "C" and re.fullmatch(r"[+-]\d{4}", str(value)):
            # Timezone Offset From UTC, C with Modified Dates: a valid offset is
            # kept, as every DT keeps its own offset while its day moves
            # (dicom-anonymizer has no options and removes it: X).
            return "timezone offset kept with Modified Dates"
        return None
    # Attributes the table does not list, inside sequences it does:
    actions = {TABLE.rule(p).action(options)[0] for p in parents if TABLE.rule(p) is not None}
    if "X/Z/U*" in actions:
        # X/Z/U* ("replacement of contained instance UIDs"): pacsdash keeps the
        # reference and replaces its instance UIDs; dicom-anonymizer empties
        # every attribute of the items, the Referenced SOP Class UID too.
        return "X/Z/U* reference kept, its instance UIDs replaced"
    if vr == "UI":
        # In a dummy (D) sequence, dicom-anonymizer replaces every UID with a
        # random one; pacsdash keeps a SOP Class UID (it names a kind of
        # object, nobody) and replaces the instance UIDs the table lists (U).
        return "SOP Class UID in a dummy sequence"
    if vr in ("CS", "US", "SS", "UL", "SL", "FL", "FD", "DS", "IS"):
        # Codes and numbers in a dummy sequence: defined terms and measurements
        # name nobody; dicom-anonymizer makes them ANONYMIZED or 0 (pacsdash keeps
        # an SR's value types and relationships, the structure of the document).
        return "code or number in a dummy sequence"
    return None


def _differences(original: Dataset, options) -> list[tuple[str, str, object]]:
    before, theirs, ours = _leaves(original), _leaves(_theirs(original)), _leaves(_ours(original, options))
    missed = []
    for path, value in before.items():
        they_changed = theirs.get(path, None) != value
        we_changed = ours.get(path, None) != value
        if they_changed and not we_changed and _explain(path, value, original, options) is None:
            missed.append(("/".join(f"{p:08X}" if p > 0xFFFF else str(p) for p in path), _vr_at(original, path),
                           value))
    return missed


def _pools(seed: int) -> Pools:
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(rnd.randrange(2, 9))) for _ in range(20)]
    return Pools(words=words, free=["seen at home", "Dr office"],
                 dates=[dt.date(1950, 1, 1) + dt.timedelta(days=rnd.randrange(30000)) for _ in range(20)],
                 times=[dt.time(rnd.randrange(24), rnd.randrange(60), rnd.randrange(60)) for _ in range(5)],
                 numbers=[rnd.randrange(1, 10**15) for _ in range(5)], patient_id="MRN4711", issuer="HOSP",
                 pixels=bytes(range(8)))


def _their_attributes() -> list[Attribute]:
    """One attribute per row of dicom-anonymizer's table that a data set can hold."""
    found = []
    for key in _their_table():
        tag = concrete_tag(key)
        if tag is None or tag >> 16 in (0x0000, 0x0002):
            continue
        rule = TABLE.rule(tag)
        found.append(Attribute(tag, vr_of(tag, rule.name if rule else key), rule.name if rule else key, rule))
    return sorted(found, key=lambda a: a.tag)


@pytest.mark.parametrize("options", [frozenset(), DEFAULT_OPTIONS], ids=["basic", "modified-dates"])
@pytest.mark.parametrize("seed", range(4))
def test_what_dicom_anonymizer_changes_pacsdash_changes_too(seed, options):
    generated = generate(TABLE, _pools(seed), random.Random(seed), attributes=_their_attributes())
    assert len(generated.placed) > 700
    missed = _differences(generated.dataset, options)
    assert not missed, f"dicom-anonymizer changes these, pacsdash keeps them: {missed[:20]}"
    # The file meta's copy of the SOP Instance UID (0002,0003): both replace it.
    ours = _ours(generated.dataset, options)
    assert ours.file_meta.MediaStorageSOPInstanceUID != generated.dataset.file_meta.MediaStorageSOPInstanceUID
    assert ours.file_meta.MediaStorageSOPInstanceUID == ours.SOPInstanceUID


@pytest.mark.parametrize("options", [frozenset(), DEFAULT_OPTIONS], ids=["basic", "modified-dates"])
def test_what_dicom_anonymizer_changes_in_the_samples_pacsdash_changes_too(options):
    missed = {}
    compared = 0
    for path in sorted(SAMPLES.glob("*.dcm")):
        original = dcmread(io.BytesIO(path.read_bytes()))
        try:
            differences = _differences(original, options)
        except NotImplementedError:  # dicom-anonymizer cannot dummy some VRs (OW ...): nothing to compare
            continue
        compared += 1
        if differences:
            missed[path.name] = differences[:10]
    assert compared >= 30
    assert not missed, missed
