"""Links to what the dashboard shows: ``/study/{StudyInstanceUID}``,
``/patient/{PatientID}`` and ``/``, with the search state in the query string.

A link is parsed into a :class:`ViewState` and a :class:`ViewState` written
back as a link; both ways validate, so a UID, an ID or a filter value from a
URL (typed, shared, tampered with) never reaches the index or the page
unchecked: a bad part is dropped and named in :attr:`ViewState.problem`.

Query string keys (all optional)::

    name, id, acc, desc   patient name, patient ID, accession, study description
    mod                   modality (one of the search's list)
    from, to              study date range, ISO (2024-01-31)
    sort                  comma list of keywords, ``-`` first for descending
    page                  0-based page of the result
    where                 ``Keyword=value``, repeated: a filter on any attribute
    series                the series shown (``/study/...`` only)
    tab                   export, upload or overview (``/`` only)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence
from urllib.parse import quote, urlencode

from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword

#: Tabs of the dashboard, by the name a link uses.
VIEWS = ("studies", "study", "patient", "export", "upload", "overview")
#: A UID: digits and dots (PS3.5 9.1), at most 64 characters.
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID = 64
MAX_TEXT = 200
MAX_PAGE = 1_000_000
MAX_WHERE = 20
#: VRs that cannot be matched from a search box (sequences, bulk data).
UNMATCHABLE_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (("StudyDate", True), ("StudyTime", True))


def valid_uid(text: str) -> bool:
    """Whether ``text`` is a UID: digits and dots, 1 to 64 characters."""
    return 0 < len(text) <= MAX_UID and bool(UID.match(text))


def valid_patient_id(text: str) -> bool:
    """Whether ``text`` can be a Patient ID (LO: at most 64 characters,
    no backslash, no control characters)."""
    return 0 < len(text) <= 64 and "\\" not in text and not any(ord(c) < 32 for c in text)


def _text(value: str) -> str:
    """A search box value from a URL, or ValueError."""
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise ValueError("too long or holds control characters")
    return value


def check_keyword_filter(keyword: str, value: str) -> tuple[str, str]:
    """``(keyword, value)`` of a filter on any attribute, checked against
    pydicom's data dictionary.

    Raises
    ------
    ValueError
        Naming the keyword or the value and why it is refused.
    """
    keyword = keyword.strip()
    tag = tag_for_keyword(keyword)
    if tag is None or not dictionary_has_tag(tag):
        raise ValueError(f"{keyword!r} is not a DICOM keyword (PS3.6), e.g. SliceThickness or ConvolutionKernel")
    vr = dictionary_VR(tag)
    if set(vr.split(" or ")) & UNMATCHABLE_VRS:  # "OB or OW" for Pixel Data
        raise ValueError(f"{keyword} ({vr}) cannot be matched by value")
    if not value.strip():
        raise ValueError(f"give a value for {keyword} (* matches any)")
    if len(value) > 1024 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{keyword} value is too long or holds control characters")
    return keyword, value.strip()


def parse_where(text: str) -> tuple[str, str]:
    """``Keyword=value`` -> ``(keyword, value)`` (see :func:`check_keyword_filter`)."""
    keyword, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{text[:80]!r} is not Keyword=value")
    return check_keyword_filter(keyword, value)


@dataclass(frozen=True)
class SearchState:
    """The study search's filters, order and page."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    modality: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    order_by: tuple[tuple[str, bool], ...] = DEFAULT_ORDER
    page: int = 0
    where: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ViewState:
    """What a dashboard page shows: a tab, its study, series or patient, and the search."""

    view: str = "studies"
    study: str = ""
    series: str = ""
    patient: str = ""
    search: SearchState = field(default_factory=SearchState)
    #: What was wrong with the link it came from (shown to the user), or "".
    problem: str = ""


_TEXT_KEYS = {"name": "patient_name", "id": "patient_id", "acc": "accession", "desc": "description"}


def _first(args: Mapping[str, Sequence[str | bytes]], key: str) -> str | None:
    values = args.get(key) or []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_search(args: Mapping[str, Sequence[str | bytes]], modalities: Sequence[str],
                 sort_keys: Sequence[str]) -> tuple[SearchState, list[str]]:
    """The search state of a query string (``{key: [values]}``, as Tornado
    gives them) and the problems found; bad values are dropped, not used."""
    problems: list[str] = []
    found: dict[str, object] = {}
    for key, name in _TEXT_KEYS.items():
        value = _first(args, key)
        if value is None:
            continue
        try:
            found[name] = _text(value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    modality = _first(args, "mod")
    if modality is not None:
        if modality in modalities:
            found["modality"] = modality
        else:
            problems.append(f"mod: {modality[:20]!r} is not a modality of the list")
    for key, name in (("from", "date_from"), ("to", "date_to")):
        value = _first(args, key)
        if value:
            try:
                found[name] = dt.date.fromisoformat(value)
            except ValueError:
                problems.append(f"{key}: {value[:20]!r} is not a date (YYYY-MM-DD)")
    sort = _first(args, "sort")
    if sort:
        order = []
        for part in sort.split(","):
            keyword = part.lstrip("-")
            if keyword not in sort_keys:
                problems.append(f"sort: {keyword[:40]!r} is not a column")
                order = []
                break
            order.append((keyword, part.startswith("-")))
        if order:
            found["order_by"] = tuple(order)
    page = _first(args, "page")
    if page is not None:
        if page.isdigit() and int(page) <= MAX_PAGE:
            found["page"] = int(page)
        else:
            problems.append(f"page: {page[:20]!r} is not a page number")
    where = []
    for raw in list(args.get("where") or [])[:MAX_WHERE]:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            where.append(parse_where(text))
        except ValueError as exc:
            problems.append(f"where: {exc}")
    if where:
        found["where"] = tuple(dict(where).items())
    return SearchState(**found), problems  # type: ignore[arg-type]


def parse_link(path: str, route: Mapping[str, str], args: Mapping[str, Sequence[str | bytes]],
               modalities: Sequence[str], sort_keys: Sequence[str]) -> ViewState:
    """The state a link asks for: ``path`` (``/``, ``/study/...``, ``/patient/...``),
    its route parameters (``uid``, ``patient_id``, decoded) and its query string."""
    search, problems = parse_search(args, modalities, sort_keys)
    state = ViewState(search=search)
    if path.startswith("/study/"):
        uid = route.get("uid", "")
        if valid_uid(uid):
            state = replace(state, view="study", study=uid)
            series = _first(args, "series")
            if series:
                if valid_uid(series):
                    state = replace(state, series=series)
                else:
                    problems.append(f"series: {series[:80]!r} is not a valid UID")
        else:
            state = replace(state, view="study")
            problems.insert(0, f"{uid[:80]!r} is not a valid Study Instance UID (digits and dots, at most 64)")
    elif path.startswith("/patient/"):
        patient_id = route.get("patient_id", "")
        state = replace(state, view="patient")
        if valid_patient_id(patient_id):
            state = replace(state, patient=patient_id)
        else:
            problems.insert(0, f"{patient_id[:80]!r} is not a valid Patient ID")
    else:
        tab = _first(args, "tab")
        if tab in ("export", "upload", "overview"):
            state = replace(state, view=tab)
    return replace(state, problem="; ".join(problems))


def search_args(search: SearchState) -> list[tuple[str, str]]:
    """The query string pairs of a search state (defaults left out)."""
    pairs = [(key, getattr(search, name)) for key, name in _TEXT_KEYS.items() if getattr(search, name)]
    if search.modality:
        pairs.append(("mod", search.modality))
    if search.date_from:
        pairs.append(("from", search.date_from.isoformat()))
    if search.date_to:
        pairs.append(("to", search.date_to.isoformat()))
    if tuple(search.order_by) != DEFAULT_ORDER and search.order_by:
        pairs.append(("sort", ",".join(("-" if desc else "") + key for key, desc in search.order_by)))
    if search.page:
        pairs.append(("page", str(search.page)))
    pairs += [("where", f"{key}={value}") for key, value in search.where]
    return pairs


def link(state: ViewState) -> str:
    """The path and query string of ``state`` (UIDs and IDs quoted)."""
    pairs = search_args(state.search)
    if state.view == "study" and state.study:
        path = f"/study/{quote(state.study, safe='')}"
        if state.series:
            pairs.insert(0, ("series", state.series))
    elif state.view == "patient" and state.patient:
        path = f"/patient/{quote(state.patient, safe='')}"
    else:
        path = "/"
        if state.view in ("export", "upload", "overview"):
            pairs.insert(0, ("tab", state.view))
    return path + ("?" + urlencode(pairs, quote_via=quote) if pairs else "")


def split_url(url: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    """``(path, route parameters, query arguments)`` of a URL the browser went
    back or forward to, as the server would see a request for it."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    path = parts.path or "/"
    route: dict[str, str] = {}
    for prefix, name in (("/study/", "uid"), ("/patient/", "patient_id")):
        if path.startswith(prefix):
            route[name] = unquote(path[len(prefix):])
    return path, route, parse_qs(parts.query, keep_blank_values=False)
