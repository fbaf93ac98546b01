"""Who is calling over HTTP: Basic credentials, the local token, roles.

Every route but ``/api/health`` asks :class:`Authenticator` for the caller.
Passwords are checked against their salted scrypt hashes in constant time;
a successful check is remembered for a short while (keyed by a hash of the
credentials, never the password itself) so that a viewer fetching hundreds
of frames does not pay the deliberate cost of scrypt on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from pacsdash.access import Accounts, Role, User
from pacsdash.access.throttle import PASSWORD_CHECKS, TooManyAttempts, throttle_for

#: Seconds a verified credential is remembered.
CACHE_SECONDS = 60
CACHE_SIZE = 1024
#: Password checks that may wait for a thread of the pool at once (HTTP Basic).
MAX_WAITING = 64
#: The caller when ``[auth] enabled = false``.
ANONYMOUS = User("anonymous", Role.ADMIN)
#: The command line, calling the server that owns its home.
LOCAL_CLI = User("local-cli", Role.ADMIN)


class ChecksBusy(TooManyAttempts):
    """More password checks waiting than :data:`MAX_WAITING` (HTTP 429, retry in 1 s)."""

    def __init__(self) -> None:
        Exception.__init__(self, "too many password checks at once; try again in 1 s")
        self.retry_after = 1


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`User` (or None)."""

    def __init__(self, accounts: Accounts, enabled: bool, local_token: str) -> None:
        self.accounts = accounts
        self.enabled = enabled
        self.local_token = local_token
        self._cache: OrderedDict[bytes, tuple[tuple[str, str], float]] = OrderedDict()
        self._lock = threading.Lock()
        self._waiting = 0
        # A per-process key, so cache keys are useless outside this process.
        self._key = hashlib.sha256(local_token.encode()).digest()
        self.throttle = throttle_for(accounts)
        #: ``(user, address, False)`` on each failed password check, for the audit trail.
        self.on_failure: Callable[[str, str, bool], None] | None = None

    def user_for(self, authorization: str | None, address: str = "") -> User | None:
        """The caller named by an ``Authorization`` header, if the proof holds.

        Raises
        ------
        TooManyAttempts
            When that user name (or ``address``) failed too often lately
            (:mod:`pacsdash.access.throttle`); the password is not checked.
        """
        parsed = self._parse(authorization)
        if not isinstance(parsed, tuple):
            return parsed
        name, password = parsed
        return self._cached(name, password) or self._check(name, password, address)

    async def user_for_async(self, authorization: str | None, address: str = "") -> User | None:
        """:meth:`user_for` for the event loop: a password not verified lately
        is checked (scrypt, slow on purpose) in the small pool of
        :data:`~pacsdash.access.throttle.PASSWORD_CHECKS`, never on the loop;
        at most :data:`MAX_WAITING` checks wait for it (beyond: 429, retry in 1 s)."""
        parsed = self._parse(authorization)
        if not isinstance(parsed, tuple):
            return parsed
        name, password = parsed
        cached = self._cached(name, password)
        if cached is not None:
            return cached
        with self._lock:
            if self._waiting >= MAX_WAITING:
                raise ChecksBusy()
            self._waiting += 1
        try:
            return await asyncio.wrap_future(PASSWORD_CHECKS.submit(self._check, name, password, address))
        finally:
            with self._lock:
                self._waiting -= 1

    def _parse(self, authorization: str | None) -> User | None | tuple[str, str]:
        """The caller, when no password is to be checked; else ``(name, password)`` of Basic credentials."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return LOCAL_CLI if hmac.compare_digest(value.strip().encode(), self.local_token.encode()) else None
        if scheme != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep or not name or len(name) > 64 or len(password) > 1024:
            return None
        return name, password

    def _key_of(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\x00{password}".encode(), hashlib.sha256).digest()

    def _cached(self, name: str, password: str) -> User | None:
        """The user, if these credentials were verified lately and the password has not changed since."""
        stamp = self.accounts.credential_stamp(name)
        if stamp is None:
            return None
        key = self._key_of(name, password)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or hit[1] <= time.monotonic() or hit[0][1] != stamp[1]:
                return None
            self._cache.move_to_end(key)
        return self.accounts.user(name)  # the role and study labels as they are now

    def _check(self, name: str, password: str, address: str = "") -> User | None:
        """Verify the password (slow: scrypt); remember a success for :data:`CACHE_SECONDS`."""
        key = self._key_of(name, password)
        now = time.monotonic()
        stamp = self.accounts.credential_stamp(name)
        self.throttle.check(name, address)
        user = self.accounts.authenticate(name, password)  # the same work for an unknown name
        if user is None:
            self.throttle.failed(name, address)
            if self.on_failure is not None:
                self.on_failure(name, address, False)
            return None
        self.throttle.succeeded(name)
        if stamp is not None:
            with self._lock:
                self._cache[key] = ((user.role.value, stamp[1]), now + CACHE_SECONDS)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return user


#: The signed cookie naming a dashboard session: ``NAME:STAMP`` (Panel's own
#: ``user`` cookie, also signed, names the user alone; both must agree).
SESSION_COOKIE = "pacsdash_session"
#: Days a login lasts at most (Panel's ``oauth_expiry`` default).
SESSION_DAYS = 30


def session_value(name: str, stamp: str) -> str:
    """What :data:`SESSION_COOKIE` holds for ``name`` (user names hold no ``:``)."""
    return f"{name}:{stamp}"


def session_user(get_secure_cookie: Callable[..., bytes | None], accounts: Accounts) -> str | None:
    """The user a request's signed cookies name, if the session is still valid.

    ``get_secure_cookie`` is the request handler's. Valid means: Panel's
    signed ``user`` cookie and :data:`SESSION_COOKIE` name the same user and
    carry that user's current session stamp, which a logout, a new password,
    a new role or removing the user replaces (:meth:`Accounts.session_stamp`).
    The unsigned ``is_guest`` cookie plays no part.
    """
    user = get_secure_cookie("user", max_age_days=SESSION_DAYS)
    session = get_secure_cookie(SESSION_COOKIE, max_age_days=SESSION_DAYS)
    if not user or not session:
        return None
    name, _, stamp = session.decode("utf-8", "replace").rpartition(":")
    if not name or name != user.decode("utf-8", "replace"):
        return None
    current = accounts.session_stamp(name)
    if current is None or not hmac.compare_digest(current.encode(), stamp.encode()):
        return None
    return name
