"""De-identify one instance: PS3.15 Annex E, Basic Application Level
Confidentiality Profile and its options.

Every attribute Table E.1-1 lists gets its action, inside sequences at any
depth too; private attributes are removed (unless Retain Safe Private keeps
those of Table E.3.10-1); attributes the table does not list are kept, as
the standard says, except inside a sequence the table lists: a dummy (D)
sequence gets dummy text and dates in its items too, a kept (K) or cleaned
(C) one has the instance's identifying values scrubbed from their text. The
Clean Structured Content Option applies Table E.3.4-1 to content items by
their concept name. Patient identity, dates and UIDs are replaced through one
:class:`~pacsdash.research.pseudonyms.Pseudonymizer`, so the same patient is
the same subject, with the same date shift, everywhere. Pixel Data is never
touched: its bytes leave as they came.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacsdash import __version__
from pacsdash.research.options import BASIC_PROFILE_CODE, DEFAULT_OPTIONS, Option
from pacsdash.research.profile import ConfidentialityTable, confidentiality_table
from pacsdash.research.pseudonyms import Pseudonymizer, Subject

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: Text that may say anything (names, IDs, comments): what a dummy sequence
#: replaces and a cleaned one scrubs among the attributes the table does not
#: list. Not CS: its values are defined terms and codes.
FREE_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
DUMMY_TEXT = "ANONYMIZED"
DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
         "UR": "http://anonymized.invalid"}
#: Identifying values shorter than this are not searched for in cleaned text.
MIN_SCRUB_LENGTH = 3
PIXEL_DATA = Tag(0x7FE0, 0x0010)
PATIENT_ID, PATIENT_NAME = Tag(0x0010, 0x0020), Tag(0x0010, 0x0010)
TIMEZONE_OFFSET = Tag(0x0008, 0x0201)
#: Sequences of content items (SR Content Sequence, Acquisition Context,
#: Specimen Preparation): what the Clean Structured Content Option cleans
#: item by item with Table E.3.4-1 (PS3.15 E.3.4).
STRUCTURED_SEQUENCES = frozenset({Tag(0x0040, 0xA730), Tag(0x0040, 0x0555), Tag(0x0040, 0x0610),
                                  Tag(0x0040, 0x0612)})
#: Where a content item of each value type keeps its value (PS3.3 C.17.3, 10.2).
CONTENT_VALUE_TAGS = {
    "TEXT": Tag(0x0040, 0xA160), "PNAME": Tag(0x0040, 0xA123), "DATE": Tag(0x0040, 0xA121),
    "TIME": Tag(0x0040, 0xA122), "DATETIME": Tag(0x0040, 0xA120), "UIDREF": Tag(0x0040, 0xA124),
    "NUM": Tag(0x0040, 0xA300), "CODE": Tag(0x0040, 0xA168), "IMAGE": Tag(0x0008, 0x1199),
    "COMPOSITE": Tag(0x0008, 0x1199), "WAVEFORM": Tag(0x0008, 0x1199),
}
#: SOP classes whose images usually carry burned-in text: secondary captures
#: (single and multi-frame), ultrasound (single and multi-frame, and the
#: retired ones).
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ULTRASOUND_PREFIXES = ("1.2.840.10008.5.1.4.1.1.6.", "1.2.840.10008.5.1.4.1.1.3.")
RETIRED_ULTRASOUND = frozenset({"1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3"})
#: Visible light photographs and video (PS3.4 B.5: VL Endoscopic, Microscopic,
#: Photographic ... all under 77.1): pictures of the patient or of a label,
#: not cleared by a burned-in check of their own.
VISIBLE_LIGHT_PREFIX = "1.2.840.10008.5.1.4.1.1.77.1."
#: How far into a sequence's items the table's verdict on the sequence goes.
KEEP, CLEAN, DUMMY_ITEMS = 0, 1, 2


@dataclass(frozen=True)
class Change:
    """What one rule did to one attribute (for the before/after view)."""

    path: str  # e.g. ``(0008,1140)[0].(0008,1155)``
    keyword: str
    name: str
    action: str  # the table's code that applied (``U``, ``X/Z/D`` ...)
    column: str  # which column of Table E.1-1 it came from
    before: str
    after: str | None  # None: removed


@dataclass
class Deidentified:
    """One de-identified instance."""

    dataset: Dataset
    subject: Subject
    original_sop_uid: str
    changes: list[Change] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Part 10 bytes (PS3.10 7.1), in the original transfer syntax."""
        return part10_bytes(self.dataset)


#: Transfer syntaxes whose data set is written as it is (not deflated), by encoding: (implicit VR, little endian).
_PLAIN_ENCODINGS = {ImplicitVRLittleEndian: (True, True), ExplicitVRBigEndian: (False, False)}


def part10_bytes(ds: Dataset) -> bytes:
    """``ds`` as a Part 10 file: preamble, its file meta (PS3.10 7.1) and the data set.

    The same bytes as pydicom's ``save_as(enforce_file_format=True)`` without
    its deep copy of the file meta, which is completed here in place, and
    with an empty preamble whatever the original's held (PS3.10 7.1: it is
    for applications, and nothing of the original goes out unread); a
    deflated or unknown transfer syntax goes through ``save_as`` itself.
    """
    meta = ds.file_meta
    syntax = UID(str(meta.get("TransferSyntaxUID", "")))
    if syntax == DeflatedExplicitVRLittleEndian or not syntax.is_transfer_syntax:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    implicit, little = _PLAIN_ENCODINGS.get(syntax, (False, True))
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    out.is_implicit_VR, out.is_little_endian = implicit, little
    write_dataset(out, ds)
    return out.getvalue()


def patient_key(ds: Dataset) -> tuple[str, str]:
    """Who the patient is, for the pseudonym: PatientID and IssuerOfPatientID;
    without a PatientID, the name and birth date; without those, the study
    (so patients with nothing to tell them apart are never merged)."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return patient_id, str(ds.get("IssuerOfPatientID", "") or "").strip()
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return "", f"name:{name}|{ds.get('PatientBirthDate', '') or ''}"
    return "", f"study:{ds.get('StudyInstanceUID', '') or ''}"


def burned_in_reason(ds: Dataset) -> str | None:
    """Why an instance may show identifying text in its pixels, or None (PS3.15 E.3.1)."""
    annotation = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if annotation == "YES":
        return "BurnedInAnnotation is YES: the pixels carry identifying text"
    if annotation == "NO" or "PixelData" not in ds and "FloatPixelData" not in ds:
        return None
    sop_class = str(ds.get("SOPClassUID", "")).strip().rstrip("\x00")
    modality = str(ds.get("Modality", "") or "").upper()
    image_type = ds.get("ImageType") or []
    if isinstance(image_type, str):  # a single value (VM 1)
        image_type = [image_type]
    image_type = [str(v).upper() for v in image_type]
    kind = None
    if modality == "US" or sop_class.startswith(ULTRASOUND_PREFIXES) or sop_class in RETIRED_ULTRASOUND:
        kind = "an ultrasound image"
    elif sop_class == SECONDARY_CAPTURE or sop_class.startswith(SECONDARY_CAPTURE + ".") or modality in ("SC", "OT"):
        kind = "a secondary capture"
    elif sop_class.startswith(VISIBLE_LIGHT_PREFIX):
        kind = "a visible light image (photograph, endoscopy, microscopy)"
    elif any("SCREEN" in value for value in image_type):
        kind = "a screen capture"
    if kind is None:
        return None
    return f"{kind}, which usually carries burned-in text (BurnedInAnnotation is not NO)"


def _tag_text(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _shown(value: object, limit: int = 120) -> str:
    if isinstance(value, Sequence):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    text = str(value if value is not None else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Deidentifier:
    """Applies Table E.1-1 under a set of options with one pseudonymizer.

    Parameters
    ----------
    pseudonyms
        Keys the subject pseudonyms, date shifts and UIDs.
    options
        Columns of Table E.1-1 to apply beside the Basic Profile.
    table
        The table (default: the edition shipped with pacsdash).
    """

    def __init__(self, pseudonyms: Pseudonymizer, options: Iterable[Option] = DEFAULT_OPTIONS,
                 table: ConfidentialityTable | None = None) -> None:
        self.pseudonyms = pseudonyms
        self.options = frozenset(options)
        if {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES} <= self.options:
            raise ValueError("choose one of the Full Dates and Modified Dates options, not both")
        self.table = table or confidentiality_table()

    @property
    def replaces_uids(self) -> bool:
        return Option.RETAIN_UIDS not in self.options

    @property
    def method(self) -> str:
        """What was done, on one line (for the audit): profile, edition, options, pacsdash."""
        chosen = [o.value for o in Option if o in self.options]
        text = f"PS3.15 {self.table.edition} Annex E Basic Profile" + (f" + {'; '.join(chosen)}" if chosen else "")
        return f"{text} (pacsdash {__version__})"

    @property
    def method_value(self) -> str:
        """The value of DeidentificationMethod (0012,0063), an LO of at most 64
        characters: profile, edition, how many options, pacsdash. The options
        themselves are in DeidentificationMethodCodeSequence, one code each
        (:attr:`method` would be cut short, the options and pacsdash with it)."""
        count = len(self.options)
        text = f"PS3.15 {self.table.edition} Basic Profile"
        if count:
            text += f" + {count} option{'s' if count > 1 else ''}"
        tail = f" (pacsdash {__version__})"
        return text + tail if len(text + tail) <= 64 else text[:64]

    # -- whole instances -----------------------------------------------------
    def deidentify_bytes(self, raw: bytes, record: bool = False) -> Deidentified:
        """De-identify a Part 10 instance read from ``raw``."""
        return self.deidentify(dcmread(io.BytesIO(raw)), record)

    def deidentify(self, ds: Dataset, record: bool = False,
                   original: Callable[[], Dataset] | None = None) -> Deidentified:
        """De-identify ``ds`` in place; return it with the subject and, if
        ``record``, every change made.

        ``original`` reads ``ds`` again as it was (its header is enough): the
        values to scrub from cleaned text are then gathered only if some text
        is cleaned, which most instances never need.
        """
        original_sop = str(ds.get("SOPInstanceUID", ""))
        subject = self.pseudonyms.subject(*patient_key(ds))
        if original is None:
            found = _identifying_values(ds, self.table, self.options)
            identifying: Callable[[], list[str]] = lambda: found  # noqa: E731
        else:
            identifying = lambda: _identifying_values(original(), self.table, self.options)  # noqa: E731
        walk = _Walk(self, subject, identifying, record)
        walk.dataset(ds, "")
        for keyword in ("PatientID", "PatientName"):  # Type 2 (PS3.3 C.7.1.1): always present, pseudonymous
            if keyword not in ds:
                setattr(ds, keyword, getattr(subject, keyword))
        self._mark(ds, subject)
        meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta and self.replaces_uids:  # U (Table E.1-1), even alone
            meta.MediaStorageSOPInstanceUID = self.pseudonyms.uid(str(meta.MediaStorageSOPInstanceUID))
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation"):
            if keyword in meta:
                delattr(meta, keyword)
        meta.ImplementationVersionName = f"PACSDASH_{__version__}"[:16]
        ds.file_meta = meta
        return Deidentified(ds, subject, original_sop, walk.changes)

    def _mark(self, ds: Dataset, subject: Subject) -> None:
        """PatientIdentityRemoved, DeidentificationMethod and its codes (PS3.15 E.1.1, C.7.1.1)."""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self.method_value
        items = []
        for code in [BASIC_PROFILE_CODE, *(o.code for o in Option if o in self.options)]:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if Option.RETAIN_MODIFIED_DATES in self.options:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        elif Option.RETAIN_FULL_DATES in self.options:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"


def _identifying_values(ds: Dataset, table: ConfidentialityTable, options: Iterable[Option] = ()) -> list[str]:
    """Values to search for in what is cleaned (longest first): those of the
    attributes the chosen options do not keep (names, IDs, institutions) and
    every date; not those kept (K), nor the text being cleaned itself (C: a
    description or a comment is not an identifier to strike out of others)."""
    options = frozenset(options)
    found: set[str] = set()

    def visit(data: Dataset) -> None:
        for tag in sorted(data.keys()):
            rule = table.rule(tag) if not tag.is_private else None
            if rule is None and data.get_item(tag).VR not in (None, "SQ", "UN"):
                continue  # not listed, not a sequence: nothing to search for (and left undecoded)
            elem = data[tag]
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            if rule is None or rule.basic in ("K", "U") or Option.CLEAN_DESCRIPTORS in rule.options:
                continue  # descriptions are what gets cleaned, not what is searched for
            action = rule.action(options)[0]
            if action == "K" or elem.VR not in TEXT_VRS | {"DA", "DT"}:
                continue
            if action == "C" and elem.VR not in ("DA", "DT"):
                continue
            for value in (elem.value if elem.VM > 1 else [elem.value]):
                text = str(value or "").strip()
                if elem.VR == "DT":
                    text = text[:8]
                if elem.VR == "PN":
                    found.update(p for p in re.split(r"[\^=\s,]+", text) if p)
                if text:
                    found.add(text)
                if elem.VR in ("DA", "DT") and re.fullmatch(r"\d{8}", text):
                    found.update({f"{text[:4]}-{text[4:6]}-{text[6:]}", f"{text[6:]}.{text[4:6]}.{text[:4]}",
                                  f"{text[4:6]}/{text[6:]}/{text[:4]}"})

    visit(ds)
    return sorted((v for v in found if len(v) >= MIN_SCRUB_LENGTH), key=len, reverse=True)


class _Walk:
    """One pass of the table over a data set and its sequences.

    What the table says of a sequence reaches into its items (``mode``):
    attributes the table lists always get their own action; those it does
    not list are kept (:data:`KEEP`, an unlisted or X/Z/U* sequence), have
    this instance's identifying values scrubbed from their text
    (:data:`CLEAN`, a K or C sequence: "cleaned for sequences") or, in a
    sequence to be replaced by a dummy (D, X/D, X/Z/D), get dummy text and
    dates (:data:`DUMMY_ITEMS`: a person's or an institution's code, an SR's
    text, must not stay behind the dummy).
    """

    def __init__(self, owner: Deidentifier, subject: Subject, identifying: Callable[[], list[str]],
                 record: bool) -> None:
        self.owner = owner
        self.table = owner.table
        self.options = owner.options
        self.subject = subject
        self.record = record
        self.changes: list[Change] = []
        self._identifying = identifying
        self._pattern: re.Pattern[str] | None = None
        self._compiled = False

    # -- traversal -------------------------------------------------------------
    def dataset(self, ds: Dataset, path: str, mode: int = KEEP, structured: bool = False) -> bool:
        """Apply the table to ``ds``; False if ``ds`` (a content item) is to be removed."""
        handled: set[BaseTag] = set()
        if structured:
            found = self.content_item(ds, path, mode)
            if found is None:
                return False
            handled = found
        kept_private_blocks: set[tuple[int, int]] = set()
        private: list[BaseTag] = []
        for tag in sorted(ds.keys()):
            if tag.group == 0x0002 or tag == PIXEL_DATA or tag in handled:
                continue
            if tag.is_private:
                private.append(tag)
                continue
            rule = self.table.rule(tag)
            if rule is None and mode == KEEP and ds.get_item(tag).VR not in (None, "SQ", "UN"):
                continue  # kept as it is: never decoded, written back byte for byte
            elem = ds[tag]
            where = f"{path}{_tag_text(tag)}"
            if rule is None:  # not listed: kept (PS3.15 E.1.1), its items de-identified
                if elem.VR == "SQ":
                    self.items(elem, where, mode, structured)
                elif mode != KEEP:
                    self.unlisted(elem, mode, where)
                continue
            action, column = rule.action(self.options)
            self.apply(ds, elem, action, column, where, mode, structured)
        for tag in private:
            self.private(ds, tag, kept_private_blocks, path)
        for tag in private:  # a creator whose block keeps nothing goes too
            if tag.is_private_creator and (tag.group, tag.element) not in kept_private_blocks and tag in ds:
                self.note(f"{path}{_tag_text(tag)}", ds[tag], "X", "Basic Profile", None)
                del ds[tag]
        return True

    def items(self, elem: DataElement, path: str, mode: int = KEEP, structured: bool = False) -> None:
        kept = []
        for number, item in enumerate(elem.value or []):
            if self.dataset(item, f"{path}[{number}].", mode, structured):
                kept.append(item)
        if len(kept) != len(elem.value or []):
            elem.value = Sequence(kept)

    def private(self, ds: Dataset, tag: BaseTag, kept: set[tuple[int, int]], path: str) -> None:
        if tag not in ds or tag.is_private_creator:
            return
        elem = ds[tag]
        rule = self.table.private
        keep = False
        if Option.RETAIN_SAFE_PRIVATE in self.options and tag.element >= 0x1000:
            creator_tag = Tag(tag.group, tag.element >> 8)
            creator = str(ds[creator_tag].value) if creator_tag in ds else ""
            keep = bool(creator) and self.table.is_safe_private(tag.group, tag.element & 0xFF, creator)
        where = f"{path}{_tag_text(tag)}"
        if keep:
            kept.add((tag.group, tag.element >> 8))
            if elem.VR == "SQ":
                self.items(elem, where, CLEAN)
            return
        self.note(where, elem, rule.basic if rule else "X", "Basic Profile", None)
        del ds[tag]

    def content_item(self, ds: Dataset, path: str, mode: int) -> set[BaseTag] | None:
        """Table E.3.4-1 on one content item (Clean Structured Content, PS3.15
        E.3.4): the tags of the value it dealt with, or None to remove the item."""
        value_type = str(ds.get("ValueType", "") or "").strip().upper()
        names = ds.get("ConceptNameCodeSequence") if "ConceptNameCodeSequence" in ds else None
        if not value_type or not names:
            return set()
        name = names[0]
        code = str(name.get("CodeValue", "") or name.get("LongCodeValue", "") or name.get("URNCodeValue", "") or "")
        rule = self.table.content_rule(code, str(name.get("CodingSchemeDesignator", "") or ""), value_type)
        if rule is None:
            return set()
        action, column = rule.action(self.options)
        value_tag = CONTENT_VALUE_TAGS.get(value_type)
        if action == "X":  # the content item goes, with what hangs from it
            if self.record:
                self.changes.append(Change(path.rstrip("."), "", f"content item {rule.meaning}", action, column,
                                           _shown(ds.get(value_tag).value if value_tag and value_tag in ds else ""),
                                           None))
            return None
        if value_tag is None or value_tag not in ds:
            return set()
        self.apply(ds, ds[value_tag], action, column, f"{path}{_tag_text(value_tag)}", mode, True)
        return {value_tag}

    # -- actions ---------------------------------------------------------------
    def apply(self, ds: Dataset, elem: DataElement, action: str, column: str, path: str,
              mode: int = KEEP, structured: bool = False) -> None:
        """Carry out ``action`` on ``elem`` (PS3.15 E.1.1 and Table E.1-1's notes)."""
        if action == "K" or action == "X/Z/U*":
            # Kept; a K sequence is cleaned, an X/Z/U* one keeps its references
            # with the UIDs inside replaced by their own rules (U).
            if elem.VR == "SQ":
                self.items(elem, path, max(mode, CLEAN) if action == "K" else mode, structured)
            return
        if action == "X":
            self.note(path, elem, action, column, None)
            del ds[elem.tag]
            return
        if action == "U":
            self.replace(elem, self.uids(elem.value), action, column, path)
            return
        if action == "C":
            self.clean(ds, elem, action, column, path, mode, structured)
            return
        # D, Z and the combined ones (Z/D, X/Z, X/D, X/Z/D): without the IOD's
        # attribute types, the last choice is taken: it keeps a Type 1 or 2
        # attribute present, so the instance stays conformant.
        final = action.split("/")[-1]
        if elem.tag == PATIENT_ID:
            self.replace(elem, self.subject.PatientID, action, column, path)
        elif elem.tag == PATIENT_NAME:
            self.replace(elem, self.subject.PatientName, action, column, path)
        elif elem.VR == "SQ":
            if final == "Z":
                self.replace(elem, Sequence(), action, column, path)
            else:  # a dummy sequence: its items' values are dummies too
                self.items(elem, path, DUMMY_ITEMS)
        elif final == "Z":
            self.replace(elem, None if elem.VR not in TEXT_VRS | {"DA", "TM", "DT", "AS", "IS", "DS", "UI"} else "",
                         action, column, path)
        else:
            self.replace(elem, self.dummy(elem), action, column, path)

    def unlisted(self, elem: DataElement, mode: int, path: str) -> None:
        """An attribute the table does not list, inside a cleaned or a dummy sequence."""
        if mode == CLEAN:
            if elem.VR in FREE_TEXT_VRS and elem.value not in (None, ""):
                values = elem.value if elem.VM > 1 else [elem.value]
                cleaned = [self.scrub(str(v or "")) for v in values]
                if cleaned != [str(v or "") for v in values]:
                    self.replace(elem, cleaned if elem.VM > 1 else cleaned[0], "C", "Basic Profile", path)
            return
        if elem.value in (None, "") or (elem.VR not in FREE_TEXT_VRS and elem.VR not in ("DA", "DT", "TM")):
            return  # codes (CS), UIDs of classes, numbers and binary stay: they name nobody
        if elem.VR in ("DA", "DT", "TM"):
            if Option.RETAIN_FULL_DATES in self.options or (
                    Option.RETAIN_MODIFIED_DATES in self.options and elem.VR == "TM"):
                return
            value = self.shift(elem) if Option.RETAIN_MODIFIED_DATES in self.options else DUMMY[elem.VR]
            self.replace(elem, value, "C" if Option.RETAIN_MODIFIED_DATES in self.options else "D",
                         "Basic Profile", path)
            return
        self.replace(elem, DUMMY.get(elem.VR, DUMMY_TEXT), "D", "Basic Profile", path)

    def dummy(self, elem: DataElement) -> object:
        if elem.VR == "UI":
            return self.uids(elem.value)
        if elem.VR in DUMMY:
            return DUMMY[elem.VR]
        if elem.VR in TEXT_VRS:
            return DUMMY_TEXT
        if elem.VR in NUMBER_VRS:
            return 0
        if elem.VR == "AT":
            return 0
        return None  # OB, OW, UN ...: zero length

    def clean(self, ds: Dataset, elem: DataElement, action: str, column: str, path: str,
              mode: int = KEEP, structured: bool = False) -> None:
        """C: dates shifted by the subject's whole days (times of day kept);
        text cleared of this instance's identifying values; sequences cleaned item by item."""
        if elem.VR == "SQ":
            self.items(elem, path, max(mode, CLEAN), structured or elem.tag in STRUCTURED_SEQUENCES)
        elif elem.VR in ("DA", "DT"):
            self.replace(elem, self.shift(elem), action, column, path)
        elif elem.VR == "TM" or elem.VR in NUMBER_VRS or elem.VR in ("IS", "DS", "AS", "US"):
            return
        elif elem.tag == TIMEZONE_OFFSET:
            # The offset of every DT is kept as it is: the zone stays, a value
            # that is not an offset does not.
            text = str(elem.value or "").strip()
            self.replace(elem, text if re.fullmatch(r"[+-]\d{4}", text) else "", action, column, path)
        elif elem.VR in TEXT_VRS or elem.VR == "UC":
            values = elem.value if elem.VM > 1 else [elem.value]
            cleaned = [self.scrub(str(v or "")) for v in values]
            self.replace(elem, cleaned if elem.VM > 1 else cleaned[0], action, column, path)
        else:  # overlays, graphics, binary content cannot be cleaned here: removed
            self.note(path, elem, action, column, None)
            del ds[elem.tag]

    def scrub(self, text: str) -> str:
        if not self._compiled:  # on first use: most instances clean no text at all
            values = self._identifying()
            self._pattern = re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE) if values else None
            self._compiled = True
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def shift(self, elem: DataElement) -> object:
        values = elem.value if elem.VM > 1 else [elem.value]
        shifted = [_shift_date(str(v or ""), self.subject.shift_days, elem.VR) for v in values]
        return shifted if elem.VM > 1 else shifted[0]

    def uids(self, value: object) -> object:
        if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str)):
            return [self.owner.pseudonyms.uid(str(v)) for v in value if str(v)]
        return self.owner.pseudonyms.uid(str(value)) if str(value or "") else value

    # -- recording -------------------------------------------------------------
    def replace(self, elem: DataElement, value: object, action: str, column: str, path: str) -> None:
        before = elem.value
        elem.value = value
        self.note(path, elem, action, column, elem.value, before=before)

    def note(self, path: str, elem: DataElement, action: str, column: str, after: object | None,
             before: object | None = None) -> None:
        if not self.record:
            return
        self.changes.append(Change(path, elem.keyword or "", elem.name, action, column,
                                   _shown(elem.value if before is None else before),
                                   None if after is None and action.startswith("X") else _shown(after)))


_DATE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def _shift_date(value: str, days: int, vr: str) -> str:
    """``value`` (DA, or DT whose time part and offset are kept) moved by ``days``;
    a value that is not a date becomes empty rather than leak."""
    value = value.strip()
    if not value:
        return value
    match = _DATE.match(value)
    if not match:
        return ""
    year, month, day, rest = match.groups()
    if vr == "DA" and (month is None or day is None or rest):
        return ""
    try:
        moved = dt.date(int(year), int(month or 1), int(day or 1)) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return ""
    text = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    if month is None:
        return text[:4]
    if day is None:
        return text[:6]
    return text + (rest or "")
