"""Admission of connections and associations: no caller can take every slot.

pynetdicom counts every accepted connection as an association from the
moment it is accepted, A-ASSOCIATE-RQ or not, and refuses all callers once
``maximum_associations`` are open: 200 silent TCP connections, or 64 idle
associations, from one address locked every other peer out. Here:

- a connection that has not yet sent its A-ASSOCIATE-RQ is *pending*; one
  address may hold :attr:`Limits.pending_per_address` pending connections
  (twice ``per_address``: a scanner opening several associations at once
  is not cut short), a new one closing its oldest (a silent connection costs its sender a slot, not
  the others theirs), and all addresses together :attr:`Limits.pending`,
  a new one closing the oldest of the address holding most; pending
  connections are also closed after the ACSE time-out (PS3.8 9.1.5 ARTIM);
- an association is admitted when its A-ASSOCIATE-RQ arrives: a registered
  peer while fewer than :attr:`Limits.associations` are open, an
  unregistered caller only while fewer than ``associations - reserved`` are
  open to unregistered callers and fewer than ``per_address`` from its
  address. Otherwise it is rejected at once, transient, local limit
  exceeded (PS3.8 9.3.4).

Each DICOM worker process keeps its own counts.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

LOGGER = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ (Result, Source, Reason): rejected-transient, service
#: provider (presentation related function), local-limit-exceeded (PS3.8 9.3.4).
LIMIT_EXCEEDED = (0x02, 0x03, 0x02)


@dataclass(frozen=True)
class Limits:
    """How many connections and associations may be open at once."""

    #: Associations open at once (``[server] max_associations``).
    associations: int
    #: Of those, slots only registered peers may use (``reserved_associations``).
    reserved: int
    #: Pending connections, and associations of unregistered callers, per address.
    per_address: int

    @property
    def pending_per_address(self) -> int:
        """Pending connections from one address."""
        return 2 * self.per_address

    @property
    def pending(self) -> int:
        """Pending connections from all addresses together."""
        return 4 * self.associations


def _started_and_ended(assoc: Any) -> bool:
    return assoc.ident is not None and not assoc.is_alive()


class Admission:
    """Counts of one node's pending connections and admitted associations."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        #: Pending connections by association, oldest first: their address.
        self._pending: dict[Any, str] = {}
        #: Admitted associations: (address, registered).
        self._admitted: dict[Any, tuple[str, bool]] = {}

    def connected(self, assoc: Any, address: str) -> None:
        """A connection was accepted (EVT_CONN_OPEN): count it as pending,
        closing an older pending one if its address, or everyone, holds too many."""
        with self._lock:
            self._prune()
            from_address = [a for a, addr in self._pending.items() if addr == address]
            evict = None
            if len(from_address) >= self.limits.pending_per_address:
                evict = from_address[0]
            elif len(self._pending) >= self.limits.pending:
                busiest, _ = Counter(self._pending.values()).most_common(1)[0]
                evict = next(a for a, addr in self._pending.items() if addr == busiest)
            if evict is not None:
                del self._pending[evict]
            self._pending[assoc] = address
        if evict is not None:
            LOGGER.warning("closing a connection from %s that sent no A-ASSOCIATE-RQ: too many pending",
                           evict.requestor.address)
            close_pending(evict)

    def requested(self, assoc: Any, address: str, registered: bool) -> tuple[int, int, int] | None:
        """The A-ASSOCIATE-RQ arrived (EVT_REQUESTED): admit the association
        (None) or return the A-ASSOCIATE-RJ (result, source, reason) to send."""
        with self._lock:
            self._pending.pop(assoc, None)
            self._prune()
            limits = self.limits
            if len(self._admitted) >= limits.associations:
                return LIMIT_EXCEEDED
            if not registered:
                unregistered = [addr for addr, known in self._admitted.values() if not known]
                if len(unregistered) >= limits.associations - limits.reserved:
                    return LIMIT_EXCEEDED
                if unregistered.count(address) >= limits.per_address:
                    return LIMIT_EXCEEDED
            self._admitted[assoc] = (address, registered)
            return None

    def forget(self, assoc: Any) -> None:
        """The association was refused or has ended: it no longer counts."""
        with self._lock:
            self._pending.pop(assoc, None)
            self._admitted.pop(assoc, None)

    def counts(self) -> dict[str, int]:
        """Pending connections and admitted associations now (for logs and tests)."""
        with self._lock:
            self._prune()
            return {"pending": len(self._pending), "admitted": len(self._admitted)}

    def _prune(self) -> None:
        for table in (self._pending, self._admitted):
            for assoc in [a for a in table if _started_and_ended(a)]:
                del table[assoc]


def close_pending(assoc: Any) -> None:
    """Close a connection that has not associated: its DUL thread stops, and
    its association thread, woken, shuts the socket (see reactor.EventDrivenDUL)."""
    dul = assoc.dul
    dul.kill_dul()
    sock = getattr(dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class StoreQuota:
    """Bytes each unregistered address stored in the last :attr:`window` seconds
    (``[server] unknown_store_quota_mb``), counted in this process."""

    def __init__(self, quota: int, window: float = 24 * 3600.0) -> None:
        self.quota = quota
        self.window = window
        self._lock = threading.Lock()
        #: Per address: (time, bytes) of each store in the window, and their sum.
        self._stored: dict[str, tuple[deque[tuple[float, int]], list[int]]] = {}

    def remaining(self, address: str) -> int:
        """Bytes ``address`` may still store now."""
        with self._lock:
            return max(0, self.quota - self._used(address))

    def add(self, address: str, size: int) -> None:
        """Count ``size`` bytes stored by ``address``."""
        with self._lock:
            if address not in self._stored and len(self._stored) >= 10_000:
                for key in [k for k in self._stored if self._used(k) == 0]:
                    del self._stored[key]  # forget addresses whose window has passed
            entries, total = self._stored.setdefault(address, (deque(), [0]))
            entries.append((time.monotonic(), size))
            total[0] += size

    def _used(self, address: str) -> int:
        found = self._stored.get(address)
        if found is None:
            return 0
        entries, total = found
        since = time.monotonic() - self.window
        while entries and entries[0][0] < since:
            total[0] -= entries.popleft()[1]
        return total[0]
