"""Access by study, in the archive (issue 15): labels, the scope a query
carries, the scoped view every door reads through, label rules at ingest,
and the actions on studies refusing a study their actor may not see."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from pacsdash.archive import Archive, Level, Query, Scope
from pacsdash.archive.actions import ActionError, Actor, StudyActions
from pacsdash.archive.query import compile_count, compile_query
from pacsdash.config import LabelRule
from tests.factories import PREFIX, make_instance

TRIAL, TEACHING = Scope.of(["trial-7"]), Scope.of(["teaching"])


@pytest.fixture
def archive(backend_archive):
    """An empty archive on the module's index backend (DuckDB, PostgreSQL: tests/archive/conftest.py)."""
    return backend_archive


def _study(archive: Archive, patient: str, instances: int = 2, series: int = 1, origin: str = "import",
           **attributes) -> str:
    study = generate_uid(PREFIX)
    for _ in range(series):
        series_uid = generate_uid(PREFIX)
        for _ in range(instances):
            archive.store_bytes(make_instance(StudyInstanceUID=study, SeriesInstanceUID=series_uid, PatientID=patient,
                                              PatientName=f"{patient}^X", **attributes), origin=origin)
    archive.wait_indexed()
    return study


@pytest.fixture
def studies(archive):
    """Patient A: a trial study (2 series of 2) and an unlabelled one; patient B: a teaching study;
    patient C: an unlabelled study."""
    a_trial = _study(archive, "A", series=2, Modality="MR", StudyDescription="TRIAL")
    a_other = _study(archive, "A", instances=3, Modality="CT", StudyDescription="OTHER")
    b_teach = _study(archive, "B", Modality="CT", StudyDescription="TEACH")
    c_none = _study(archive, "C")
    assert archive.add_label(a_trial, "trial-7") and archive.add_label(b_teach, "teaching")
    return {"a_trial": a_trial, "a_other": a_other, "b_teach": b_teach, "c_none": c_none}


def test_labels_are_kept_per_study_without_repeats(archive, studies):
    assert archive.add_label(studies["a_trial"], "teaching") is True
    assert archive.add_label(studies["a_trial"], "teaching") is False
    assert archive.labels_of(studies["a_trial"]) == ["teaching", "trial-7"]
    assert archive.remove_label(studies["a_trial"], "teaching") is True
    assert archive.remove_label(studies["a_trial"], "teaching") is False
    assert archive.labels_of(studies["a_trial"]) == ["trial-7"]
    assert archive.labels_of(studies["c_none"]) == []
    with pytest.raises(KeyError):
        archive.add_label("1.2.3.4", "trial-7")


@pytest.mark.parametrize("level, expected", [
    (Level.PATIENT, {"A"}), (Level.STUDY, 1), (Level.SERIES, 2), (Level.IMAGE, 4)])
def test_a_scoped_query_sees_only_labelled_studies_at_every_level(archive, studies, level, expected):
    rows = archive.find(Query(level, scope=TRIAL))
    if level is Level.PATIENT:
        assert {r["PatientID"] for r in rows} == expected
        return
    assert len(rows) == expected == archive.count(Query(level, scope=TRIAL))
    assert {r["StudyInstanceUID"] for r in rows} == {studies["a_trial"]}
    assert archive.count(Query(level)) > expected  # the unscoped archive sees more


def test_patient_counts_and_values_come_from_visible_studies_only(archive, studies):
    (row,) = archive.find(Query(Level.PATIENT, {"PatientID": "A"}, scope=TRIAL))
    assert row["NumberOfPatientRelatedStudies"] == "1"
    assert row["NumberOfPatientRelatedSeries"] == "2"
    assert row["NumberOfPatientRelatedInstances"] == "4"
    (unscoped,) = archive.find(Query(Level.PATIENT, {"PatientID": "A"}))
    assert unscoped["NumberOfPatientRelatedStudies"] == "2"
    # Matching on a hidden study's values does not find the patient.
    assert archive.find(Query(Level.PATIENT, {"ModalitiesInStudy": "CT"}, scope=TRIAL)) == []
    assert archive.find(Query(Level.PATIENT, {"ModalitiesInStudy": "MR"}, scope=TRIAL))
    assert archive.find(Query(Level.PATIENT, {"StudyDescription": "OTHER"}, scope=TRIAL)) == []


def test_a_scope_with_several_labels_sees_each_and_paging_stays_within(archive, studies):
    both = Scope.of(["trial-7", "teaching"])
    uids = {r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, scope=both))}
    assert uids == {studies["a_trial"], studies["b_teach"]}
    pages = [archive.find(Query(Level.STUDY, scope=both, limit=1, offset=n, order_by=[("StudyDescription", False)]))
             for n in range(3)]
    assert [len(p) for p in pages] == [1, 1, 0]
    assert {p[0]["StudyInstanceUID"] for p in pages[:2]} == uids


def test_no_labels_means_every_study_and_an_empty_scope_sees_nothing(archive, studies):
    assert Scope.of([]) is None and Scope.of(None) is None
    assert archive.count(Query(Level.STUDY, scope=Scope(frozenset()))) == 0
    assert archive.count(Query(Level.STUDY, scope=None)) == 4


def test_scope_values_are_parameters_never_sql_text():
    tricky = Scope.of(["x') OR 1=1 --"])
    compiled = compile_query(Query(Level.STUDY, scope=tricky))
    assert "OR 1=1" not in compiled.sql and "x') OR 1=1 --" in compiled.params
    sql, params = compile_count(Query(Level.PATIENT, scope=tricky))
    assert "OR 1=1" not in sql and params[0] == "x') OR 1=1 --"


def test_locations_and_the_instance_cache_respect_the_scope(archive, studies):
    assert len(archive.locate(Level.STUDY, studies["a_trial"], TRIAL)) == 4
    assert archive.locate(Level.STUDY, studies["a_other"], TRIAL) == []
    assert archive.locate(Level.PATIENT, "A", TRIAL) == archive.locate(Level.STUDY, studies["a_trial"])
    hidden = archive.locate(Level.STUDY, studies["b_teach"])[0]
    assert archive.locate_instance(hidden.SOPInstanceUID) == hidden  # now remembered, unscoped
    assert archive.locate_instance(hidden.SOPInstanceUID, TRIAL) is None
    assert archive.locate_instance(hidden.SOPInstanceUID, TEACHING) == hidden
    assert {loc.StudyInstanceUID for loc in archive.locate_matching(Query(Level.IMAGE, {"PatientID": "A"}, scope=TRIAL))} \
        == {studies["a_trial"]}


def test_the_scoped_view_answers_as_if_hidden_studies_did_not_exist(archive, studies):
    view = archive.scoped(TRIAL)
    assert archive.scoped(None) is archive
    assert view.sees(studies["a_trial"]) and not view.sees(studies["a_other"]) and not view.sees("1.2.3")
    assert archive.sees(studies["a_other"]) and not archive.sees("1.2.3")
    assert [r["StudyInstanceUID"] for r in view.find(Query(Level.STUDY))] == [studies["a_trial"]]
    assert view.count(Query(Level.STUDY, {"StudyInstanceUID": studies["b_teach"]})) == 0
    assert view.locate(Level.STUDY, studies["b_teach"]) == []
    assert view.summary()["totals"] == {"patients": 1, "studies": 1, "series": 2, "instances": 4}
    assert archive.summary()["totals"]["studies"] == 4
    assert dict(view.summary()["by_modality"]) == {"MR": 1}


def test_deleting_a_study_forgets_its_labels(archive, studies):
    archive.delete_study(studies["a_trial"])
    assert archive.labels_of(studies["a_trial"]) == []
    assert archive.count(Query(Level.STUDY, scope=TRIAL)) == 0


def test_label_rules_label_new_studies_by_calling_ae_and_values(home):
    rules = [LabelRule("trial-7", calling_aet="CT_TRIAL"),
             LabelRule("teaching", where=(("StudyDescription", "TEACH*"), ("Modality", "CT")))]
    with home.open(rules) as archive:
        from_trial = _study(archive, "P", origin="dicom:CT_TRIAL@127.0.0.1:5000")
        elsewhere = _study(archive, "P", origin="dicom:CT_OTHER@127.0.0.1:5000")
        teach = _study(archive, "Q", StudyDescription="TEACHING FILE", Modality="CT", origin="http:alice")
        teach_mr = _study(archive, "Q", StudyDescription="TEACHING FILE", Modality="MR")
        assert archive.labels_of(from_trial) == ["trial-7"]
        assert archive.labels_of(elsewhere) == []
        assert archive.labels_of(teach) == ["teaching"]
        assert archive.labels_of(teach_mr) == []


def test_a_bad_label_rule_is_refused_when_the_archive_opens(home):
    from pacsdash.archive import InvalidQuery

    with pytest.raises(InvalidQuery):
        home.open([LabelRule("x", where=(("NoSuchKeyword", "1"),))])


def test_label_rules_apply_to_instances_replayed_from_the_journal(home):
    """A crash after the acknowledgement and before the index commit: the replay labels too."""
    rules = [LabelRule("trial-7", calling_aet="CT_TRIAL")]
    archive = home.open(rules)
    study = _study(archive, "P", origin="dicom:CT_TRIAL@127.0.0.1:5000")
    archive.close()
    with home.open(rules) as again:
        assert again.labels_of(study) == ["trial-7"]


@pytest.fixture
def actions(archive, tmp_path):
    return StudyActions(archive, tmp_path)


def test_actions_on_a_study_the_actor_may_not_see_answer_no_such_study(actions, archive, studies):
    restricted = Actor("ruth", scope=TRIAL)
    for act in (lambda: actions.delete(studies["b_teach"], restricted),
                lambda: actions.anonymize(studies["b_teach"], restricted),
                lambda: actions.labels(studies["b_teach"], restricted),
                lambda: actions.add_label(studies["b_teach"], "trial-7", restricted)):
        with pytest.raises(ActionError) as refused:
            act()
        assert refused.value.status == 404 and "no such study" in str(refused.value)
    assert archive.sees(studies["b_teach"])  # nothing was done
    assert archive.labels_of(studies["b_teach"]) == ["teaching"]
    assert actions.labels(studies["a_trial"], restricted) == ["trial-7"]


def test_label_changes_are_checked_and_audited(actions, archive, studies):
    editor = Actor("eve", address="127.0.0.1")
    assert actions.add_label(studies["c_none"], "teaching", editor) is True
    assert actions.add_label(studies["c_none"], "teaching", editor) is False
    assert actions.remove_label(studies["c_none"], "teaching", editor) is True
    with pytest.raises(ActionError) as bad:
        actions.add_label(studies["c_none"], "no spaces", editor)
    assert bad.value.status == 400
    with pytest.raises(ActionError) as unknown:
        actions.add_label("1.2.3.4", "teaching", editor)
    assert unknown.value.status == 404
    entries = archive.records(action="label_change")
    assert [(e.details["change"], e.details["changed"]) for e in reversed(entries)] == \
        [("add", True), ("add", False), ("remove", True)]
    assert all(e.actor == "eve" and e.studies == [studies["c_none"]] and e.address == "127.0.0.1" for e in entries)


def test_an_anonymized_copy_keeps_the_labels_of_its_original(actions, archive, studies):
    restricted = Actor("ruth", scope=TRIAL)
    result = actions.anonymize(studies["a_trial"], restricted)
    assert archive.labels_of(result.StudyInstanceUID) == ["trial-7"]
    assert archive.scoped(TRIAL).sees(result.StudyInstanceUID)  # the editor who made it sees it


def test_an_export_holds_only_studies_the_actor_may_see(actions, archive, studies, tmp_path):
    from pacsdash.research.export import ExportRequest

    ruth = Actor("ruth", scope=TRIAL)
    summary = actions.export(ExportRequest(out=tmp_path / "out.zip", where={"PatientID": "A"}), ruth)
    assert summary.studies == [studies["a_trial"]]
    with pytest.raises(ActionError) as hidden:
        actions.export(ExportRequest(out=tmp_path / "hidden.zip", studies=[studies["b_teach"]]), ruth)
    assert studies["b_teach"] in str(hidden.value) and not (tmp_path / "hidden.zip").exists()


def test_deletions_and_sends_are_in_the_audit_trail(archive, studies, tmp_path):
    """Every door deletes and sends through StudyActions: the entry is written there (PS3.15
    A.5.3.8 Study Deleted, A.5.3.7 Instances Transferred), with the outcome and the peer."""
    from types import SimpleNamespace

    peer = SimpleNamespace(name="ws", aet="WS", host="127.0.0.1", port=104)
    accounts = SimpleNamespace(modality=lambda name: peer if name == "ws" else None)
    results = [SimpleNamespace(ok=True, status=0, error=""), SimpleNamespace(ok=False, status=0xA700, error="")]
    actions = StudyActions(archive, tmp_path, accounts, sender=lambda *args: results)
    admin = Actor("root", address="127.0.0.1")
    assert actions.send(studies["a_trial"], "ws", admin).failed == 1
    assert actions.delete(studies["c_none"], admin) == 2
    [send] = archive.records(action="send")
    assert (send.actor, send.outcome, send.studies) == ("root", "failure", [studies["a_trial"]])
    assert send.details["modality"] == "ws" and send.details["sent"] == 1 and send.details["failed"] == 1
    [delete] = archive.records(action="delete")
    assert (delete.outcome, delete.studies, delete.details["instances"]) == ("success", [studies["c_none"]], 2)
