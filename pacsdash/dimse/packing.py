"""Send each DIMSE message in as few P-DATA-TF PDUs as the peer accepts.

pynetdicom sends a message's command set and its data set in separate
P-DATA-TF PDUs, each its own write on the socket. A C-FIND match is a
command of ~100 bytes and an identifier of a few hundred: two PDUs, two
system calls, and a peer that reads the first before the second arrives
(pynetdicom's own DUL then naps 1 ms). PS3.8 9.3.5 lets one PDU carry several
PDV items, so the PDVs of one message are packed together up to the peer's
maximum PDU length. PDVs of different messages are never mixed: a receiver
may stop reading a PDU once a message is complete (pynetdicom does).

A pending C-FIND response's command set is the same for every match of a
query, so its encoding is kept and reused rather than rebuilt with pydicom
each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pynetdicom.dimse
from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

#: A PDV item's bytes besides its data: item length (4) and context ID (1).
PDV_ITEM_OVERHEAD = 5


def pack(primitives: Iterable[P_DATA], maximum_length: int) -> Iterator[P_DATA]:
    """Join the PDVs of one message's P-DATA primitives, in order, into PDUs
    whose PDV items add up to at most ``maximum_length`` bytes (0: no limit)."""
    current: P_DATA | None = None
    size = 0
    for primitive in primitives:
        for item in primitive.presentation_data_value_list:
            item_size = PDV_ITEM_OVERHEAD + len(item[1])
            if current is not None and (maximum_length == 0 or size + item_size <= maximum_length):
                current.presentation_data_value_list.append(item)
                size += item_size
                continue
            if current is not None:
                yield current
            current = P_DATA()
            current.presentation_data_value_list.append(item)
            size = item_size
    if current is not None:
        yield current


#: Pending C-FIND statuses (PS3.4 C.4.1.1.4).
_PENDING = frozenset({0xFF00, 0xFF01})
#: Most command sets kept by :func:`_pending_find_command`.
_COMMANDS_KEPT = 256
_find_commands: dict[tuple[int, str, int], bytes] = {}


def _pending_find_command(primitive: object) -> bytes | None:
    """The encoded command set of a pending C-FIND response with an identifier, or None.

    Such a command set depends only on the request's message ID and SOP
    class and on the status, so it is encoded once per query.
    """
    if (
        type(primitive) is not C_FIND
        or primitive.Status not in _PENDING
        or primitive.Identifier is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
    ):
        return None
    key = (primitive.MessageIDBeingRespondedTo, str(primitive.AffectedSOPClassUID), primitive.Status)
    command = _find_commands.get(key)
    if command is None:
        message = C_FIND_RSP()
        message.primitive_to_message(primitive)
        command = bytes(encode(message.command_set, True, True))  # always implicit VR little endian
        if len(_find_commands) >= _COMMANDS_KEPT:
            _find_commands.clear()
        _find_commands[key] = command
    return command


def _send_pending_find(self: DIMSEServiceProvider, primitive: C_FIND, context_id: int) -> bool:
    """Send a pending C-FIND response as one PDU from its kept command set; False if it cannot."""
    if self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
        return False  # a listener wants the message object: take the general path
    command = _pending_find_command(primitive)
    if command is None:
        return False
    identifier = primitive.Identifier.getvalue()
    # Control headers (PS3.8 E.2): 0x03 last command fragment, 0x02 last data set fragment.
    items = [(context_id, b"\x03" + command), (context_id, b"\x02" + identifier)]
    maximum = self.maximum_pdu_size
    if maximum and sum(PDV_ITEM_OVERHEAD + len(data) for _, data in items) > maximum:
        return False
    pdata = P_DATA()
    pdata.presentation_data_value_list.extend(items)
    self.dul.send_pdu(pdata)
    return True


def send_msg(self: DIMSEServiceProvider, primitive: object, context_id: int) -> None:
    """:meth:`DIMSEServiceProvider.send_msg` (pynetdicom 3.0), PDVs packed by :func:`pack`."""
    if type(primitive) is C_FIND and _send_pending_find(self, primitive, context_id):
        return
    if getattr(primitive, "MessageIDBeingRespondedTo", None) is None:
        message = pynetdicom.dimse._RQ_TO_MESSAGE[primitive.__class__]()  # noqa: SLF001
    else:
        message = pynetdicom.dimse._RSP_TO_MESSAGE[primitive.__class__]()  # noqa: SLF001
    message.primitive_to_message(primitive)
    message.context_id = context_id
    evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": message})
    maximum = self.maximum_pdu_size
    for pdata in pack(message.encode_msg(context_id, maximum), maximum):
        self.dul.send_pdu(pdata)


def install() -> None:
    """Make every association of this process send packed messages (idempotent)."""
    DIMSEServiceProvider.send_msg = send_msg  # type: ignore[method-assign]
