"""Links without a browser: parsing and writing them, and the dashboard's state in step with its URL."""

from __future__ import annotations

import datetime as dt

import pytest

from pacsdash.access import Role
from pacsdash.archive import Archive
from pacsdash.dashboard.links import (
    SearchState,
    ViewState,
    check_keyword_filter,
    link,
    parse_where,
    split_url,
    valid_patient_id,
    valid_uid,
)
from pacsdash.dashboard.navigation import Navigation, read_link
from tests.factories import make_instance


def parsed(url: str) -> ViewState:
    return read_link(*split_url(url))


def test_a_state_round_trips_through_its_link():
    state = ViewState(view="study", study="1.2.3", series="1.2.3.4", search=SearchState(
        patient_name="müller*", patient_id="a&b=c", accession="ACC 1", description="chest?", modality="CT",
        date_from=dt.date(2020, 1, 2), date_to=dt.date(2021, 3, 4), order_by=(("PatientName", False),
                                                                             ("StudyDate", True)),
        page=3, where=(("SliceThickness", "<=1"), ("ConvolutionKernel", "B30*"))))
    url = link(state)
    assert url.startswith("/study/1.2.3?series=1.2.3.4&")
    assert parsed(url) == state
    for other in (ViewState(), ViewState(view="patient", patient="ID/with slash?"), ViewState(view="overview")):
        assert parsed(link(other)) == other
    assert link(ViewState(view="patient", patient="ID/with slash?")) == "/patient/ID%2Fwith%20slash%3F"
    assert link(ViewState()) == "/"  # the defaults are left out


def test_nothing_from_a_url_is_trusted():
    bad = parsed("/study/1.2.3'%3Cb%3E?series=x&page=-1&sort=Nope&mod=XX&from=2020-13-01&where=Nope%3D1"
                 "&where=PixelData%3D1&name=%01")
    assert bad.view == "study" and bad.study == "" and bad.series == ""
    assert bad.search == SearchState()
    for words in ("not a valid Study Instance UID", "page", "sort", "mod", "from", "not a DICOM keyword",
                  "cannot be matched", "name"):
        assert words in bad.problem
    assert "<b>" in bad.problem  # named as it came (the page escapes it)
    assert parsed("/patient/a%5Cb").patient == "" and "Patient ID" in parsed("/patient/a%5Cb").problem
    assert parsed("/?tab=upload").view == "upload" and parsed("/?tab=../../x").view == "studies"
    assert valid_uid("1.2.840.10008.1.2") and not valid_uid("1." * 40) and not valid_uid("1.2.a")
    assert valid_patient_id("ID 1*?") and not valid_patient_id("x" * 65) and not valid_patient_id("")


def test_keyword_filters_are_checked_against_the_dictionary():
    assert parse_where("SliceThickness=<=1") == ("SliceThickness", "<=1")
    assert check_keyword_filter(" ConvolutionKernel ", " B30f ") == ("ConvolutionKernel", "B30f")
    for text, words in (("Slicethickness=1", "not a DICOM keyword"), ("PixelData=1", "cannot be matched"),
                        ("ReferencedImageSequence=1", "cannot be matched"), ("SliceThickness=", "give a value"),
                        ("SliceThickness", "Keyword=value")):
        with pytest.raises(ValueError, match=words):
            parse_where(text)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nav")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    for k in range(40):
        archive.store_bytes(make_instance(PatientName=f"NAV^{k:02d}", PatientID=f"NAV{k:02d}",
                                          StudyDate=f"2021{1 + k % 12:02d}10", Modality="CT" if k % 2 else "MR",
                                          ConvolutionKernel="B30f" if k % 4 == 0 else "B70f"))
    yield archive
    archive.close()


@pytest.fixture
def navigation(archive):
    import panel as pn

    from pacsdash.dashboard.patient import PatientView
    from pacsdash.dashboard.search import StudySearch
    from pacsdash.dashboard.study import StudyPanel

    search, patient = StudySearch(archive=archive), PatientView(archive=archive)
    study = StudyPanel(archive=archive, role=Role.VIEWER)
    names = ["Studies", "Study", "Patient", "Overview"]
    tabs = pn.Tabs(*[(name, pn.pane.HTML(name)) for name in names])
    return Navigation(search, study, patient, tabs, names)


def test_every_change_is_written_to_the_url(navigation):
    search = navigation.search
    assert navigation.history.url == "" and navigation.history.entry == ""
    search.patient_name = "nav"
    assert navigation.history.url == "/?name=nav"
    search._table.sorters = [{"field": "Patient ID", "dir": "desc"}]  # a header click
    search.next_page()
    assert navigation.history.url == "/?name=nav&sort=-PatientID&page=1"
    search.where = ["ConvolutionKernel=B30f"]
    assert navigation.history.url == "/?name=nav&sort=-PatientID&where=ConvolutionKernel%3DB30f"  # page 0 again
    search.open_row(0)
    uid = navigation.study.study_uid = search.selected  # as the app does on a click
    navigation.tabs.active = 1
    assert navigation.history.url.startswith(f"/study/{uid}?series=")
    assert navigation.study.link.endswith(navigation.history.url)  # the copyable link (no host outside a page)


def test_a_link_restores_the_state_and_back_shows_the_last(navigation):
    navigation.start(parsed("/?name=nav&mod=CT&sort=PatientID&page=1"))
    search = navigation.search
    assert (search.patient_name, search.modality, search.page, search.order_by) == \
        ("nav", "CT", 1, [("PatientID", False)])
    assert search.total == 20 and len(search._table.value) == 0  # 20 CT studies: no second page of 25
    assert navigation.history.url == "/?name=nav&mod=CT&sort=PatientID&page=1"
    navigation.start(parsed("/?name=nav&sort=PatientID&page=1"))
    assert list(search._table.value["Patient ID"]) == [f"NAV{k:02d}" for k in range(25, 40)]
    # Back to an earlier URL: its state is shown, and no new entry is written.
    entry = navigation.history.entry
    navigation.history.param.update(popped="/?name=nav%5E0&mod=MR", pops=navigation.history.pops + 1)
    assert (search.patient_name, search.modality, search.page) == ("nav^0", "MR", 0)
    assert set(search._table.value["Patient ID"]) == {f"NAV{k:02d}" for k in range(0, 10, 2)}
    assert navigation.history.entry == entry
    # The next change is written with the back move counted (the browser drops writes made before it).
    search.modality = "CT"
    assert navigation.history.entry.endswith(f"|{navigation.history.pops}|/?name=nav%5E0&mod=CT")


def test_a_study_link_opens_its_series(navigation, archive):
    from pacsdash.archive import Level, Query

    [row] = archive.find(Query(Level.STUDY, {"PatientID": "NAV03"}))
    navigation.start(parsed(f"/study/{row['StudyInstanceUID']}"))
    assert navigation.tabs.active == 1 and navigation.study.study_uid == row["StudyInstanceUID"]
    assert navigation.study.series_uid and navigation.history.url.endswith(f"series={navigation.study.series_uid}")
    navigation.start(parsed("/patient/NAV03"))
    assert navigation.tabs.active == 2 and navigation.patient.patient_id == "NAV03"
    assert navigation.history.url == "/patient/NAV03"


def test_a_logged_out_visitor_of_a_nested_page_is_sent_to_the_login_page():
    """Panel's relative './login' from /study/1.2.3 would be /study/login (a study page behind the login)."""
    from types import SimpleNamespace

    from panel.io import server

    from pacsdash.dashboard.pages import PAGES, login_from_nested_pages

    login_from_nested_pages()
    login_from_nested_pages()  # once is enough: no handler wrapped twice
    [handler] = [h for route, h in server.per_app_patterns if route == r"/?"]
    assert handler is not server.DocHandler and handler.__mro__[1] is server.DocHandler
    provider = SimpleNamespace(get_login_url=None, login_url="/login")
    for path, expected in (("/", "./login"), ("/admin", "./login"), ("/study/1.2.3", "../login"),
                           ("/patient/A%2FB", "../login")):
        page = handler.__new__(handler)  # the page handler of a request for ``path``, not served
        page.request, page.application = SimpleNamespace(path=path), SimpleNamespace(auth_provider=provider)
        assert page.get_login_url() == expected, path
    assert {"/", "/study/{uid}", "/patient/{patient_id}"} <= set(PAGES)
