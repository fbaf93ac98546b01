"""The labels of the study page (issue 15), without a browser: an editor adds
and removes labels through the StudyActions (in the index and the audit
trail), a viewer only sees them, a bad label is said and changes nothing, a
role taken away mid-session is refused at the click, and a restricted
session sees nothing of a hidden study's labels."""

from __future__ import annotations

import asyncio

import pytest
from pydicom.uid import generate_uid

from pacsdash.access import Role
from pacsdash.archive import Archive, Scope
from pacsdash.archive.actions import StudyActions
from pacsdash.dashboard.study import StudyPanel
from pacsdash.dashboard.study_labels import StudyLabels, chips_html
from tests.factories import PREFIX, make_instance


@pytest.fixture
def home(tmp_path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    uids = {}
    for name in ("trial", "hidden"):
        uids[name] = generate_uid(PREFIX)
        archive.store_bytes(make_instance(StudyInstanceUID=uids[name], PatientName=f"{name}^x"))
    archive.wait_indexed()
    archive.add_label(uids["trial"], "trial-7")
    yield archive, StudyActions(archive, tmp_path), uids
    archive.close()


def label_changes(archive, uid: str) -> list[dict]:
    return [r.details for r in archive.records(action="label_change", study=uid)]


def test_an_editor_adds_and_removes_a_label_and_it_is_audited(home):
    archive, actions, uids = home
    labels = StudyLabels(archive=archive, actions=actions, role=Role.EDITOR, user="ed", study_uid=uids["trial"])
    assert labels.labels == ["trial-7"] and [b.label for b in labels._chip_buttons] == ["trial-7 ×"]
    labels._new.value_input = "teaching"
    asyncio.run(labels.add())
    assert archive.labels_of(uids["trial"]) == ["teaching", "trial-7"] and labels.labels == ["teaching", "trial-7"]
    assert "Added the label teaching" in labels.message and labels._new.value_input == ""
    assert [b.label for b in labels._chip_buttons] == ["teaching ×", "trial-7 ×"]
    asyncio.run(labels.remove("teaching"))
    assert archive.labels_of(uids["trial"]) == ["trial-7"] and "Removed the label teaching" in labels.message
    changes = label_changes(archive, uids["trial"])
    assert [(c["label"], c["change"]) for c in changes] == [("teaching", "remove"), ("teaching", "add")]
    assert {r.actor for r in archive.records(action="label_change")} == {"ed"}


def test_a_viewer_sees_the_labels_without_editing_controls(home):
    archive, actions, uids = home
    labels = StudyLabels(archive=archive, actions=actions, role=Role.VIEWER, study_uid=uids["trial"])
    assert 'class="pd-label-chip">trial-7<' in labels._chips.object and not labels._chip_buttons.objects
    shown = labels.__panel__()
    assert labels._new not in shown.objects and labels._add not in shown.objects
    labels._new.value_input = "teaching"  # even if asked, the role says no
    asyncio.run(labels.add())
    assert "may not change labels" in labels.message and archive.labels_of(uids["trial"]) == ["trial-7"]
    editor = StudyLabels(archive=archive, actions=actions, role=Role.EDITOR, study_uid=uids["trial"]).__panel__()
    assert len(editor.objects) > len(shown.objects)


@pytest.mark.parametrize("bad", ["two words", "-starts-with-dash", "x" * 65, "<b>bold</b>"])
def test_a_bad_label_is_said_and_changes_nothing(home, bad):
    archive, actions, uids = home
    labels = StudyLabels(archive=archive, actions=actions, role=Role.EDITOR, user="ed", study_uid=uids["trial"])
    labels._new.value_input = bad
    asyncio.run(labels.add())
    assert labels.message.startswith("Could not add the label:") and "1 to 64 letters" in labels.message
    assert "<b>" not in labels._message.object  # escaped
    assert archive.labels_of(uids["trial"]) == ["trial-7"] and not label_changes(archive, uids["trial"])
    assert labels._new.value_input == bad  # kept, to be corrected


def test_a_role_taken_away_mid_session_is_refused_at_the_click(home):
    archive, actions, uids = home
    now = {"role": Role.EDITOR}
    labels = StudyLabels(archive=archive, actions=actions, role=Role.EDITOR, user="ed", study_uid=uids["trial"],
                         current_role=lambda: now["role"])
    now["role"] = Role.VIEWER
    labels._new.value_input = "teaching"
    asyncio.run(labels.add())
    assert "may not change labels" in labels.message
    now["role"] = None  # the user removed, or their session ended
    asyncio.run(labels.remove("trial-7"))
    assert "may not change labels" in labels.message
    assert archive.labels_of(uids["trial"]) == ["trial-7"] and not label_changes(archive, uids["trial"])


def test_a_restricted_session_sees_nothing_of_a_hidden_study_and_acts_in_its_scope(home):
    archive, actions, uids = home
    archive.add_label(uids["hidden"], "secret")
    visible = archive.scoped(Scope.of(["trial-7"]))
    labels = StudyLabels(archive=visible, actions=actions, role=Role.EDITOR, user="ruth", study_uid=uids["hidden"])
    assert not labels.shown and labels.labels == [] and "secret" not in labels._chips.object
    labels._new.value_input = "teaching"
    asyncio.run(labels.add())
    assert archive.labels_of(uids["hidden"]) == ["secret"]
    labels.study_uid = uids["trial"]
    assert labels.shown and labels.labels == ["trial-7"]
    labels._new.value_input = "teaching"
    asyncio.run(labels.add())
    assert archive.labels_of(uids["trial"]) == ["teaching", "trial-7"]
    # Their own way in is not offered for removal, and refused if asked: they could not undo it.
    assert [b.label for b in labels._chip_buttons] == ["teaching ×"] and "trial-7" in labels._chips.object
    asyncio.run(labels.remove("trial-7"))
    assert "you see this study through it" in labels.message and archive.labels_of(uids["trial"]) == [
        "teaching", "trial-7"]
    asyncio.run(labels.remove("teaching"))
    assert archive.labels_of(uids["trial"]) == ["trial-7"] and "Removed the label teaching" in labels.message


def test_the_study_page_shows_the_labels_of_the_study_it_shows(home):
    archive, actions, uids = home
    visible = archive.scoped(Scope.of(["trial-7"]))
    panel = StudyPanel(archive=visible, role=Role.EDITOR, user="ruth", actions=actions, study_uid=uids["trial"])
    assert panel._labels.labels == ["trial-7"] and panel._labels.shown
    panel._labels._new.value_input = "two words"
    asyncio.run(panel._labels.add())
    assert panel.message.startswith("Could not add the label") and "pd-warn" in panel._message.object
    panel.study_uid = uids["hidden"]  # a link to a study they may not see
    assert not panel._labels.shown and panel._labels._chips.object == ""
    panel.study_uid = ""
    assert not panel._labels.shown


def test_chips_are_escaped():
    assert chips_html(["<img src=x onerror=alert(1)>"]) == (
        '<span class="pd-label-chip">&lt;img src=x onerror=alert(1)&gt;</span>')
    assert "No labels" in chips_html([])


def test_the_search_shows_the_labels_of_the_page_when_a_study_has_any(home, tmp_path):
    from pacsdash.dashboard.search import LABELS_COLUMN, StudySearch

    archive, _, uids = home
    archive.add_label(uids["trial"], "teaching")
    frame = StudySearch(archive=archive)._table.value
    shown = dict(zip(frame["StudyInstanceUID"], frame[LABELS_COLUMN]))
    assert shown == {uids["trial"]: "teaching, trial-7", uids["hidden"]: ""}
    restricted = StudySearch(archive=archive.scoped(Scope.of(["trial-7"])))._table.value
    assert list(restricted[LABELS_COLUMN]) == ["teaching, trial-7"]
    unlabelled = Archive.open_home(tmp_path / "other-store", tmp_path / "other.duckdb")
    try:
        unlabelled.store_bytes(make_instance())
        unlabelled.wait_indexed()
        assert LABELS_COLUMN not in StudySearch(archive=unlabelled)._table.value.columns
    finally:
        unlabelled.close()
