"""Data sets with a distinct, findable identifying value in every attribute
of PS3.15 Table E.1-1, for the de-identification tests.

Every text value ends in a token ``<letters>_<four digits>`` whose digits
are a serial number, so no token is part of another, of a dummy value, of a
``2.25.`` UID or of a base32 pseudonym: finding one in the output bytes means
it was kept. UIDs are ``ROOT.<serial>.<random>``; dates are real dates.
Each value is recorded with where it was put (:class:`Placed`), so a test can
tell which ones the table allows to stay.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import string
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from pacsdash.research.profile import ConfidentialityTable, Rule

ROOT = "1.2.826.0.1.3680043.10.1474.99"
UPPER = string.ascii_uppercase
FREE = string.ascii_letters + " .,-()'"
PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "PACSDASH GENERATED"
#: Groups a data set cannot hold (command group, file meta): those rows are checked elsewhere.
SKIPPED_GROUPS = (0x0000, 0x0002)
#: Public sequences the table does not list (their items are de-identified, they are kept).
UNLISTED_SEQUENCES = (0x00081115, 0x0008114A, 0x0040A370)
CODE_VALUE, CODING_SCHEME, CODE_MEANING = 0x00080100, 0x00080102, 0x00080104
REFERENCED_SOP_CLASS, REFERENCED_SOP_INSTANCE = 0x00081150, 0x00081155


def concrete_tag(rule_tag: str) -> int | None:
    """A tag for a row of the table: a repeating group's row gets one group of it."""
    low = rule_tag.lower()
    if low == "private":
        return None
    if low == "50xxxxxx":  # Curve Data: every element of the 50xx groups; Curve Label is a text one
        return 0x50022500
    if "x" in low:
        return int(low.replace("xx", "02", 1).replace("x", "0"), 16)
    return int(rule_tag, 16)


def vr_of(tag: int, name: str) -> str:
    """The tag's VR from pydicom's dictionary; rows newer than it get one from their name."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        if name.endswith("Sequence"):
            vr = "SQ"
        elif name.endswith("DateTime"):
            vr = "DT"
        elif name.endswith("URI"):
            vr = "UR"
        else:
            vr = "LO"
    return vr.split(" or ")[0]


@dataclass(frozen=True)
class Attribute:
    tag: int
    vr: str
    name: str
    rule: Rule | None


def table_attributes(table: ConfidentialityTable) -> list[Attribute]:
    """One attribute per row of Table E.1-1 that a data set can hold."""
    found = []
    for rule in table.rules():
        tag = concrete_tag(rule.tag)
        if tag is None or tag >> 16 in SKIPPED_GROUPS:
            continue
        found.append(Attribute(tag, vr_of(tag, rule.name), rule.name, rule))
    return sorted(found, key=lambda a: a.tag)


@dataclass
class Pools:
    """What hypothesis draws: the random material every value is made of."""

    words: list[str]  # uppercase letters
    free: list[str]  # free text
    dates: list[dt.date]
    times: list[dt.time]
    numbers: list[int]
    patient_id: str
    issuer: str
    pixels: bytes


@dataclass(frozen=True)
class Placed:
    """One value put in the data set."""

    path: tuple[tuple[int, int], ...]  # the (sequence tag, item number) steps down to it
    tag: int
    vr: str
    value: object
    tokens: tuple[bytes, ...]  # what must not be found if it is not kept
    dates: tuple[str, ...]  # DA, or the date part of a DT


@dataclass
class Generated:
    dataset: Dataset
    placed: list[Placed] = field(default_factory=list)

    def bytes_of(self) -> bytes:
        out = io.BytesIO()
        self.dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()


class Builder:
    """Makes values, each with a serial number of its own."""

    def __init__(self, pools: Pools, rnd: random.Random) -> None:
        self.pools = pools
        self.rnd = rnd
        self.serial = 0
        self.placed: list[Placed] = []

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def token(self, limit: int = 64) -> str:
        word = self.rnd.choice(self.pools.words)
        suffix = f"_{self._next():04d}"
        return word[: max(1, limit - len(suffix))] + suffix

    def date(self) -> dt.date:
        return self.rnd.choice(self.pools.dates)

    def time(self) -> str:
        return self.rnd.choice(self.pools.times).strftime("%H%M%S")

    def uid(self) -> str:
        return f"{ROOT}.{self._next()}.{self.rnd.choice(self.pools.numbers)}"

    def value(self, vr: str) -> tuple[object, tuple[bytes, ...], tuple[str, ...]]:
        """``(value, tokens, dates)`` for an element of ``vr``; None if not made."""
        if vr in ("AE", "CS", "SH"):
            text = self.token(16)
            return text, (text.encode(),), ()
        if vr in ("LO", "LT", "ST", "UT", "UC"):
            core = self.token(40)
            free = self.rnd.choice(self.pools.free).strip()
            text = f"{free[:20].strip()} {core}".strip() if free else core
            return text, (text.encode(), core.encode()), ()
        if vr == "PN":
            family, given = self.token(30), self.token(30)
            text = f"{family}^{given}"
            return text, (text.encode(), family.encode(), given.encode()), ()
        if vr == "UR":
            core = self.token(40)
            return f"urn:x:{core}", (core.encode(),), ()
        if vr == "UI":
            uid = self.uid()
            return uid, (uid.encode(),), ()
        if vr == "DA":
            text = self.date().strftime("%Y%m%d")
            return text, (), (text,)
        if vr == "DT":
            day = self.date().strftime("%Y%m%d")
            text = day + self.time() + self.rnd.choice(["", ".250000", "+0100", ".5-0500"])
            return text, (), (day,)
        if vr == "TM":
            return self.time(), (), ()
        if vr == "AS":
            return f"{self.rnd.randrange(1, 120):03d}Y", (), ()
        if vr == "DS":
            return f"{self.rnd.randrange(1, 10_000) / 10:g}", (), ()
        if vr == "IS":
            return str(self.rnd.randrange(1, 10_000)), (), ()
        if vr in ("US", "SS", "UL", "SL"):
            return self.rnd.randrange(1, 30_000), (), ()
        if vr in ("FL", "FD"):
            return float(self.rnd.randrange(1, 1000)), (), ()
        if vr in ("OB", "OW", "UN"):
            data = f"BIN{self.token(13)}".encode()
            data += b"\x00" * (len(data) % 2)
            return data, (data.rstrip(b"\x00"),), ()
        return None, (), ()

    def put(self, ds: Dataset, path: tuple[tuple[int, int], ...], tag: int, vr: str) -> None:
        value, tokens, dates = self.value(vr)
        if value is None:
            return
        ds.add_new(tag, vr, value)
        self.placed.append(Placed(path, tag, vr, value, tokens, dates))


def code_item(builder: Builder, path: tuple[tuple[int, int], ...]) -> Dataset:
    """An item with a code (not listed in the table: a person's or an institution's code, say)."""
    item = Dataset()
    for tag, vr in ((CODE_VALUE, "SH"), (CODING_SCHEME, "SH"), (CODE_MEANING, "LO")):
        builder.put(item, path, tag, vr)
    return item


def generate(table: ConfidentialityTable, pools: Pools, rnd: random.Random,
             attributes: Seq[Attribute] | None = None, nested: bool = True, private: bool = True) -> Generated:
    """A CT-like data set with a value in every attribute of ``attributes``
    (default: the table's), and with ``nested``, listed attributes in items of
    every listed sequence, of unlisted sequences 1 to 3 levels deep, and with
    ``private``, in a private block (elements, a private sequence, and inside
    items)."""
    attributes = list(attributes if attributes is not None else table_attributes(table))
    leaves = [a for a in attributes if a.vr != "SQ"]
    sequences = [a for a in attributes if a.vr == "SQ"]
    builder = Builder(pools, rnd)
    ds = Dataset()
    for attribute in leaves:
        builder.put(ds, (), attribute.tag, attribute.vr)
    # Who the patient is (serials 9998 and 9999 are never drawn), and an image.
    builder.placed = [p for p in builder.placed if p.tag not in (0x00100020, 0x00100021) or p.path]
    for tag, text in ((0x00100020, f"{pools.patient_id}_9998"), (0x00100021, f"{pools.issuer}_9999")):
        ds.add_new(tag, "LO", text)
        builder.placed.append(Placed((), tag, "LO", text, (text.encode(),), ()))
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pools.pixels

    def fill(item: Dataset, path: tuple[tuple[int, int], ...], count: int) -> None:
        for attribute in rnd.sample(leaves, min(count, len(leaves))):
            if attribute.tag not in item:
                builder.put(item, path, attribute.tag, attribute.vr)

    if nested:
        for attribute in sequences:
            if attribute.tag in ds:
                continue
            path = ((attribute.tag, 0),)
            item = code_item(builder, path)
            item.add_new(REFERENCED_SOP_CLASS, "UI", CTImageStorage)
            builder.put(item, path, REFERENCED_SOP_INSTANCE, "UI")
            fill(item, path, rnd.randrange(2, 7))
            ds.add_new(attribute.tag, "SQ", Sequence([item]))
        # Unlisted sequences, up to three deep, with listed attributes (and a listed sequence) inside.
        outer, middle, inner = UNLISTED_SEQUENCES
        depth = rnd.randrange(1, 4)
        path1 = ((outer, 0),)
        item1 = Dataset()
        fill(item1, path1, rnd.randrange(3, 10))
        if depth >= 2:
            path2 = path1 + ((middle, 0),)
            item2 = Dataset()
            fill(item2, path2, rnd.randrange(3, 10))
            listed = rnd.choice(sequences) if sequences else None
            if listed is not None:
                path_listed = path2 + ((listed.tag, 0),)
                listed_item = code_item(builder, path_listed)
                fill(listed_item, path_listed, 3)
                item2.add_new(listed.tag, "SQ", Sequence([listed_item]))
            if depth >= 3:
                path3 = path2 + ((inner, 0),)
                item3 = Dataset()
                fill(item3, path3, rnd.randrange(3, 10))
                _private_block(builder, item3, path3, nested_sequence=False)
                item2.add_new(inner, "SQ", Sequence([item3]))
            item1.add_new(middle, "SQ", Sequence([item2]))
        ds.add_new(outer, "SQ", Sequence([item1]))
    if private:
        _private_block(builder, ds, (), nested_sequence=nested, fill=fill if nested else None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = str(ds.get("SOPInstanceUID", builder.uid()))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return Generated(ds, builder.placed)


def _private_block(builder: Builder, ds: Dataset, path: tuple[tuple[int, int], ...], nested_sequence: bool,
                   fill=None) -> None:
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    for offset, vr in ((0x10, "LO"), (0x11, "PN"), (0x12, "DA"), (0x13, "UI"), (0x14, "SH"), (0x15, "DT")):
        builder.put(ds, path, block.get_tag(offset), vr)
    if nested_sequence and fill is not None:
        tag = block.get_tag(0x20)
        item_path = path + ((tag, 0),)
        item = code_item(builder, item_path)
        fill(item, item_path, 5)
        ds.add_new(tag, "SQ", Sequence([item]))
