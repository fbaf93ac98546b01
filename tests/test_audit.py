"""The audit trail (issue 15): logins and failed logins, anonymizations and
the other actions on studies, with who, from where, when and the outcome;
``GET /api/audit`` (admin) with its filters and CSV, and ``pacsdash audit``
through the running server and offline."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest
import requests
from pydicom import dcmread

from tests.helpers import VALID, ServerProcess, run_cli

USERS = {"ada": ("admin", "ada-password-1"), "eve": ("editor", "eve-password-1"), "vic": ("viewer", "vic-password-1")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("audit") / "home"
    for name, (role, password) in USERS.items():
        assert run_cli("users", "add", name, "--role", role, "--password-stdin", "--home", str(home),
                       input=password + "\n").returncode == 0
    assert run_cli("import", str(VALID[1]), "--home", str(home)).returncode == 0
    running = ServerProcess.start(home)
    yield running
    running.stop()


def _base(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def _audit(server, as_user: str = "ada", **params) -> requests.Response:
    return requests.get(f"{_base(server)}/api/audit", params=params, auth=(as_user, USERS[as_user][1]), timeout=30)


def _entries(server, **params) -> list[dict]:
    for _ in range(50):  # written in the background: wait a little for them
        answer = _audit(server, **params)
        assert answer.status_code == 200, answer.text
        entries = answer.json()["entries"]
        if entries:
            return entries
        time.sleep(0.1)
    return []


def test_logins_failed_logins_and_actions_are_in_the_trail(server):
    base = _base(server)
    ok = requests.post(f"{base}/login", data={"username": "vic", "password": USERS["vic"][1]},
                       allow_redirects=False, timeout=30)
    assert ok.status_code == 302
    bad = requests.post(f"{base}/login", data={"username": "vic", "password": "not-it"}, allow_redirects=False,
                        timeout=30)
    assert bad.status_code == 302 and "error" in bad.headers["Location"]
    assert requests.get(f"{base}/dicom-web/studies", auth=("eve", "wrong-password"), timeout=30).status_code == 401
    study = str(dcmread(VALID[1], stop_before_pixels=True).StudyInstanceUID)
    anonymized = requests.post(f"{base}/api/studies/{study}/anonymize", json={}, auth=("eve", USERS["eve"][1]),
                               timeout=120)
    assert anonymized.status_code == 200, anonymized.text

    logins = _entries(server, action="login", user="vic")
    assert {(e["outcome"], e["address"]) for e in logins} >= {("success", "127.0.0.1"), ("failure", "127.0.0.1")}
    failed = _entries(server, action="login", user="eve")
    assert [e["outcome"] for e in failed] == ["failure"]  # the Basic credentials that were wrong
    [done] = _entries(server, action="anonymize")
    assert done["user"] == "eve" and done["outcome"] == "success" and done["studies"] == [study]
    when = dt.datetime.fromisoformat(done["time"])
    assert when.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 600
    assert set(done) == {"time", "user", "address", "action", "outcome", "studies"}


def test_filters_csv_and_who_may_read_it(server):
    assert _entries(server, action="login")  # something to filter
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    assert _audit(server, since=future).json() == {"entries": []}
    assert _audit(server, action="login", limit=1).json()["entries"].__len__() == 1
    table = _audit(server, format="csv")
    assert table.status_code == 200 and table.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert rows and set(rows[0]) == {"time", "user", "address", "action", "outcome", "studies"}
    assert _audit(server, "vic").status_code == 403
    assert _audit(server, "eve").status_code == 403
    assert requests.get(f"{_base(server)}/api/audit", timeout=30).status_code == 401
    for bad in ({"action": "dance"}, {"since": "yesterday"}, {"limit": "0"}, {"format": "xml"}):
        assert _audit(server, **bad).status_code == 400, bad


def test_the_command_line_reads_it_through_the_server_and_offline(server, tmp_path):
    assert _entries(server, action="login")
    listed = run_cli("audit", "--action", "login", "--csv", "--home", str(server.home))
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert rows and all(r["action"] == "login" for r in rows)
    assert run_cli("audit", "--action", "dance", "--home", str(server.home)).returncode == 1
    server.stop()
    offline = run_cli("audit", "--user", "eve", "--home", str(server.home))
    assert offline.returncode == 0, offline.stderr
    assert "anonymize" in offline.stdout and "entries" in offline.stdout.splitlines()[-1]


def test_a_refused_peer_is_in_the_trail_once_a_minute(tmp_path):
    import subprocess

    from tests.helpers import have_dcmtk

    if not have_dcmtk():
        pytest.skip("dcmtk is not installed (/usr/bin/findscu missing)")
    home = tmp_path / "home"
    assert run_cli("users", "add", "ada", "--role", "admin", "--password-stdin", "--home", str(home),
                   input=USERS["ada"][1] + "\n").returncode == 0
    running = ServerProcess.start(home, accept_unknown_store=False)
    try:
        for _ in range(3):  # a stranger asking to query: refused at association each time
            refused = subprocess.run(["/usr/bin/findscu", "-S", "-aet", "STRANGER", "-aec", "PACSDASH", "-k",
                                      "QueryRetrieveLevel=STUDY", "127.0.0.1", str(running.dicom_port)],
                                     capture_output=True, text=True, timeout=60)
            assert refused.returncode != 0
        assert _entries(running, action="peer_refused")
        time.sleep(1.5)  # every refusal has reached the server process by now
        entries = _audit(running, action="peer_refused").json()["entries"]
        assert len(entries) == 1, entries  # the same peer and reason: once a minute
        [entry] = entries
        assert entry["user"] == "STRANGER" and entry["address"] == "127.0.0.1" and entry["outcome"] == "failure"
    finally:
        running.stop()
