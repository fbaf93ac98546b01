"""Settings: defaults, then pacsdash.toml, then flags; bad values named."""

from __future__ import annotations

import pytest

from pacsdash.config import ConfigError, init_home, load_settings


def test_defaults_follow_the_contract(tmp_path):
    settings = load_settings(tmp_path / "home")
    assert (settings.server.host, settings.server.http_port, settings.server.dicom_port, settings.server.aet) == (
        "127.0.0.1", 8042, 4242, "PACSDASH")
    assert settings.auth.enabled is True
    assert settings.server.accept_unknown_store is False  # serve: registered peers only; the demo turns it on


def test_flag_beats_file_beats_default(tmp_path):
    (tmp_path / "pacsdash.toml").write_text('[server]\nhttp_port = 9000\ndicom_port = 11112\naet = "FILEAET"\n')
    settings = load_settings(tmp_path, http_port=9100, aet=None)
    assert settings.server.http_port == 9100  # flag
    assert settings.server.dicom_port == 11112  # file
    assert settings.server.aet == "FILEAET"  # file (flag unset)
    assert settings.server.host == "127.0.0.1"  # default


def test_default_config_file_is_valid_and_commented(tmp_path):
    init_home(tmp_path)
    text = (tmp_path / "pacsdash.toml").read_text()
    assert "#" in text
    assert load_settings(tmp_path).server.aet == "PACSDASH"


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[server]\nhttp_port = "eighty"\n', "[server] http_port must be an integer"),
        ("[server]\nhttp_port = 70000\n", "[server] http_port must be an integer from 0 to 65535"),
        ('[server]\naet = "THIS AE TITLE IS TOO LONG"\n', "[server] aet must be an AE title"),
        ('[server]\naccept_unknown_store = "yes"\n', "[server] accept_unknown_store must be true or false"),
        ("[server]\nhttp_prot = 1\n", "unknown key 'http_prot'"),
        ("[sever]\n", "unknown section"),
        ('[modalities.ws]\naet = "WS"\nhost = "127.0.0.1"\n', "[modalities.ws] port is required"),
        ('[modalities.ws]\naet = "WS"\nhost = "127.0.0.1"\nport = 104\nallow = ["steal"]\n', "[modalities.ws] allow"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path, toml, message):
    (tmp_path / "pacsdash.toml").write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path)
    assert message in str(error.value)
    assert "pacsdash.toml" in str(error.value)


def test_bad_flag_is_named(tmp_path):
    with pytest.raises(ConfigError, match="--http-port"):
        load_settings(tmp_path, http_port=-1)


def test_modalities_from_the_file(tmp_path):
    (tmp_path / "pacsdash.toml").write_text(
        '[modalities.ws]\naet = "WS"\nhost = "127.0.0.1"\nport = 11112\nallow = ["find", "move"]\n'
    )
    [peer] = load_settings(tmp_path).modalities
    assert (peer.name, peer.aet, peer.port, peer.allow) == ("ws", "WS", 11112, ("find", "move"))
