"""A running server with one user per role, for the HTTP tests."""

from __future__ import annotations

import pytest
import requests

from pacsdash.access import open_accounts
from pacsdash.config import load_settings
from tests.helpers import ServerProcess, run_cli

USERS = {"admin": "admin-password", "editor": "editor-password", "viewer": "viewer-password"}
#: Users restricted to the study label "trial-7", one per role: name -> (role, password).
RESTRICTED = {f"trial-{role}": (role, f"trial-{role}-password") for role in USERS}
TRIAL_LABEL = "trial-7"


#: The archives every HTTP test runs against: the embedded default (DuckDB and
#: files in the home) and a site's PostgreSQL index with an S3 bucket (issue 16).
BACKENDS = ("embedded", "postgresql+s3")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def web_server(request, backend, tmp_path_factory):
    home = tmp_path_factory.mktemp("web") / "home"
    with pytest.MonkeyPatch.context() as environment:  # the credentials, for this module's commands and server
        env = None
        if backend == "postgresql+s3":
            from tests.s3 import REGION, new_bucket

            database = request.getfixturevalue("postgres_server").new_database()
            bucket = new_bucket(request.getfixturevalue("moto_server"), environment, home.parent)
            home.mkdir()
            (home / "pacsdash.toml").write_text(
                f'[index]\nurl = "{database}"\n\n[storage]\nurl = "{bucket.url("web/archive")}"\n'
                f'endpoint_url = "{bucket.endpoint_url}"\nregion = "{REGION}"\n', encoding="utf-8")
            env = bucket.env
        for name, password in USERS.items():
            result = run_cli("users", "add", name, "--role", name, "--password-stdin", "--home", str(home),
                             input=password + "\n")
            assert result.returncode == 0, result.stderr
        accounts = open_accounts(load_settings(home))
        for name, (role, password) in RESTRICTED.items():
            accounts.add_user(name, role, password, labels=[TRIAL_LABEL])
        server = ServerProcess.start(home, env=env)
        server.backend = backend
        yield server
        server.stop()


def local_files_only(server) -> None:
    """Skip a test that reaches into the home's file store on disk when the store is a bucket."""
    if getattr(server, "backend", "embedded") != "embedded":
        pytest.skip("handles the stored files on disk; this server keeps them in an S3 bucket")


@pytest.fixture(scope="module")
def base_url(web_server) -> str:
    return f"http://127.0.0.1:{web_server.http_port}"


def session_for(role: str) -> requests.Session:
    """Basic credentials of the user ``role`` (a role name, or a name in :data:`RESTRICTED`)."""
    session = requests.Session()
    session.auth = (role, USERS[role] if role in USERS else RESTRICTED[role][1])
    return session
