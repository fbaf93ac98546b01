"""Where the DICOM node's traffic is seen: pynetdicom events and the C-STORE lane.

A :class:`DimseTap` turns what an association shows into
:mod:`~pacsdash.traffic.events` for a sink (the recorder, or a worker's
forwarder):

- ``EVT_ESTABLISHED``: the A-ASSOCIATE-RQ's proposed presentation contexts
  and the A-ASSOCIATE-AC's answer to each (PS3.8 7.1.1.13, 9.3.2-9.3.3);
- ``EVT_DIMSE_RECV`` / ``EVT_DIMSE_SENT``: each DIMSE message pynetdicom
  decodes or encodes (PS3.7 9.3), with its status (PS3.7 C);
- the C-STORE lane (:mod:`pacsdash.dimse.storelane`) reports the C-STORE
  requests it receives itself, with the PDUs and bytes that carried them,
  and the responses it sends (pynetdicom sees neither);
- ``EVT_RELEASED``, ``EVT_ABORTED``, ``EVT_CONN_CLOSE``: how it ended
  (PS3.8 7.2-7.4).

Each handler does a few attribute reads and one ``record``; nothing is
decoded except the identifier of a C-FIND, C-MOVE or C-GET request.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from io import BytesIO
from typing import Any

from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dsutils import decode
from pynetdicom.events import Event as PynetdicomEvent

from pacsdash.traffic.events import (
    AssociationClosed,
    AssociationOpened,
    AssociationRejected,
    DimseMessage,
    Proposed,
)
from pacsdash.traffic.recorder import TrafficSink

LOGGER = logging.getLogger(__name__)

#: Command Field (0000,0100) values and their message names (PS3.7 E.1).
COMMANDS = {
    0x0001: "C-STORE-RQ", 0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ", 0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ", 0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ", 0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ", 0x8030: "C-ECHO-RSP",
    0x0FFF: "C-CANCEL-RQ",
    0x0100: "N-EVENT-REPORT-RQ", 0x8100: "N-EVENT-REPORT-RSP",
    0x0110: "N-GET-RQ", 0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ", 0x8120: "N-SET-RSP",
    0x0130: "N-ACTION-RQ", 0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ", 0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ", 0x8150: "N-DELETE-RSP",
}
#: Identifier elements kept of a query or retrieve request.
IDENTIFIER_KEPT = 16
#: Command set elements worth showing, besides the status.
_COMMAND_VALUES = ("AffectedSOPInstanceUID", "MoveDestination", "NumberOfRemainingSuboperations",
                   "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
                   "NumberOfWarningSuboperations", "ErrorComment")
_KEY = "_pacsdash_traffic_key"
_PDUS = "_pacsdash_traffic_pdus"
#: PDU type of P-DATA-TF (PS3.8 9.3.1).
P_DATA_TF = 0x04


class DimseTap:
    """Records one DICOM node's associations into ``sink``."""

    def __init__(self, sink: TrafficSink, prefix: str | None = None) -> None:
        self.sink = sink
        self.prefix = prefix if prefix is not None else str(os.getpid())
        self._numbers = itertools.count(1)

    def key(self, assoc: Any) -> str:
        """The association's key in the record: unique across worker processes."""
        key = assoc.__dict__.get(_KEY)
        if key is None:
            key = assoc.__dict__[_KEY] = f"{self.prefix}-{next(self._numbers)}"
        return key

    def handlers(self) -> list[tuple[Any, Any]]:
        """pynetdicom event handlers to bind to the node's server."""
        return [
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_PDU_RECV, self.on_pdu_received),
            (evt.EVT_DIMSE_RECV, self.on_dimse_received),
            (evt.EVT_DIMSE_SENT, self.on_dimse_sent),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
        ]

    # -- association -----------------------------------------------------------------
    def on_established(self, event: PynetdicomEvent) -> None:
        """EVT_ESTABLISHED: the request and what was accepted (PS3.8 7.1.1)."""
        assoc = event.assoc
        requestor, acceptor = assoc.requestor, assoc.acceptor
        answered = sorted(list(assoc.accepted_contexts) + list(assoc.rejected_contexts), key=lambda cx: cx.context_id)
        accepted = tuple(
            (int(cx.context_id), str(cx.abstract_syntax or ""),
             str(cx.transfer_syntax[0]) if cx.result == 0 and cx.transfer_syntax else "", cx.status)
            for cx in answered
        )
        self.sink.record(AssociationOpened(
            time.time(), self.key(assoc), requestor.ae_title.strip(), _called(assoc), str(requestor.address),
            int(requestor.port or 0), proposed_contexts(assoc), accepted,
            int(requestor.maximum_length or 0), int(acceptor.maximum_length or 0),
            str(requestor.implementation_class_uid or ""), str(requestor.implementation_version_name or ""),
        ))

    def rejected(self, assoc: Any, reason: str) -> None:
        """An association refused by pacsdash (A-ASSOCIATE-RJ, PS3.8 7.1.1.9)."""
        requestor = assoc.requestor
        calling = (requestor.primitive.calling_ae_title or "").strip()
        self.sink.record(AssociationRejected(
            time.time(), self.key(assoc), calling, _called(assoc), str(requestor.address),
            int(requestor.port or 0), proposed_contexts(assoc), reason,
        ))

    def on_released(self, event: PynetdicomEvent) -> None:
        self.sink.record(AssociationClosed(time.time(), self.key(event.assoc), "released"))

    def on_aborted(self, event: PynetdicomEvent) -> None:
        self.sink.record(AssociationClosed(time.time(), self.key(event.assoc), "aborted"))

    def on_connection_closed(self, event: PynetdicomEvent) -> None:
        """EVT_CONN_CLOSE: the end of any association, released or not."""
        assoc = event.assoc
        if _KEY not in assoc.__dict__:
            return  # never established nor rejected by us (nothing recorded of it)
        how = "released" if assoc.is_released else "aborted" if assoc.is_aborted else "closed"
        self.sink.record(AssociationClosed(time.time(), self.key(assoc), how))

    # -- DIMSE ---------------------------------------------------------------------
    def on_pdu_received(self, event: PynetdicomEvent) -> None:
        """EVT_PDU_RECV: count the P-DATA-TF PDUs (PS3.8 9.3.5) of the message
        pynetdicom is receiving (the C-STORE lane's PDUs never come here)."""
        if getattr(event.pdu, "pdu_type", None) == P_DATA_TF:
            state = event.assoc.__dict__
            state[_PDUS] = state.get(_PDUS, 0) + 1

    def on_dimse_received(self, event: PynetdicomEvent) -> None:
        self._message(event, "received")

    def on_dimse_sent(self, event: PynetdicomEvent) -> None:
        self._message(event, "sent")

    def _message(self, event: PynetdicomEvent, direction: str) -> None:
        """A DIMSE message pynetdicom decoded or encoded (PS3.7 9.3)."""
        message = event.message
        command = message.command_set
        name = COMMANDS.get(int(command.get("CommandField", -1) or 0), "DIMSE message")
        message_id = command.get("MessageID", command.get("MessageIDBeingRespondedTo", 0))
        status = command.get("Status") if name.endswith("-RSP") else None
        values: list[tuple[str, str]] = []
        for keyword in _COMMAND_VALUES:
            value = command.get(keyword)
            if value not in (None, ""):
                values.append((keyword, str(value)))
        data = message.data_set
        size = len(data.getbuffer()) if isinstance(data, BytesIO) else 0
        context_id = int(message.context_id or 0)
        if direction == "received":
            pdus = event.assoc.__dict__.pop(_PDUS, 0)
        else:  # the command, then the data set in PDUs as large as the peer takes (PS3.8 9.3.5)
            largest = int(event.assoc.requestor.maximum_length or 0) if event.assoc.is_acceptor else \
                int(event.assoc.acceptor.maximum_length or 0)
            pdus = 1 + (-(-size // (largest - 6)) if size and largest > 6 else 1 if size else 0)
        if name in ("C-FIND-RQ", "C-MOVE-RQ", "C-GET-RQ") and size:
            values.extend(_identifier(event.assoc, context_id, data))
        self.sink.record(DimseMessage(
            time.time(), self.key(event.assoc), direction, name, int(message_id or 0), context_id,
            str(command.get("AffectedSOPClassUID", "") or ""), None if status is None else int(status),
            pdus, size, tuple(values),
        ))

    # -- the C-STORE lane ---------------------------------------------------------------
    def store_request(self, assoc: Any, message_id: int, context_id: int, sop_class: str, sop_instance: str,
                      pdus: int, size: int) -> None:
        """A C-STORE-RQ the lane received whole (PS3.7 9.3.1.1)."""
        try:
            self.sink.record(DimseMessage(time.time(), self.key(assoc), "received", "C-STORE-RQ", message_id,
                                          context_id, sop_class, None, pdus, size,
                                          (("AffectedSOPInstanceUID", sop_instance),)))
        except Exception:  # recording never fails a C-STORE
            LOGGER.exception("could not record a C-STORE request")

    def store_response(self, assoc: Any, message_id: int, context_id: int, sop_class: str, status: int) -> None:
        """The C-STORE-RSP the lane sent (PS3.7 9.3.1.2)."""
        try:
            self.sink.record(DimseMessage(time.time(), self.key(assoc), "sent", "C-STORE-RSP", message_id,
                                          context_id, sop_class, status, 1, 0))
        except Exception:  # recording never fails a C-STORE
            LOGGER.exception("could not record a C-STORE response")


def proposed_contexts(assoc: Any) -> tuple[Proposed, ...]:
    """The presentation contexts of the A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""
    contexts = assoc.requestor.primitive.presentation_context_definition_list or []
    return tuple((int(cx.context_id), str(cx.abstract_syntax or ""), tuple(str(ts) for ts in cx.transfer_syntax))
                 for cx in contexts)


def _called(assoc: Any) -> str:
    return (assoc.requestor.primitive.called_ae_title or "").strip()


def _identifier(assoc: Any, context_id: int, data: BytesIO) -> list[tuple[str, str]]:
    """The keys of a query or retrieve identifier (PS3.4 C.4), at most IDENTIFIER_KEPT."""
    try:
        context = assoc._accepted_cx.get(context_id)  # noqa: SLF001
        syntax = UID(context.transfer_syntax[0])
        identifier = decode(BytesIO(data.getvalue()), syntax.is_implicit_VR, syntax.is_little_endian,
                            syntax.is_deflated)
        keys = []
        for element in identifier:
            if element.VR == "SQ" or not element.keyword:
                continue
            keys.append((element.keyword, str(element.value if element.value is not None else "")[:64]))
            if len(keys) >= IDENTIFIER_KEPT:
                break
        return keys
    except Exception:  # an identifier we cannot read is still a message
        LOGGER.debug("could not read an identifier for the traffic record", exc_info=True)
        return []
