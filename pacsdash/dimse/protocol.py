"""Checks of what a caller sends, so that a malformed PDU is answered at once.

pynetdicom trusts much of what it decodes: an A-ASSOCIATE-RQ presentation
context without a transfer syntax raises in the acceptor's thread (no
answer, the caller waits), and a P-DATA-TF PDU whose PDVs break the message
rules of PS3.8 E.2 (a data set fragment first, a command set never marked
last) leaves a half-assembled message waiting until the idle timeout. Here:

- :func:`request_problem` names what is wrong with an A-ASSOCIATE-RQ
  (PS3.8 9.3.2.2), which is then rejected (A-ASSOCIATE-RJ);
- :func:`pdata_problem` names what is wrong with a P-DATA-TF PDU given the
  message being received (PS3.8 9.3.5, E.2); pynetdicom then treats it as an
  invalid PDU (Evt19) and sends an A-ABORT (PS3.8 9.2, AA-8);
- :func:`bound_socket` bounds a caller's stalls and PDU lengths on an
  accepted socket (PS3.8 9.1.5 ARTIM), with kernel time-outs that cost
  nothing per read.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

from pynetdicom.dimse import DIMSEServiceProvider

LOGGER = logging.getLogger(__name__)

#: Largest command set accepted (a real one has a few hundred bytes) [bytes].
MAX_COMMAND_SET = 64 * 1024
#: Largest PDU accepted before an association is established: an A-ASSOCIATE-RQ
#: with 128 presentation contexts of 20 transfer syntaxes is ~70 KB [bytes].
MAX_PDU_BEFORE_ASSOCIATION = 1 << 20
#: Message control header bits (PS3.8 E.2).
COMMAND, LAST = 0x01, 0x02


def request_problem(primitive: Any) -> str | None:
    """What makes an A-ASSOCIATE-RQ unacceptable (PS3.8 9.3.2.2), or None."""
    contexts = primitive.presentation_context_definition_list or []
    if not contexts:
        return "no presentation context proposed (PS3.8 9.3.2.2)"
    seen: set[int] = set()
    for cx in contexts:
        cid = cx.context_id
        if not isinstance(cid, int) or not 1 <= cid <= 255 or cid % 2 == 0:
            return f"presentation context ID {cid!r} is not an odd integer from 1 to 255 (PS3.8 9.3.2.2)"
        if cid in seen:
            return f"presentation context ID {cid} proposed twice (PS3.8 9.3.2.2)"
        seen.add(cid)
        if not cx.abstract_syntax:
            return f"presentation context {cid} has no abstract syntax (PS3.8 9.3.2.2.1)"
        if not cx.transfer_syntax:
            return f"presentation context {cid} has no transfer syntax (PS3.8 9.3.2.2.1)"
    return None


def _command_head_problem(head: bytes) -> str | None:
    """What is wrong with the first bytes of a command set: only group 0000
    elements (PS3.7 6.3.1), a CommandGroupLength (0000,0000) of 4 bytes (PS3.7 E.1)."""
    if len(head) >= 2 and head[:2] != b"\x00\x00":
        return "a command set element outside group 0000 (PS3.7 6.3.1)"
    if len(head) >= 8 and head[:4] == b"\x00\x00\x00\x00" and head[4:8] != b"\x04\x00\x00\x00":
        return "a CommandGroupLength (0000,0000) that is not 4 bytes long (PS3.7 E.1)"
    return None


def _command_end(head: bytes) -> int | None:
    """Where a command set ends, from its CommandGroupLength (0000,0000) if it starts with one."""
    if len(head) >= 12 and head[:8] == b"\x00\x00\x00\x00\x04\x00\x00\x00":
        return 12 + struct.unpack_from("<L", head, 8)[0]
    return None


def pdata_problem(dimse: DIMSEServiceProvider, primitive: Any, max_data_set: int | None = None) -> str | None:
    """What breaks the message rules in a received P-DATA primitive, or None.

    ``dimse.message`` is the message being assembled from earlier PDUs.
    ``max_data_set``: most data set bytes a message may carry.
    """
    items = primitive.presentation_data_value_list
    if not items:
        return "a P-DATA-TF PDU without a PDV item (PS3.8 9.3.5)"
    accepted = dimse.assoc._accepted_cx  # noqa: SLF001
    message = dimse.message
    in_data = message is not None and message.context_id is not None
    context = message.context_id if in_data else None
    if message is not None and not in_data:
        head = message.encoded_command_set.getvalue()
        command_bytes = len(head)
        head = head[:12]
    else:
        head, command_bytes = b"", 0
    data_set = getattr(message, "data_set", None) if in_data else None
    data_bytes = data_set.tell() if hasattr(data_set, "tell") else 0
    for cid, data in items:
        if cid not in accepted:
            return f"PDV on presentation context {cid}, which was not accepted (PS3.8 9.3.5.1)"
        if not data:
            return "a PDV item without its message control header (PS3.8 E.2)"
        if context is not None and cid != context:
            return f"a message's fragments on presentation contexts {context} and {cid} (PS3.8 9.3.5.1)"
        context = cid
        control = data[0]
        if not in_data:
            if not control & COMMAND:
                return "a data set fragment before its command set is complete (PS3.8 E.2)"
            command_bytes += len(data) - 1
            if command_bytes > MAX_COMMAND_SET:
                return f"a command set of more than {MAX_COMMAND_SET} bytes"
            if len(head) < 12:
                head = (head + bytes(data[1:13]))[:12]
                problem = _command_head_problem(head)
                if problem is not None:
                    return problem
            if control & LAST:
                return None  # the rest is pynetdicom's to read
            end = _command_end(head)
            if end is not None and command_bytes >= end:
                return "the command set's last fragment is not marked last (PS3.8 E.2)"
        else:
            if control & COMMAND:
                return "a command set fragment in the middle of a data set (PS3.8 E.2)"
            data_bytes += len(data) - 1
            if max_data_set is not None and data_bytes > max_data_set:
                return f"a data set of more than {max_data_set} bytes"
            if control & LAST:
                return None
    return None


def _checked_receive(original: Any) -> Any:
    """``DIMSEServiceProvider.receive_primitive`` checking, on an accepted association,
    each P-DATA with :func:`pdata_problem` first (installed by :mod:`pacsdash.dimse.compat`)."""

    def receive_primitive(self: DIMSEServiceProvider, primitive: Any) -> None:
        if self.assoc.is_acceptor:
            problem = pdata_problem(self, primitive, getattr(self.assoc, "max_data_set", None))
            if problem is not None:
                LOGGER.warning("invalid P-DATA-TF from %s: %s; aborting the association",
                               self.assoc.requestor.address, problem)
                self.message = None
                self.dul.event_queue.put("Evt19")  # invalid PDU: A-ABORT (PS3.8 9.2, AA-8)
                return
        original(self, primitive)

    receive_primitive.__wrapped__ = original  # type: ignore[attr-defined]
    return receive_primitive


def bound_socket(sock: socket.socket, stall: float, send_stall: float) -> None:
    """Bound how long one read (``stall``) or write (``send_stall``) on ``sock``
    may wait for the peer, in seconds (SO_RCVTIMEO, SO_SNDTIMEO).

    The socket stays blocking for Python (the C-STORE lane drains blocking
    sockets); a read that waits longer fails with EAGAIN, which pynetdicom
    handles as a closed transport (Evt17).
    """
    for option, seconds in ((socket.SO_RCVTIMEO, stall), (socket.SO_SNDTIMEO, send_stall)):
        whole = int(seconds)
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6)))
        except OSError as exc:  # closed in between
            LOGGER.debug("could not bound socket waits: %s", exc)
