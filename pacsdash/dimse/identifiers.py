"""Translate between C-FIND/C-MOVE/C-GET identifiers and archive queries."""

from __future__ import annotations

from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.archive.attributes import attribute_for
from pacsdash.archive.parsing import value_text

#: Elements of an identifier that are not matching or return keys.
_NOT_KEYS = {0x00080005, 0x00080052, 0x00080054, 0x00080056}
_UTF8 = convert_encodings("ISO_IR 192")
_NUMBER_VRS = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}


def level_of(identifier: Dataset) -> Level:
    """The identifier's QueryRetrieveLevel, or :class:`InvalidQuery`."""
    raw = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    try:
        return Level(raw)
    except ValueError:
        raise InvalidQuery(f"QueryRetrieveLevel {raw!r} must be PATIENT, STUDY, SERIES or IMAGE") from None


def query_from_identifier(identifier: Dataset, level: Level | None = None) -> Query:
    """A :class:`Query` from a C-FIND/C-MOVE/C-GET identifier (PS3.4 C.4)."""
    level = level or level_of(identifier)
    filters: dict[str, str] = {}
    for elem in identifier:
        if int(elem.tag) in _NOT_KEYS or elem.tag.group == 0x0002 or elem.tag.element == 0:
            continue
        if elem.VR == "SQ":
            # Sequence matching is not supported: the key is returned empty.
            filters.setdefault(_key(elem.tag), "")
            continue
        try:
            text = value_text(elem.value)
        except Exception:
            raise InvalidQuery(f"the value of {elem.tag} cannot be read") from None
        filters[_key(elem.tag)] = (text or "").strip()
    return Query(level, filters, include_defaults=False)


def _key(tag: Any) -> str:
    attr = attribute_for(f"{int(tag):08X}")
    return attr.keyword


def _typed(vr: str, text: str) -> Any:
    convert = _NUMBER_VRS.get(vr)
    if convert is None:
        return text
    values = [convert(v) for v in text.split("\\") if v != ""]
    return values[0] if len(values) == 1 else values


class ResponseBuilder:
    """Fills the keys of one C-FIND request with each match's values.

    The request's keys are resolved once; each match then costs only the
    element assignments (PS3.4 C.4.1.1.3.2: the response carries exactly the
    keys of the request). Text values, nearly all of them, go in already
    encoded for the context's little-endian transfer syntax, which pydicom
    writes as they are: encoding each response element by element cost more
    than the query.
    """

    def __init__(self, request: Dataset, level: Level, aet: str, implicit_vr: bool | None = None) -> None:
        self.level = level
        self.aet = aet
        #: Encoding of the responses (None: let pydicom convert every value).
        self.implicit_vr = implicit_vr
        self.keys: list[tuple[Tag, str, str | None]] = []
        for elem in request:
            tag = int(elem.tag)
            if elem.tag.group == 0x0002 or elem.tag.element == 0 or tag == 0x00080005:
                continue
            vr = elem.VR if elem.VR not in ("UN", None) else attribute_for(f"{tag:08X}").vr
            if tag == 0x00080052:
                self.keys.append((Tag(tag), "CS", "__level__"))
            elif tag == 0x00080054:
                self.keys.append((Tag(tag), "AE", "__aet__"))
            elif vr == "SQ":
                self.keys.append((Tag(tag), "SQ", None))
            else:
                self.keys.append((Tag(tag), vr, attribute_for(f"{tag:08X}").keyword))
        if not any(keyword == "__level__" for _, _, keyword in self.keys):
            self.keys.append((Tag(0x00080052), "CS", "__level__"))
            self.keys.sort(key=lambda key: key[0])

    def build(self, row: dict[str, str | None]) -> Dataset:
        """The response identifier for one matching row."""
        ds = Dataset()
        texts: list[tuple[Tag, str, str | None]] = []
        needs_utf8 = False
        for tag, vr, keyword in self.keys:
            if keyword == "__level__":
                texts.append((tag, vr, self.level.value))
            elif keyword == "__aet__":
                texts.append((tag, vr, self.aet))
            elif keyword is None:
                ds.add_new(tag, "SQ", [])
            else:
                text = row.get(keyword)
                if text is not None and not text.isascii():
                    needs_utf8 = True
                if vr in _NUMBER_VRS and text is not None:
                    try:
                        ds.add_new(tag, vr, _typed(vr, text))
                    except (ValueError, TypeError):
                        ds.add_new(tag, vr, None)
                else:
                    texts.append((tag, vr, text))
        if needs_utf8:
            ds.SpecificCharacterSet = "ISO_IR 192"
        if self.implicit_vr is None:
            for tag, vr, text in texts:
                ds.add_new(tag, vr, text)
            return ds
        codec = "utf-8" if needs_utf8 else "ascii"
        for tag, vr, text in texts:
            value = text.encode(codec) if text else b""
            if len(value) % 2:
                value += b"\0" if vr == "UI" else b" "
            ds[tag] = RawDataElement(tag, vr, len(value), value, 0, self.implicit_vr, True)
        ds.set_original_encoding(self.implicit_vr, True, _UTF8 if needs_utf8 else default_encoding)
        return ds
