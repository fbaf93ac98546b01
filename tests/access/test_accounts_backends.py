"""Users and peers on either backend: the home's SQLite file, or the PostgreSQL
database of a PostgreSQL index, shared by several servers (issue 16).

The account tests written for SQLite that take only an ``accounts`` are
imported here and run again on both backends (this module's ``accounts``
fixture); those that open the file a second time have their both-backend
version below, opening the same place again with ``open_again``.
"""

from __future__ import annotations

import threading
import time

import pytest

from pacsdash.access import AccountError, Accounts, Role, User, has_accounts, open_accounts
from pacsdash.config import ModalitySettings, load_settings
from tests.access.test_account_labels import (  # noqa: F401 - collected here, on both backends
    test_changing_labels_ends_the_users_sessions,
    test_invalid_labels_are_refused_and_nothing_is_stored,
    test_set_labels_changes_and_lifts_them,
)
from tests.access.test_accounts import (  # noqa: F401 - collected here, on both backends
    test_authenticate,
    test_passwords_have_a_minimum_length,
    test_the_last_admin_is_neither_removed_nor_demoted,
    test_user_errors_are_clear,
)
from tests.helpers import run_cli


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """Where the accounts are: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "accounts.sqlite"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def open_again(where):
    """Open the accounts at ``where`` (again: as another process or server would); closed after the test."""
    opened: list[Accounts] = []

    def open_(configured: tuple[ModalitySettings, ...] = ()) -> Accounts:
        opened.append(Accounts(where, configured))
        return opened[-1]

    yield open_
    for accounts in opened:
        accounts.close()


@pytest.fixture
def accounts(open_again):
    return open_again()


@pytest.fixture
def pg_url(postgres_server):
    return postgres_server.new_database()


def test_the_backend_is_the_one_asked_for(where, accounts):
    assert accounts.backend == ("sqlite" if accounts.path is not None else "postgresql")
    assert (accounts.path is None) == isinstance(where, str)


def test_a_users_labels_are_stored_and_returned_everywhere(accounts, open_again):
    user = accounts.add_user("tess", "viewer", "a-long-password", labels="trial-7, teaching,trial-7")
    assert user == User("tess", Role.VIEWER, ("trial-7", "teaching"))
    accounts.add_user("alice", "admin", "a-long-password")
    again = open_again()
    assert again.users() == [User("alice", Role.ADMIN, ()), User("tess", Role.VIEWER, ("trial-7", "teaching"))]
    assert again.user("tess").labels == ("trial-7", "teaching")
    assert again.user("nobody") is None
    assert again.authenticate("tess", "a-long-password").labels == ("trial-7", "teaching")
    assert again.authenticate("alice", "a-long-password").labels == ()


def test_session_stamps_change_with_every_credential_change(accounts):
    accounts.add_user("root", "admin", "a-long-password")
    accounts.add_user("bob", "viewer", "a-long-password")
    seen = [accounts.session_stamp("bob")]
    assert seen[0] and len(seen[0]) == 32 and seen[0] != accounts.session_stamp("root")
    for change in (lambda: accounts.set_password("bob", "another-password"),
                   lambda: accounts.set_role("bob", "editor"),
                   lambda: accounts.revoke_sessions("bob"),
                   lambda: (accounts.remove_user("bob"), accounts.add_user("bob", "viewer", "a-long-password"))):
        change()
        seen.append(accounts.session_stamp("bob"))
        assert seen[-1] not in seen[:-1]
    assert accounts.session_stamp("nobody") is None
    role, stored = accounts.credential_stamp("bob")
    assert role == "viewer" and stored.startswith("scrypt$") and "a-long-password" not in stored


def test_the_last_admin_holds_across_connections(open_again):
    """Two processes (or servers) each demoting one of two admins: one must fail."""
    first, second = open_again(), open_again()
    first.add_user("a", "admin", "x-password")
    first.add_user("b", "admin", "x-password")
    first.set_role("a", "viewer")
    with pytest.raises(AccountError, match="last admin"):
        second.set_role("b", "viewer")
    with pytest.raises(AccountError, match="last admin"):
        second.remove_user("b")
    assert [u.role for u in second.users()] == [Role.VIEWER, Role.ADMIN]


def test_modalities_and_the_config_files_peers(open_again):
    configured = (ModalitySettings("pacs", "OTHERPACS", "127.0.0.1", 104, ("find",), ("trial-7",)),)
    accounts = open_again(configured)
    accounts.add_modality("ws", "WS1", "127.0.0.1", 11112, "find,move")
    assert [m.name for m in accounts.modalities()] == ["pacs", "ws"]
    assert accounts.modality_by_aet("WS1").allow == ("find", "move")
    assert accounts.modality("pacs").labels == ("trial-7",)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_modality("ws", "WS9", "127.0.0.1", 11112)
    for refused in (lambda: accounts.remove_modality("pacs"), lambda: accounts.set_modality_labels("pacs", "x"),
                    lambda: accounts.update_modality("pacs", "X", "127.0.0.1", 104),
                    lambda: accounts.add_modality("pacs", "X", "127.0.0.1", 104)):
        with pytest.raises(AccountError, match="pacsdash.toml"):
            refused()
    with pytest.raises(AccountError, match="AE title"):
        accounts.add_modality("bad", "A" * 17, "127.0.0.1", 104)
    with pytest.raises(AccountError, match="--port"):
        accounts.add_modality("bad", "BAD", "127.0.0.1", 0)

    changed = accounts.update_modality("ws", " WS2 ", "10.0.0.5", 2104, ["store"], labels="a,b")
    assert changed == ModalitySettings("ws", "WS2", "10.0.0.5", 2104, ("store",), ("a", "b"))
    again = open_again(configured)
    assert again.modality("ws") == changed
    assert again.update_modality("ws", "WS2", "10.0.0.6", 2104, "store").labels == ("a", "b")  # kept
    assert again.set_modality_labels("ws", "") is True and again.set_modality_labels("ws", "") is False
    assert accounts.modality("ws").labels == ()
    with pytest.raises(AccountError, match="no modality named"):
        accounts.update_modality("nope", "X", "127.0.0.1", 104)
    again.remove_modality("ws")
    assert accounts.modality_by_aet("WS2") is None and [m.name for m in accounts.modalities()] == ["pacs"]
    with pytest.raises(AccountError, match="no modality named 'ws'"):
        accounts.remove_modality("ws")


# -- PostgreSQL: several servers sharing one database ------------------------------
def test_two_servers_see_each_others_changes_at_once(pg_url):
    first, second = Accounts(pg_url), Accounts(pg_url)
    try:
        first.add_user("root", "admin", "a-long-password")
        first.add_user("bob", "viewer", "a-long-password")
        assert second.authenticate("bob", "a-long-password") == User("bob", Role.VIEWER, ())
        session = second.session_stamp("bob")  # bob logged in on the second server
        first.set_password("bob", "another-password")  # and changed his password on the first
        assert second.session_stamp("bob") != session  # his session on the second ends
        assert second.authenticate("bob", "a-long-password") is None
        assert second.authenticate("bob", "another-password") is not None
        second.set_labels("bob", "trial-7")
        assert first.user("bob").labels == ("trial-7",)
        second.add_modality("ct", "CT1", "127.0.0.1", 104, "store")
        assert first.modality_by_aet("CT1").allow == ("store",)
        first.remove_modality("ct")
        assert second.modality("ct") is None
        second.remove_user("bob")
        assert first.authenticate("bob", "another-password") is None and first.session_stamp("bob") is None
    finally:
        first.close()
        second.close()


def test_the_last_admin_holds_while_another_server_is_demoting(pg_url, postgres_server):
    """Another server has demoted one of two admins and not yet committed: a
    demotion of the other waits for it, then sees one admin left and refuses.
    (A condition read under READ COMMITTED alone would see two admins, and
    both demotions would pass.)"""
    import psycopg

    from pacsdash.access.accounts import POSTGRES_LOCK

    accounts = Accounts(pg_url)
    try:
        accounts.add_user("a", "admin", "x-password")
        accounts.add_user("b", "admin", "x-password")
        outcome: list[object] = []
        with psycopg.connect(pg_url) as other:  # the other server, mid-change
            other.execute("SELECT pg_advisory_xact_lock(%s)", [POSTGRES_LOCK])
            other.execute("UPDATE pacsdash_users SET role = 'viewer' WHERE name = 'a'")

            def demote_b() -> None:
                try:
                    accounts.set_role("b", "viewer")
                    outcome.append("demoted")
                except AccountError as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=demote_b)
            thread.start()
            with psycopg.connect(pg_url, autocommit=True) as watch:  # until the demotion waits for the lock
                deadline = time.monotonic() + 30
                while not watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                        ).fetchone()[0]:
                    assert time.monotonic() < deadline, "the demotion never waited for the other server's change"
                    time.sleep(0.01)
            other.commit()
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], AccountError) and "last admin" in str(outcome[0])
        assert [(u.name, u.role) for u in accounts.users()] == [("a", Role.VIEWER), ("b", Role.ADMIN)]
    finally:
        accounts.close()


def test_servers_starting_at_once_all_open_the_accounts(pg_url):
    """The tables are made under an advisory lock: several servers (and their
    DICOM workers) opening a new database together all succeed."""
    go, errors, opened = threading.Barrier(6), [], []

    def open_() -> None:
        go.wait()
        try:
            opened.append(Accounts(pg_url))
        except Exception as error:  # reported to the test, which names it
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=open_) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == [] and len(opened) == 6
        opened[0].add_user("alice", "admin", "a-long-password")
        assert all(accounts.user("alice") is not None for accounts in opened)
    finally:
        for accounts in opened:
            accounts.close()


def test_postgresql_keeps_hashes_in_prefixed_tables(pg_url):
    import psycopg

    accounts = Accounts(pg_url)
    try:
        accounts.add_user("alice", "admin", "correct horse")
        accounts.add_user("bob", "viewer", "correct horse")
    finally:
        accounts.close()
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        hashes = [r[0] for r in conn.execute("SELECT password_hash FROM pacsdash_users")]
    assert {"pacsdash_users", "pacsdash_modalities"} <= tables and not {"users", "modalities"} & tables
    assert len(set(hashes)) == 2 and all(h.startswith("scrypt$") and "correct horse" not in h for h in hashes)


def test_an_unreachable_database_is_a_configuration_error(postgres_server, tmp_path):
    from pacsdash.config import ConfigError

    with pytest.raises(ConfigError, match="cannot reach the users and peers in postgresql://postgres@127.0.0.1.*"
                       "no_such_database.* does not exist"):
        Accounts(postgres_server.url("no_such_database"))


# -- a home's accounts ---------------------------------------------------------------
def _home(folder, url: str | None):
    folder.mkdir(parents=True, exist_ok=True)
    if url:
        (folder / "pacsdash.toml").write_text(f'[index]\nurl = "{url}"\n')
    return folder


def test_open_accounts_follows_the_index(tmp_path, pg_url):
    on_sqlite = load_settings(_home(tmp_path / "files", None))
    assert not has_accounts(on_sqlite)
    accounts = open_accounts(on_sqlite)
    assert accounts.backend == "sqlite" and accounts.path == on_sqlite.accounts_path and has_accounts(on_sqlite)
    accounts.close()
    on_postgresql = load_settings(_home(tmp_path / "pg", pg_url))
    assert has_accounts(on_postgresql)
    accounts = open_accounts(on_postgresql)
    try:
        assert accounts.backend == "postgresql" and accounts.path is None
    finally:
        accounts.close()
    assert not on_postgresql.accounts_path.exists()


def test_users_add_before_the_first_serve_is_seen_by_every_home_on_the_database(tmp_path, pg_url):
    """``users add`` on a home whose index is in PostgreSQL (before any
    ``serve``) makes the user every server on that database knows."""
    first, second = _home(tmp_path / "first", pg_url), _home(tmp_path / "second", pg_url)
    added = run_cli("users", "add", "alice", "--role", "admin", "--password-stdin", "--home", str(first),
                    input="password-1\n", timeout=300)
    assert added.returncode == 0, added.stderr
    assert "added alice (admin" in added.stdout
    assert not (first / "accounts.sqlite").exists()
    listed = run_cli("users", "list", "--home", str(second), timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\t")[:2] == ["alice", "admin"]
    peer = run_cli("modalities", "add", "ws", "--home", str(second), "--aet", "WS1", "--host", "127.0.0.1",
                   "--port", "11112", timeout=300)
    assert peer.returncode == 0, peer.stderr
    accounts = open_accounts(load_settings(first))
    try:
        assert accounts.authenticate("alice", "password-1").role is Role.ADMIN
        assert accounts.modality_by_aet("WS1").name == "ws"
    finally:
        accounts.close()


def test_a_server_on_postgresql_sees_users_changed_from_another_home(tmp_path, pg_url):
    """One server on a PostgreSQL home; the command line of another home on the
    same database adds a user (who logs in to the server at once) and changes
    their password (which ends the session the server gave them)."""
    import requests

    from tests.helpers import ServerProcess

    served, other = _home(tmp_path / "served", pg_url), _home(tmp_path / "other", pg_url)
    password = "a-long-password-1"
    added = run_cli("users", "add", "root", "--role", "admin", "--password-stdin", "--home", str(served),
                    input=password + "\n", timeout=300)
    assert added.returncode == 0, added.stderr
    server = ServerProcess.start(served, timeout=120)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        added = run_cli("users", "add", "ann", "--role", "viewer", "--password-stdin", "--home", str(other),
                        input=password + "\n", timeout=300)
        assert added.returncode == 0, added.stderr
        page = requests.post(f"{base}/login", data={"username": "ann", "password": password},
                             allow_redirects=False, timeout=30)
        assert page.status_code == 302, page.text[:200]
        cookies = dict(page.cookies)
        assert requests.get(f"{base}/api/studies", cookies=cookies, timeout=30).status_code == 200
        changed = run_cli("users", "passwd", "ann", "--password-stdin", "--home", str(other),
                          input="another-password\n", timeout=300)
        assert changed.returncode == 0, changed.stderr
        assert requests.get(f"{base}/api/studies", cookies=cookies, timeout=30).status_code == 401
        assert requests.get(f"{base}/api/studies", auth=("ann", "another-password"), timeout=30).status_code == 200
        assert requests.get(f"{base}/api/studies", auth=("ann", password), timeout=30).status_code == 401
    finally:
        server.stop()
    assert not (served / "accounts.sqlite").exists() and not (other / "accounts.sqlite").exists()


def test_a_homes_file_is_copied_into_postgresql_once(tmp_path, pg_url):
    """When a home moves to PostgreSQL (``pacsdash migrate``), its users keep
    their passwords and sessions there, and its peers follow; a name the
    database has already keeps the database's row."""
    from pacsdash.access import copy_accounts

    source = Accounts(tmp_path / "accounts.sqlite")
    source.add_user("root", "admin", "a-long-password")
    source.add_user("tess", "viewer", "a-long-password", labels="trial-7")
    source.add_modality("ct", "CT1", "127.0.0.1", 104, "store", labels="trial-7")
    target = Accounts(pg_url)
    try:
        target.add_user("tess", "editor", "another-password")
        assert copy_accounts(source, target) == (["root", "ct"], ["tess"])
        assert target.authenticate("root", "a-long-password").role is Role.ADMIN
        assert target.session_stamp("root") == source.session_stamp("root")  # a login goes on
        assert target.authenticate("tess", "another-password").role is Role.EDITOR  # kept
        assert target.modality("ct") == source.modality("ct")
        assert copy_accounts(source, target) == ([], ["root", "tess", "ct"])
    finally:
        source.close()
        target.close()
