"""CORS for viewers served from another origin ([server] cors_origins)."""

from __future__ import annotations

import requests

from tests.helpers import ServerProcess, run_cli

ORIGIN = "http://viewer.example:3000"


def test_cors_for_a_configured_origin(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f'[server]\ncors_origins = ["{ORIGIN}"]\n')
    assert run_cli("users", "add", "v", "--role", "viewer", "--password-stdin", "--home", str(home), input="v-password\n").returncode == 0
    server = ServerProcess.start(home)
    try:
        url = f"http://127.0.0.1:{server.http_port}/dicom-web/studies"
        preflight = requests.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        answer = requests.get(url, auth=("v", "v-password"), headers={"Origin": ORIGIN})
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        denied = requests.get(url, headers={"Origin": ORIGIN})
        assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == ORIGIN
        other = requests.get(url, auth=("v", "v-password"), headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        server.stop()


def test_a_star_origin_is_a_literal_star_without_credentials(tmp_path):
    """``cors_origins = ["*"]`` used to echo any Origin with credentials allowed,
    so any site could read studies through a logged-in browser's cookie."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text('[server]\ncors_origins = ["*"]\n')
    assert run_cli("users", "add", "v", "--role", "viewer", "--password-stdin", "--home", str(home), input="v-password\n").returncode == 0
    server = ServerProcess.start(home)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        url = f"{base}/dicom-web/studies"
        preflight = requests.options(url, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        answer = requests.get(url, auth=("v", "v-password"), headers={"Origin": "http://evil.example"})
        assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in answer.headers
        login = requests.post(f"{base}/login", data={"username": "v", "password": "v-password"}, allow_redirects=False)
        cookies = dict(login.cookies)
        assert requests.get(url, cookies=cookies).status_code in (200, 204)
        stolen = requests.get(url, cookies=cookies, headers={"Origin": "http://evil.example"})
        assert stolen.status_code == 401 and "Access-Control-Allow-Credentials" not in stolen.headers
    finally:
        server.stop()
