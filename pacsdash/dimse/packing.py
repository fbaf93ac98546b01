"""Send each DIMSE message in few socket writes, its command set and data set in PDUs of their own.

pynetdicom sends every fragment of a message as a P-DATA-TF PDU of its own,
each its own write on the socket. A C-FIND match is a command of ~100 bytes
and an identifier of a few hundred: two writes, and a peer that reads the
first before the second arrives (pynetdicom's own DUL then naps 1 ms).

PS3.8 9.3.5 lets one PDU carry several PDV items, and pacsdash once packed a
command set and its data set into one PDU. GDCM (``gdcmscu``) reads a
message's data set only from a P-DATA-TF PDU of its own: given both in one
PDU its C-FIND waits until killed and its C-MOVE destination aborts
(INTEROP.md). Orthanc, dcmtk and pynetdicom all send them apart. So:

- a command set's fragments and a data set's fragments never share a PDU
  (:func:`pack`); fragments of the same kind may, up to the peer's maximum
  PDU length;
- a message of at most :data:`JOINED_WRITE_LIMIT` bytes has its PDUs
  written to the socket together, in one write (:class:`PDUGroup`,
  :func:`writes`), so the peer gets the command and data set PDUs at once.

PDVs of different messages are never mixed: a receiver may stop reading a
PDU once a message is complete (pynetdicom does).

A pending C-FIND response's command set is the same for every match of a
query, so its encoding is kept and reused rather than rebuilt with pydicom
each time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import pynetdicom.dimse
import pynetdicom.dul
from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

#: A PDV item's bytes besides its data: item length (4) and context ID (1).
PDV_ITEM_OVERHEAD = 5
#: A P-DATA-TF PDU's bytes besides its PDV items: type, reserved, length (PS3.8 9.3.5).
PDU_HEADER = 6
#: PDU-type of a P-DATA-TF PDU (PS3.8 9.3.1).
P_DATA_TF_TYPE = 0x04
#: Largest message whose PDUs are joined into one socket write [bytes]; a
#: larger one is written PDU by PDU as it is read, not held whole in memory.
JOINED_WRITE_LIMIT = 1 << 20
#: Message control header bit: the fragment is a command set's (PS3.8 E.2).
COMMAND = 0x01


def _is_command(item: tuple[int, bytes]) -> bool:
    return bool(item[1][0] & COMMAND)


def pack(primitives: Iterable[P_DATA], maximum_length: int) -> Iterator[P_DATA]:
    """One P-DATA per PDU for the PDVs of one message, in order.

    Consecutive fragments of the same kind share a PDU while their PDV items
    add up to at most ``maximum_length`` bytes (0: no limit); a command
    fragment and a data set fragment never do.
    """
    current: P_DATA | None = None
    size = 0
    command = False
    for primitive in primitives:
        for item in primitive.presentation_data_value_list:
            item_size = PDV_ITEM_OVERHEAD + len(item[1])
            same_kind = _is_command(item) == command
            if current is not None and same_kind and (maximum_length == 0 or size + item_size <= maximum_length):
                current.presentation_data_value_list.append(item)
                size += item_size
                continue
            if current is not None:
                yield current
            current = P_DATA()
            current.presentation_data_value_list.append(item)
            size = item_size
            command = _is_command(item)
    if current is not None:
        yield current


class PDUGroup(P_DATA):
    """P-DATA requests to be sent as consecutive P-DATA-TF PDUs in one socket write.

    Its :attr:`presentation_data_value_list` is every PDV of its PDUs, in
    order; :func:`_sending_groups`, installed by :mod:`pacsdash.dimse.compat`,
    makes the state machine's DT-1 and AR-7 actions
    encode each of :attr:`pdus` as a PDU of its own.
    """

    def __init__(self, pdus: list[P_DATA]) -> None:
        super().__init__()
        self.pdus = pdus
        for pdu in pdus:
            self.presentation_data_value_list.extend(pdu.presentation_data_value_list)


def _pdu_length(primitive: P_DATA) -> int:
    return PDU_HEADER + sum(PDV_ITEM_OVERHEAD + len(data) for _, data in primitive.presentation_data_value_list)


def writes(pdus: Iterable[P_DATA], limit: int = JOINED_WRITE_LIMIT) -> Iterator[P_DATA]:
    """What to hand the DUL for one message's PDUs: all of them as one
    :class:`PDUGroup` (a single PDU as itself) if they add up to at most
    ``limit`` bytes, else each PDU on its own."""
    buffered: list[P_DATA] = []
    size = 0
    remaining = iter(pdus)
    for pdu in remaining:
        buffered.append(pdu)
        size += _pdu_length(pdu)
        if size > limit:
            yield from buffered
            yield from remaining
            return
    if len(buffered) == 1:
        yield buffered[0]
    elif buffered:
        yield PDUGroup(buffered)


def _encoded(primitive: P_DATA) -> list[bytes]:
    """The P-DATA-TF PDU of ``primitive`` (PS3.8 9.3.5) as pieces to join:
    the bytes of ``P_DATA_TF(primitive).encode()``, each PDV's data uncopied."""
    pieces = [b""]
    length = 0
    for context_id, data in primitive.presentation_data_value_list:
        pieces.append(struct.pack(">LB", len(data) + 1, context_id))  # item length, context ID
        pieces.append(data)  # message control header and fragment
        length += PDV_ITEM_OVERHEAD + len(data)
    pieces[0] = struct.pack(">BBL", P_DATA_TF_TYPE, 0, length)
    return pieces


def encode_group(group: PDUGroup) -> bytes:
    """The P-DATA-TF PDUs of ``group``, one after the other."""
    return b"".join([piece for pdu in group.pdus for piece in _encoded(pdu)])


def _send_group(dul, group: PDUGroup) -> None:
    """Write the PDUs of ``group`` with one send, as ``DULServiceProvider._send`` writes one."""
    if dul.socket is None:
        pynetdicom.dul.LOGGER.warning("Attempted to send data over closed connection")
        return
    dul.socket.send(encode_group(group))
    if dul.assoc.get_handlers(evt.EVT_PDU_SENT):
        for pdu in group.pdus:
            evt.trigger(dul.assoc, evt.EVT_PDU_SENT, {"pdu": P_DATA_TF(pdu)})


def _sending_groups(original, next_state: str):
    """A state machine action that sends a P-DATA request (DT-1, AR-7, PS3.8 9.2),
    as pynetdicom's ``original`` does, a :class:`PDUGroup` in one write."""

    def action(dul) -> str:
        primitive = dul.to_provider_queue.get(False)
        if isinstance(primitive, PDUGroup):
            _send_group(dul, primitive)
        else:
            dul._send(P_DATA_TF(primitive))  # noqa: SLF001
        return next_state

    action.__wrapped__ = original
    action.__doc__ = original.__doc__
    return action


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
    """Send a pending C-FIND response, from its kept command set, as a command
    PDU and an identifier PDU in one write; False if it cannot."""
    if self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
        return False  # a listener wants the message object: take the general path
    command = _pending_find_command(primitive)
    if command is None:
        return False
    identifier = primitive.Identifier.getvalue()
    # Control headers (PS3.8 E.2): 0x03 last command fragment, 0x02 last data set fragment.
    items = [(context_id, b"\x03" + command), (context_id, b"\x02" + identifier)]
    maximum = self.maximum_pdu_size
    if maximum and any(PDV_ITEM_OVERHEAD + len(data) > maximum for _, data in items):
        return False
    pdus = []
    for item in items:
        pdata = P_DATA()
        pdata.presentation_data_value_list.append(item)
        pdus.append(pdata)
    self.dul.send_pdu(PDUGroup(pdus))
    return True


def send_msg(self: DIMSEServiceProvider, primitive: object, context_id: int) -> None:
    """:meth:`DIMSEServiceProvider.send_msg` (pynetdicom :data:`~pacsdash.dimse.compat.PYNETDICOM_VERSION`),
    PDVs packed by :func:`pack` and written together by :func:`writes`."""
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
    for pdata in writes(pack(message.encode_msg(context_id, maximum), maximum)):
        self.dul.send_pdu(pdata)
