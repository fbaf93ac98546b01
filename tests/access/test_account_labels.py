"""Users and peers restricted to study labels (issue 15, access by study)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pacsdash.access import AccountError, Accounts, Role, User
from pacsdash.config import ModalitySettings

#: The accounts file as pacsdash wrote it before labels (and before session stamps).
OLD_SCHEMA = """
CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
                    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE modalities (name TEXT PRIMARY KEY, aet TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
                         allow TEXT NOT NULL);
"""


@pytest.fixture
def accounts(tmp_path):
    return Accounts(tmp_path / "accounts.sqlite")


def test_a_users_labels_are_stored_and_returned_everywhere(accounts, tmp_path):
    user = accounts.add_user("tess", "viewer", "a-long-password", labels="trial-7, teaching,trial-7")
    assert user == User("tess", Role.VIEWER, ("trial-7", "teaching"))  # checked, stripped, no repeats
    accounts.add_user("alice", "admin", "a-long-password")
    again = Accounts(tmp_path / "accounts.sqlite")  # another process: the server, the CLI
    assert again.users() == [User("alice", Role.ADMIN, ()), User("tess", Role.VIEWER, ("trial-7", "teaching"))]
    assert again.user("tess").labels == ("trial-7", "teaching")
    assert again.user("nobody") is None
    assert again.authenticate("tess", "a-long-password").labels == ("trial-7", "teaching")
    assert again.authenticate("alice", "a-long-password").labels == ()


def test_set_labels_changes_and_lifts_them(accounts):
    accounts.add_user("tess", "viewer", "a-long-password")
    assert accounts.set_labels("tess", ["trial-7"]) is True
    assert accounts.user("tess").labels == ("trial-7",)
    assert accounts.set_labels("tess", "trial-7") is False  # the same: nothing changed
    assert accounts.set_labels("tess", "") is True  # lifted: every study again
    assert accounts.user("tess").labels == ()
    with pytest.raises(AccountError, match="no user named 'nobody'"):
        accounts.set_labels("nobody", "trial-7")


@pytest.mark.parametrize("bad", ["with space", "-leading-dash", "semi;colon", "x" * 65, ["ok", "not/ok"]])
def test_invalid_labels_are_refused_and_nothing_is_stored(accounts, bad):
    with pytest.raises(AccountError, match="label of 1 to 64 letters"):
        accounts.add_user("tess", "viewer", "a-long-password", labels=bad)
    assert accounts.users() == []
    accounts.add_user("tess", "viewer", "a-long-password", labels="trial-7")
    with pytest.raises(AccountError, match="label of 1 to 64"):
        accounts.set_labels("tess", bad)
    assert accounts.user("tess").labels == ("trial-7",)
    with pytest.raises(AccountError, match="label of 1 to 64"):
        accounts.add_modality("ct", "CT", "127.0.0.1", 104, labels=bad)
    assert accounts.modalities() == []


def test_changing_labels_ends_the_users_sessions(accounts):
    accounts.add_user("tess", "viewer", "a-long-password")
    before = accounts.session_stamp("tess")
    accounts.set_labels("tess", "trial-7")
    after = accounts.session_stamp("tess")
    assert after and after != before
    accounts.set_labels("tess", "trial-7")  # unchanged labels keep the sessions
    assert accounts.session_stamp("tess") == after
    accounts.set_labels("tess", "")
    assert accounts.session_stamp("tess") != after


def test_a_peers_labels_are_stored_changed_and_returned(accounts, tmp_path):
    peer = accounts.add_modality("ct", "CT_TRIAL", "127.0.0.1", 104, "store,find", labels=["trial-7"])
    assert peer.labels == ("trial-7",)
    accounts.add_modality("open", "OPEN", "127.0.0.1", 105)
    again = Accounts(tmp_path / "accounts.sqlite")
    assert again.modality("ct") == ModalitySettings("ct", "CT_TRIAL", "127.0.0.1", 104, ("store", "find"),
                                                    ("trial-7",))
    assert again.modality_by_aet("OPEN").labels == ()
    # an edit without labels keeps them; with labels replaces them
    assert again.update_modality("ct", "CT_TRIAL", "127.0.0.2", 104, "store").labels == ("trial-7",)
    assert again.update_modality("ct", "CT_TRIAL", "127.0.0.2", 104, "store", labels="a,b").labels == ("a", "b")
    assert accounts.modality("ct").labels == ("a", "b")
    assert accounts.set_modality_labels("ct", "") is True
    assert accounts.modality("ct").labels == ()
    assert accounts.set_modality_labels("ct", "") is False
    with pytest.raises(AccountError, match="no modality named 'gone'"):
        accounts.set_modality_labels("gone", "a")


def test_config_file_peers_keep_their_labels_and_cannot_be_relabelled_here(tmp_path):
    configured = (ModalitySettings("toml", "TOML", "127.0.0.1", 104, ("find",), ("trial-7",)),)
    accounts = Accounts(tmp_path / "accounts.sqlite", configured)
    assert accounts.modality("toml").labels == ("trial-7",)
    with pytest.raises(AccountError, match="pacsdash.toml"):
        accounts.set_modality_labels("toml", "other")


def _old_accounts_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.executescript(OLD_SCHEMA)
        con.execute("INSERT INTO users (name, role, password_hash) VALUES ('old', 'viewer', 'scrypt$x')")
        con.execute("INSERT INTO modalities VALUES ('ct', 'CT', '127.0.0.1', 104, 'store,find')")
    con.close()


def test_an_accounts_file_from_before_labels_gets_the_columns(tmp_path):
    path = tmp_path / "accounts.sqlite"
    _old_accounts_file(path)
    accounts = Accounts(path)
    assert accounts.users() == [User("old", Role.VIEWER, ())]  # no labels: every study, as before
    assert accounts.modality("ct").labels == ()
    assert accounts.set_labels("old", "trial-7") is True
    assert accounts.update_modality("ct", "CT", "127.0.0.1", 104, "store", labels="trial-7").labels == ("trial-7",)
    assert Accounts(path).user("old").labels == ("trial-7",)  # opened again: nothing added twice
    with sqlite3.connect(path) as con:
        columns = {table: [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
                   for table in ("users", "modalities")}
    con.close()
    assert columns["users"].count("labels") == 1 and columns["modalities"].count("labels") == 1


def _open_accounts_when_told(path: str, go, errors) -> None:
    go.wait()
    try:
        Accounts(Path(path)).users()
    except Exception as error:  # reported to the test, which names it
        errors.put(f"{type(error).__name__}: {error}")


def test_processes_opening_an_old_accounts_file_at_once_all_succeed(tmp_path):
    """The DICOM workers open the accounts file together as the server starts:
    each must find or add the new columns, none die of a duplicate column."""
    context = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = tmp_path / f"try{attempt}" / "accounts.sqlite"
        _old_accounts_file(path)
        go, errors = context.Event(), context.Queue()
        processes = [context.Process(target=_open_accounts_when_told, args=(str(path), go, errors)) for _ in range(4)]
        for process in processes:
            process.start()
        go.set()
        for process in processes:
            process.join(60)
        failures = [errors.get(timeout=5) for _ in range(errors.qsize())] if not errors.empty() else []
        assert failures == [], f"attempt {attempt}: {failures}"
        assert [process.exitcode for process in processes] == [0] * 4
        assert Accounts(path).user("old").labels == ()


def test_the_names_the_server_gives_non_users_cannot_be_taken(tmp_path):
    from pacsdash.access import AccountError, Accounts

    accounts = Accounts(tmp_path / "accounts.sqlite")
    for name in ("local-cli", "anonymous", "Local-CLI"):
        with pytest.raises(AccountError, match="reserved"):
            accounts.add_user(name, "viewer", "long-enough-password")
    assert accounts.users() == []
