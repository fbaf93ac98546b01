"""``pacsdash check [--repair]``, offline and through a running server, as a user runs it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from pacsdash.archive import Archive, Level
from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli

PASSWORDS = {"root": "root-password", "vera": "vera-password"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home holding three instances, imported by the command line."""
    home = tmp_path / "home"
    data = tmp_path / "data"
    data.mkdir()
    for number in range(3):
        (data / f"{number}.dcm").write_bytes(make_instance(InstanceNumber=number))
    result = run_cli("import", str(data), "--home", str(home))
    assert result.returncode == 0, result.stderr
    return home


def files_of(home: Path) -> dict[str, str]:
    with Archive.open_home(home / "store", home / "index.duckdb") as archive:
        return {loc.SOPInstanceUID: loc.file for loc in archive.locate(Level.IMAGE)}


def add_stray(home: Path) -> tuple[str, bytes]:
    """A complete instance copied into the store by hand, old enough not to be arriving."""
    raw = make_instance(InstanceNumber=99)
    key = "20200101/00/" + "ab" * 16 + ".dcm"
    path = home / "store" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    old = time.time() - 3600
    os.utime(path, (old, old))
    return key, raw


def test_check_offline_names_each_problem_exits_1_and_repairs(home):
    files = files_of(home)
    clean = run_cli("check", "--home", str(home))
    assert clean.returncode == 0, clean.stderr
    assert "checked 3 index rows and 3 files" in clean.stdout and "no problems" in clean.stdout

    (gone_sop, gone_key), (cut_sop, cut_key), _ = files.items()
    (home / "store" / gone_key).unlink()
    cut = home / "store" / cut_key
    cut.write_bytes(cut.read_bytes()[:-8])
    stray_key, _ = add_stray(home)

    found = run_cli("check", "--home", str(home))
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert any(line.startswith("missing file: ") and gone_sop in line and gone_key in line for line in lines)
    assert any(line.startswith("size mismatch: ") and cut_sop in line and cut_key in line for line in lines)
    assert any(line.startswith("orphan file: ") and stray_key in line for line in lines)
    assert "1 missing file" in lines[-1] and "1 size mismatch" in lines[-1] and "1 orphan file" in lines[-1]
    assert files_of(home) == files  # a check alone changes nothing

    repaired = run_cli("check", "--repair", "--home", str(home))
    assert repaired.returncode == 1  # problems were found, even though they are repaired now
    assert "repaired 3" in repaired.stdout.splitlines()[-1]
    assert (home / "quarantine" / cut_key).exists()
    after = files_of(home)
    assert gone_sop not in after and cut_sop not in after and stray_key in after.values()

    again = run_cli("check", "--json", "--home", str(home))
    assert again.returncode == 0, again.stdout
    report = json.loads(again.stdout)
    assert report["ok"] is True and report["problems"] == [] and report["rows"] == 2


def test_check_of_a_folder_without_archive_says_so(tmp_path):
    result = run_cli("check", "--home", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "no pacsdash archive" in result.stderr


@pytest.fixture
def server(home):
    for name, role in (("root", "admin"), ("vera", "viewer")):
        added = run_cli("users", "add", name, "--role", role, "--password-stdin", "--home", str(home),
                        input=PASSWORDS[name] + "\n")
        assert added.returncode == 0, added.stderr
    server = ServerProcess.start(home)
    yield server
    server.stop()


def test_check_goes_through_the_running_server(server, home):
    files = files_of_server(server)
    clean = run_cli("check", "--home", str(home))  # the server holds the home: this can only go through it
    assert clean.returncode == 0, clean.stderr + clean.stdout
    sop, key = next(iter(files.items()))
    (home / "store" / key).unlink()
    stray_key, _ = add_stray(home)

    found = run_cli("check", "--json", "--home", str(home))
    assert found.returncode == 1, found.stderr
    problems = {p["file"]: p for p in json.loads(found.stdout)["problems"]}
    assert problems[key]["kind"] == "missing file" and problems[key]["SOPInstanceUID"] == sop
    assert problems[stray_key]["kind"] == "orphan file"

    repaired = run_cli("check", "--repair", "--home", str(home))
    assert repaired.returncode == 1 and "repaired 2" in repaired.stdout
    after = files_of_server(server)
    assert sop not in after and stray_key in after.values()
    assert run_cli("check", "--home", str(home)).returncode == 0


def files_of_server(server) -> dict[str, str]:
    """SOP Instance UID -> store key, asked of the server's own index through QIDO (keys by file listing)."""
    base = f"http://127.0.0.1:{server.http_port}"
    found = requests.get(f"{base}/dicom-web/instances", auth=("root", PASSWORDS["root"]), timeout=30)
    found.raise_for_status()
    uids = {item["00080018"]["Value"][0] for item in found.json()} if found.content else set()
    keys = {p.relative_to(server.home / "store").as_posix(): p for p in (server.home / "store").rglob("*.dcm")}
    from pydicom import dcmread

    by_uid = {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): key for key, path in keys.items()}
    return {uid: by_uid.get(uid, "") for uid in uids}


def test_the_check_route_is_for_admins(server):
    base = f"http://127.0.0.1:{server.http_port}"
    assert requests.post(f"{base}/api/check", json={}, timeout=30).status_code == 401
    assert requests.post(f"{base}/api/check", json={}, auth=("vera", PASSWORDS["vera"]), timeout=30).status_code == 403
    bad = requests.post(f"{base}/api/check", json={"repair": "yes"}, auth=("root", PASSWORDS["root"]), timeout=30)
    assert bad.status_code == 400
    answer = requests.post(f"{base}/api/check", json={}, auth=("root", PASSWORDS["root"]), timeout=60)
    assert answer.status_code == 200 and answer.json()["ok"] is True and answer.json()["rows"] == 3
