"""The admin page's logic without a browser: actions on accounts, the log reader, the settings shown."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import subprocess

import pytest

from pacsdash.access import AccountError, Accounts, Role
from pacsdash.archive.records import ActionRecord
from pacsdash.config import load_settings
from pacsdash.dashboard.admin_actions import AdminActions, Refused
from pacsdash.dashboard.admin_log import fold, filter_log, filter_records, parse_log, read_logs, since
from pacsdash.dashboard.admin_settings import HIDDEN, settings_rows, without_secret
from pacsdash.logs import configure_logging
from tests.helpers import free_port, have_dcmtk, wait_for_port, wait_until


@pytest.fixture
def admin(tmp_path):
    accounts = Accounts(tmp_path / "accounts.sqlite")
    accounts.add_user("root", "admin", "root-password")
    state = {"admin": True}
    actions = AdminActions(accounts, still_admin=lambda: state["admin"], actor="root", calling_aet="PACSDASH")
    return actions, state


def test_user_actions_change_the_accounts_file(admin, tmp_path, caplog):
    actions, _ = admin
    caplog.set_level(logging.INFO, "pacsdash.admin")
    assert actions.add_user(" carol ", "viewer", "password-one", "password-one") == "added user carol (viewer)"
    with pytest.raises(AccountError, match="differ"):
        actions.reset_password("carol", "password-two", "password-tw0")
    actions.reset_password("carol", "password-two", "password-two")
    actions.set_role("carol", "editor")
    again = Accounts(tmp_path / "accounts.sqlite")  # what another process (the CLI, the server) reads
    assert again.authenticate("carol", "password-two").role is Role.EDITOR
    with pytest.raises(AccountError, match="at least 10 characters"):  # the CLI's rule, from Accounts
        actions.add_user("dave", "viewer", "", "")
    with pytest.raises(AccountError, match="the password must be at least 10 characters long"):
        actions.add_user("dave", "viewer", "9-chars!!", "9-chars!!")
    with pytest.raises(AccountError, match="the password must be at least 10 characters long"):
        actions.reset_password("carol", "9-chars!!", "9-chars!!")
    assert again.authenticate("carol", "password-two") is not None  # unchanged
    assert "dave" not in [u.name for u in again.users()]
    with pytest.raises(AccountError, match="last admin"):
        actions.remove_user("root")
    actions.remove_user("carol")
    assert [u.name for u in again.users()] == ["root"]
    assert "removed user carol (by admin root, in the admin page)" in caplog.text


def test_every_action_asks_again_whether_the_user_is_admin(admin, tmp_path):
    actions, state = admin
    actions.add_user("carol", "viewer", "x-password", "x-password")
    actions.add_peer("ws", "WS", "127.0.0.1", 104, ["store"])
    state["admin"] = False  # demoted or removed since the page opened
    attempts = [
        lambda: actions.add_user("eve", "admin", "x-password", "x-password"),
        lambda: actions.set_role("carol", "admin"),
        lambda: actions.reset_password("carol", "y-password", "y-password"),
        lambda: actions.remove_user("carol"),
        lambda: actions.add_peer("ws2", "WS2", "127.0.0.1", 104, []),
        lambda: actions.edit_peer("ws", "EVIL", "127.0.0.1", 104, []),
        lambda: actions.remove_peer("ws"),
        lambda: actions.echo_peer("ws"),
    ]
    for attempt in attempts:
        with pytest.raises(Refused):
            attempt()
    accounts = Accounts(tmp_path / "accounts.sqlite")
    assert [(u.name, u.role) for u in accounts.users()] == [("carol", Role.VIEWER), ("root", Role.ADMIN)]
    assert accounts.authenticate("carol", "x-password") is not None
    assert [(m.name, m.aet) for m in accounts.modalities()] == [("ws", "WS")]


def test_peer_actions_and_a_real_echo(admin, tmp_path):
    if not have_dcmtk():
        pytest.skip("dcmtk is not installed")
    actions, _ = admin
    port = free_port()
    log = tmp_path / "storescp.log"
    with open(log, "wb") as out:
        scp = subprocess.Popen(["/usr/bin/storescp", "-v", "-aet", "PEER", "-od", str(tmp_path), str(port)],
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        actions.add_peer("peer", "PEER", "127.0.0.1", port, ["store", "find"])
        result = actions.echo_peer("peer")
        assert result.ok and "success (status 0x0000)" in result.message
        wait_until(lambda: "Received Echo Request" in log.read_text(errors="replace"), 10, what="storescp's log")
        actions.edit_peer("peer", "PEER", "127.0.0.1", free_port(), ["store"])
        failed = actions.echo_peer("peer")  # nothing listens on that port
        assert not failed.ok and "failed" in failed.message
    finally:
        scp.terminate()
        scp.wait(10)
    assert Accounts(tmp_path / "accounts.sqlite").modality("peer").allow == ("store",)
    actions.remove_peer("peer")
    with pytest.raises(AccountError, match="no modality named"):
        actions.echo_peer("peer")


LOG = """\
2026-12-03 10:00:00,000 INFO [pacsdash] pacsdash: started
2026-12-03 10:05:00,000 ERROR [dicom-worker-0] pacsdash.dimse.scp: C-STORE from <b>MÜLLER</b> failed
Traceback (most recent call last):
  File "x.py", line 1, in <module>
ValueError: boom
2026-12-03 11:00:00,000 WARNING [pacsdash] pacsdash.web: slow request
"""


def test_log_lines_become_entries():
    entries = parse_log(LOG.splitlines())
    assert [e.level for e in entries] == ["INFO", "ERROR", "WARNING"]
    assert entries[1].process == "dicom-worker-0" and entries[1].message.endswith("ValueError: boom")
    errors = filter_log(entries, level="ERROR")
    assert list(errors["Level"]) == ["ERROR"]
    assert list(filter_log(entries, level="DEBUG")["Level"]) == ["WARNING", "ERROR", "INFO"]  # newest first
    assert list(filter_log(entries, text="muller")["Level"]) == ["ERROR"]  # any case, no accents
    assert list(filter_log(entries, text="BOOM")["Level"]) == ["ERROR"]
    start = entries[1].time + dt.timedelta(minutes=1)
    assert list(filter_log(entries, level="DEBUG", start=start)["Level"]) == ["WARNING"]
    assert fold("Müller") == "muller"


def test_the_servers_own_log_files_are_read(tmp_path):
    folder = tmp_path / "logs"
    root = logging.getLogger()
    kept, level = root.handlers[:], root.level
    configure_logging(folder, "pacsdash")
    try:
        logging.getLogger("pacsdash.test").warning("a peer called <i>X</i>")
        try:
            raise RuntimeError("inside")
        except RuntimeError:
            logging.getLogger("pacsdash.test").exception("it broke")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = kept, level  # pytest's own handlers back
    (folder / "dicom-worker-0.log").write_text("2026-01-01 00:00:00,000 INFO [dicom-worker-0] w: old\n")
    entries = read_logs(folder)
    assert entries[0].message == "old"  # oldest first, across files
    shown = filter_log(entries, level="WARNING", start=since("last hour"))
    assert list(shown["Message"])[1] == "a peer called <i>X</i>"
    assert "RuntimeError: inside" in list(shown["Message"])[0]


def test_action_records_are_filtered():
    now = dt.datetime.now(dt.timezone.utc)
    records = [
        ActionRecord("user:alice", "export", ["1.2.3"], time=now, id=2),
        ActionRecord("cli:bob", "anonymize", ["1.2.4"], time=now - dt.timedelta(days=3), id=1,
                     details={"profile": "basic"}),
    ]
    assert list(filter_records(records)["User"]) == ["user:alice", "cli:bob"]
    assert list(filter_records(records, user="ALICE")["Action"]) == ["export"]
    assert list(filter_records(records, action="anonymize")["Studies"]) == ["1.2.4"]
    assert list(filter_records(records, text="basic")["User"]) == ["cli:bob"]
    assert list(filter_records(records, start=since("last 24 hours"))["User"]) == ["user:alice"]


def test_settings_shown_without_secrets(tmp_path):
    (tmp_path / "pacsdash.toml").write_text('[server]\naet = "MINE"\n[modalities.ws]\naet = "WS"\nhost = "h"\nport = 1\n')
    settings = load_settings(tmp_path)
    rows = {(section, key): value for section, key, value in settings_rows(settings, dicom_port=4321)}
    assert rows[("[server]", "aet")] == "MINE" and rows[("[auth]", "enabled")] == "true"
    assert rows[("listening", "dicom_port")] == "4321"
    assert rows[("[modalities.ws]", "aet, host, port, allow")] == "WS, h, 1, store,find,move,get"
    with_url = dataclasses.replace(settings, index=dataclasses.replace(settings.index, url="postgresql://pacs:s3cret@db:5432/pacs"))
    shown = dict(((s, k), v) for s, k, v in settings_rows(with_url))
    assert shown[("[index]", "url")] == f"postgresql://pacs:{HIDDEN}@db:5432/pacs"
    assert without_secret("tls_key", "/etc/key.pem") == HIDDEN
    assert without_secret("password", "") == ""
