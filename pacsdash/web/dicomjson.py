"""The DICOM JSON model (PS3.18 Annex F), from index rows and from files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

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
        return {"vr": vr, "Value": [{"Alphabetic": p} if p else {} for p in parts]}
    if vr in INTEGER_VRS or vr in FLOAT_VRS:
        return {"vr": vr, "Value": [_number(p.strip(), vr) if p.strip() else None for p in parts]}
    return {"vr": vr, "Value": parts}


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
    Deferred (unread) values are never read: their length is enough.
    """
    out: dict[str, Any] = {}
    encoding = ds._character_set  # noqa: SLF001
    for tag, raw in sorted(ds._dict.items()):  # noqa: SLF001 - raw, to leave deferred values unread
        key = f"{int(tag):08X}"
        if int(tag) >> 16 == 0x0002:
            continue
        element_path = f"{path}/{key}" if path else key
        vr = raw.VR
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length not in (0, 0xFFFFFFFF):
            out[key] = {"vr": vr if vr in BINARY_VRS else "OB", "BulkDataURI": bulk_uri(element_path)}
            continue
        try:
            elem = convert_raw_data_element(raw, encoding=encoding, ds=ds) if isinstance(raw, RawDataElement) else raw
        except Exception:  # an undecodable value is left out, not a failure
            continue
        vr = elem.VR
        if vr == "SQ":
            items = [dataset_to_json(item, bulk_uri, f"{element_path}/{i}", threshold) for i, item in enumerate(elem.value)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif vr in BINARY_VRS and elem.value is not None and len(elem.value) > threshold:
            out[key] = {"vr": vr, "BulkDataURI": bulk_uri(element_path)}
        else:
            try:
                out[key] = elem.to_json_dict(None, threshold)
            except Exception:
                continue
    return out


def find_element(ds: Dataset, path: str) -> Any:
    """The element at a bulk data ``path`` (``7FE00010``, ``54000100/0/54001010``).

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
            current = current[tag]
            if depth < len(parts) - 1:
                current = current.value
        else:
            if not part.isdigit() or int(part) >= len(current):
                raise KeyError(f"no item {part}")
            current = current[int(part)]
    return current
