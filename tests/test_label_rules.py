"""``[[label_rules]]`` (issue 15, "routing new studies to labels by a rule (calling
AE, any tag) in the config"): a study gets a rule's label as its instances are
indexed, whether they come from a scanner through ``serve`` or from ``pacsdash
import``; a bad rule stops the server at start with a clear message."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import DCMTK, SAMPLES, ServerProcess, have_dcmtk, manifest, run_cli

SAMPLE = SAMPLES / "valid" / "CT_small.dcm"
STUDY = manifest()["CT_small.dcm"]["study_instance_uid"]
RULES = """
[[label_rules]]
label = "trial-7"
calling_aet = "CT_TRIAL"

[[label_rules]]
label = "ct-all"
where = { Modality = "CT" }

[[label_rules]]
label = "never"
where = { Modality = "MR" }
"""


def _home(tmp_path, rules: str = RULES):
    home = tmp_path / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(rules, encoding="utf-8")
    return home


def test_an_offline_import_is_labelled_by_the_rules_on_values(tmp_path):
    home = _home(tmp_path)
    done = run_cli("import", str(SAMPLE), "--home", str(home))
    assert done.returncode == 0, done.stderr
    from pacsdash.archive.factory import open_archive
    from pacsdash.config import load_settings

    with open_archive(load_settings(home)) as archive:
        assert archive.labels_of(STUDY) == ["ct-all"]  # not trial-7: an import has no calling AE title


@pytest.mark.skipif(not have_dcmtk(), reason="dcmtk's storescu is not installed")
def test_a_new_study_from_the_trial_scanner_is_labelled_at_once(tmp_path):
    home = _home(tmp_path)
    server = ServerProcess.start(home)
    try:
        sent = subprocess.run([str(DCMTK / "storescu"), "-aet", "CT_TRIAL", "-aec", server.aet, "127.0.0.1",
                               str(server.dicom_port), str(SAMPLE)], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        listed = run_cli("labels", "list", STUDY, "--home", str(home))
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert sorted(listed.stdout.split()) == ["ct-all", "trial-7"], listed.stdout
    finally:
        server.stop()


def test_a_rule_on_an_unknown_attribute_is_a_configuration_error(tmp_path):
    home = _home(tmp_path, '[[label_rules]]\nlabel = "x"\nwhere = { NoSuchKeyword = "1" }\n')
    for command in (("import", str(SAMPLE)), ("serve", "--http-port", "0", "--dicom-port", "0")):
        done = run_cli(*command, "--home", str(home), timeout=60)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "configuration error" in done.stderr and "[[label_rules]]" in done.stderr
        assert "NoSuchKeyword" in done.stderr and "Traceback" not in done.stderr
