"""CORS for viewers served from another origin ([server] cors_origins)."""

from __future__ import annotations

import requests

from tests.helpers import ServerProcess, run_cli

ORIGIN = "http://viewer.example:3000"


def test_cors_for_a_configured_origin(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f'[server]\ncors_origins = ["{ORIGIN}"]\n')
    assert run_cli("users", "add", "v", "--role", "viewer", "--password-stdin", "--home", str(home), input="pw\n").returncode == 0
    server = ServerProcess.start(home)
    try:
        url = f"http://127.0.0.1:{server.http_port}/dicom-web/studies"
        preflight = requests.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        answer = requests.get(url, auth=("v", "pw"), headers={"Origin": ORIGIN})
        assert answer.status_code == 200
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        denied = requests.get(url, headers={"Origin": ORIGIN})
        assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == ORIGIN
        other = requests.get(url, auth=("v", "pw"), headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        server.stop()
