"""Who is calling: registered peers known by AE title AND address (CONTRACT.md).

A calling AE title is only a claim the caller makes in its A-ASSOCIATE-RQ
(PS3.8 9.3.2); anyone may write any title there. A registered peer is
therefore recognised by its AE title and the address its connection comes
from, compared with the host registered for it (a name is resolved, with a
bounded wait, and the answer cached). A caller using a registered title from
another address is treated as the unknown peer it is: it may echo, store
only when ``[server] accept_unknown_store`` is true, and never find, move or
get; the mismatch is logged. ``[server] check_peer_address = false`` turns
the address check off for sites whose peers reach the server through NAT.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from pacsdash.access import Accounts
from pacsdash.access import grants
from pacsdash.access.grants import Grant
from pacsdash.config import ModalitySettings

LOGGER = logging.getLogger(__name__)

#: How long a resolved host's addresses are trusted [s].
RESOLVED_TTL = 300.0
#: How long a failed or slow resolution is remembered [s].
UNRESOLVED_TTL = 30.0
#: Longest wait for a host name to resolve while a caller waits [s].
RESOLVE_WAIT = 2.0
#: Mismatch warnings logged per (AE title, address) at most once in this many seconds.
WARN_EVERY = 60.0


def normalise_address(address: str) -> str:
    """An IP address in one canonical spelling (IPv4-mapped IPv6 as IPv4, no zone)."""
    text = address.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class HostResolver:
    """Addresses of registered hosts, resolved at most :data:`RESOLVE_WAIT`
    seconds while a caller waits, cached for :data:`RESOLVED_TTL`.

    A resolution that takes longer goes on in the background; until it
    ends the host has no address (the caller is treated as unknown, which
    never grants more than an unknown peer may do).
    """

    def __init__(self, wait: float = RESOLVE_WAIT) -> None:
        self.wait = wait
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._pending: dict[str, object] = {}
        self._lock = threading.RLock()  # a finished future's callback runs in the thread adding it
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pacsdash-resolve")

    def addresses(self, host: str) -> frozenset[str]:
        """The addresses ``host`` stands for (itself if it is an address)."""
        if _is_address(host):
            return frozenset({normalise_address(host)})
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(host)
            if cached is not None and cached[0] > now:
                return cached[1]
            future = self._pending.get(host)
            if future is None:
                future = self._pending[host] = self._pool.submit(_resolve, host)
                future.add_done_callback(lambda f, h=host: self._store(h, f))
        try:
            return future.result(timeout=self.wait)  # type: ignore[attr-defined]
        except FutureTimeout:
            LOGGER.warning("resolving registered host %r takes longer than %.1f s; treated as no address", host, self.wait)
            return frozenset()
        except OSError:
            return frozenset()

    def _store(self, host: str, future: object) -> None:
        try:
            found = future.result()  # type: ignore[attr-defined]
            ttl = RESOLVED_TTL
        except OSError as exc:
            LOGGER.warning("registered host %r does not resolve: %s", host, exc)
            found, ttl = frozenset(), UNRESOLVED_TTL
        with self._lock:
            self._cache[host] = (time.monotonic() + ttl, found)
            self._pending.pop(host, None)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _resolve(host: str) -> frozenset[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return frozenset(normalise_address(str(info[4][0])) for info in infos)


@dataclass
class PeerPolicy:
    """Decides what a caller, by AE title and address, may ask (CONTRACT.md, Users and peers)."""

    accounts: Accounts
    accept_unknown_store: bool
    #: Compare the caller's address with the registered host (``[server] check_peer_address``).
    check_address: bool = True
    resolver: HostResolver = field(default_factory=HostResolver)
    _warned: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def peer(self, aet: str, address: str | None = None) -> ModalitySettings | None:
        """The registered peer calling as ``aet`` from ``address``, or None.

        With the address check on (the default), ``address`` is required: a
        registered title called from elsewhere is no registered peer.
        """
        aet = aet.strip()
        titled = [m for m in self.accounts.modalities() if m.aet == aet]
        if not titled:
            return None
        if not self.check_address:
            return titled[0]
        if address is None:
            return None
        caller = normalise_address(address)
        for candidate in titled:
            if caller in self.resolver.addresses(candidate.host):
                return candidate
        self._warn_mismatch(aet, caller, titled)
        return None

    def destination(self, aet: str) -> ModalitySettings | None:
        """The registered peer a C-MOVE may send to, by AE title (we call it
        at its registered host and port, so no address check is needed)."""
        return self.accounts.modality_by_aet(aet)

    def grant(self, aet: str, peer: ModalitySettings | None) -> Grant:
        """What the caller ``aet``, recognised as ``peer`` (None: unregistered),
        may ask and see (:mod:`pacsdash.access.grants`)."""
        return grants.for_peer(aet, peer, self.accept_unknown_store)

    def _warn_mismatch(self, aet: str, caller: str, titled: list[ModalitySettings]) -> None:
        now = time.monotonic()
        key = (aet, caller)
        if now - self._warned.get(key, -WARN_EVERY) < WARN_EVERY:
            return
        if len(self._warned) > 1024:
            self._warned.clear()
        self._warned[key] = now
        LOGGER.warning(
            "caller at %s uses the AE title %r registered for %s: treated as an unknown peer",
            caller, aet, ", ".join(f"{m.name} ({m.host})" for m in titled),
        )
