"""Users with salted hashes and roles; peers registered without the config."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pacsdash.access import MIN_PASSWORD_LENGTH, AccountError, Accounts, Action, Role
from pacsdash.access.passwords import hash_password
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
    accounts.add_user("alice", "editor", "s3cret-password")
    assert accounts.authenticate("alice", "s3cret-password").role is Role.EDITOR
    assert accounts.authenticate("alice", "S3cret-password") is None
    assert accounts.authenticate("nobody", "s3cret-password") is None
    accounts.set_password("alice", "new-password")
    assert accounts.authenticate("alice", "s3cret-password") is None
    assert accounts.authenticate("alice", "new-password") is not None


def test_passwords_have_a_minimum_length(accounts):
    assert MIN_PASSWORD_LENGTH == 10
    with pytest.raises(AccountError, match="the password must be at least 10 characters long"):
        accounts.add_user("carol", "viewer", "9-chars!!")
    assert accounts.users() == []  # nothing was added
    accounts.add_user("carol", "viewer", "10-chars!!")
    assert accounts.authenticate("carol", "10-chars!!") is not None
    with pytest.raises(AccountError, match="the password must be at least 10 characters long"):
        accounts.set_password("carol", "9-chars!!")
    assert accounts.authenticate("carol", "10-chars!!") is not None  # a refused change changes nothing
    assert accounts.authenticate("carol", "9-chars!!") is None
    accounts.set_password("carol", "other-10ch")
    assert accounts.authenticate("carol", "other-10ch") is not None


def test_a_short_password_set_before_the_rule_still_logs_in(accounts, tmp_path):
    """The rule applies when a password is set, not when it is checked."""
    accounts.add_user("old", "viewer", "a-long-password")
    with sqlite3.connect(tmp_path / "accounts.sqlite") as con:  # as an older pacsdash stored it
        con.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hash_password("pw"), "old"))
    again = Accounts(tmp_path / "accounts.sqlite")
    assert again.authenticate("old", "pw").name == "old"
    assert again.authenticate("old", "a-long-password") is None
    with pytest.raises(AccountError, match="at least 10 characters"):
        again.set_password("old", "pw2")  # but a new short one is refused


def test_user_errors_are_clear(accounts):
    accounts.add_user("alice", "viewer", "x-password")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user("alice", "viewer", "x-password")
    with pytest.raises(AccountError, match="no user named"):
        accounts.remove_user("bob")
    with pytest.raises(AccountError, match="at least 10 characters"):
        accounts.add_user("carol", "viewer", "")
    with pytest.raises(AccountError, match="user name"):
        accounts.add_user("../etc", "viewer", "x-password")
    with pytest.raises(ValueError, match="role must be one of"):
        accounts.add_user("dave", "root", "x-password")


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
    accounts.add_user("root", "admin", "x-password")
    accounts.add_user("bob", "viewer", "x-password")
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
    first.add_user("a", "admin", "x-password")
    first.add_user("b", "admin", "x-password")
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


def _open_accounts_when_told(path: str, go, errors) -> None:
    go.wait()
    try:
        Accounts(Path(path))
    except Exception as error:  # reported to the test, which names it
        errors.put(f"{type(error).__name__}: {error}")


def test_processes_opening_a_new_accounts_file_at_once_all_succeed(tmp_path):
    """The DICOM worker processes open the accounts file as they start; a
    worker must never die of "database is locked" because a sibling was
    switching the file to WAL or creating its tables at the same moment."""
    context = multiprocessing.get_context("fork")
    for attempt in range(40):
        path = tmp_path / f"try{attempt}" / "accounts.sqlite"
        go, errors = context.Event(), context.Queue()
        processes = [context.Process(target=_open_accounts_when_told, args=(str(path), go, errors)) for _ in range(6)]
        for process in processes:
            process.start()
        go.set()
        for process in processes:
            process.join(60)
        failures = [errors.get(timeout=5) for _ in range(errors.qsize())] if not errors.empty() else []
        assert failures == [], f"attempt {attempt}: {failures}"
        assert [process.exitcode for process in processes] == [0] * 6
        assert Accounts(path).users() == []
