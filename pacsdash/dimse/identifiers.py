"""Translate between C-FIND/C-MOVE/C-GET identifiers and archive queries."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacsdash.archive import InvalidQuery, Level, Query
from pacsdash.archive.attributes import attribute_for
from pacsdash.archive.parsing import value_text
from pacsdash.dimse.encoding import element
from pacsdash.dimse.encoding import text as text_bytes

#: Elements of an identifier that are not matching or return keys.
_NOT_KEYS = {0x00080005, 0x00080052, 0x00080054, 0x00080056}
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


_PACK = {"US": "<H", "SS": "<h", "UL": "<L", "SL": "<l", "UV": "<Q", "SV": "<q", "FL": "<f", "FD": "<d"}


class EncodedIdentifier(Dataset):
    """A response identifier already encoded for its presentation context.

    pynetdicom encodes each C-FIND response identifier with pydicom, element
    by element, which costs more per match than the query. :func:`install`
    makes pynetdicom's C-FIND service send :attr:`encoded` as it is.
    """

    def __init__(self, encoded: bytes) -> None:
        super().__init__()
        self.__dict__["encoded"] = encoded


def _number_bytes(vr: str, text: str | None) -> bytes:
    if not text:
        return b""
    try:
        values = [_NUMBER_VRS[vr](v) for v in text.split("\\") if v != ""]
        return b"".join(struct.pack(_PACK[vr], v) for v in values)
    except (ValueError, TypeError, struct.error):
        return b""  # not a number of this VR: returned empty, as pydicom would refuse it


class ResponseBuilder:
    """Fills the keys of one C-FIND request with each match's values.

    The request's keys are resolved once; each match then costs only the
    encoding of its values (PS3.4 C.4.1.1.3.2: the response carries exactly
    the keys of the request). For a little-endian, non-deflated context the
    response is encoded here, straight to bytes (:class:`EncodedIdentifier`);
    otherwise pydicom builds and encodes a :class:`Dataset`.
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

    def _values(self, row: dict[str, str | None]) -> Iterator[tuple[Tag, str, str | None]]:
        for tag, vr, keyword in self.keys:
            if keyword == "__level__":
                yield tag, vr, self.level.value
            elif keyword == "__aet__":
                yield tag, vr, self.aet
            else:
                yield tag, vr, None if keyword is None else row.get(keyword)

    def build(self, row: dict[str, str | None]) -> Dataset:
        """The response identifier for one matching row."""
        values = list(self._values(row))
        needs_utf8 = any(text is not None and not text.isascii() for _, _, text in values)
        if self.implicit_vr is not None:
            return EncodedIdentifier(self._encode(values, needs_utf8, self.implicit_vr))
        ds = Dataset()
        if needs_utf8:
            ds.SpecificCharacterSet = "ISO_IR 192"
        for tag, vr, text in values:
            if vr == "SQ":
                ds.add_new(tag, "SQ", [])
            elif vr in _NUMBER_VRS and text is not None:
                try:
                    ds.add_new(tag, vr, _typed(vr, text))
                except (ValueError, TypeError):
                    ds.add_new(tag, vr, None)
            else:
                ds.add_new(tag, vr, text)
        return ds

    @staticmethod
    def _encode(values: list[tuple[Tag, str, str | None]], needs_utf8: bool, implicit_vr: bool) -> bytes:
        codec = "utf-8" if needs_utf8 else "ascii"
        parts = [element(0x00080005, "CS", b"ISO_IR 192", implicit_vr)] if needs_utf8 else []
        for tag, vr, text in values:
            if vr == "SQ":
                parts.append(element(tag, "SQ", b"", implicit_vr))  # empty: sequence matching is not supported
            elif vr in _NUMBER_VRS:
                parts.append(element(tag, vr, _number_bytes(vr, text), implicit_vr))
            else:
                parts.append(element(tag, vr, text_bytes(vr, text, codec), implicit_vr))
        return b"".join(parts)


def _encode_for_service(original: Any) -> Any:
    """pynetdicom's ``encode`` as its service classes call it, passing
    :class:`EncodedIdentifier` bytes through unchanged."""

    def encode(ds: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(ds, EncodedIdentifier):
            return ds.encoded
        return original(ds, *args, **kwargs)

    encode.__wrapped__ = original  # type: ignore[attr-defined]
    return encode


def install() -> None:
    """Apply pacsdash's changes to pynetdicom, this module's among them
    (:func:`pacsdash.dimse.compat.install`; kept for existing callers)."""
    from pacsdash.dimse import compat

    compat.install()
