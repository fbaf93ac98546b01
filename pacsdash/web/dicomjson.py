"""The DICOM JSON model (PS3.18 Annex F), from index rows and from files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom import hooks
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.sequence import Sequence

from pacsdash.archive.attributes import Attribute

#: Binary VRs sent as BulkDataURI when longer than the threshold (F.2.7).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs whose text may hold a backslash: never split into values.
SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "IS"})
FLOAT_VRS = frozenset({"FL", "FD", "DS"})
BULK_THRESHOLD = 1024


def _number(text: str, vr: str) -> Any:
    try:
        if vr in INTEGER_VRS:
            return int(float(text)) if vr == "IS" and "." in text else int(text)
        return float(text)
    except ValueError:
        return text  # kept as received rather than lost


def text_to_json(vr: str, text: str | None) -> dict[str, Any]:
    """One attribute from its DICOM string form (multi-values joined by ``\\``)."""
    if text is None or text == "":
        return {"vr": vr}
    parts = [text] if vr in SINGLE_TEXT_VRS else text.split("\\")
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(p) for p in parts]}
    if vr == "AT":  # pydicom's text is "(0010,0010)"; DICOM JSON's "00100010"
        return {"vr": vr, "Value": [p.strip("() ").replace(",", "").upper() for p in parts]}
    if vr in INTEGER_VRS or vr in FLOAT_VRS:
        return {"vr": vr, "Value": [_number(p.strip(), vr) if p.strip() else None for p in parts]}
    return {"vr": vr, "Value": parts}


def _person_name(text: str) -> dict[str, str]:
    """One PN value: its alphabetic, ideographic and phonetic groups (F.2.2)."""
    groups = zip(("Alphabetic", "Ideographic", "Phonetic"), text.split("="))
    return {name: group for name, group in groups if group}


def row_to_json(row: dict[str, str | None], attributes: list[Attribute], omit_empty: frozenset[str] = frozenset()) -> dict:
    """A search result: each attribute's value from the index row."""
    out: dict[str, Any] = {}
    for attr in attributes:
        value = row.get(attr.keyword)
        if (value is None or value == "") and attr.keyword in omit_empty:
            continue
        out[attr.hex] = text_to_json(attr.vr, value)
    return dict(sorted(out.items()))


def dataset_to_json(
    ds: Dataset,
    bulk_uri: Callable[[str], str],
    path: str = "",
    threshold: int = BULK_THRESHOLD,
) -> dict[str, Any]:
    """A data set in the DICOM JSON model; bulk data as BulkDataURI.

    ``bulk_uri`` gets the element's path (``7FE00010``, or
    ``54000100/0/54001010`` inside a sequence item) and returns its URI.
    Only values of a binary VR (:data:`BINARY_VRS`) longer than
    ``threshold`` become BulkDataURIs; a sequence is always inlined, at any
    depth (PS3.18 F.2), and so is text or numbers. A deferred (unread) value
    of a binary VR is never read: its length is enough; any other deferred
    value (a long sequence such as an SR's ContentSequence, a long text) is
    read from the file and inlined.
    """
    out: dict[str, Any] = {}
    encoding = ds._character_set  # noqa: SLF001
    for tag, raw in sorted(ds._dict.items()):  # noqa: SLF001 - raw, to leave deferred values unread
        key = f"{int(tag):08X}"
        if int(tag) >> 16 == 0x0002:
            continue
        element_path = f"{path}/{key}" if path else key
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length not in (0, 0xFFFFFFFF):
            vr = _deferred_vr(raw, ds, encoding)
            if vr in BINARY_VRS:
                out[key] = {"vr": vr, "BulkDataURI": bulk_uri(element_path)}
                continue
            try:
                raw = ds[tag]  # not bulk data: read now (pydicom reopens the file)
            except Exception:  # an unreadable value is left out, not a failure
                continue
        try:
            elem = convert_raw_data_element(raw, encoding=encoding, ds=ds) if isinstance(raw, RawDataElement) else raw
        except Exception:  # an undecodable value is left out, not a failure
            continue
        vr = elem.VR
        if vr == "SQ":
            items = [dataset_to_json(item, bulk_uri, f"{element_path}/{i}", threshold) for i, item in enumerate(elem.value)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if " or " in vr:  # an ambiguous dictionary VR (implicit VR files): the one it has here
            try:  # pydicom's rules (PixelRepresentation, BitsAllocated...), the value converted to match
                elem = correct_ambiguous_vr_element(elem, ds, bool(getattr(raw, "is_little_endian", True)))
            except Exception:
                pass
            vr = elem.VR
            if " or " in vr:
                vr = _resolved_vr(vr, ds, bool(getattr(raw, "is_implicit_VR", False)), elem.value)
                elem.VR = vr
        if vr in BINARY_VRS and elem.value is not None and len(elem.value) > threshold:
            out[key] = {"vr": vr, "BulkDataURI": bulk_uri(element_path)}
        else:
            try:
                out[key] = elem.to_json_dict(None, threshold)
            except Exception:
                continue
    return out


def _deferred_vr(raw: RawDataElement, ds: Dataset, encoding: Any) -> str:
    """The VR an unread element will have once read (pydicom's own lookup:
    the dictionary's for implicit VR, a known VR instead of UN)."""
    data: dict[str, Any] = {}
    try:
        hooks.hooks.raw_element_vr(raw, data, encoding=encoding, ds=ds)
    except Exception:  # no VR to be found: bytes
        return "UN"
    vr = str(data.get("VR") or "UN")
    return _resolved_vr(vr, ds, raw.is_implicit_VR, None) if " or " in vr else vr


def _resolved_vr(vr: str, ds: Dataset, implicit: bool, value: Any) -> str:
    """One VR for an ambiguous dictionary VR (``OB or OW``, ``US or SS``...).

    Word data (``OW``) when the value is bytes or unread, as PS3.5 A.1 has
    it for implicit VR; else ``SS`` if the image's pixels are signed, ``US``
    otherwise.
    """
    options = vr.split(" or ")
    binary = [o for o in options if o in BINARY_VRS]
    if binary and (value is None or isinstance(value, bytes)):
        if "OW" in binary and (implicit or ds.get("BitsAllocated", 16) != 8):
            return "OW"
        return binary[0]
    if "US" in options and "SS" in options:
        return "SS" if ds.get("PixelRepresentation", 0) == 1 else "US"
    return next((o for o in options if o not in BINARY_VRS), options[0])


def find_element(ds: Dataset, path: str) -> Any:
    """The element at a bulk data ``path`` (``7FE00010``, ``54000100/0/54001010``),
    raw (its value the bytes as stored) unless it was read already.

    Raises
    ------
    KeyError
        If the path does not lead to an element.
    """
    parts = path.strip("/").split("/")
    current: Any = ds
    for depth, part in enumerate(parts):
        if depth % 2 == 0:
            if len(part) != 8 or not all(c in "0123456789abcdefABCDEF" for c in part):
                raise KeyError(f"{part!r} is not a tag")
            tag = int(part, 16)
            if tag not in current:
                raise KeyError(f"no element {part}")
            if depth < len(parts) - 1:
                current = current[tag].value
                if not isinstance(current, Sequence):
                    raise KeyError(f"{part} is not a sequence")
            else:
                current = current.get_item(tag)
        else:
            if not part.isdigit() or int(part) >= len(current):
                raise KeyError(f"no item {part}")
            current = current[int(part)]
    return current
