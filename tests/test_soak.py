"""`make soak` in small: load, one kill -9, nothing acknowledged lost.

No timing is asserted (the machine may be busy): only that every
acknowledged instance comes back byte for byte after the kill, that the
server came back, and that the report holds every figure.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.soak import FIELDS, KINDS
from tests.helpers import ROOT


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_short_soak_with_a_kill_loses_nothing(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--minutes", "0.35", "--kills", "1",
                          "--json", str(out), "--tmp-dir", str(tmp_path / "tmp")],
                         cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert out.exists(), run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert not [f for f in FIELDS if f not in report]
    assert report["lost"] == 0, (report["lost_reasons"], report["lost_uids"])
    assert report["kills_survived"] == report["kills"] == 1
    assert report["acknowledged"] > 0
    assert report["acknowledged_by"]["c-store"] > 0 and report["acknowledged_by"]["stow-rs"] > 0
    assert set(report["by_kind"]) == set(KINDS)
    assert all(report["by_kind"][k]["ok"] > 0 for k in KINDS), report["by_kind"]
    for figure in ("dicom_s", "dashboard_s"):
        assert report["restart_after_kill"][0][figure] > 0
    for moment in ("start", "end"):
        assert report["final_run"][moment]["fds"] > 0 and report["final_run"][moment]["threads"] > 0
    assert report["peak_rss_mib"]["tree"] >= report["peak_rss_mib"]["server"] > 0
    assert report["stopped_cleanly"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Lost (must be 0)" in run.stdout and out.with_suffix(".md").exists()
