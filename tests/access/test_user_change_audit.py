"""Changes to users and peers leave ``user_change`` entries in the audit trail (the admin page's side)."""

from __future__ import annotations

import pytest

from pacsdash.access import AccountError, Accounts, changes
from pacsdash.archive import Archive, audit
from pacsdash.dashboard.admin_actions import AdminActions


@pytest.fixture
def archive(tmp_path):
    with Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb") as opened:
        yield opened


@pytest.fixture
def admin(tmp_path, archive):
    accounts = Accounts(tmp_path / "accounts.sqlite")
    accounts.add_user("root", "admin", "root-password")
    return AdminActions(accounts, still_admin=lambda: True, actor="root", archive=archive, address="10.0.0.7")


def entries(archive) -> list[tuple[str, str, str, dict]]:
    """(actor, address, outcome, details) of the user_change records, oldest first."""
    found = archive.records(action="user_change", limit=100)
    return [(r.actor, r.address, r.outcome, r.details) for r in reversed(found)]


def test_every_user_change_in_the_admin_page_is_recorded_with_the_admin(admin, archive):
    assert admin.add_user("tess", "viewer", "first-password", "first-password", "trial-7, teaching") \
        == "added user tess (viewer, only studies labelled trial-7, teaching)"
    admin.set_role("tess", "editor")
    assert admin.set_labels("tess", "trial-7") == "user tess now sees only studies labelled trial-7"
    admin.reset_password("tess", "second-password", "second-password")
    admin.remove_user("tess")
    got = entries(archive)
    assert [(actor, address, outcome) for actor, address, outcome, _ in got] == [("root", "10.0.0.7", "success")] * 5
    assert [details for *_, details in got] == [
        {"user": "tess", "change": "add", "role": "viewer", "labels": ["trial-7", "teaching"]},
        {"user": "tess", "change": "role", "role": "editor"},
        {"user": "tess", "change": "labels", "labels": ["trial-7"]},
        {"user": "tess", "change": "password"},
        {"user": "tess", "change": "remove"},
    ]
    record = archive.records(action="user_change", limit=1)[0]
    assert audit.entry(record)["action"] == "user_change" and audit.entry(record)["studies"] == []
    assert "password-" not in str([r.as_json() for r in archive.records(action="user_change")])


def test_a_refused_change_is_recorded_as_a_failure_with_the_reason(admin, archive):
    with pytest.raises(AccountError, match="last admin"):
        admin.remove_user("root")
    with pytest.raises(AccountError, match="label of 1 to 64"):
        admin.add_user("tess", "viewer", "first-password", "first-password", "not a label")
    (_, _, outcome, details), (_, _, outcome2, details2) = entries(archive)
    assert outcome == "failure" and details["change"] == "remove" and "last admin" in details["error"]
    assert outcome2 == "failure" and details2["labels"] == "not a label"


def test_peer_changes_are_recorded(admin, archive):
    assert "only studies labelled trial-7" in admin.add_peer("ct", "CT_TRIAL", "127.0.0.1", 104, ["store"], "trial-7")
    admin.edit_peer("ct", "CT_TRIAL", "127.0.0.2", 105, ["store", "find"], "")
    admin.remove_peer("ct")
    assert [details for *_, details in entries(archive)] == [
        {"user": "ct", "change": "peer_add", "aet": "CT_TRIAL", "host": "127.0.0.1", "port": 104,
         "allow": ["store"], "labels": ["trial-7"]},
        {"user": "ct", "change": "peer_edit", "aet": "CT_TRIAL", "host": "127.0.0.2", "port": 105,
         "allow": ["store", "find"], "labels": []},
        {"user": "ct", "change": "peer_remove"},
    ]
    assert admin.accounts.modality("ct") is None


def test_the_command_lines_entries_are_checked_before_they_are_recorded():
    record = changes.user_change("cli:ann", "tess", "labels", labels=["trial-7"])
    assert changes.from_json(changes.as_json(record), "127.0.0.1") == \
        changes.user_change("cli:ann", "tess", "labels", address="127.0.0.1", labels=["trial-7"])
    body = changes.as_json(record)
    for bad, message in [({**body, "actor": "root"}, "command line's"),
                         ({**body, "change": "drop-table"}, "change must be one of"),
                         ({**body, "details": {"password": "secret-value"}}, "unknown detail"),
                         ({**body, "ok": "yes"}, "true or false"),
                         ([], "the body must be")]:
        with pytest.raises(changes.BadChange, match=message):
            changes.from_json(bad)


def test_the_admin_pages_forms_carry_labels(admin, archive):
    from pacsdash.dashboard.admin_views import PeersView, UsersView

    users = UsersView(admin)
    users.new_name.value, users.new_role.value = "tess", "viewer"
    users.new_password.value = users.new_again.value = "first-password"
    users.new_labels.value = "trial-7, teaching"
    users._add(None)
    assert admin.accounts.user("tess").labels == ("trial-7", "teaching"), users.notice.object
    assert list(users.table.value["Labels"]) == ["", "trial-7, teaching"]
    users.table.selection = [1]  # tess
    assert users.labels.value == "trial-7, teaching" and not users.labels_button.disabled
    users.labels.value = "teaching"
    users._set_labels(None)
    assert admin.accounts.user("tess").labels == ("teaching",)
    peers = PeersView(admin)
    peers.peer_name.value, peers.aet.value, peers.host.value, peers.port.value = "ct", "CT", "127.0.0.1", 104
    peers.labels.value = "trial-7"
    peers._change(admin.add_peer)
    assert admin.accounts.modality("ct").labels == ("trial-7",)
    peers.table.selection = [0]
    assert peers.labels.value == "trial-7"
    peers.labels.value = ""
    peers._change(admin.edit_peer)
    assert admin.accounts.modality("ct").labels == ()
    assert [d["change"] for *_, d in entries(archive)] == ["add", "labels", "peer_add", "peer_edit"]
