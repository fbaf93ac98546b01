"""Every valid sample file de-identified, under the default options and under
every allowed combination of options: readable, marked, UIDs replaced one to
one and consistently, references still resolving, pixels untouched."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.options import BASIC_PROFILE_CODE, DEFAULT_OPTIONS, Option
from pacsdash.research.profile import confidentiality_table
from pacsdash.research.pseudonyms import Pseudonymizer

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"
FILES = sorted(SAMPLES.glob("*.dcm"))
RAW = {path.name: path.read_bytes() for path in FILES}
SECRET = b"c" * 32
ALL_OPTIONS = list(Option)
ALLOWED = [frozenset(c) for n in range(len(ALL_OPTIONS) + 1) for c in itertools.combinations(ALL_OPTIONS, n)
           if not {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES} <= set(c)]
UID_KEYWORDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def _paths(ds: Dataset, keyword: str, prefix: tuple = ()) -> dict[tuple, str]:
    """``{path: value}`` of every ``keyword`` at any depth."""
    found = {}
    for elem in ds:
        if elem.VR == "SQ":
            for number, item in enumerate(elem.value or []):
                found.update(_paths(item, keyword, prefix + (int(elem.tag), number)))
        elif elem.keyword == keyword and elem.value:
            found[prefix] = str(elem.value)
    return found


def _deidentify(name: str, options, pseudonyms: Pseudonymizer) -> tuple[Dataset, Dataset, bytes]:
    out = Deidentifier(pseudonyms, options).deidentify_bytes(RAW[name]).to_bytes()
    return dcmread(io.BytesIO(RAW[name])), dcmread(io.BytesIO(out)), out


def _check_one(name: str, original: Dataset, back: Dataset, out: bytes, options) -> None:
    table = confidentiality_table()
    assert back.PatientIdentityRemoved == "YES", name
    method = back.DeidentificationMethod
    assert "PS3.15 2026d" in method and len(method) <= 64, method
    codes = sorted(item.CodeValue for item in back.DeidentificationMethodCodeSequence)
    assert codes == sorted([BASIC_PROFILE_CODE.value, *(o.code.value for o in options)]), (name, codes)
    assert all(item.CodingSchemeDesignator == "DCM" for item in back.DeidentificationMethodCodeSequence)
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    if "PixelData" in original:
        assert back.PixelData == original.PixelData, name
    if Option.RETAIN_MODIFIED_DATES in options:
        assert back.LongitudinalTemporalInformationModified == "MODIFIED"
    for keyword in UID_KEYWORDS:
        if keyword not in original:
            continue
        if Option.RETAIN_UIDS in options:
            assert back[keyword].value == original[keyword].value
        else:
            assert back[keyword].value != original[keyword].value and back[keyword].value.startswith("2.25."), \
                (name, keyword)
    patient = str(original.get("PatientName", "") or "")
    for part in patient.replace("^", " ").split():
        if len(part) >= 4 and part.upper() not in ("NAME",):  # "Last Name^First Name" holds the words of the dummy
            assert part.encode() not in out, (name, part)
    patient_id = str(original.get("PatientID", "") or "")
    if len(patient_id) >= 4:
        assert patient_id.encode() not in out, name
    assert table.edition == "2026d"


def test_every_sample_under_the_default_options():
    pseudonyms = Pseudonymizer(SECRET)
    new = defaultdict(dict)  # keyword -> {original: new}
    outputs = {}
    originals = {}
    for path in FILES:
        original, back, out = _deidentify(path.name, DEFAULT_OPTIONS, pseudonyms)
        _check_one(path.name, original, back, out, DEFAULT_OPTIONS)
        originals[path.name], outputs[path.name] = original, back
        for keyword in UID_KEYWORDS:
            if keyword in original:
                old = str(original[keyword].value)
                assert new[keyword].setdefault(old, str(back[keyword].value)) == str(back[keyword].value), \
                    f"{keyword} {old} got two replacements"
    # One to one: different originals, different replacements (and the other way round).
    for keyword, mapping in new.items():
        assert len(set(mapping.values())) == len(mapping), keyword
    # Files of one study: one new study (the corpus has several files of a study).
    studies = defaultdict(set)
    for name, original in originals.items():
        studies[str(original.StudyInstanceUID)].add(str(outputs[name].StudyInstanceUID))
    assert all(len(v) == 1 for v in studies.values())
    assert any(sum(1 for o in originals.values() if str(o.StudyInstanceUID) == s) > 1 for s in studies)
    # References resolve: one to an instance of the set names its new UID; every reference is replaced.
    sop_map = new["SOPInstanceUID"]
    outputs_sops = {str(ds.SOPInstanceUID) for ds in outputs.values()}
    resolved = 0
    for name, original in originals.items():
        before = _paths(original, "ReferencedSOPInstanceUID")
        after = _paths(outputs[name], "ReferencedSOPInstanceUID")
        for path, old in before.items():
            if path not in after:
                continue  # its sequence was removed or emptied
            assert after[path] != old and after[path].startswith("2.25."), (name, path)
            assert after[path] == pseudonyms.uid(old)
            if old in sop_map:
                assert after[path] == sop_map[old] and after[path] in outputs_sops
                resolved += 1
        for keyword in ("ReferencedFrameOfReferenceUID", "FrameOfReferenceUID"):
            for path, old in _paths(original, keyword).items():
                if path in _paths(outputs[name], keyword):
                    assert _paths(outputs[name], keyword)[path] == pseudonyms.uid(old)
    assert resolved == 4  # the corpus's references to its own instances (rtplan, SEG, SR ...), all still there


def test_references_between_files_of_the_set_resolve():
    """Two instances of the corpus, one referring to the other (as a
    presentation state or an SR would), de-identified apart."""
    pseudonyms = Pseudonymizer(SECRET)
    target = dcmread(io.BytesIO(RAW["CT_small.dcm"]))
    referring = dcmread(io.BytesIO(RAW["MR_small.dcm"]))
    reference = Dataset()
    reference.ReferencedSOPClassUID = target.SOPClassUID
    reference.ReferencedSOPInstanceUID = target.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = target.SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence([reference])
    referring.ReferencedSeriesSequence = Sequence([series])
    referring.SourceImageSequence = Sequence([reference])
    raw = io.BytesIO()
    referring.save_as(raw, enforce_file_format=True)
    new_target = dcmread(io.BytesIO(Deidentifier(pseudonyms).deidentify_bytes(RAW["CT_small.dcm"]).to_bytes()))
    new_referring = dcmread(io.BytesIO(
        Deidentifier(Pseudonymizer(SECRET)).deidentify_bytes(raw.getvalue()).to_bytes()))
    series_out = new_referring.ReferencedSeriesSequence[0]
    assert series_out.SeriesInstanceUID == new_target.SeriesInstanceUID
    assert series_out.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == new_target.SOPInstanceUID
    assert new_referring.SourceImageSequence[0].ReferencedSOPInstanceUID == new_target.SOPInstanceUID


@pytest.mark.parametrize("options", [
    frozenset(), *[frozenset({o}) for o in Option],
    frozenset(ALL_OPTIONS) - {Option.RETAIN_FULL_DATES}, frozenset(ALL_OPTIONS) - {Option.RETAIN_MODIFIED_DATES},
], ids=lambda o: "+".join(sorted(x.slug for x in o)) or "basic")
def test_every_sample_under_each_option(options):
    pseudonyms = Pseudonymizer(SECRET)
    for path in FILES:
        original, back, out = _deidentify(path.name, options, pseudonyms)
        _check_one(path.name, original, back, out, options)


def test_every_allowed_combination_of_options():
    """All 768 combinations (2**10 less those with both date options), each
    on a sample in turn (the samples under 64 kB: the large ones meet every
    option above), so every combination runs and every such sample is met."""
    assert len(ALLOWED) == 768
    small = [path.name for path in FILES if len(RAW[path.name]) < 64_000]
    assert len(small) >= 25
    pseudonyms = Pseudonymizer(SECRET)
    for number, options in enumerate(ALLOWED):
        name = small[number % len(small)]
        original, back, out = _deidentify(name, options, pseudonyms)
        _check_one(name, original, back, out, options)


def test_both_date_options_are_refused():
    with pytest.raises(ValueError):
        Deidentifier(Pseudonymizer(SECRET), {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES})
