"""The home and everything written in it are private to the user who runs
pacsdash (home 0700, files 0600): they hold health records."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.helpers import VALID, pacsdash_cmd, run_cli


def _loose(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) & 0o077


def test_a_new_home_and_its_files_are_private(tmp_path):
    home = tmp_path / "home"
    result = run_cli("import", *map(str, VALID[:3]), "--home", str(home))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".dcm" or "store" in p.parts]) >= 3  # the instances themselves
    loose = [str(p.relative_to(home)) for p in files if _loose(p)]
    assert not loose, f"readable by others: {loose}"
    assert not [str(p) for p in home.rglob("*") if p.is_dir() and _loose(p)]


def test_an_existing_world_readable_home_is_narrowed(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    result = run_cli("import", str(VALID[0]), "--home", str(home))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_the_umask_of_the_caller_does_not_matter(tmp_path):
    home = tmp_path / "home"
    subprocess.run(["sh", "-c", 'umask 000 && exec "$@"', "sh",
                    *pacsdash_cmd("import", str(VALID[0]), "--home", str(home))], check=True, capture_output=True)
    loose = [str(p) for p in home.rglob("*") if _loose(p)]
    assert not loose, loose
