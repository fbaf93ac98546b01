"""Access by study in the dashboard, without a browser (issue 15): every
component of a restricted user's page reads through the scoped archive, so a
study outside their labels is absent from the search, the patient page, the
overview and the export, and a link to it is answered as for an unknown UID."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from pacsdash.access import Role
from pacsdash.archive import Archive, Level, Scope
from pacsdash.archive.actions import StudyActions
from pacsdash.dashboard.ingest import _Item, store_item
from pacsdash.dashboard.overview import Overview
from pacsdash.dashboard.patient import PatientView
from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.study import StudyPanel
from tests.factories import PREFIX, make_instance

TRIAL = Scope.of(["trial-7"])


@pytest.fixture
def home(tmp_path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    uids = {}
    for name, patient in (("trial", "PT1"), ("hidden", "PT1"), ("other", "PT2")):
        uids[name] = generate_uid(PREFIX)
        archive.store_bytes(make_instance(StudyInstanceUID=uids[name], PatientID=patient, PatientName=f"{name}^x",
                                          StudyDescription=name.upper()))
    archive.wait_indexed()
    archive.add_label(uids["trial"], "trial-7")
    yield archive, uids
    archive.close()


def test_the_search_and_the_patient_page_show_only_visible_studies(home):
    archive, uids = home
    visible = archive.scoped(TRIAL)
    search = StudySearch(archive=visible)
    assert search.total == 1 and list(search._table.value["StudyInstanceUID"]) == [uids["trial"]]
    assert StudySearch(archive=archive).total == 3
    patient = PatientView(archive=visible, patient_id="PT1")
    assert list(patient._table.value["StudyInstanceUID"]) == [uids["trial"]]
    assert len(PatientView(archive=archive, patient_id="PT1")._table.value) == 2
    other = PatientView(archive=visible, patient_id="PT2")  # none of their studies visible: as if unknown
    assert "No patient with the ID <b>PT2</b>" in other._info.object and len(other._table.value) == 0


def test_a_link_to_a_hidden_study_is_answered_as_for_an_unknown_one(home):
    archive, uids = home
    panel = StudyPanel(archive=archive.scoped(TRIAL), role=Role.ADMIN, study_uid=uids["hidden"])
    assert f"No study with the UID <b>{uids['hidden']}</b>" in panel._title.object and panel._viewer is None
    panel.study_uid = uids["trial"]
    assert "No study" not in panel._title.object


def test_the_overview_counts_only_visible_studies(home):
    archive, _ = home
    overview = Overview(archive=archive.scoped(TRIAL), shown=True)
    numbers = {n.name: n.value for n in overview._body[0]}
    assert numbers == {"Patients": 1, "Studies": 1, "Series": 1, "Instances": 1}
    everything = Overview(archive=archive, shown=True)
    assert {n.name: n.value for n in everything._body[0]}["Studies"] == 3


def test_an_upload_through_the_scoped_archive_keeps_the_new_study_visible(home):
    archive, _ = home
    visible = archive.scoped(TRIAL)
    new = generate_uid(PREFIX)
    outcome = store_item(visible, _Item("x.dcm", lambda: make_instance(StudyInstanceUID=new)), "dashboard:ruth")
    assert outcome.outcome == "stored", outcome
    assert archive.labels_of(new) == ["trial-7"] and visible.sees(new)


def test_dashboard_actions_on_a_hidden_study_find_no_such_study(home, tmp_path):
    from pacsdash.archive.actions import ActionError, Actor
    from pacsdash.archive.scoped import scope_of

    archive, uids = home
    visible = archive.scoped(TRIAL)
    actions = StudyActions(archive, tmp_path)
    with pytest.raises(ActionError) as refused:
        actions.delete(uids["hidden"], Actor("ruth", scope=scope_of(visible)))
    assert refused.value.status == 404 and archive.sees(uids["hidden"])
    assert scope_of(archive) is None


def test_what_a_session_reads_is_in_the_audit_trail(home):
    """The dashboard's view audits its reads: a search is a query naming the studies it
    found, opening instances a retrieval of their study (PS3.15 A.5.3.9, A.5.3.3)."""
    archive, uids = home
    entries = []
    view = archive.scoped(None, audit=lambda *entry: entries.append(entry))
    assert view is not archive and view.scope is None
    StudySearch(archive=view)  # the first page is read at once
    query = [e for e in entries if e[0] == "query"]
    assert query and set(query[0][2]) == set(uids.values()) and query[0][3]["query"].startswith("STUDY")
    location = view.locate(Level.STUDY, uids["other"])[0]
    assert entries[-1] == ("retrieve", True, [uids["other"]], {})
    assert view.locate_instance(location.SOPInstanceUID) == location
    restricted = []
    archive.scoped(TRIAL, audit=lambda *entry: restricted.append(entry)).locate(Level.STUDY, uids["hidden"])
    assert restricted == []  # nothing read: nothing retrieved
