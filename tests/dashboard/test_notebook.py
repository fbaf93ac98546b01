"""The dashboard's parts as Panel components in a notebook cell (no server)."""

from __future__ import annotations

import panel as pn
import pytest

from pacsdash.archive import Archive
from pacsdash.dashboard.patient import PatientView
from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.study import StudyPanel
from tests.factories import make_instance


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    archive.store_bytes(make_instance(PatientID="NB-1", PatientName="NOTE^BOOK", StudyDescription="<i>CT</i> HEAD"))
    yield archive
    archive.close()


def _study_uid(archive: Archive) -> str:
    search = StudySearch(archive=archive)
    search.refresh()
    return str(search._table.value["StudyInstanceUID"].iloc[0])  # noqa: SLF001


def test_each_part_renders_the_way_a_notebook_shows_it(archive):
    study_uid = _study_uid(archive)
    parts = [
        StudySearch(archive=archive),
        PatientView(archive=archive, patient_id="NB-1"),
        StudyPanel(archive=archive, study_uid=study_uid),
    ]
    for part in parts:
        # A notebook shows a cell's value by building its Bokeh models (get_root, with a comm).
        root = pn.panel(part).get_root()
        models = list(root.references())
        assert models, f"{type(part).__name__} built no models"
        html = " ".join(str(getattr(m, "text", "")) for m in models)
        assert "<i>CT</i>" not in html  # DICOM values stay escaped in a notebook too


def test_search_in_a_notebook_finds_the_study(archive):
    search = StudySearch(archive=archive, patient_name="note*")
    search.refresh()
    assert search.total == 1
    root = pn.panel(search).get_root()
    assert root.references(), "no Bokeh models were built"
