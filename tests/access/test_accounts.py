"""Users with salted hashes and roles; peers registered without the config."""

from __future__ import annotations

import sqlite3

import pytest

from pacsdash.access import AccountError, Accounts, Action, Role
from pacsdash.config import ModalitySettings


@pytest.fixture
def accounts(tmp_path):
    return Accounts(tmp_path / "accounts.sqlite")


def test_passwords_are_stored_salted_and_hashed(accounts, tmp_path):
    accounts.add_user("alice", "admin", "correct horse")
    accounts.add_user("bob", "viewer", "correct horse")
    raw = (tmp_path / "accounts.sqlite").read_bytes()
    assert b"correct horse" not in raw
    with sqlite3.connect(tmp_path / "accounts.sqlite") as con:
        hashes = [r[0] for r in con.execute("SELECT password_hash FROM users")]
    assert len(set(hashes)) == 2  # same password, different salts
    assert all(h.startswith("scrypt$") for h in hashes)


def test_authenticate(accounts):
    accounts.add_user("alice", "editor", "s3cret")
    assert accounts.authenticate("alice", "s3cret").role is Role.EDITOR
    assert accounts.authenticate("alice", "S3cret") is None
    assert accounts.authenticate("nobody", "s3cret") is None
    accounts.set_password("alice", "new")
    assert accounts.authenticate("alice", "s3cret") is None
    assert accounts.authenticate("alice", "new") is not None


def test_user_errors_are_clear(accounts):
    accounts.add_user("alice", "viewer", "x")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user("alice", "viewer", "x")
    with pytest.raises(AccountError, match="no user named"):
        accounts.remove_user("bob")
    with pytest.raises(AccountError, match="must not be empty"):
        accounts.add_user("carol", "viewer", "")
    with pytest.raises(AccountError, match="user name"):
        accounts.add_user("../etc", "viewer", "x")
    with pytest.raises(ValueError, match="role must be one of"):
        accounts.add_user("dave", "root", "x")


def test_roles():
    assert Role.VIEWER.may(Action.DOWNLOAD) and not Role.VIEWER.may(Action.UPLOAD)
    assert Role.EDITOR.may(Action.ANONYMIZE) and not Role.EDITOR.may(Action.DELETE)
    assert all(Role.ADMIN.may(action) for action in Action)


def test_modalities(tmp_path):
    configured = (ModalitySettings("pacs", "OTHERPACS", "127.0.0.1", 104),)
    accounts = Accounts(tmp_path / "a.sqlite", configured)
    accounts.add_modality("ws", "WS1", "127.0.0.1", 11112, "find,move")
    assert [m.name for m in accounts.modalities()] == ["pacs", "ws"]
    assert accounts.modality_by_aet("WS1").allow == ("find", "move")
    with pytest.raises(AccountError, match="pacsdash.toml"):
        accounts.remove_modality("pacs")
    with pytest.raises(AccountError, match="AE title"):
        accounts.add_modality("bad", "A" * 17, "127.0.0.1", 104)
    with pytest.raises(AccountError, match="--port"):
        accounts.add_modality("bad", "BAD", "127.0.0.1", 0)
    accounts.remove_modality("ws")
    assert accounts.modality_by_aet("WS1") is None


def test_the_last_admin_is_neither_removed_nor_demoted(accounts):
    accounts.add_user("root", "admin", "x")
    accounts.add_user("bob", "viewer", "x")
    with pytest.raises(AccountError, match="last admin"):
        accounts.remove_user("root")
    with pytest.raises(AccountError, match="last admin"):
        accounts.set_role("root", "editor")
    accounts.set_role("root", "admin")  # no change is no demotion
    assert accounts.credential_stamp("root")[0] == "admin"
    accounts.set_role("bob", "admin")
    accounts.set_role("root", "viewer")  # another admin exists now
    with pytest.raises(AccountError, match="last admin"):
        accounts.remove_user("bob")
    accounts.remove_user("root")
    assert [(u.name, u.role) for u in accounts.users()] == [("bob", Role.ADMIN)]
    with pytest.raises(AccountError, match="no user named"):
        accounts.set_role("root", "admin")


def test_the_last_admin_holds_across_connections(tmp_path):
    """Two processes (the page and the CLI) each demoting one of two admins: one must fail."""
    first, second = Accounts(tmp_path / "a.sqlite"), Accounts(tmp_path / "a.sqlite")
    first.add_user("a", "admin", "x")
    first.add_user("b", "admin", "x")
    first.set_role("a", "viewer")
    with pytest.raises(AccountError, match="last admin"):
        second.set_role("b", "viewer")
    assert [u.role for u in second.users()] == [Role.VIEWER, Role.ADMIN]


def test_update_modality(tmp_path):
    configured = (ModalitySettings("pacs", "OTHERPACS", "127.0.0.1", 104),)
    accounts = Accounts(tmp_path / "a.sqlite", configured)
    accounts.add_modality("ws", "WS1", "127.0.0.1", 11112)
    changed = accounts.update_modality("ws", " WS2 ", "10.0.0.5", 2104, ["store"])
    assert changed == ModalitySettings("ws", "WS2", "10.0.0.5", 2104, ("store",))
    assert Accounts(tmp_path / "a.sqlite", configured).modality("ws") == changed
    assert accounts.modality_by_aet("WS1") is None
    with pytest.raises(AccountError, match="pacsdash.toml"):
        accounts.update_modality("pacs", "X", "127.0.0.1", 104)
    with pytest.raises(AccountError, match="no modality named"):
        accounts.update_modality("nope", "X", "127.0.0.1", 104)
    with pytest.raises(AccountError, match="AE title"):
        accounts.update_modality("ws", "A" * 17, "127.0.0.1", 104)
    with pytest.raises(AccountError, match="host"):
        accounts.update_modality("ws", "WS", "two words", 104)
    assert accounts.modality("ws") == changed  # a refused change changes nothing


def test_a_password_typed_twice_must_match():
    from pacsdash.access import confirmed_password

    assert confirmed_password("same", "same") == "same"
    with pytest.raises(AccountError, match="the passwords differ"):
        confirmed_password("one", "two")
