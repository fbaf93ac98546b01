"""The command line of access by study (issue 15): --labels on users and peers,
``pacsdash labels add|remove|list``, and the audit entries of user changes."""

from __future__ import annotations

import pytest
import requests

from pacsdash.access import Accounts
from pacsdash.archive import Archive
from pacsdash.runtime import running_server
from tests.helpers import SAMPLES, ServerProcess, manifest, run_cli

SAMPLE = SAMPLES / "valid" / "CT_small.dcm"
STUDY = manifest()["CT_small.dcm"]["study_instance_uid"]
PASSWORD = "a-long-password\n"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def imported(home):
    """A home holding one study, imported from the sample corpus."""
    done = run_cli("import", str(SAMPLE), "--home", str(home))
    assert done.returncode == 0, done.stderr
    return home


def cli(home, *args: str, input: str | None = None):
    return run_cli(*args, "--home", str(home), input=input)


def user_changes(home) -> list[tuple[str, str, dict]]:
    """(actor, outcome, details) of the home's user_change entries, oldest first (no server running)."""
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        found = archive.records(action="user_change", limit=1000)
    return [(r.actor, r.outcome, r.details) for r in reversed(found)]


def test_users_get_labels_when_added_and_later_and_list_shows_them(home):
    added = cli(home, "users", "add", "tess", "--role", "viewer", "--labels", "trial-7,teaching", "--password-stdin",
                input=PASSWORD)
    assert added.returncode == 0, added.stderr
    assert "added tess (viewer, only studies labelled trial-7, teaching)" in added.stdout
    assert cli(home, "users", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD).returncode == 0
    assert cli(home, "users", "list").stdout.splitlines() == ["root\tadmin\tall studies",
                                                              "tess\tviewer\ttrial-7,teaching"]
    assert Accounts(home / "accounts.sqlite").user("tess").labels == ("trial-7", "teaching")
    relabel = cli(home, "users", "labels", "tess", "teaching")
    assert relabel.returncode == 0 and "tess now sees only studies labelled teaching" in relabel.stdout
    lift = cli(home, "users", "labels", "tess", "")
    assert lift.returncode == 0 and "tess now sees every study" in lift.stdout
    assert "tess\tviewer\tall studies" in cli(home, "users", "list").stdout


def test_bad_labels_or_users_exit_1_and_change_nothing(home):
    bad = cli(home, "users", "add", "tess", "--role", "viewer", "--labels", "trial 7", "--password-stdin",
              input=PASSWORD)
    assert bad.returncode == 1 and "label of 1 to 64 letters" in bad.stderr and "'trial 7'" in bad.stderr
    assert cli(home, "users", "list").stdout == ""
    nobody = cli(home, "users", "labels", "nobody", "trial-7")
    assert nobody.returncode == 1 and "no user named 'nobody'" in nobody.stderr
    peer = cli(home, "modalities", "add", "ct", "--aet", "CT", "--host", "127.0.0.1", "--port", "104",
               "--labels", "trial-7,/etc")
    assert peer.returncode == 1 and "'/etc'" in peer.stderr
    assert cli(home, "modalities", "list").stdout == ""


def test_peers_get_labels_and_list_shows_them(home):
    added = cli(home, "modalities", "add", "ct", "--aet", "CT_TRIAL", "--host", "127.0.0.1", "--port", "104",
                "--allow", "store", "--labels", "trial-7")
    assert added.returncode == 0, added.stderr
    assert "only studies labelled trial-7" in added.stdout
    assert cli(home, "modalities", "add", "ws", "--aet", "WS", "--host", "127.0.0.1", "--port", "105").returncode == 0
    assert cli(home, "modalities", "list").stdout.splitlines() == [
        "ct\tCT_TRIAL\t127.0.0.1\t104\tstore\ttrial-7",
        "ws\tWS\t127.0.0.1\t105\tstore,find,move,get\tall studies",
    ]
    assert cli(home, "modalities", "labels", "ws", "teaching,trial-7").returncode == 0
    assert Accounts(home / "accounts.sqlite").modality("ws").labels == ("teaching", "trial-7")


def test_every_user_and_peer_change_is_in_the_audit_trail_without_passwords(home):
    steps = [
        (("users", "add", "root", "--role", "admin", "--password-stdin"), PASSWORD),
        (("users", "add", "tess", "--role", "viewer", "--labels", "trial-7", "--password-stdin"), PASSWORD),
        (("users", "passwd", "tess", "--password-stdin"), "another-password\n"),
        (("users", "labels", "tess", ""), None),
        (("users", "remove", "tess"), None),
        (("users", "remove", "root"), None),  # the last admin: refused, and recorded as refused
        (("modalities", "add", "ct", "--aet", "CT", "--host", "127.0.0.1", "--port", "104", "--allow", "store",
          "--labels", "trial-7"), None),
        (("modalities", "labels", "ct", "teaching"), None),
        (("modalities", "remove", "ct"), None),
    ]
    for args, stdin in steps:
        cli(home, *args, input=stdin)
    got = user_changes(home)
    assert all(actor.startswith("cli:") for actor, _, _ in got)
    assert [(outcome, details["user"], details["change"]) for _, outcome, details in got] == [
        ("success", "root", "add"), ("success", "tess", "add"), ("success", "tess", "password"),
        ("success", "tess", "labels"), ("success", "tess", "remove"), ("failure", "root", "remove"),
        ("success", "ct", "peer_add"), ("success", "ct", "peer_edit"), ("success", "ct", "peer_remove"),
    ]
    assert got[1][2]["labels"] == ["trial-7"] and got[1][2]["role"] == "viewer"
    assert got[3][2]["labels"] == []
    assert "last admin" in got[5][2]["error"]
    assert got[6][2] == {"user": "ct", "change": "peer_add", "aet": "CT", "host": "127.0.0.1", "port": 104,
                         "allow": ["store"], "labels": ["trial-7"]}
    assert "password" not in str([details for *_, details in got]).replace("'password'", "")
    listed = cli(home, "audit", "--action", "user_change")
    assert listed.returncode == 0 and "9 entries" in listed.stdout


def test_labels_add_remove_list_offline(imported):
    home = imported
    added = cli(home, "labels", "add", STUDY, "trial-7")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added label trial-7 to study {STUDY}"
    again = cli(home, "labels", "add", STUDY, "trial-7")
    assert again.returncode == 0 and "already had label trial-7: nothing changed" in again.stdout
    assert cli(home, "labels", "add", STUDY, "teaching").returncode == 0
    assert sorted(cli(home, "labels", "list", STUDY).stdout.split()) == ["teaching", "trial-7"]
    removed = cli(home, "labels", "remove", STUDY, "teaching")
    assert removed.returncode == 0 and f"removed label teaching from study {STUDY}" in removed.stdout
    assert cli(home, "labels", "list", STUDY).stdout.split() == ["trial-7"]
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.labels_of(STUDY) == ["trial-7"]
        changes = [r.details for r in archive.records(action="label_change", limit=10)]
    assert {"label": "teaching", "change": "remove"}.items() <= changes[0].items()


def test_labels_refuse_an_unknown_study_or_a_bad_label(imported):
    unknown = cli(imported, "labels", "add", "1.2.3.4", "trial-7")
    assert unknown.returncode == 1 and "1.2.3.4" in unknown.stderr and "no such study" in unknown.stderr
    bad = cli(imported, "labels", "add", STUDY, "trial 7")
    assert bad.returncode == 1 and "'trial 7'" in bad.stderr
    assert cli(imported, "labels", "list", STUDY).stdout == ""


def refused_route(home) -> None:
    """``POST /api/local/audit`` takes only the command line's token, and only its own entries."""
    from pacsdash.cli import _local_api

    server = running_server(home / "run")
    body = {"actor": "cli:x", "user": "tess", "change": "labels", "ok": True, "details": {}}
    url = f"{server.base_url}/api/local/audit"
    basic = requests.post(url, json=body, auth=("root", PASSWORD.strip()), timeout=30)
    assert basic.status_code == 401, basic.text  # an admin's credentials are not the local token
    assert requests.post(url, json=body, timeout=30).status_code == 401
    for bad, message in [({**body, "actor": "root"}, "command line's"), ({**body, "details": {"password": "x"}},
                                                                          "unknown detail")]:
        with pytest.raises(RuntimeError, match=message):
            _local_api(server, "POST", "/api/local/audit", bad)


def test_with_a_server_running_user_changes_reach_its_audit_trail(imported):
    home = imported
    assert cli(home, "users", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD).returncode == 0
    server = ServerProcess.start(home)
    try:
        added = cli(home, "users", "add", "tess", "--role", "viewer", "--labels", "trial-7", "--password-stdin",
                    input=PASSWORD)
        assert added.returncode == 0, added.stderr
        assert cli(home, "modalities", "add", "ct", "--aet", "CT", "--host", "127.0.0.1", "--port", "104",
                   "--labels", "trial-7").returncode == 0
        refused_route(home)
        listed = cli(home, "audit", "--action", "user_change", "--csv")  # read through the server
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 1 + 3  # header, root (offline), tess and ct (through the server)
    finally:
        assert server.stop() == 0
    got = user_changes(home)
    assert [(d["user"], d["change"]) for *_, d in got] == [("root", "add"), ("tess", "add"), ("ct", "peer_add")]
    assert got[1][2]["labels"] == ["trial-7"]


def test_with_a_server_running_labels_go_through_its_api(imported):
    home = imported
    server = ServerProcess.start(home)
    try:
        label = cli(home, "labels", "add", STUDY, "trial-7")
        assert label.returncode == 0, label.stderr
        assert label.stdout.strip() == f"added label trial-7 to study {STUDY}"
        again = cli(home, "labels", "add", STUDY, "trial-7")
        assert again.returncode == 0 and "already had label trial-7: nothing changed" in again.stdout
        assert cli(home, "labels", "list", STUDY).stdout.split() == ["trial-7"]
        gone = cli(home, "labels", "remove", STUDY, "nope")
        assert gone.returncode == 0 and "had no label nope: nothing changed" in gone.stdout
        unknown = cli(home, "labels", "remove", "1.2.3.4", "trial-7")
        assert unknown.returncode == 1 and "1.2.3.4" in unknown.stderr
    finally:
        assert server.stop() == 0
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        assert archive.labels_of(STUDY) == ["trial-7"]
