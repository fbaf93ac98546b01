"""Who may call which HTTP route: the role x route table of CONTRACT.md as a test (issue 15).

The expected table is data, written from CONTRACT.md ("Users and peers",
"JSON API"), not from what the server answers: each row is a route template,
a method and the lowest role that may call it. Every row is asked by four
callers (no credentials, viewer, editor, admin) of a real server:

- no credentials: 401 (except the public rows: /api/health, the login and
  logout pages, static resources);
- a role below the row's: 403;
- the row's role and above: neither 401 nor 403 (and no 5xx).

Where the contract is silent about a route the code has (exports, records,
pseudonyms, check, local import), the row says what the contract's roles
imply and the comment says so.

How state-changing rows stay harmless (so every row can run in any order):

- DELETE a study: a throwaway study, stored just before each call, is the
  one named (whoever asks, so a wrong "yes" destroys nothing shared);
- STOW-RS (POST /studies, POST /studies/{uid}): a fresh one-instance study
  with new UIDs; an allowed role really stores it;
- anonymize, send, check, exports: a deliberately invalid body, so an
  allowed role gets 400 (it got past the access check) and nothing runs.

``test_every_served_route_and_method_has_a_row`` reads the routes the code
registers (``http_routes``, with the methods each handler implements) and the
dashboard's pages (``PAGES``): a new route or method without a row here fails
the suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid
from tornado.web import RequestHandler

from tests.factories import PREFIX, make_instance
from tests.web.conftest import TRIAL_LABEL, USERS, session_for
from tests.web.test_dicomweb import multipart

PUBLIC = "public"  # anyone, logged in or not
LOCAL = "local"  # only the command line on the server's machine (its token), no user
VIEWER, EDITOR, ADMIN = "viewer", "editor", "admin"
RANK = {VIEWER: 1, EDITOR: 2, ADMIN: 3}
CALLERS = (None, VIEWER, EDITOR, ADMIN)  # None: no credentials


@dataclass(frozen=True)
class Row:
    """One route and method, and the lowest role the contract lets call it."""

    template: str
    method: str
    lowest: str
    #: "json" bodies are sent as application/json; "stow" is a fresh instance as multipart/related.
    body: Any = None
    why: str = field(default="", compare=False)


D = "/dicom-web"
S = f"{D}/studies/{{study}}"
SE = f"{S}/series/{{series}}"
I = f"{SE}/instances/{{instance}}"

#: The table (CONTRACT.md). Placeholders: {study} {series} {instance} {patient} of a
#: study stored by the fixture; {throwaway}: a study stored just for that call;
#: {new_study}: a new StudyInstanceUID (STOW to it); {job}, {pseudonym}: ids that do not exist.
ACCESS: list[Row] = [
    # -- JSON API ---------------------------------------------------------------
    Row("/api/health", "GET", PUBLIC, why="'GET /api/health answers 200 ... once everything is listening'"),
    Row("/api/studies?PatientID={patient}", "GET", VIEWER, why="viewer: search"),
    Row("/api/studies/{throwaway}", "DELETE", ADMIN, why="'DELETE /api/studies/{uid} (admin)'"),
    Row("/api/studies/{study}/archive", "GET", VIEWER, why="viewer: download"),
    Row("/api/studies/{study}/anonymize", "POST", EDITOR, {"options": "not-a-list"},
        why="'POST .../anonymize (editor)'; invalid options: 400 once past the role check"),
    Row("/api/studies/{study}/send", "POST", EDITOR, {"not": "a modality"},
        why="'POST .../send (editor)'; no modality: 400 once past the role check"),
    Row("/api/audit", "GET", ADMIN, why="'GET /api/audit ... (admin)'"),
    # The contract is silent on these routes of the code; the row is what its roles imply.
    Row("/api/check", "POST", ADMIN, {"repair": "not-a-boolean"},
        why="pacsdash check --repair changes the archive: admin, as the audit trail; 400 once past the check"),
    Row("/api/local/import", "POST", LOCAL, {"paths": []},
        why="`pacsdash import` is 'no network': the route is the command line's (its token), no user's"),
    Row("/api/local/audit", "POST", LOCAL, {"change": "not-a-change"},
        why="`pacsdash users|modalities` while the server runs: their user_change entries, the command line's only"),
    Row("/api/exports", "POST", VIEWER, {"studies": [], "where": {}},
        why="viewer: download (an export of originals); nothing to export: 400 once past the check"),
    Row("/api/exports", "POST", EDITOR, {"anonymize": True},
        why="an anonymized export is anonymizing (editor); nothing to export: 400 once past the check"),
    Row("/api/exports/{job}", "GET", VIEWER, why="viewer: download (own jobs); no such job: 404"),
    Row("/api/exports/{job}/download", "GET", VIEWER, why="viewer: download (own jobs); no such job: 404"),
    Row("/api/records", "GET", ADMIN, why="who anonymized and exported what: the audit trail's kind (admin)"),
    Row("/api/pseudonyms/{pseudonym}", "GET", ADMIN, why="re-identifies a pseudonym: admin (users and peers)"),
    # -- DICOMweb (PS3.18): search, view, download are the viewer's; STOW is upload (editor)
    Row(f"{D}/studies?PatientID={{patient}}", "GET", VIEWER),
    Row(f"{D}/studies", "POST", EDITOR, "stow", why="editor: upload (STOW)"),
    Row(f"{D}/series", "GET", VIEWER),
    Row(f"{D}/instances", "GET", VIEWER),
    Row(f"{S}/series", "GET", VIEWER),
    Row(f"{S}/instances", "GET", VIEWER),
    Row(f"{SE}/instances", "GET", VIEWER),
    Row(f"{S}/metadata", "GET", VIEWER),
    Row(f"{SE}/metadata", "GET", VIEWER),
    Row(f"{I}/metadata", "GET", VIEWER),
    Row(f"{I}/bulkdata/7FE00010", "GET", VIEWER),
    Row(f"{S}/pixeldata", "GET", VIEWER),
    Row(f"{SE}/pixeldata", "GET", VIEWER),
    Row(f"{I}/pixeldata", "GET", VIEWER),
    Row(f"{I}/frames/1", "GET", VIEWER),
    Row(f"{I}/rendered", "GET", VIEWER),
    Row(f"{I}/frames/1/rendered", "GET", VIEWER),
    Row(f"{I}/thumbnail", "GET", VIEWER),
    Row(f"{I}/frames/1/thumbnail", "GET", VIEWER),
    Row(S, "GET", VIEWER),
    Row(f"{D}/studies/{{new_study}}", "POST", EDITOR, "stow", why="editor: upload (STOW to a study)"),
    Row(SE, "GET", VIEWER),
    Row(I, "GET", VIEWER),
    # -- WADO-URI ---------------------------------------------------------------
    Row("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}", "GET", VIEWER),
    Row("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
        "&contentType=application/dicom", "GET", VIEWER, why="viewer: download"),
    # -- study labels: who sees what ----------------------------------------------
    Row("/api/studies/{study}/labels", "GET", EDITOR, why="'GET/PUT/DELETE /api/studies/{uid}/labels[/{label}] (editor)'"),
    Row("/api/studies/{study}/labels/{label}", "PUT", EDITOR, why="editor: labels"),
    Row("/api/studies/{study}/labels/{label}", "DELETE", EDITOR, why="editor: labels"),
    # -- no such API route: 404 to anyone (no route, nothing to protect) ----------
    Row("/api/no-such-route", "GET", PUBLIC, why="an unknown /api path is 404 whoever asks"),
]


#: The dashboard's pages (Panel, cookie login; Basic credentials are not a dashboard login).
#: Without a login a page sends the browser to the login page (the contract's "login
#: page in the dashboard"), a logged-in role that may sees it (200).
PAGE_ACCESS: list[Row] = [
    Row("/", "GET", VIEWER),
    Row("/study/{study}", "GET", VIEWER),
    Row("/patient/{patient}", "GET", VIEWER),
    Row("/admin", "GET", ADMIN, why="'for admins /admin (users, peers, settings, log)'"),
    Row("/activity", "GET", ADMIN, why="'for admins ... /activity (live traffic)'"),
    Row("/login", "GET", PUBLIC),
    Row("/logout", "GET", PUBLIC),
    Row("/static/js/bokeh.min.js", "GET", PUBLIC, why="static resources"),
]

#: Values that fill the placeholders when the table is matched against the code's routes.
SAMPLE = {"study": "1.2.3", "series": "1.2.3.4", "instance": "1.2.3.4.5", "patient": "P1",
          "throwaway": "1.2.3.9", "new_study": "1.2.3.10", "job": "0" * 32, "pseudonym": "NOSUCH",
          "label": "teaching"}


def row_id(row: Row) -> str:
    extra = "-anonymize" if isinstance(row.body, dict) and row.body.get("anonymize") else ""
    extra += "-dicom" if "contentType=application/dicom" in row.template else ""
    return f"{row.method} {row.template.split('?')[0]}{extra}"


# -- the routes the code registers -------------------------------------------
def served_routes() -> list[tuple[str, type]]:
    """(pattern, handler) of every route beside the dashboard, in Tornado's order."""
    from pacsdash.web.routes import http_routes

    return [(spec[0], spec[1]) for spec in http_routes(object())]  # the context is only stored at this point


def served_methods(handler: type) -> set[str]:
    """The methods a handler implements (OPTIONS, the CORS preflight, is checked on its own)."""
    return {m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())}


def route_of(path: str, routes: list[tuple[str, type]]) -> tuple[str, type] | None:
    """The route Tornado picks for ``path`` (the first whose pattern matches it all)."""
    for pattern, handler in routes:
        if re.fullmatch(pattern, path):
            return pattern, handler
    return None


def sample_path(template: str) -> str:
    return template.split("?")[0].format(**SAMPLE)


def test_every_served_route_and_method_has_a_row():
    routes = served_routes()
    covered = set()
    for row in ACCESS:
        found = route_of(sample_path(row.template), routes)
        if found is not None:
            covered.add((found[0], row.method))
    missing = [f"{method} {pattern} ({handler.__name__})" for pattern, handler in routes
               for method in sorted(served_methods(handler)) if (pattern, method) not in covered]
    assert not missing, "routes without an access decision in ACCESS: " + "; ".join(missing)


def test_every_row_is_a_route_and_method_the_server_has():
    routes = served_routes()
    wrong = []
    for row in ACCESS:
        found = route_of(sample_path(row.template), routes)
        if row.template.startswith("/api/no-such-route"):
            if found is None or found[0] != r"/api/.*":
                wrong.append(f"{row_id(row)} should fall to the /api catch-all")
        elif found is None or found[0] == r"/api/.*":
            wrong.append(f"{row_id(row)}: no route")
        elif row.method not in served_methods(found[1]):
            wrong.append(f"{row_id(row)}: {found[1].__name__} does not answer {row.method}")
    assert not wrong, wrong


def test_every_dashboard_page_has_a_row():
    from pacsdash.dashboard.pages import PAGES

    def shape(template: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", template)

    rows = {shape(row.template) for row in PAGE_ACCESS}
    missing = sorted(page for page in PAGES if shape(page) not in rows)
    assert not missing, f"pages without an access decision in PAGE_ACCESS: {missing}"


# -- the server -------------------------------------------------------------------
def stow(base_url: str, data: bytes, study: str | None = None, session: requests.Session | None = None
         ) -> requests.Response:
    body, content_type = multipart([data])
    url = f"{base_url}/dicom-web/studies" + (f"/{study}" if study else "")
    return (session or session_for(EDITOR)).post(url, data=body, headers={"Content-Type": content_type}, timeout=60)


@pytest.fixture(scope="module")
def stored(base_url) -> dict[str, str]:
    """A real study in the server, whose UIDs fill the placeholders."""
    uids = {"study": generate_uid(PREFIX), "series": generate_uid(PREFIX), "instance": generate_uid(PREFIX),
            "patient": "ACCESS1"}
    data = make_instance(StudyInstanceUID=uids["study"], SeriesInstanceUID=uids["series"],
                         SOPInstanceUID=uids["instance"], PatientID=uids["patient"])
    answer = stow(base_url, data)
    assert answer.status_code == 200, answer.text
    return uids


def fill(template: str, stored: dict[str, str], base_url: str) -> tuple[str, dict[str, str]]:
    """The URL of ``template`` and the values used (a throwaway study is stored now)."""
    values = dict(stored, job="0" * 32, pseudonym="NOSUCHPSEUDONYM", label="teaching")
    if "{throwaway}" in template and not values.get("throwaway"):  # unless the test brings its own
        values["throwaway"] = generate_uid(PREFIX)
        answer = stow(base_url, make_instance(StudyInstanceUID=values["throwaway"], PatientID="THROWAWAY"))
        assert answer.status_code == 200, answer.text
    if "{new_study}" in template:
        values["new_study"] = generate_uid(PREFIX)
    return base_url + template.format(**values), values


def call(row: Row, caller: str | None, stored: dict[str, str], base_url: str) -> requests.Response:
    url, values = fill(row.template, stored, base_url)
    session = session_for(caller) if caller else requests.Session()
    headers = {}
    if row.method in ("POST", "PUT", "PATCH", "DELETE"):
        headers["X-Requested-With"] = "pacsdash-tests"  # the CSRF rule passes: the answer is the access check's
    if row.body == "stow":
        uid = values.get("new_study") or generate_uid(PREFIX)
        body, content_type = multipart([make_instance(StudyInstanceUID=uid, PatientID="STOWED")])
        headers["Content-Type"] = content_type
        return session.request(row.method, url, data=body, headers=headers, timeout=60)
    if row.body is not None:
        return session.request(row.method, url, json=row.body, headers=headers, timeout=60)
    return session.request(row.method, url, headers=headers, timeout=60, allow_redirects=False)


def expected(row: Row, caller: str | None) -> str:
    """"401", "403", "refused" (401 or 403) or "allowed" (neither, and no 5xx)."""
    if row.lowest == PUBLIC:
        return "allowed"
    if row.lowest == LOCAL:
        return "401" if caller is None else "refused"
    if caller is None:
        return "401"
    return "allowed" if RANK[caller] >= RANK[row.lowest] else "403"


def check(answer: requests.Response, want: str, what: str) -> None:
    got = answer.status_code
    detail = f"{what}: expected {want}, got {got} {answer.text[:200]!r}"
    if want == "allowed":
        assert got not in (401, 403) and got < 500, detail
    elif want == "refused":
        assert got in (401, 403), detail
    else:
        assert got == int(want), detail


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "anonymous")
@pytest.mark.parametrize("row", ACCESS, ids=row_id)
def test_route_answers_each_caller_as_the_contract_says(row, caller, stored, base_url):
    answer = call(row, caller, stored, base_url)
    check(answer, expected(row, caller), f"{row_id(row)} as {caller or 'anonymous'}")
    if answer.status_code == 401:
        assert answer.headers.get("WWW-Authenticate", "").startswith("Basic "), "a 401 names the Basic scheme"


def test_a_wrong_password_is_401_even_where_no_login_is_needed_to_be_refused(stored, base_url):
    """Wrong credentials are 401 (not 403) on a route of each role."""
    for template in ("/api/studies", "/api/studies/{study}/send", "/api/audit"):
        url = base_url + template.format(**stored)
        method = "POST" if template.endswith("send") else "GET"
        answer = requests.request(method, url, auth=(VIEWER, "not-the-password"), json={}, timeout=60,
                                  headers={"X-Requested-With": "pacsdash-tests"})
        assert answer.status_code == 401, (template, answer.status_code)


def test_the_cors_preflight_of_every_route_is_public_and_says_nothing(stored, base_url):
    """OPTIONS (a CORS preflight never carries credentials): 204 and an empty body, on every route."""
    values = dict(SAMPLE, **stored)
    for row in ACCESS:
        if row.template.startswith("/api/no-such-route"):
            continue
        answer = requests.options(base_url + row.template.split("?")[0].format(**values), timeout=60)
        assert answer.status_code == 204 and not answer.content, (row_id(row), answer.status_code)


# -- the dashboard's pages ----------------------------------------------------------
def page_session(base_url: str, role: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{base_url}/login", data={"username": role, "password": USERS[role]},
                          allow_redirects=False, timeout=60)
    assert answer.status_code == 302 and "user" in session.cookies, (answer.status_code, answer.text[:200])
    return session


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "anonymous")
@pytest.mark.parametrize("row", PAGE_ACCESS, ids=row_id)
def test_page_answers_each_caller_as_the_contract_says(row, caller, stored, base_url):
    session = page_session(base_url, caller) if caller else requests.Session()
    answer = session.get(base_url + row.template.format(**stored), allow_redirects=False, timeout=60)
    what = f"{row.template} as {caller or 'anonymous'}: got {answer.status_code} {answer.headers.get('Location')}"
    if row.lowest == PUBLIC:
        assert answer.status_code == 200, what
    elif caller is None:
        assert answer.status_code == 302 and "login" in answer.headers.get("Location", ""), what
    elif RANK[caller] >= RANK[row.lowest]:
        assert answer.status_code == 200, what
    else:  # logged in, a role below the page's: 403, the refusal page as its body
        assert answer.status_code == 403, what


def test_basic_credentials_are_no_dashboard_login(base_url):
    """The pages take the login page's cookie; Basic credentials still lead to the login page."""
    answer = requests.get(f"{base_url}/admin", auth=(ADMIN, USERS[ADMIN]), allow_redirects=False, timeout=60)
    assert answer.status_code == 302 and "login" in answer.headers.get("Location", "")


# -- the label dimension: a caller restricted to labels ----------------------------------
#: Rows naming a stored study (directly or through its series, instance or patient).
STUDY_ROWS = [row for row in ACCESS if re.search(r"\{(study|series|instance|patient|throwaway)\}", row.template)
              and row.lowest not in (PUBLIC, LOCAL)]


def _label(study: str, base_url: str) -> None:
    answer = session_for(ADMIN).put(f"{base_url}/api/studies/{study}/labels/{TRIAL_LABEL}",
                                    headers={"X-Requested-With": "pacsdash-tests"}, timeout=60)
    assert answer.status_code == 200 and TRIAL_LABEL in answer.json()["labels"], answer.text


@pytest.fixture(scope="module")
def labelled(base_url) -> dict[str, str]:
    """A second real study, labelled trial-7: what the restricted callers may see."""
    uids = {"study": generate_uid(PREFIX), "series": generate_uid(PREFIX), "instance": generate_uid(PREFIX),
            "patient": "ACCESS-TRIAL"}
    answer = stow(base_url, make_instance(StudyInstanceUID=uids["study"], SeriesInstanceUID=uids["series"],
                                          SOPInstanceUID=uids["instance"], PatientID=uids["patient"]))
    assert answer.status_code == 200, answer.text
    _label(uids["study"], base_url)
    return uids


def _as(row: Row, caller: str, uids: dict[str, str], base_url: str, label_throwaway: bool = False
        ) -> requests.Response:
    """``row`` called by ``caller`` on the study ``uids`` (its throwaway labelled when asked)."""
    if label_throwaway and "{throwaway}" in row.template:
        throwaway = generate_uid(PREFIX)
        assert stow(base_url, make_instance(StudyInstanceUID=throwaway, PatientID="THROWAWAY")).status_code == 200
        _label(throwaway, base_url)
        uids = dict(uids, throwaway=throwaway)
    if "{throwaway}" in row.template and uids.get("unknown"):
        uids = dict(uids, throwaway=uids["study"])  # nobody stored it
    return call(row, caller, uids, base_url)


def _results(answer: requests.Response) -> list:
    body = answer.json()
    return body["studies"] if isinstance(body, dict) else body


@pytest.mark.parametrize("row", STUDY_ROWS, ids=row_id)
def test_a_caller_restricted_to_labels_finds_other_studies_as_if_they_did_not_exist(row, stored, labelled, base_url):
    """Role x route x label: ``trial-ROLE`` (the row's role, restricted to trial-7) is answered
    for an unlabelled study exactly as for a UID nobody stored (404 for a resource, no match
    for a search; never a 403 that would confirm it exists), and for a trial-7 study as the
    unrestricted user of that role is."""
    caller = f"trial-{row.lowest}"
    unknown = {"study": generate_uid(PREFIX), "series": generate_uid(PREFIX), "instance": generate_uid(PREFIX),
               "patient": "NOBODY-STORED-THIS", "unknown": "yes"}
    hidden = _as(row, caller, dict(stored), base_url)
    never = _as(row, caller, unknown, base_url)
    what = f"{row_id(row)} as {caller}"
    assert hidden.status_code == never.status_code, f"{what}: hidden {hidden.status_code}, unknown {never.status_code}"
    assert hidden.status_code != 403 and hidden.status_code < 500, what
    if "?PatientID=" in row.template:  # a search: no match
        assert hidden.status_code == 200 and _results(hidden) == [] == _results(never), what
    elif row.body is None:
        assert hidden.status_code == 404, f"{what}: {hidden.status_code} {hidden.text[:200]}"
    seen = _as(row, caller, dict(labelled), base_url, label_throwaway=True)
    plain = _as(row, row.lowest, dict(labelled), base_url, label_throwaway=True)
    assert seen.status_code == plain.status_code, f"{what} on a trial-7 study: {seen.status_code} vs {plain.status_code}"
    if "?PatientID=" in row.template:
        assert len(_results(seen)) == 1, what


def test_a_restricted_editor_keeps_seeing_what_they_upload_and_cannot_add_to_a_hidden_study(stored, base_url):
    editor = session_for(f"trial-{EDITOR}")
    new = generate_uid(PREFIX)
    answer = stow(base_url, make_instance(StudyInstanceUID=new, PatientID="TRIAL-UPLOAD"), session=editor)
    assert answer.status_code == 200, answer.text
    mine = editor.get(f"{base_url}/api/studies/{new}/labels", timeout=60)
    assert mine.status_code == 200 and mine.json()["labels"] == [TRIAL_LABEL]
    assert editor.get(f"{base_url}/dicom-web/studies?StudyInstanceUID={new}", timeout=60).json()
    into_hidden = stow(base_url, make_instance(StudyInstanceUID=stored["study"], PatientID=stored["patient"]),
                       study=stored["study"], session=editor)
    assert into_hidden.status_code == 404, into_hidden.text
    assert session_for(ADMIN).get(f"{base_url}/api/studies/{stored['study']}/labels", timeout=60).json()["labels"] == []


def test_a_label_change_shows_at_the_next_request_and_lands_in_the_audit_trail(base_url):
    viewer, admin = session_for(f"trial-{VIEWER}"), session_for(ADMIN)
    study = generate_uid(PREFIX)
    assert stow(base_url, make_instance(StudyInstanceUID=study, PatientID="LABEL-LATER")).status_code == 200
    url = f"{base_url}/dicom-web/studies/{study}/metadata"
    assert viewer.get(url, timeout=60).status_code == 404
    _label(study, base_url)
    assert viewer.get(url, timeout=60).status_code == 200
    removed = admin.delete(f"{base_url}/api/studies/{study}/labels/{TRIAL_LABEL}",
                           headers={"X-Requested-With": "pacsdash-tests"}, timeout=60)
    assert removed.status_code == 200 and removed.json() == {"StudyInstanceUID": study, "labels": [], "changed": True}
    assert viewer.get(url, timeout=60).status_code == 404  # the instance cache does not keep it visible
    bad = admin.put(f"{base_url}/api/studies/{study}/labels/has%20space", headers={"X-Requested-With": "x"}, timeout=60)
    assert bad.status_code == 400
    trail = admin.get(f"{base_url}/api/audit", params={"action": "label_change", "study": study}, timeout=60).json()
    assert [(e["user"], e["outcome"]) for e in trail["entries"]] == [(ADMIN, "success"), (ADMIN, "success")]
