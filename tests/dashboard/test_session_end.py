"""An open dashboard page acts no more once its session has ended (issue 15):
every action asks :func:`current_role` with the session stamp the page
opened with, and a logout anywhere, a new password, a role change or the
user removed and added again ends it, as it ends the session's cookie."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pacsdash.access import Accounts, Action, Role
from pacsdash.dashboard.app import current_role, may, opened_session


@pytest.fixture
def context(tmp_path):
    accounts = Accounts(tmp_path / "accounts.sqlite")
    accounts.add_user("erin", "editor", "erin-password-1")
    accounts.add_user("root", "admin", "root-password-1")
    return SimpleNamespace(accounts=accounts, settings=SimpleNamespace(auth=SimpleNamespace(enabled=True)))


@pytest.mark.parametrize("end", [
    lambda a: a.revoke_sessions("erin"),
    lambda a: a.set_password("erin", "erin-password-2"),
    lambda a: a.set_role("erin", "editor"),
    lambda a: (a.remove_user("erin"), a.add_user("erin", "editor", "erin-password-1")),
], ids=["logout", "password", "role", "removed-and-added"])
def test_a_page_opened_before_its_session_ended_may_do_nothing(context, end):
    session = opened_session(context, "erin")
    assert session and current_role(context, "erin", session) is Role.EDITOR
    assert may(context, "erin", Action.UPLOAD, session)
    end(context.accounts)
    assert current_role(context, "erin", session) is None
    assert not may(context, "erin", Action.UPLOAD, session)
    fresh = opened_session(context, "erin")  # a new login opens a new page
    assert current_role(context, "erin", fresh) is Role.EDITOR


def test_another_users_logout_ends_nothing_here(context):
    session = opened_session(context, "erin")
    context.accounts.revoke_sessions("root")
    assert current_role(context, "erin", session) is Role.EDITOR


def test_with_logins_off_there_is_no_session(context):
    context.settings.auth.enabled = False
    assert opened_session(context, "erin") is None and current_role(context, None, None) is Role.ADMIN
