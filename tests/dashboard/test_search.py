"""The study search component, without a browser."""

from __future__ import annotations

import datetime as dt

import pytest

from pacsdash.archive import Archive
from pacsdash.dashboard.search import StudySearch, person_name, wildcard
from tests.factories import make_instance


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    for k in range(60):
        archive.store_bytes(make_instance(PatientName=f"PATIENT^{k:02d}", PatientID=f"ID{k:02d}",
                                          StudyDate=f"2024{1 + k % 12:02d}{1 + k % 28:02d}", Modality="CT" if k % 3 else "MR",
                                          StudyDescription="HEAD" if k % 2 else "CHEST", AccessionNumber=f"ACC{k}"))
    archive.store_bytes(make_instance(PatientName="Müller^Jürgen", PatientID="MU1", StudyDate="20230101", Modality="CT"))
    archive.store_bytes(make_instance(PatientName="<script>alert(1)</script>^X", PatientID="XSS", StudyDate="20230102"))
    yield archive
    archive.close()


def test_pages_come_from_the_index(archive):
    search = StudySearch(archive=archive, page_size=25)
    assert search.total == 62
    first = list(search._table.value["StudyInstanceUID"])
    assert len(first) == 25
    search.next_page()
    second = list(search._table.value["StudyInstanceUID"])
    assert len(second) == 25 and not set(first) & set(second)
    search.next_page()
    search.next_page()  # no page after the last
    assert search.page == 2 and len(search._table.value) == 12
    dates = list(search._table.value["Date"])
    assert dates == sorted(dates, reverse=True)


def test_filters(archive):
    search = StudySearch(archive=archive)
    search.patient_name = "muller"  # case and accents as people type them
    assert list(search._table.value["Patient"]) == ["Müller, Jürgen"]
    search.patient_name = ""
    search.modality = "MR"
    assert search.total == 20
    search.modality = ""
    search.date_from, search.date_to = dt.date(2024, 1, 1), dt.date(2024, 1, 31)
    assert set(search._table.value["Date"]) <= {f"2024-01-{d:02d}" for d in range(1, 32)} and search.total == 5
    search.date_from = search.date_to = None
    search.patient_id = "id0?"
    assert search.total == 10  # every text filter matches as people type: case does not matter
    search.patient_id = "ID0?"
    assert search.total == 10


def test_selection_and_names(archive):
    search = StudySearch(archive=archive)
    search.patient_id = "XSS"
    search.open_row(0)
    assert search.selected == search._table.value.iloc[0]["StudyInstanceUID"] and search.patient == ""
    search.open_row(0, "Patient ID")
    assert search.patient == "XSS"
    heard = []
    search.param.watch(lambda e: heard.append(e.new), "selected")
    search.open_row(0, "Date")  # the same study again: still an event, to show it
    assert heard == [search.selected]
    # Cells are plain text: the Tabulator escapes them when drawing.
    assert search._table.value.iloc[0]["Patient"] == "<script>alert(1)</script>, X"
    assert person_name("DOE^JANE^Q") == "DOE, JANE Q"
    assert wildcard("smi") == "*smi*" and wildcard("smi*") == "smi*" and wildcard(" ") == ""


def test_a_bad_date_range_is_shown_not_raised(archive):
    search = StudySearch(archive=archive)
    search.date_from, search.date_to = dt.date(2024, 5, 1), dt.date(2024, 1, 1)
    assert "ends before" in search.error and search.total == 0


def test_descriptions_match_as_people_type_them(archive):
    search = StudySearch(archive=archive)
    search.description = "chest"  # stored as CHEST: case does not matter in a search box
    assert search.total == 30 and set(search._table.value["Description"]) == {"CHEST"}


def test_a_header_click_sorts_the_whole_result_in_the_index(archive):
    """The table's sort arrow sorts every page, not just the one shown."""
    search = StudySearch(archive=archive, page_size=25)
    search._table.sorters = [{"field": "Patient ID", "dir": "asc"}]  # what a header click sends
    assert search.page == 0 and search.order_by == [("PatientID", False)]
    seen = list(search._table.value["Patient ID"])
    for _ in range(2):
        search.next_page()
        seen += list(search._table.value["Patient ID"])
    assert seen == sorted(seen) and len(seen) == 62  # across the three pages
    search._table.sorters = [{"field": "Patient ID", "dir": "desc"}]
    assert search.page == 0 and list(search._table.value["Patient ID"])[0] == "XSS"


def test_dates_are_shown_as_dates():
    from pacsdash.dashboard.search import display_date

    assert display_date("20261102") == "2026-11-02"
    assert display_date("1997.04.24") == "1997-04-24"  # ACR-NEMA style, as some old files have
    assert display_date("2026") == "2026" and display_date(None) == ""
