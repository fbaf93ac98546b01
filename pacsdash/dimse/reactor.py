"""Event-driven association threads for pynetdicom.

pynetdicom runs two polling loops per association: the DUL thread sleeps
1 ms whenever it finds nothing to do, and the association thread sleeps 1 ms
before every look at its message queue. Each C-STORE or C-FIND exchange
waits through several of those naps (a message in, a response out), which
costs a few milliseconds per instance and a thousand wake-ups a second per
thread. Its socket reads are also capped at 4 KiB per system call.

This module keeps pynetdicom's state machine and loops as they are and only
replaces the naps by waits that end as soon as there is work:

- the DUL thread waits in ``poll`` on its socket and on a wake-up pipe that
  is written whenever a primitive is queued for it to send;
- the association thread waits on an event set whenever a DIMSE message or
  an ACSE primitive is queued for it, when the DUL thread ends, and when a
  user thread asks it to pause (``_reactor_checkpoint.clear()``).

Both waits also end after :data:`IDLE_WAIT` seconds so that pynetdicom's
timers (ARTIM, network idle timeout) are checked as before.
:func:`pacsdash.dimse.compat.install` makes pynetdicom create these classes
for every association, requested or accepted, in this process.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import threading
import weakref
from typing import Any

import pynetdicom.association
import pynetdicom.dul
import pynetdicom.fsm
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket

#: Longest wait before the loops look at their timers again [s].
IDLE_WAIT = 0.02
#: Largest single socket read [bytes].
RECV_CHUNK = 1 << 20

_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class WakePipe:
    """A self-pipe: :meth:`set` makes a ``poll`` on :attr:`fd` return."""

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False

    def set(self) -> None:
        """Wake the waiting thread (harmless when nobody waits)."""
        try:
            os.write(self._write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def clear(self) -> None:
        """Consume pending wake-ups."""
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release both ends."""
        if not self._closed:
            self._closed = True
            for fd in (self.fd, self._write_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass


class SignalingQueue(queue.Queue):
    """A :class:`queue.Queue` that calls ``notify()`` after every ``put``."""

    def __init__(self, notify: Any) -> None:
        super().__init__()
        self._notify = notify

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._notify()


class _Checkpoint(threading.Event):
    """The association's pause switch; clearing it wakes the reactor so it can pause."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def clear(self) -> None:
        super().clear()
        self._wake.set()


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL provider, waiting on its socket instead of sleeping."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self.wake = WakePipe()
        weakref.finalize(self, self.wake.close)  # also for a DUL that never runs
        self.to_provider_queue = SignalingQueue(self._wake_unless_self)
        assoc_wake = getattr(assoc, "_wake", None)  # absent on a plain pynetdicom Association
        if assoc_wake is not None:
            self.to_user_queue = SignalingQueue(assoc_wake.set)  # ACSE primitives for the association thread
        self._poller = select.poll()
        self._poller.register(self.wake.fd, select.POLLIN)
        self._polled_fd = -1
        self._run_loop_delay = 0.0  # the naps of the parent loop, now replaced by idle_wait()
        #: Receives C-STORE requests itself once attached (:mod:`pacsdash.dimse.storelane`).
        self.store_lane: Any = None

    def _wake_unless_self(self) -> None:
        """Wake the DUL thread for a queued primitive, unless this is that
        thread: it looks at its queues before it waits (:meth:`idle_wait`)."""
        if threading.current_thread() is not self:
            self.wake.set()

    def _read_pdu_data(self) -> None:
        """Let the store lane, if attached, take the next PDU; else read it as pynetdicom does.

        Nothing is read while an event is queued: an invalid PDU's event
        (Evt19) is acted on, its A-ABORT sent, before whatever follows it
        on the socket is read (pynetdicom would first wait for that).
        """
        if self.event_queue.queue:
            return
        lane = self.store_lane
        if lane is not None and lane.receive():
            return
        super()._read_pdu_data()

    def idle_wait(self) -> None:
        """Wait until the socket is readable, a primitive is queued, or IDLE_WAIT passes."""
        if self.to_provider_queue.queue or self.event_queue.queue:
            return  # queued by this thread itself, without a wake-up
        sock = self.socket.socket if self.socket is not None else None
        fd = -1
        if sock is not None:
            try:
                fd = sock.fileno()
            except OSError:
                fd = -1
            pending = getattr(sock, "pending", None)  # TLS may hold decrypted bytes poll can't see
            if pending is not None and pending():
                return
        if fd != self._polled_fd:
            if self._polled_fd >= 0:
                try:
                    self._poller.unregister(self._polled_fd)
                except (KeyError, ValueError):
                    pass
            if fd >= 0:
                self._poller.register(fd, _POLL_IN)
            self._polled_fd = fd
        try:
            events = self._poller.poll(IDLE_WAIT * 1000)
        except (OSError, ValueError):
            events = []
        if any(fd_ == self._polled_fd and mask & select.POLLNVAL for fd_, mask in events):
            self._poller.unregister(self._polled_fd)  # closed under us: stop polling it
            self._polled_fd = -1
        if any(fd_ == self.wake.fd for fd_, _ in events):
            self.wake.clear()

    def run_reactor(self) -> None:
        """pynetdicom's DUL loop, with :meth:`idle_wait` where it napped."""
        try:
            self._run()
        finally:
            assoc = self.assoc
            if assoc.is_acceptor and assoc.requestor.primitive is None and not self.to_user_queue.queue:
                # The acceptor's thread waits for the A-ASSOCIATE-RQ: none
                # will come, let it close the connection now (None: as its time-out).
                self.to_user_queue.put(None)
            self.wake.close()
            assoc_wake = getattr(self.assoc, "_wake", None)
            if assoc_wake is not None:
                assoc_wake.set()  # the association thread notices the DUL has ended

    def _run(self) -> None:
        # Mirrors pynetdicom.dul.DULServiceProvider.run_reactor (compat.PYNETDICOM_VERSION), single-step mode excluded.
        self._idle_timer.start()
        idle = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if idle:
                self.idle_wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:  # as pynetdicom: abort the association, never hang it
                pynetdicom.dul.LOGGER.error("Exception in DUL.run(), aborting association")
                pynetdicom.dul.LOGGER.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                if self.socket is not None:
                    self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            self._do_action(event)
            idle = False

    def _do_action(self, event: str) -> None:
        """``StateMachine.do_action`` (pynetdicom 3.0), except that an action
        that raises (an A-ASSOCIATE-RQ pynetdicom cannot convert, a failing
        handler) aborts the association with an A-ABORT PDU at once (PS3.8
        9.3.8) instead of stopping this thread with nothing sent."""
        machine = self.state_machine
        state = machine.current_state
        action_name = pynetdicom.fsm.TRANSITION_TABLE.get((event, state))
        if action_name is None:
            pynetdicom.dul.LOGGER.error("Invalid event '%s' for the current state '%s'", event, state)
            self._abort_broken()
            return
        action = pynetdicom.fsm.ACTIONS[action_name]
        try:
            next_state = action[1](self)
            evt.trigger(self.assoc, evt.EVT_FSM_TRANSITION, {
                "action": action_name, "current_state": state, "fsm_event": event, "next_state": next_state,
            })
            machine.transition(next_state)
        except Exception as exc:
            pynetdicom.dul.LOGGER.error("exception in action %s in state %s: %s; aborting the association",
                                        action_name, state, exc)
            self._abort_broken()

    def _abort_broken(self) -> None:
        """Send an A-ABORT (service provider, reason not specified) and close the connection."""
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        sock = self.socket
        if sock is not None and sock.socket is not None:
            try:
                sock.socket.sendall(abort_pdu.encode())
            except OSError:
                pass
            try:
                sock.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True  # noqa: SLF001
        self._kill_thread = True

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake.set()


class EventDrivenAssociation(Association):
    """pynetdicom's Association whose reactor waits on an event instead of sleeping."""

    def __init__(self, ae: Any, mode: str) -> None:
        self._wake = threading.Event()
        super().__init__(ae, mode)  # creates its DUL as EventDrivenDUL once compat installed it
        self.dimse.msg_queue = SignalingQueue(self._wake.set)
        self._reactor_checkpoint = _Checkpoint(self._wake)
        self._reactor_checkpoint.set()

    def kill(self) -> None:
        self._wake.set()
        super().kill()

    def run_reactor(self) -> None:
        """pynetdicom's reactor; an exception it raises (e.g. while negotiating
        an odd A-ASSOCIATE-RQ) aborts the association instead of leaving the
        peer waiting with the connection open."""
        try:
            super().run_reactor()
        except Exception as exc:
            pynetdicom.association.LOGGER.error("exception in the association thread, aborting: %r", exc)
            if isinstance(self.dul, EventDrivenDUL):
                self.dul._abort_broken()  # noqa: SLF001
            self.is_aborted = True
            self.is_established = False
            self._kill = True

    def _run_reactor(self) -> None:
        # Mirrors pynetdicom.association.Association._run_reactor (compat.PYNETDICOM_VERSION).
        self._is_paused = False
        while not self._kill:
            self._wake.wait(IDLE_WAIT)
            self._wake.clear()

            # A user thread pausing us (send_c_*, release) clears the checkpoint,
            # then waits for _is_paused. pynetdicom leaves a window where it sees
            # True while the loop runs on and may take the user's response;
            # look at the checkpoint again once _is_paused is False.
            while True:
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self._is_paused = False
                if self._reactor_checkpoint.is_set():
                    break

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._wake.set()  # more may be queued: look again without waiting
                self._serve_request(msg, context_id)  # type: ignore[arg-type]

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                pynetdicom.association.LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log_msg = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    log_msg += " (A-P-ABORT)"
                pynetdicom.association.LOGGER.info(log_msg)
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                pynetdicom.association.LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def _recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv`` reading straight into one buffer, up to 1 MiB a call.

    The buffer grows by at most :data:`RECV_CHUNK` ahead of what has arrived:
    a PDU header may announce any length (pacsdash accepts PDUs of any
    size), and a peer announcing gigabytes and then closing costs nothing.
    """
    limit = getattr(self, "pdu_limit", None)
    if limit is not None and nr_bytes > limit:
        # More than this peer may send in one PDU (set by the acceptor):
        # refuse to read it, which pynetdicom handles as a closed transport.
        raise OSError(f"the peer announced a PDU of {nr_bytes} bytes; at most {limit} are accepted here")
    sock = self.socket
    buffer = bytearray(min(nr_bytes, RECV_CHUNK))
    nr_read = 0
    while nr_read < nr_bytes:
        if nr_read == len(buffer):
            buffer.extend(bytes(min(nr_bytes - nr_read, max(RECV_CHUNK, nr_read))))
        with memoryview(buffer) as view:
            count = sock.recv_into(view[nr_read:], min(len(buffer) - nr_read, RECV_CHUNK))  # type: ignore[union-attr]
        if not count:
            break  # connection closed: return what was read, as pynetdicom does
        nr_read += count
    if nr_read < len(buffer):
        del buffer[nr_read:]
    return buffer


def install() -> None:
    """Apply pacsdash's changes to pynetdicom, this module's among them
    (:func:`pacsdash.dimse.compat.install`; kept for existing callers)."""
    from pacsdash.dimse import compat

    compat.install()
