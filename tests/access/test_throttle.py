"""Failed logins are counted per user name and per address (issue: three
guessing clients slowed every request): after 10 failures for one name in 15
minutes it waits, 429 with Retry-After, while other users still log in."""

from __future__ import annotations

import base64

import pytest

from pacsdash.access import Accounts
from pacsdash.access.throttle import ADDRESS_LIMIT, NAME_LIMIT, WINDOW_SECONDS, LoginThrottle, TooManyAttempts
from pacsdash.web.auth import Authenticator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_waits_after_ten_failures_and_others_do_not():
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(NAME_LIMIT):
        throttle.check("alice", "10.0.0.1")
        throttle.failed("alice", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check("alice", "10.0.0.9")  # from anywhere
    assert 0 < refused.value.retry_after <= WINDOW_SECONDS
    assert TooManyAttempts.http_status == 429
    throttle.check("bob", "10.0.0.1")  # another user from the same address still may
    clock.now += WINDOW_SECONDS + 1
    throttle.check("alice", "10.0.0.1")  # the window passed


def test_an_address_waits_after_a_hundred_failures_over_many_names():
    throttle = LoginThrottle(Clock())
    for n in range(ADDRESS_LIMIT):
        throttle.failed(f"user{n}", "10.0.0.2")
    with pytest.raises(TooManyAttempts, match="10.0.0.2"):
        throttle.check("someone-new", "10.0.0.2")
    throttle.check("someone-new", "10.0.0.3")


def test_a_success_forgets_the_failures_of_the_name():
    throttle = LoginThrottle(Clock())
    for _ in range(NAME_LIMIT - 1):
        throttle.failed("carol")
    throttle.succeeded("carol")
    for _ in range(NAME_LIMIT - 1):
        throttle.failed("carol")
    throttle.check("carol")


def test_memory_is_bounded_whatever_names_are_tried(monkeypatch):
    from pacsdash.access import throttle as module

    monkeypatch.setattr(module, "MAX_TRACKED", 50)
    throttle = LoginThrottle(Clock())
    for n in range(500):
        throttle.failed(f"name{n}")
    assert len(throttle._names._times) == 50  # noqa: SLF001


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_the_http_authenticator_stops_checking_passwords_of_a_guessed_name(tmp_path):
    accounts = Accounts(tmp_path / "accounts.db", {})
    accounts.add_user("dora", "viewer", "dora-password-1")
    accounts.add_user("eve", "viewer", "eve-password-12")
    authenticator = Authenticator(accounts, True, "token")
    for _ in range(NAME_LIMIT):
        assert authenticator.user_for(_basic("dora", "guess"), "127.0.0.1") is None
    with pytest.raises(TooManyAttempts):
        authenticator.user_for(_basic("dora", "dora-password-1"), "127.0.0.1")  # even the right one waits
    assert authenticator.user_for(_basic("eve", "eve-password-12"), "127.0.0.1").name == "eve"


def test_the_event_loop_never_checks_a_password(tmp_path, monkeypatch):
    """HTTP Basic passwords (scrypt) are verified in the password pool, not on
    the loop serving every request; a verified one is remembered, and more
    checks waiting than the pool takes answer 429 at once."""
    import asyncio
    import threading

    from pacsdash.access import accounts as accounts_module
    from pacsdash.web import auth

    accounts = Accounts(tmp_path / "accounts.db", {})
    accounts.add_user("dora", "viewer", "dora-password-1")
    authenticator = Authenticator(accounts, True, "token")
    checked_on = []
    verify = accounts_module.verify_password
    monkeypatch.setattr(accounts_module, "verify_password",
                        lambda *args: checked_on.append(threading.current_thread().name) or verify(*args))

    async def scenario():
        loop_thread = threading.current_thread().name
        right = await authenticator.user_for_async(_basic("dora", "dora-password-1"), "127.0.0.1")
        wrong = await authenticator.user_for_async(_basic("dora", "guess"), "127.0.0.1")
        again = await authenticator.user_for_async(_basic("dora", "dora-password-1"), "127.0.0.1")  # remembered
        return loop_thread, right, wrong, again

    loop_thread, right, wrong, again = asyncio.run(scenario())
    assert right.name == "dora" and wrong is None and again.name == "dora"
    assert len(checked_on) == 2 and loop_thread not in checked_on
    assert all(name.startswith("pacsdash-password") for name in checked_on)

    monkeypatch.setattr(auth, "MAX_WAITING", 0)
    with pytest.raises(auth.ChecksBusy) as busy:
        asyncio.run(authenticator.user_for_async(_basic("dora", "another-guess"), "127.0.0.1"))
    assert busy.value.retry_after == 1 and "too many password checks" in str(busy.value)
