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


def test_dicom_hardening_settings_default_and_are_documented(tmp_path):
    server = load_settings(tmp_path / "home").server
    assert server.check_peer_address is True  # CONTRACT.md: a peer is its AE title AND its address
    assert server.acse_timeout <= 10
    assert 0 < server.reserved_associations < server.max_associations
    assert server.unknown_store_max_mb <= server.max_store_mb
    init_home(tmp_path)
    text = (tmp_path / "pacsdash.toml").read_text()
    for key in ("check_peer_address", "acse_timeout", "max_associations_per_address", "reserved_associations",
                "max_store_mb", "unknown_store_max_mb", "unknown_store_quota_mb"):
        assert f"# {key} = " in text, key
        # each commented line, uncommented, is a valid setting with the default value
        line = next(l for l in text.splitlines() if l.startswith(f"# {key} = "))
        (tmp_path / "one.toml").write_text("[server]\n" + line[2:] + "\n")
        assert getattr(load_settings(tmp_path, config_file=tmp_path / "one.toml").server, key) == getattr(server, key)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[server]\ncheck_peer_address = 1\n", "[server] check_peer_address must be true or false"),
        ("[server]\nacse_timeout = 0\n", "[server] acse_timeout must be a positive integer"),
        ("[server]\nmax_store_mb = -1\n", "[server] max_store_mb must be a positive integer"),
        ("[server]\nreserved_associations = 32\n", "reserved_associations (32) must be smaller than max_associations"),
    ],
)
def test_bad_dicom_hardening_values_name_the_key(tmp_path, toml, message):
    (tmp_path / "pacsdash.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        load_settings(tmp_path)


def test_an_unknown_store_quota_of_zero_is_allowed(tmp_path):
    (tmp_path / "pacsdash.toml").write_text("[server]\nunknown_store_quota_mb = 0\nreserved_associations = 0\n")
    server = load_settings(tmp_path).server
    assert (server.unknown_store_quota_mb, server.reserved_associations) == (0, 0)
