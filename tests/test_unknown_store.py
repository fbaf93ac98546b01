"""``[server] accept_unknown_store``: off for ``serve`` (only registered peers
may C-STORE), on in a demo home, and C-ECHO answered for anyone (issue 15)."""

from __future__ import annotations

import subprocess

import pytest

from pacsdash.config import load_settings, set_server_option
from pacsdash.demo import make_demo_home
from tests.helpers import VALID, ServerProcess, have_dcmtk, run_cli

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="dcmtk is not installed (/usr/bin/storescu missing)")


def _storescu(port: int, aet: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/storescu", "-aet", aet, "-aec", "PACSDASH", "127.0.0.1", str(port), str(VALID[1])],
                          capture_output=True, text=True, timeout=60)


def test_serve_refuses_stores_from_unregistered_peers_and_accepts_registered_ones(tmp_path):
    home = tmp_path / "home"
    assert run_cli("modalities", "add", "scanner", "--aet", "SCANNER", "--host", "127.0.0.1", "--port", "11112",
                   "--home", str(home)).returncode == 0
    server = ServerProcess.start(home, accept_unknown_store=False)
    try:
        assert load_settings(home).server.accept_unknown_store is False
        refused = _storescu(server.dicom_port, "STRANGER")
        assert refused.returncode != 0, refused.stdout + refused.stderr
        echo = subprocess.run(["/usr/bin/echoscu", "-aet", "STRANGER", "-aec", "PACSDASH", "127.0.0.1",
                               str(server.dicom_port)], capture_output=True, text=True, timeout=60)
        assert echo.returncode == 0, echo.stderr  # network checks still work for anyone
        accepted = _storescu(server.dicom_port, "SCANNER")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        server.stop()
    listed = run_cli("import", "--help")  # the home is intact and readable by the CLI afterwards
    assert listed.returncode == 0


def test_a_demo_home_accepts_unknown_stores_and_says_so_in_its_config(tmp_path, monkeypatch):
    from pacsdash import demo

    monkeypatch.setattr(demo, "SAMPLES", tmp_path / "no-samples")
    monkeypatch.setattr("pacsdash.demo.generate.demo_datasets", lambda **_: iter(()))
    settings = make_demo_home(load_settings(tmp_path / "demo"))
    assert settings.server.accept_unknown_store is True
    assert load_settings(tmp_path / "demo").server.accept_unknown_store is True
    assert "accept_unknown_store = true" in (tmp_path / "demo" / "pacsdash.toml").read_text()


def test_an_admins_choice_in_an_existing_demo_home_is_kept(tmp_path, monkeypatch):
    from pacsdash import demo

    monkeypatch.setattr(demo, "SAMPLES", tmp_path / "no-samples")
    monkeypatch.setattr("pacsdash.demo.generate.demo_datasets", lambda **_: iter(()))
    home = tmp_path / "demo"
    make_demo_home(load_settings(home))
    set_server_option(home, "accept_unknown_store", False)
    assert make_demo_home(load_settings(home)).server.accept_unknown_store is False
