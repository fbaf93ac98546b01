"""C-STORE requests received in the association's DUL thread, PDU by PDU.

pynetdicom turns every P-DATA-TF PDU into objects (a PDU, its PDV items, a
P-DATA primitive), runs each through its state machine, copies each
fragment into a buffer, hands the finished message to the association
thread through a queue, which builds an event, copies the data set out of
its buffer and again to put file meta in front. For a scanner sending
instances of half a megabyte in PDUs of 128 KiB that is most of the work of
receiving.

A :class:`StoreLane`, attached to an established association, reads each
P-DATA-TF PDU itself. A message whose first PDU holds its whole command set,
a C-STORE-RQ with a data set on an accepted context, is taken by the lane:
its data set fragments are kept as views of the PDUs read, joined once
behind the file meta when the last one arrives, handed to the archive, and
the C-STORE-RSP is queued for pynetdicom's state machine to send (both the
file meta and the response encoded by :mod:`pacsdash.dimse.encoding`).
Any other PDU or message (C-ECHO, C-FIND, a response during a C-GET, a
command split over several PDVs) goes to pynetdicom untouched, as it would
have without the lane: the lane only takes a new message when pynetdicom is
between messages, and hands it every PDU until that message is complete.

A PDU the lane cannot make sense of in the middle of a message it took is
an invalid PDU for the state machine (Evt19): the association is aborted,
as pynetdicom does.

Each data set has a size limit, asked of the node when its message starts
(a larger one from a registered peer, a smaller one from an unknown peer,
none once that peer's quota is used up). Beyond it the lane keeps no more
fragments, reads the message to its end and answers "Refused: Out of
Resources" (PS3.4 B.2.3, A700) without storing anything of it.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from pacsdash.archive.parsing import UID_PATTERN
from pacsdash.dimse import encoding

LOGGER = logging.getLogger(__name__)

P_DATA_TF = 0x04
C_STORE_RQ = 0x0001
NO_DATA_SET = 0x0101
#: Command set elements the lane reads (PS3.7 E.1).
AFFECTED_SOP_CLASS = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
DATA_SET_TYPE = 0x00000800
AFFECTED_SOP_INSTANCE = 0x00001000
#: Most PDUs of a data set read in a row, once their headers have arrived.
DRAIN_PDUS = 64
#: PDV message control header bits (PS3.8 E.2).
COMMAND = 0x01
LAST = 0x02
#: What an archive-bound callable gets: (association, Part 10 bytes,
#: AffectedSOPInstanceUID, (transfer syntax, offset of the data set)) -> status.
StoreCallable = Callable[[Any, bytes, str, tuple[str, int]], "int | Dataset"]
#: What a data set may hold, asked when its message starts: (association) ->
#: (most bytes, ErrorComment of the refusal beyond that).
LimitCallable = Callable[[Any], tuple[int, str]]
#: Refused: Out of Resources (PS3.4 B.2.3).
OUT_OF_RESOURCES = 0xA700
_PREAMBLE = b"\x00" * 128 + b"DICM"


class _TooLarge(Exception):
    """A data set beyond its size limit."""


class _Message:
    """A C-STORE-RQ the lane is receiving."""

    def __init__(self, message_id: int, sop_class: str, sop_instance: str, context: Any) -> None:
        self.message_id = message_id
        self.sop_class = sop_class
        self.sop_instance = sop_instance
        self.context = context
        self.fragments: list[memoryview] = []
        #: P-DATA-TF PDUs that carried it (PS3.8 9.3.5).
        self.pdus = 1
        #: Data set bytes received, and the most it may hold.
        self.size = 0
        self.limit: int | None = None
        #: Why it is refused (too large), once it is.
        self.refusal: str | None = None


def _command_elements(command: memoryview) -> dict[int, memoryview] | None:
    """The values of an encoded command set (implicit VR little endian,
    PS3.7 6.3.1) by tag, read without building a data set; None if an
    element runs past the end."""
    values: dict[int, memoryview] = {}
    offset, end = 0, len(command)
    while offset + 8 <= end:
        group, element, length = struct.unpack_from("<HHL", command, offset)
        if offset + 8 + length > end:
            return None
        values[group << 16 | element] = command[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return values if offset == end else None


def _us(value: memoryview | None) -> int | None:
    """An US value, or None if absent or not 2 bytes."""
    return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None


def _uid(value: memoryview | None) -> str | None:
    """A UI value without its padding, or None if absent or not a valid UID."""
    if value is None:
        return None
    text = bytes(value).rstrip(b"\x00 ").decode("ascii", "replace")
    return text if len(text) <= 64 and UID_PATTERN.match(text) else None


def _response_status(status: int | Dataset) -> tuple[int, str | None] | None:
    """(Status, ErrorComment) of a handler's status, or None if it carries
    more than those two (pynetdicom's own encoding handles that)."""
    if isinstance(status, int):
        return status, None
    if isinstance(status, Dataset) and "Status" in status and all(
        keyword in ("Status", "ErrorComment") for keyword in status.dir()
    ):
        return int(status.Status), status.get("ErrorComment")
    return None


def _data_items_ok(items: list[tuple[int, int, memoryview]], context_id: int) -> bool:
    """Whether ``items`` are data set fragments of one context, only the last one possibly final."""
    return all(cid == context_id and not control & COMMAND for cid, control, _ in items) and not any(
        control & LAST for _, control, _ in items[:-1]
    )


def _items(pdu: bytearray) -> list[tuple[int, int, memoryview]] | None:
    """(context ID, control header, data) of each PDV item of a P-DATA-TF PDU, or None if malformed."""
    view = memoryview(pdu)
    end = len(pdu)
    offset = 6
    items = []
    while offset < end:
        if offset + 6 > end:
            return None
        (length,) = struct.unpack_from(">L", pdu, offset)
        if length < 2 or offset + 4 + length > end:
            return None
        items.append((pdu[offset + 4], pdu[offset + 5], view[offset + 6 : offset + 4 + length]))
        offset += 4 + length
    return items or None


class StoreLane:
    """Receives the C-STORE requests of one association (see the module docstring)."""

    def __init__(self, dul: Any, store: StoreCallable, tap: Any = None, limit: LimitCallable | None = None) -> None:
        self.dul = dul
        self.assoc = dul.assoc
        self.store = store
        #: Asked for each data set's size limit, or None (no limit).
        self.limit = limit
        #: A :class:`~pacsdash.traffic.dimse.DimseTap` told of each request and response, or None.
        self.tap = tap
        self._message: _Message | None = None
        #: C-STORE requests the lane has received and answered.
        self.received = 0
        #: The lane gave up on this association (TLS, or a peek it could not do).
        self.disabled = False

    # -- reading -----------------------------------------------------------------
    def receive(self) -> bool:
        """Read and handle the next PDU if it is the lane's; False to let pynetdicom read it.

        While a data set is being received, the PDUs that have already
        arrived are read on (up to :data:`DRAIN_PDUS`), without going back
        through the DUL loop's waits for each one.
        """
        if self.disabled or (self._message is None and not self._pynetdicom_idle()):
            return False
        sock = getattr(self.dul.socket, "socket", None)
        if sock is None:
            return False
        # The socket is readable; wait for the whole header (it may come in
        # two TCP segments), as pynetdicom's own read would.
        if not self._receive_one(sock, socket.MSG_PEEK | socket.MSG_WAITALL):
            return False
        # On a socket with a timeout Python waits for readability before each
        # call, MSG_DONTWAIT or not: only blocking sockets drain.
        for _ in range(DRAIN_PDUS if sock.gettimeout() is None else 0):
            if self._message is None or not self._receive_one(sock, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                break
        return True

    def _receive_one(self, sock: socket.socket, peek: int) -> bool:
        """Read and handle one P-DATA-TF PDU whose header ``sock.recv(6, peek)``
        shows; False (nothing read) if it shows anything else."""
        try:
            header = sock.recv(6, peek)
        except BlockingIOError:  # MSG_DONTWAIT: nothing has arrived yet
            return False
        except (OSError, ValueError):  # ValueError: a TLS socket cannot peek
            self.disabled = True
            return False
        if len(header) < 6 or header[0] != P_DATA_TF:
            return False
        (length,) = struct.unpack_from(">L", header, 2)
        try:
            pdu = self.dul.socket.recv(6 + length)
        except (OSError, TimeoutError):
            self.dul.event_queue.put("Evt17")  # transport closed
            self._message = None
            return True
        if len(pdu) != 6 + length:
            self.dul.event_queue.put("Evt17")
            self._message = None
            return True
        if self._message is None:
            if not self._start(pdu):
                self._to_pynetdicom(pdu)
        else:
            self._continue(pdu)
        return True

    def _pynetdicom_idle(self) -> bool:
        """Whether pynetdicom is between messages, with nothing of ours queued."""
        dul = self.dul
        return (
            dul.state_machine.current_state == "Sta6"
            and dul.event_queue.empty()
            and dul._recv_pdu.empty()  # noqa: SLF001
            and self.assoc.dimse.message is None
            and not self.assoc._sent_release  # noqa: SLF001
        )

    def _to_pynetdicom(self, pdu: bytearray) -> None:
        """Queue ``pdu`` for pynetdicom exactly as its own reader does."""
        dul = self.dul
        try:
            decoded, event = dul._decode_pdu(pdu)  # noqa: SLF001
        except Exception:  # as pynetdicom: an undecodable PDU is Evt19
            LOGGER.exception("Unable to decode the received PDU data")
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(decoded)  # noqa: SLF001

    # -- messages -------------------------------------------------------------------
    def _start(self, pdu: bytearray) -> bool:
        """Take a new message if it is a C-STORE-RQ the lane can receive."""
        items = _items(pdu)
        if not items:
            return False
        context_id, control, data = items[0]
        if control != COMMAND | LAST:
            return False
        rest = items[1:]
        fields = _command_elements(data)
        if not fields or _us(fields.get(COMMAND_FIELD)) != C_STORE_RQ or not _data_items_ok(rest, context_id):
            return False  # another message (C-ECHO, C-FIND, a response): pynetdicom's, decoded once
        context = self.assoc._accepted_cx.get(context_id)  # noqa: SLF001
        message_id = _us(fields.get(MESSAGE_ID))
        sop_class = _uid(fields.get(AFFECTED_SOP_CLASS))
        sop_instance = _uid(fields.get(AFFECTED_SOP_INSTANCE))
        data_set_type = _us(fields.get(DATA_SET_TYPE))
        if context is None or None in (message_id, sop_class, sop_instance, data_set_type) or data_set_type == NO_DATA_SET:
            return False  # pynetdicom answers an odd request as it does
        if uid_to_service_class(sop_class) is not StorageServiceClass:
            return False
        message = _Message(message_id, sop_class, sop_instance, context)
        if self.limit is not None:
            message.limit, message.refusal = self.limit(self.assoc)
        self._message = message
        self._add(rest)
        return True

    def _continue(self, pdu: bytearray) -> None:
        """Add a PDU of the message being received."""
        message = self._message
        assert message is not None
        items = _items(pdu)
        if items is None or not _data_items_ok(items, message.context.context_id):
            LOGGER.error("invalid P-DATA-TF PDU in the middle of a C-STORE data set; aborting the association")
            self._message = None
            self.dul.event_queue.put("Evt19")
            return
        message.pdus += 1
        self._add(items)

    def _add(self, items: list[tuple[int, int, memoryview]]) -> None:
        message = self._message
        assert message is not None
        for _, control, data in items:
            message.size += len(data)
            if message.limit is None or message.size <= message.limit:
                message.fragments.append(data)
            elif message.fragments:
                message.fragments.clear()  # too large: keep nothing, read on to its end
            if control & LAST:
                self._message = None
                self._finish(message)

    def _finish(self, message: _Message) -> None:
        """Archive the finished data set and answer."""
        context = message.context
        sop_class, sop_instance = message.sop_class, message.sop_instance
        # Storing may take a while (a slow disk): the network idle timer,
        # which the association thread checks, must not run out meanwhile.
        # The DUL loop starts it again once this PDU is handled.
        self.dul._idle_timer.stop()  # noqa: SLF001
        try:
            if message.limit is not None and message.size > message.limit:
                raise _TooLarge(message.refusal or f"data set larger than {message.limit} bytes")
            syntax = str(context.transfer_syntax[0])
            meta = encoding.file_meta(sop_class, sop_instance, syntax)
            raw = b"".join((_PREAMBLE, meta, *message.fragments))
            message.fragments.clear()
            if self.tap is not None:
                self.tap.store_request(self.assoc, message.message_id, context.context_id, sop_class, sop_instance,
                                       message.pdus, len(raw) - len(_PREAMBLE) - len(meta))
            status = self.store(self.assoc, raw, sop_instance, (syntax, len(_PREAMBLE) + len(meta)))
        except _TooLarge as exc:
            LOGGER.warning("refused C-STORE of %s (%d bytes) from %s: %s", sop_instance, message.size,
                           self.assoc.requestor.address, exc)
            status = Dataset()
            status.Status = OUT_OF_RESOURCES
            status.ErrorComment = str(exc)[:64]
        except Exception:  # as pynetdicom does for a failing handler
            LOGGER.exception("Exception in the C-STORE lane")
            status = 0xC211
        self.received += 1
        if not self.assoc.is_established:
            return
        fields = _response_status(status)
        if self.tap is not None:
            self.tap.store_response(self.assoc, message.message_id, context.context_id, sop_class,
                                    int(status.Status) if isinstance(status, Dataset) else int(status))
        if fields is None:  # more than a Status and an ErrorComment: pynetdicom encodes it
            rsp = C_STORE()
            rsp.MessageIDBeingRespondedTo = message.message_id
            rsp.AffectedSOPInstanceUID = sop_instance
            rsp.AffectedSOPClassUID = sop_class
            self.assoc.dimse.send_msg(StorageServiceClass(self.assoc).validate_status(status, rsp), context.context_id)
            return
        response = encoding.store_response(message.message_id, sop_class, sop_instance, *fields)
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context.context_id, bytes((COMMAND | LAST,)) + response))
        self.dul.send_pdu(pdata)
