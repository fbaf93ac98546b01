"""Failed logins, counted: a name or an address that keeps guessing waits.

After :data:`NAME_LIMIT` failed logins for one user name within
:data:`WINDOW_SECONDS`, further attempts for that name are refused without
checking the password (HTTP 429 with ``Retry-After``) until the oldest
failure leaves the window; an address gets :data:`ADDRESS_LIMIT`. Other
names keep logging in. Memory is bounded: at most :data:`MAX_TRACKED` names
and addresses are remembered, the least recently seen forgotten first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

LOGGER = logging.getLogger(__name__)
WINDOW_SECONDS = 15 * 60
NAME_LIMIT = 10
ADDRESS_LIMIT = 100
MAX_TRACKED = 10_000


class TooManyAttempts(Exception):
    """Too many failed logins: try again in ``retry_after`` seconds (HTTP 429)."""

    http_status = 429

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"too many failed logins for {what}; try again in {retry_after} s")
        self.retry_after = retry_after


class _Failures:
    """Failure times per key, bounded in keys and in times per key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must wait (0 when it may try)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        return times[0] + WINDOW_SECONDS - now if len(times) >= self.limit else 0.0

    def add(self, key: str, now: float) -> int:
        times = self._times.setdefault(key, deque(maxlen=self.limit))
        self._times.move_to_end(key)
        times.append(now)
        while len(self._times) > MAX_TRACKED:
            self._times.popitem(last=False)
        return len(times)

    def clear(self, key: str) -> None:
        self._times.pop(key, None)


class LoginThrottle:
    """Counts failed logins by user name and by address (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._names = _Failures(NAME_LIMIT)
        self._addresses = _Failures(ADDRESS_LIMIT)
        self._lock = threading.Lock()

    def check(self, name: str, address: str = "") -> None:
        """Raise :class:`TooManyAttempts` if ``name`` or ``address`` must wait."""
        now = self._clock()
        with self._lock:
            by_name = self._names.wait(name, now)
            by_address = self._addresses.wait(address, now) if address else 0.0
        if by_name or by_address:
            what = f"the user name {name[:64]!r}" if by_name >= by_address else f"the address {address}"
            raise TooManyAttempts(what, max(1, math.ceil(max(by_name, by_address))))

    def failed(self, name: str, address: str = "") -> None:
        """Count a failed login; log when a name or an address reaches its limit."""
        now = self._clock()
        with self._lock:
            count = self._names.add(name, now)
            by_address = self._addresses.add(address, now) if address else 0
        if count == NAME_LIMIT:
            LOGGER.warning("login: %d failed attempts for user name %r within %d min; it waits now",
                           count, name[:64], WINDOW_SECONDS // 60)
        if by_address == ADDRESS_LIMIT:
            LOGGER.warning("login: %d failed attempts from %s within %d min; it waits now",
                           by_address, address, WINDOW_SECONDS // 60)

    def succeeded(self, name: str) -> None:
        """A correct password for ``name``: its failures are forgotten (its address's are not)."""
        with self._lock:
            self._names.clear(name)


#: Password checks run here, off the event loop, at most two at a time:
#: scrypt is slow on purpose, and a crowd of guessers must not stall pages.
PASSWORD_CHECKS = ThreadPoolExecutor(2, thread_name_prefix="pacsdash-password")
_THROTTLES: weakref.WeakKeyDictionary[object, LoginThrottle] = weakref.WeakKeyDictionary()
_THROTTLES_LOCK = threading.Lock()


def throttle_for(accounts: object) -> LoginThrottle:
    """The one throttle of an accounts store, shared by every door that logs in."""
    with _THROTTLES_LOCK:
        throttle = _THROTTLES.get(accounts)
        if throttle is None:
            throttle = _THROTTLES[accounts] = LoginThrottle()
        return throttle
