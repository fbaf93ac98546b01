"""The research tools of the dashboard without a browser: anonymize a study,
the before/after view of one instance, export of the search's studies."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import zipfile
from types import SimpleNamespace

import pytest
from pydicom import dcmread

from pacsdash.access import Action, Role
from pacsdash.archive import Level, Query
from pacsdash.archive.actions import StudyActions
from pacsdash.dashboard.research import (
    MARKING,
    SCOPE_SEARCH,
    AnonymizePanel,
    Comparison,
    ExportPanel,
    OptionsPicker,
    TagRow,
    anonymized_html,
    compare_instance,
    comparison_html,
    option_problem,
)
from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.study import StudyPanel
from pacsdash.research.deidentify import Deidentifier
from pacsdash.research.export import MANIFEST
from pacsdash.research.options import DEFAULT_OPTIONS, Option
from pacsdash.web.research import export_jobs
from tests.dashboard.viewer.conftest import CT_SLICES, make_viewer_study
from tests.factories import make_instance

BOTH_DATES = [Option.RETAIN_FULL_DATES.value, Option.RETAIN_MODIFIED_DATES.value]


@pytest.fixture
def study(tmp_path):
    study = make_viewer_study(tmp_path / "home")
    study.actions = StudyActions(study.archive, tmp_path / "home")
    yield study
    study.archive.close()


def studies_in(archive) -> set[str]:
    return {r["StudyInstanceUID"] for r in archive.find(Query(Level.STUDY, {}, ["StudyInstanceUID"]))}


def editor_panel(study, **params) -> StudyPanel:
    params.setdefault("role", Role.EDITOR)
    return StudyPanel(archive=study.archive, user="ed", study_uid=study.study_uid, actions=study.actions, **params)


# -- options -------------------------------------------------------------------
def test_the_default_options_are_ticked_and_both_date_options_are_refused():
    picker = OptionsPicker()
    assert picker.options == DEFAULT_OPTIONS and picker.widget.value == [o.value for o in DEFAULT_OPTIONS]
    assert picker.problem == "" and option_problem([]) == ""
    picker.widget.value = BOTH_DATES  # as the browser ticks them
    assert picker.value == BOTH_DATES
    assert "not both" in picker.problem and "Full Dates" in picker.problem and "Modified Dates" in picker.problem
    picker.value = [Option.RETAIN_FULL_DATES.value]
    assert picker.problem == "" and picker.widget.value == [Option.RETAIN_FULL_DATES.value]


def test_both_date_options_stop_the_anonymization_and_say_why(study):
    panel = editor_panel(study)
    panel._options.value = BOTH_DATES
    assert panel._anonymize._start.disabled
    before = studies_in(study.archive)
    assert asyncio.run(panel._on_anonymize()) is None
    assert "not both" in panel._anonymize.message and studies_in(study.archive) == before
    panel._research_toggle.value = True
    assert panel._compare.comparison is None and "options go together" in panel._compare.message


# -- anonymize -----------------------------------------------------------------
def test_an_editor_anonymizes_a_study_into_the_archive_and_opens_it(study):
    panel = editor_panel(study)
    panel._research_toggle.value = True
    assert panel._research.visible
    result = asyncio.run(panel._on_anonymize())
    new = result.StudyInstanceUID
    assert new.startswith("2.25.") and new != study.study_uid
    assert len(study.archive.locate(Level.STUDY, new)) == CT_SLICES + 1 == result.stored  # the CT and the report
    [left_out] = result.excluded  # the colour secondary capture: it may show burned-in text
    assert left_out.SOPInstanceUID == study.cine.SOPInstanceUID and "burned-in" in left_out.reason
    shown = panel._anonymize._result.object
    assert new in shown and f"{CT_SLICES + 1} instances stored" in shown and "1 left out" in shown
    assert study.cine.SOPInstanceUID in shown and "secondary capture" in shown
    [row] = study.archive.find(Query(Level.STUDY, {"StudyInstanceUID": new}, ["PatientName", "PatientID"]))
    assert row["PatientID"] == result.PatientID and row["PatientID"].startswith("SUBJ-")
    [record] = study.archive.records(action="anonymize")
    assert record.actor == "ed" and record.details["options"] == [Option.RETAIN_MODIFIED_DATES.value]
    assert panel._anonymize._open.visible
    panel._anonymize._on_open()  # "Open the new study"
    assert panel.study_uid == new and panel._viewer.study_uid == new
    assert not panel._research.visible and panel._anonymize.result is None  # another study: a fresh section


def test_burned_in_instances_are_included_when_asked(study):
    panel = editor_panel(study)
    panel._anonymize._burned_in.value = True
    result = asyncio.run(panel._on_anonymize())
    assert result.excluded == [] and result.stored == CT_SLICES + 2


def test_a_viewer_cannot_anonymize_even_by_calling_the_handler(study):
    before = studies_in(study.archive)
    viewer = StudyPanel(archive=study.archive, role=Role.VIEWER, user="vi", study_uid=study.study_uid,
                        actions=study.actions)
    assert asyncio.run(viewer._on_anonymize()) is None
    assert "may not anonymize" in viewer.message and "may not anonymize" in viewer._anonymize.message
    assert viewer._research_toggle not in viewer.__panel__()[1].objects  # no "Anonymize…" shown
    assert viewer._compare.compare() is None and "may not" in viewer._compare.message
    # An editor made a viewer since the page opened: refused at the click.
    demoted = editor_panel(study, current_role=lambda: Role.VIEWER)
    assert demoted._research_toggle in demoted.__panel__()[1].objects
    assert asyncio.run(demoted._on_anonymize()) is None and "may not anonymize" in demoted._anonymize.message
    removed = editor_panel(study, current_role=lambda: None)  # the account is gone
    assert asyncio.run(removed._on_anonymize()) is None
    assert studies_in(study.archive) == before and study.archive.records(action="anonymize") == []


def test_a_failing_anonymization_is_reported_not_stuck(study):
    panel = editor_panel(study)
    panel.study_uid = "1.2.3.4"  # not in the archive
    panel._anonymize.study_uid = "1.2.3.4"
    assert asyncio.run(panel._on_anonymize()) is None
    assert panel._anonymize.message == "Could not anonymize: no such study"
    assert not panel._anonymize.busy and not panel._anonymize._start.disabled


# -- before/after -----------------------------------------------------------------
def test_before_after_shows_the_rule_of_each_change_and_stores_nothing(study):
    before = studies_in(study.archive)
    panel = editor_panel(study)
    panel._research_toggle.value = True
    compare = panel._compare
    # The instance shown in the viewer (its first CT image) is the default.
    assert compare.series_uid == study.ct_series_uid == panel._viewer.series_uid
    assert compare.sop_uid == panel._viewer.current_instance != ""
    comparison = compare.comparison
    original = next(ds for ds in study.ct if ds.SOPInstanceUID == compare.sop_uid)
    subject = study.actions.pseudonymizer().subject(original.PatientID)
    name = comparison.row("PatientName")
    assert (name.before, name.after, name.action, name.column) == (str(original.PatientName), subject.PatientName,
                                                                   "Z", "Basic Profile")
    date = comparison.row("StudyDate")
    shifted = dt.datetime.strptime(original.StudyDate, "%Y%m%d").date() + dt.timedelta(days=subject.shift_days)
    assert (date.before, date.after, date.action, date.column) == (
        original.StudyDate, shifted.strftime("%Y%m%d"), "C", Option.RETAIN_MODIFIED_DATES.value)
    description = comparison.row("StudyDescription")
    assert description.after is None and description.action == "X"  # removed
    added = comparison.row("PatientIdentityRemoved")
    assert (added.before, added.after, added.column) == (None, "YES", MARKING)
    rows = comparison.row("Rows")
    assert not rows.changed and rows.before == rows.after == str(original.Rows)
    # The table: changed attributes only, unchanged ones behind a toggle.
    table = compare._table.object
    assert 'data-keyword="PatientName"' in table and "Basic Profile" in table
    assert 'data-keyword="StudyDate"' in table and Option.RETAIN_MODIFIED_DATES.value in table
    assert '<span class="pd-removed">removed</span>' in table and 'data-keyword="Rows"' not in table
    compare._unchanged.value = True
    assert 'data-keyword="Rows"' in compare._table.object
    # Other options, the same instance: dates kept whole.
    panel._options.value = [Option.RETAIN_FULL_DATES.value]
    assert compare.comparison.row("StudyDate").changed is False
    assert compare.comparison.row("StudyDate").column == Option.RETAIN_FULL_DATES.value
    # Another instance of another series.
    compare.pick(study.cine_series_uid)
    assert compare.comparison.SOPInstanceUID == study.cine.SOPInstanceUID
    assert "burned-in" in compare.comparison.left_out and "would leave this instance out" in compare._table.object
    assert studies_in(study.archive) == before  # nothing stored, nothing recorded
    assert study.archive.records() == [] and study.archive.subject(subject.PatientID) is None


def test_the_before_after_view_follows_the_instance_picked(study):
    panel = editor_panel(study)
    panel._research_toggle.value = True
    compare = panel._compare
    labels = list(compare._instance.options)
    assert len(labels) == CT_SLICES
    compare._instance.value = compare._instance.options[labels[-1]]  # as the browser picks it
    assert compare.sop_uid == compare.comparison.SOPInstanceUID == compare._instance.options[labels[-1]]
    compare._series.value = study.cine_series_uid
    assert compare.comparison.SOPInstanceUID == study.cine.SOPInstanceUID
    panel._viewer.frame_index = 3  # the viewer moves on; "The image in the viewer" follows it
    compare._follow.clicks += 1
    assert compare.sop_uid == panel._viewer.current_instance == compare.comparison.SOPInstanceUID
    assert compare.series_uid == study.ct_series_uid
    panel._research_toggle.value = False
    assert not compare.active


def test_sequences_private_attributes_and_values_are_escaped(study):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    raw = make_instance(PatientName="<script>alert(1)</script>^Eve", InstitutionName="<b>Clinic</b>",
                        ReferencedImageSequence=Sequence([item]))
    ds = dcmread(io.BytesIO(raw))
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "secret")
    out = io.BytesIO()
    ds.save_as(out)
    comparison = compare_instance(out.getvalue(), Deidentifier(study.actions.pseudonymizer(), DEFAULT_OPTIONS))
    paths = {r.path: r for r in comparison.rows}
    assert paths["(0008,1140)[0].(0008,1155)"].action == "U"  # inside a sequence
    assert paths["(0008,1140)[0].(0008,1155)"].after == study.actions.pseudonymizer().uid("1.2.3.4.5")
    assert paths["(0009,1001)"].after is None and paths["(0009,1001)"].column == "Basic Profile"
    table = comparison_html(comparison, show_unchanged=True)
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;^Eve" in table
    assert "<b>Clinic</b>" not in table and "&lt;b&gt;Clinic&lt;/b&gt;" in table
    hostile = Comparison('1"><img src=x>', [TagRow('(0010,0010)"><i>', "<k>", "<n>", "<b>", "<a>", "<z>", "<c>", True)],
                         "<why>")
    shown = comparison_html(hostile)
    assert "<img" not in shown and "<i>" not in shown and "<k>" not in shown and "<why>" not in shown
    left_out = SimpleNamespace(SOPInstanceUID="<s>", SeriesInstanceUID="<t>", reason="<r>")
    result = SimpleNamespace(StudyInstanceUID="<u>", PatientID="<p>", stored=0, duplicates=0, excluded=[left_out])
    assert not any(f"<{c}>" in anonymized_html(result) for c in "stpru")


def test_content_items_removed_keep_the_other_items_aligned(study):
    """A de-identifier that removes a whole item (as Clean Structured Content
    does): the rows of the items after it still compare like with like."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from pacsdash.research.deidentify import Change, Deidentified

    texts = ["Dr Who said so", "kept text", "also kept"]
    items = []
    for text in texts:
        item = Dataset()
        item.ValueType, item.TextValue = "TEXT", text
        items.append(item)
    raw = make_instance(ContentSequence=Sequence(items))

    class DropsFirstItem:
        table = Deidentifier(study.actions.pseudonymizer()).table
        options = DEFAULT_OPTIONS
        method = "test"

        def deidentify(self, ds, record=False):
            del ds.ContentSequence[0]
            change = Change("(0040,A730)[0]", "", "content item Person", "X", "Clean Structured Content",
                            texts[0], None)
            return Deidentified(ds, None, "", [change])

    comparison = compare_instance(raw, DropsFirstItem())
    paths = {r.path: r for r in comparison.rows}
    assert paths["(0040,A730)[0]"].after is None and paths["(0040,A730)[0]"].changed
    assert "(0040,A730)[0].(0040,A160)" not in paths  # its attributes went with it
    for number in (1, 2):
        row = paths[f"(0040,A730)[{number}].(0040,A160)"]
        assert row.before == row.after == texts[number] and not row.changed
    sequence = paths["(0040,A730)"]
    assert (sequence.before, sequence.after, sequence.changed) == ("3 items", "2 items", True)


# -- export --------------------------------------------------------------------------
@pytest.fixture
def cohort(study, tmp_path):
    """Two more studies beside the viewer study: two of patient EXPORT^EMMA, one not."""
    for k, name in enumerate(["EXPORT^EMMA", "EXPORT^EMMA", "OTHER^OTTO"]):
        study.archive.store_bytes(make_instance(PatientName=name, PatientID=name[:5] + str(k % 2),
                                                StudyDate=f"2024010{k + 1}", InstitutionName="Sankt Export"))
    app = SimpleNamespace(actions=study.actions, settings=SimpleNamespace(home=tmp_path / "home"))
    study.jobs = export_jobs(app)
    return study


def export_panel(cohort, role: Role, **params) -> ExportPanel:
    search = StudySearch(archive=cohort.archive)
    return ExportPanel(archive=cohort.archive, search=search, jobs=cohort.jobs, role=role, user=role.value,
                       **params)


def zip_members(job) -> dict[str, bytes]:
    with zipfile.ZipFile(job.request.out) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def test_the_current_search_result_is_exported_as_a_zip_with_its_manifest(cohort):
    panel = export_panel(cohort, Role.VIEWER)
    panel.search.patient_name = "export^emma"
    assert panel.matching == 2 and len(panel._table.value) == 2
    assert "PatientName *export^emma*" in panel._summary.object
    panel._scope.value = SCOPE_SEARCH
    job = asyncio.run(panel.export())
    assert job.state == "done", job.error
    assert job.request.out == cohort.jobs.folder / job.id / "export.zip"
    members = zip_members(job)
    manifest = list(csv.DictReader(io.StringIO(members[MANIFEST].decode())))
    assert len(manifest) == 2 and all(row["path"] in members for row in manifest)
    names = {str(dcmread(io.BytesIO(members[row["path"]])).PatientName) for row in manifest}
    assert names == {"EXPORT^EMMA"}  # originals, of the search's studies only
    assert f'href="/api/exports/{job.id}/download"' in panel._result.object
    assert "2 files written, 0 left out" in panel._result.object and not panel.busy
    [record] = cohort.archive.records(action="export")
    assert record.actor == "viewer" and record.details["anonymized"] is False


def test_the_ticked_studies_are_exported_anonymized_by_an_editor(cohort):
    panel = export_panel(cohort, Role.EDITOR)
    assert asyncio.run(panel.export()) is None and "Tick at least one study" in panel.message
    panel.search.patient_name = "export^emma"
    first = panel._table.value["StudyInstanceUID"].iloc[0]
    panel._table.selection = [0]  # as the checkbox does
    assert panel.ticked == [first] and 'class="pd-export-ticked">1<' in panel._summary.object
    panel.search.patient_name = ""  # another search: the tick stays
    page = list(panel._table.value["StudyInstanceUID"])
    assert panel.ticked == [first] and panel._table.selection == [page.index(first)]
    panel._anonymize.value = True
    assert panel._anon_options.visible
    job = asyncio.run(panel.export())
    assert job.state == "done" and job.request.anonymize and job.request.options == DEFAULT_OPTIONS
    members = zip_members(job)
    [row] = list(csv.DictReader(io.StringIO(members[MANIFEST].decode())))
    data = members[row["path"]]
    ds = dcmread(io.BytesIO(data))
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName).startswith("SUBJ-")
    assert ds.StudyInstanceUID != first and b"EXPORT" not in data and b"Sankt" not in data
    assert "anonymized files" in panel._result.object


def test_a_viewer_is_offered_no_anonymized_export_and_is_refused_one(cohort):
    panel = export_panel(cohort, Role.VIEWER)
    shown = panel.__panel__()
    assert panel._anonymize not in shown[2][1].objects and panel._anon_options not in shown[2][1].objects
    editor = export_panel(cohort, Role.EDITOR)
    assert editor._anonymize in editor.__panel__()[2][1].objects
    panel._scope.value = SCOPE_SEARCH
    panel._anonymize.value = True  # forced, as a crafted message could
    assert asyncio.run(panel.export()) is None and "originals only" in panel.message
    demoted = export_panel(cohort, Role.EDITOR, current_role=lambda: Role.VIEWER)
    demoted._scope.value = SCOPE_SEARCH
    demoted._anonymize.value = True
    assert asyncio.run(demoted.export()) is None and "originals only" in demoted.message
    assert cohort.jobs.jobs == {} and cohort.archive.records(action="export") == []
    gone = export_panel(cohort, Role.VIEWER, current_role=lambda: None)
    gone._scope.value = SCOPE_SEARCH
    assert asyncio.run(gone.export()) is None and "may not export" in gone.message


def test_an_export_in_a_folder_and_a_failed_one_are_reported(cohort):
    panel = export_panel(cohort, Role.ADMIN)
    panel.search.patient_name = "other^otto"
    panel._scope.value = SCOPE_SEARCH
    panel._format.value = "folder"
    job = asyncio.run(panel.export())
    assert job.state == "done" and (job.request.out / MANIFEST).exists()
    panel._anonymize.value = True
    panel.picker.value = BOTH_DATES
    assert asyncio.run(panel.export()) is None and "not both" in panel.message
    failed = SimpleNamespace(state="failed", error="<b>disk full</b>", request=job.request, summary=None, id="x")
    from pacsdash.dashboard.research import export_html

    assert export_html(failed) == '<p class="pd-failed"><b>The export failed:</b> &lt;b&gt;disk full&lt;/b&gt;</p>'


def test_anonymize_panel_alone_needs_the_anonymize_action():
    assert not Role.VIEWER.may(Action.ANONYMIZE) and Role.EDITOR.may(Action.ANONYMIZE)
    panel = AnonymizePanel(role=Role.VIEWER, study_uid="1.2.3", actions=object())
    assert asyncio.run(panel.anonymize()) is None and panel.message == "Your role may not anonymize."


def test_the_export_list_follows_an_attribute_filter_and_a_batch_of_changes(cohort):
    """The Studies tab's filters on any attribute (``where``) and several changes
    at once (a shared link restores them together) reach the export list."""
    panel = export_panel(cohort, Role.VIEWER)
    assert panel.matching == 4
    panel.search.where = ["InstitutionName=Sankt Export"]
    assert panel.matching == 3
    panel.search.param.update(patient_name="export^emma", where=[], date_from=dt.date(2024, 1, 1))  # one batch
    assert panel.matching == 2 and len(panel._table.value) == 2
