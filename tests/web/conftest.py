"""A running server with one user per role, for the HTTP tests."""

from __future__ import annotations

import pytest
import requests

from pacsdash.access import Accounts
from tests.helpers import ServerProcess, run_cli

USERS = {"admin": "admin-password", "editor": "editor-password", "viewer": "viewer-password"}
#: Users restricted to the study label "trial-7", one per role: name -> (role, password).
RESTRICTED = {f"trial-{role}": (role, f"trial-{role}-password") for role in USERS}
TRIAL_LABEL = "trial-7"


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("web") / "home"
    for name, password in USERS.items():
        result = run_cli("users", "add", name, "--role", name, "--password-stdin", "--home", str(home), input=password + "\n")
        assert result.returncode == 0, result.stderr
    accounts = Accounts(home / "accounts.sqlite")
    for name, (role, password) in RESTRICTED.items():
        accounts.add_user(name, role, password, labels=[TRIAL_LABEL])
    server = ServerProcess.start(home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base_url(web_server) -> str:
    return f"http://127.0.0.1:{web_server.http_port}"


def session_for(role: str) -> requests.Session:
    """Basic credentials of the user ``role`` (a role name, or a name in :data:`RESTRICTED`)."""
    session = requests.Session()
    session.auth = (role, USERS[role] if role in USERS else RESTRICTED[role][1])
    return session
