"""Little-endian DICOM elements written straight to bytes, for the hot paths.

pydicom builds a :class:`~pydicom.dataset.Dataset` and encodes it element by
element; for the few small, fixed structures every C-STORE and C-FIND needs
(a C-STORE-RSP command set, the file meta in front of a received data set,
a C-FIND response identifier) that costs more than the rest of the
exchange. These functions write the same bytes directly (PS3.5 7.1, PS3.7
E.1, PS3.10 7.1); the tests check each against pydicom's and pynetdicom's
own encoding.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

#: Explicit VR little endian: VRs whose length is 4 bytes after 2 reserved ones (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101


def element(tag: int, vr: str, value: bytes, implicit_vr: bool) -> bytes:
    """One little-endian data element, as PS3.5 7.1 lays it out."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit_vr:
        return head + struct.pack("<L", len(value)) + value
    if vr in LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + vr.encode() + struct.pack("<H", len(value)) + value


def text(vr: str, value: str | None, codec: str = "ascii") -> bytes:
    """A text value, padded to even length (UI with NUL, others with a space).

    A character ``codec`` cannot encode becomes ``?``: a response quoting
    what a peer sent must still go out.
    """
    data = value.encode(codec, errors="replace") if value else b""
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def _group(group: int, elements: list[bytes], implicit_vr: bool) -> bytes:
    """``elements`` of one group behind their group length element (gggg,0000)."""
    body = b"".join(elements)
    return element(group << 16, "UL", struct.pack("<L", len(body)), implicit_vr) + body


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """The file meta group pynetdicom writes in front of a received data set
    (``encode_file_meta(create_file_meta(...))``): explicit VR little endian."""
    return _group(0x0002, [
        element(0x00020001, "OB", b"\x00\x01", False),
        element(0x00020002, "UI", text("UI", sop_class), False),
        element(0x00020003, "UI", text("UI", sop_instance), False),
        element(0x00020010, "UI", text("UI", transfer_syntax), False),
        element(0x00020012, "UI", text("UI", PYNETDICOM_IMPLEMENTATION_UID), False),
        element(0x00020013, "SH", text("SH", PYNETDICOM_IMPLEMENTATION_VERSION), False),
    ], False)


def store_response(message_id: int, sop_class: str, sop_instance: str, status: int,
                   error_comment: str | None = None) -> bytes:
    """A C-STORE-RSP command set (PS3.7 9.3.1.2), implicit VR little endian."""
    elements = [
        element(0x00000002, "UI", text("UI", sop_class), True),
        element(0x00000100, "US", struct.pack("<H", C_STORE_RSP), True),
        element(0x00000120, "US", struct.pack("<H", message_id), True),
        element(0x00000800, "US", struct.pack("<H", NO_DATA_SET), True),
        element(0x00000900, "US", struct.pack("<H", status), True),
    ]
    if error_comment:
        elements.append(element(0x00000902, "LO", text("LO", error_comment), True))
    elements.append(element(0x00001000, "UI", text("UI", sop_instance), True))
    return _group(0x0000, elements, True)
