"""The dashboard: study search on a large index, first frame and scrolling in a real browser.

(a) Search: a DuckDB index of ``plan.dash_studies`` studies is generated
    straight into pacsdash's own schema (no DICOM files: patients, studies,
    series and instance rows), opened with :class:`pacsdash.archive.Archive`
    and searched with the dashboard's own :class:`StudySearch`
    (``refresh()``: the page of 25 studies sorted by date, the total count,
    and the table), in this process.
(b) First frame: ``pacsdash serve`` on a home with that index plus one real
    study of ``plan.web_instances`` CT 512x512 slices; Chromium (headless,
    driven by Playwright) logs in, searches the patient, clicks the study, and
    the time from the click to the viewer's canvas drawing a frame is taken in
    the page (``performance.now()``).
(c) Scrolling: once the browser holds every frame of the series, arrow-down
    key presses go from the first slice to the last; the canvas's own draws
    (its ``data-drawn`` counter) are timed in the page.
(d) Study link: the same logged-in browser opens ``/study/{uid}`` in a new
    page; the time from the start of the navigation to the canvas drawing a
    frame is taken in the page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cfind import percentile
from benchmarks.common import CHROMIUM, WORK_DIR, BenchError, Skipped
from benchmarks.cpu import ForeignLoad
from benchmarks.datasets import GIVEN, SMITH_NAMES, STUDY_MODALITIES, SURNAMES, ct_volume
from benchmarks.guard import Guard, say
from benchmarks.machine import source_state
from benchmarks.report import Results
from benchmarks.servers import WEB_PASSWORD, WEB_USER, PacsdashServer

#: Targets printed beside the figures: (comparison, value in the row's unit).
TARGETS = {"search": ("<", 200.0), "first_frame": ("<", 1000.0), "link": ("<", 1500.0), "fps": (">=", 20.0)}
FIRST_DATE = dt.date(2014, 1, 1)
DATE_SPREAD_DAYS = 3650
SEARCH_DATES = (dt.date(2020, 1, 1), dt.date(2020, 1, 31))
PAGE_SIZE = 25
UID_ROOT = "1.2.826.0.1.3680043.10.999"
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
SOP_CLASSES = {"CT": CT_CLASS, "MR": "1.2.840.10008.5.1.4.1.1.4", "CR": "1.2.840.10008.5.1.4.1.1.1",
               "US": "1.2.840.10008.5.1.4.1.1.6.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1",
               "PT": "1.2.840.10008.5.1.4.1.1.128"}


# -- the generated index -------------------------------------------------------
@dataclass(frozen=True)
class DashIndexPlan:
    """Shape of the generated index: ``studies`` studies of ``studies // 5`` patients."""

    studies: int
    per_study: int = 10

    @property
    def patients(self) -> int:
        return max(1, self.studies // 5)

    def patient(self, p: int) -> tuple[str, str, str, str]:
        """(name, id, birth date, sex); one patient in 200 has a name containing SMITH."""
        if p % 200 == 7:
            name = SMITH_NAMES[(p // 200) % len(SMITH_NAMES)]
        else:
            name = f"{SURNAMES[p % len(SURNAMES)]}^{GIVEN[(p // len(SURNAMES)) % len(GIVEN)]}"
        birth = (dt.date(1930, 1, 1) + dt.timedelta(days=(p * 3571) % 30000)).strftime("%Y%m%d")
        return name, f"DP{p:06d}", birth, "F" if p % 2 else "M"

    def study_date(self, s: int) -> dt.date:
        return FIRST_DATE + dt.timedelta(days=(s * 7919) % DATE_SPREAD_DAYS)

    def modalities(self, s: int) -> list[str]:
        return STUDY_MODALITIES[s % len(STUDY_MODALITIES)].split("+")


@dataclass(frozen=True)
class SearchCase:
    """One dashboard search: StudySearch parameters and what must come back."""

    name: str
    label: str
    params: dict[str, Any]
    expected: int
    #: StudyDate of the first row (the newest match).
    newest: str


def search_cases(plan: DashIndexPlan) -> list[SearchCase]:
    """The searches timed, with totals computed from the generator (not from the index)."""
    dates = [plan.study_date(s).strftime("%Y%m%d") for s in range(plan.studies)]
    smith = [("smith" in plan.patient(s % plan.patients)[0].lower()) for s in range(plan.studies)]
    lo, hi = (d.strftime("%Y%m%d") for d in SEARCH_DATES)
    in_range = [lo <= d <= hi for d in dates]
    ct = ["CT" in plan.modalities(s) for s in range(plan.studies)]

    def case(name: str, label: str, params: dict[str, Any], hits: list[bool]) -> SearchCase:
        matching = [d for d, hit in zip(dates, hits) if hit]
        return SearchCase(name, label, params, len(matching), max(matching) if matching else "")

    return [
        case("all", "no filter (the page shown after login)", {}, [True] * plan.studies),
        case("name", "name 'smith' (wildcard *smith*)", {"patient_name": "smith"}, smith),
        case("date", f"date range {lo}-{hi}", {"date_from": SEARCH_DATES[0], "date_to": SEARCH_DATES[1]}, in_range),
        case("modality", "modality CT", {"modality": "CT"}, ct),
    ]


def _schema_digest(path: Path) -> str:
    """A digest of the tables pacsdash creates in a fresh index (regenerate when it changes)."""
    import duckdb

    from pacsdash.archive.index import DuckDBIndex

    DuckDBIndex(path).close()
    con = duckdb.connect(str(path))
    try:
        rows = con.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY table_name").fetchall()
    finally:
        con.close()
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:12]


def _frames(plan: DashIndexPlan) -> tuple[Any, Any, Any]:
    """pandas frames of patients, studies and series (instances are made in SQL from the series)."""
    import pandas as pd

    patients = [plan.patient(p) for p in range(plan.patients)]
    study_rows, series_rows = [], []
    for s in range(plan.studies):
        name, pid, birth, sex = patients[s % plan.patients]
        uid = f"{UID_ROOT}.1.{s}"
        study_rows.append({
            "StudyInstanceUID": uid, "StudyDate": plan.study_date(s).strftime("%Y%m%d"),
            "StudyTime": f"{8 + s % 10:02d}{(s * 7) % 60:02d}00", "AccessionNumber": f"DA{s:08d}",
            "StudyID": str(s % 100000), "StudyDescription": f"GENERATED STUDY {s % 53}",
            "ReferringPhysicianName": "HOUSE^GREGORY", "PatientID": pid, "PatientName": name,
            "PatientBirthDate": birth, "PatientSex": sex,
        })
        modalities = plan.modalities(s)
        for n, modality in enumerate(modalities):
            share = plan.per_study // len(modalities) + (1 if n < plan.per_study % len(modalities) else 0)
            series_rows.append({
                "SeriesInstanceUID": f"{UID_ROOT}.2.{s}.{n + 1}", "Modality": modality, "SeriesNumber": str(n + 1),
                "SeriesDescription": f"{modality} series", "StudyInstanceUID": uid, "n": share,
                "SOPClassUID": SOP_CLASSES[modality],
            })
    patient_rows = [{"PatientID": pid, "PatientName": name, "PatientBirthDate": birth, "PatientSex": sex}
                    for name, pid, birth, sex in patients]
    return pd.DataFrame(patient_rows), pd.DataFrame(study_rows), pd.DataFrame(series_rows)


def _write_index(path: Path, plan: DashIndexPlan) -> None:
    import duckdb

    from pacsdash.archive import summaries
    from pacsdash.archive.index import DuckDBIndex

    DuckDBIndex(path).close()  # pacsdash's own schema
    patients, studies, series = _frames(plan)
    con = duckdb.connect(str(path))
    try:
        con.register("gen_patients", patients)
        con.register("gen_studies", studies)
        con.register("gen_series", series)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO patients BY NAME SELECT *, now() AS received_at FROM gen_patients")
        con.execute("INSERT INTO studies BY NAME SELECT *, now() AS received_at FROM gen_studies")
        con.execute('INSERT INTO series BY NAME SELECT "SeriesInstanceUID", "Modality", "SeriesNumber", '
                    '"SeriesDescription", "StudyInstanceUID", now() AS received_at FROM gen_series')
        con.execute(
            'INSERT INTO instances BY NAME SELECT "SeriesInstanceUID" || \'.\' || CAST(k + 1 AS VARCHAR) AS '
            '"SOPInstanceUID", "SOPClassUID", CAST(k + 1 AS VARCHAR) AS "InstanceNumber", \'64\' AS "Rows", '
            '\'64\' AS "Columns", \'16\' AS "BitsAllocated", \'MONOCHROME2\' AS "PhotometricInterpretation", '
            '"SeriesInstanceUID", "StudyInstanceUID", \'1.2.840.10008.1.2.1\' AS "TransferSyntaxUID", '
            '\'generated/\' || "SeriesInstanceUID" || \'.\' || CAST(k + 1 AS VARCHAR) AS file, 9000 AS size, '
            '\'benchmark\' AS origin, now() AS received_at, \'{}\' AS attributes '
            'FROM (SELECT *, unnest(range(n)) AS k FROM gen_series)')
        summaries.refresh(con, None, None)  # counts and ModalitiesInStudy, as the writer keeps them
        # A clean stop: the server must not "reconcile" (the generated rows have no files).
        con.execute("CREATE TABLE IF NOT EXISTS archive_state (name VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT OR REPLACE INTO archive_state VALUES ('state', 'closed')")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def generated_index(plan: DashIndexPlan) -> Path:
    """The index file of ``plan``, generated once into ``benchmarks/work/`` (again when pacsdash's schema changes)."""
    folder = WORK_DIR / f"dash-index-{plan.studies}x{plan.per_study}"
    probe = WORK_DIR / "tmp" / f"schema-probe-{os.getpid()}.duckdb"
    probe.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = _schema_digest(probe)
    finally:
        for leftover in probe.parent.glob(probe.name + "*"):
            leftover.unlink()
    marker, path = folder / "complete.json", folder / "index.duckdb"
    try:
        if json.loads(marker.read_text()).get("schema") == digest:
            return path
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    say(f"generating a dashboard index of {plan.studies} studies in {folder} ...")
    started = time.monotonic()
    _write_index(path, plan)
    marker.write_text(json.dumps({"studies": plan.studies, "per_study": plan.per_study, "schema": digest}))
    say(f"  {time.monotonic() - started:.1f} s, {path.stat().st_size / 2**20:.0f} MiB")
    return path


# -- (a) search ------------------------------------------------------------------
def _summary(times_ms: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times_ms), 2), "p95_ms": round(percentile(times_ms, 95), 2),
            "min_ms": round(min(times_ms), 2), "max_ms": round(max(times_ms), 2), "repetitions": len(times_ms)}


def measure_search(index_path: Path, plan: DashIndexPlan, repetitions: int, folder: Path,
                   warmup: int = 3) -> dict[str, dict]:
    """Time ``StudySearch.refresh()`` (and, apart, the index query and count) for each search case."""
    import logging

    from pacsdash.archive import Archive
    from pacsdash.dashboard.search import StudySearch, display_date

    logging.getLogger("bokeh").setLevel(logging.ERROR)
    home = folder / "search-home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(index_path, home / "index.duckdb")
    archive = Archive.open_home(home / "store", home / "index.duckdb")
    results: dict[str, dict] = {}
    try:
        search = StudySearch(archive=archive, page_size=PAGE_SIZE)
        defaults = {"patient_name": "", "patient_id": "", "accession": "", "description": "", "modality": "",
                    "date_from": None, "date_to": None}
        for case in search_cases(plan):
            search.param.update(**{**defaults, **case.params})
            total, rows = search.total, search._table.value  # noqa: SLF001 - the table the user sees
            shown = min(PAGE_SIZE, case.expected)
            first_date = str(rows.iloc[0]["Date"]) if len(rows) else ""
            newest = display_date(case.newest) if case.newest else ""  # the table shows dates as 2020-01-31
            if search.error or total != case.expected or len(rows) != shown or first_date != newest:
                raise BenchError(f"dashboard search {case.label}: {total} studies, {len(rows)} rows, first dated "
                                 f"{first_date!r} ({search.error or 'no error'}); expected {case.expected}, {shown}, "
                                 f"{newest!r}")
            times, find_times, count_times = [], [], []
            query = search.query()
            for rep in range(warmup + repetitions):
                started = time.perf_counter()
                search.refresh()
                middle = time.perf_counter()
                archive.find(query)
                found = time.perf_counter()
                archive.count(query)
                counted = time.perf_counter()
                if rep >= warmup:
                    times.append((middle - started) * 1000)
                    find_times.append((found - middle) * 1000)
                    count_times.append((counted - found) * 1000)
            if search.total != case.expected:
                raise BenchError(f"dashboard search {case.label}: {search.total} studies on repetition")
            results[case.name] = {
                "label": case.label, "matches": case.expected, **_summary(times),
                "index_find_page_median_ms": round(statistics.median(find_times), 2),
                "index_count_median_ms": round(statistics.median(count_times), 2),
            }
    finally:
        archive.close()
    return results


# -- (b, c) the browser -------------------------------------------------------------
#: In-page helpers: find elements through open shadow roots (Panel renders components in them).
DEEP_JS = """() => {
window.__deepAll = (sel, root = document, out = []) => {
  root.querySelectorAll(sel).forEach((e) => out.push(e))
  root.querySelectorAll('*').forEach((e) => { if (e.shadowRoot) window.__deepAll(sel, e.shadowRoot, out) })
  return out
}
// From the next ``eventType`` (a trusted user event, caught on its way down) on, record when each of
// ``marks`` (name -> predicate source) first holds, polled once per animation frame; ``end`` when the
// last mark, the one that matters, holds.
window.__armTimer = (eventType, marks) => {
  const predicates = Object.entries(marks).map(([name, source]) => [name, new Function(source)])
  const state = window.__timer = {start: null, end: null, marks: {}}
  document.addEventListener(eventType, () => { if (state.start === null) state.start = performance.now() },
                            {capture: true, once: true})
  const poll = () => {
    if (state.start !== null) {
      for (const [name, predicate] of predicates) {
        if (!(name in state.marks) && predicate()) state.marks[name] = performance.now() - state.start
      }
      const last = predicates[predicates.length - 1][0]
      if (last in state.marks) { state.end = state.start + state.marks[last]; return }
    }
    requestAnimationFrame(poll)
  }
  requestAnimationFrame(poll)
}
}"""
ROWS_SHOW_ONLY = """
const rows = window.__deepAll('.tabulator-row')
return rows.length === 1 && rows[0].textContent.includes(%s)
"""
#: The canvas component's own element (focusable; the study panel's slot around it has the class too).
VIEWER = ".pd-viewer[tabindex]"
FRAME_DRAWN = "return window.__deepAll('.pd-viewer canvas[data-frame-index]').length > 0"
#: Run in a page opened on a link before any of its scripts: from the start of the navigation (performance.now()
#: counts from it), record when the viewer appears and when its canvas first drew a frame, once per animation frame.
LINK_MARKS_JS = DEEP_JS[DEEP_JS.index("{") + 1:DEEP_JS.rindex("}")] + """
window.__linkMarks = {}
const __pollLink = () => {
  const marks = window.__linkMarks
  if (!('viewer' in marks) && window.__deepAll('.pd-viewer[tabindex]').length) marks.viewer = performance.now()
  if (window.__deepAll('.pd-viewer canvas[data-frame-index]').length) { marks.frame = performance.now(); return }
  requestAnimationFrame(__pollLink)
}
requestAnimationFrame(__pollLink)
"""


def _wait_timer(page: Any, timeout_s: float, what: str) -> dict[str, float]:
    """Milliseconds from the armed event to each mark, once the last one held."""
    page.wait_for_function("() => window.__timer && window.__timer.end !== null", timeout=timeout_s * 1000)
    state = page.evaluate("() => window.__timer")
    if state["start"] is None:
        raise BenchError(f"{what}: the triggering event was never seen")
    return {name: round(float(ms), 1) for name, ms in state["marks"].items()}


SCROLL_RECORDER = """
(root) => {
  const canvas = root.querySelector('canvas')
  const log = window.__draws = []
  window.__drawObserver = new MutationObserver(() => log.push([performance.now(), Number(canvas.dataset.frameIndex)]))
  window.__drawObserver.observe(root, {attributes: true, attributeFilter: ['data-drawn']})
}
"""


#: Scroll one slice per key, each key sent (in the page) as soon as the previous slice is drawn, so that every
#: slice is drawn; resolves with the (time, slice drawn) records.
PACED_SCROLL = """
([root, key, target]) => new Promise((resolve) => {
  const canvas = root.querySelector('canvas')
  const log = [[performance.now(), Number(canvas.dataset.frameIndex)]]
  const step = key === 'ArrowDown' ? 1 : -1
  let wanted = log[0][1]
  const send = () => {
    wanted += step
    root.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true, cancelable: true}))
  }
  const observer = new MutationObserver(() => {
    const drawn = Number(canvas.dataset.frameIndex)
    log.push([performance.now(), drawn])
    if (drawn === target) { observer.disconnect(); resolve(log) }
    else if (drawn === wanted) send()
  })
  observer.observe(root, {attributes: true, attributeFilter: ['data-drawn']})
  setTimeout(() => { observer.disconnect(); resolve(log) }, 60000)
  send()
})
"""


def scroll_stats(draws: list[list[float]], first: int, last: int) -> dict[str, Any]:
    """Frames per second of a scroll from slice ``first`` to ``last`` from (time ms, slice drawn) records.

    Counts the distinct slices drawn from the first draw after ``first`` up to
    the draw of ``last``; fps = (draws - 1) / time between the first and the
    last of them. Slices the canvas never drew (input faster than drawing) are
    reported as skipped, not counted.
    """
    shown: list[tuple[float, int]] = []
    for t, index in draws:
        if index == first and not shown:
            continue
        if not shown or shown[-1][1] != index:
            shown.append((t, int(index)))
        if index == last:
            break
    if not shown or shown[-1][1] != last:
        raise BenchError(f"the scroll never drew slice {last + 1} (drew {len(shown)} slices)")
    seconds = (shown[-1][0] - shown[0][0]) / 1000
    fps = (len(shown) - 1) / seconds if seconds > 0 and len(shown) > 1 else 0.0
    gaps = [b[0] - a[0] for a, b in zip(shown, shown[1:])]
    return {"slices_drawn": len(shown), "slices_skipped": abs(last - first) - len(shown), "seconds": round(seconds, 3),
            "fps": round(fps, 1), "median_gap_ms": round(statistics.median(gaps), 1) if gaps else None,
            "max_gap_ms": round(max(gaps), 1) if gaps else None}


def open_link(context: Any, url: str, shots: Path | None) -> dict[str, float]:
    """Open ``url`` (a study link) in a new page of a logged-in browser context; ms from the navigation's start to
    the server's first byte, the page's DOMContentLoaded, the viewer appearing and its first frame drawn."""
    page = context.new_page()
    try:
        page.add_init_script(LINK_MARKS_JS)
        page.goto(url)
        page.wait_for_function("() => window.__linkMarks && 'frame' in window.__linkMarks", timeout=120_000)
        if "/login" in page.url:
            raise BenchError(f"the study link {url} led to the login page")
        marks = page.evaluate("""() => {
          const nav = performance.getEntriesByType('navigation')[0]
          return {response_start: nav.responseStart, dom_content_loaded: nav.domContentLoadedEventEnd,
                  ...window.__linkMarks}
        }""")
        if shots:
            page.screenshot(path=str(shots / "study-link.png"))
    finally:
        page.close()
    return {name: round(float(ms), 1) for name, ms in marks.items()}


def browser_session(browser: Any, base_url: str, patient: str, slices: int, shots: Path | None,
                    study_uid: str) -> dict[str, Any]:
    """One user: log in, search ``patient``, open the study, wait for every slice, scroll through them; then open
    the study's link (``/study/{study_uid}``) in another page of the same logged-in browser."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else None)
    out: dict[str, Any] = {}
    try:
        page.goto(f"{base_url}/")
        page.fill("#username", WEB_USER)
        page.fill("#password", WEB_PASSWORD)
        started = time.perf_counter()
        page.click("button[type=submit]")
        page.wait_for_selector("text=Find studies", timeout=60_000)
        page.wait_for_selector(".tabulator-row", timeout=60_000)
        out["login_to_table_ms"] = round((time.perf_counter() - started) * 1000, 1)
        page.evaluate(DEEP_JS)
        # Search in the browser: Enter in the name box -> the table shows the one study.
        name = page.get_by_placeholder("e.g. smith or müller*")
        name.fill(patient.lower())
        page.evaluate("([e, m]) => window.__armTimer(e, m)",
                      ["keydown", {"table": ROWS_SHOW_ONLY % json.dumps(patient)}])
        name.press("Enter")
        out["browser_search_ms"] = _wait_timer(page, 120, "search")["table"]
        # Open the study: click -> the study's title, the viewer, its first frame drawn.
        page.evaluate("([e, m]) => window.__armTimer(e, m)", ["pointerdown", {
            "study_panel": "return window.__deepAll('a[href$=\"/archive\"]').length > 0",
            "viewer": f"return window.__deepAll('{VIEWER}').length > 0", "frame": FRAME_DRAWN}])
        page.locator(".tabulator-row").first.click()
        marks = _wait_timer(page, 120, "first frame")
        out["first_frame_ms"] = marks["frame"]
        out["first_frame_marks_ms"] = marks
        if shots:
            page.screenshot(path=str(shots / "first-frame.png"))
        viewer = page.locator(VIEWER).first
        started = time.perf_counter()
        page.wait_for_function(
            f"(n) => window.__deepAll('{VIEWER}').some((v) => Number(v.dataset.cached) >= n)", arg=slices,
            timeout=180_000, polling=50)
        out["all_slices_cached_after_first_ms"] = round((time.perf_counter() - started) * 1000, 1)
        frame_index = int(viewer.locator("canvas").get_attribute("data-frame-index") or -1)
        if frame_index != 0:
            raise BenchError(f"the viewer opened on slice {frame_index + 1}, not the first")
        viewer.focus()
        viewer.evaluate(SCROLL_RECORDER)
        pressed = time.perf_counter()
        for _ in range(slices - 1):
            page.keyboard.press("ArrowDown")
        out["key_presses_per_s"] = round((slices - 1) / (time.perf_counter() - pressed), 1)
        page.wait_for_function(
            f"() => window.__draws.some((d) => d[1] === {slices - 1})", timeout=60_000)
        draws = page.evaluate("() => window.__draws")
        viewer.evaluate("() => window.__drawObserver.disconnect()")
        out["scroll"] = scroll_stats(draws, 0, slices - 1)
        # Back up, every slice drawn: the next key goes as soon as the previous slice is on the canvas.
        paced = viewer.evaluate(PACED_SCROLL.replace("([root, key, target])", "(root, [key, target])"),
                                ["ArrowUp", 0])
        out["scroll_paced"] = scroll_stats(paced, slices - 1, 0)
        if shots:
            page.screenshot(path=str(shots / "last-slice.png"))
        marks = open_link(context, f"{base_url}/study/{study_uid}", shots)
        out["link_first_frame_ms"] = marks["frame"]
        out["link_marks_ms"] = marks
        if outside:
            raise BenchError(f"the dashboard fetched from outside the machine: {outside[:3]}")
    finally:
        context.close()
    return out


def _browser_failure(exc: Exception, server: PacsdashServer) -> str:
    """What went wrong in the browser, with the server's last error line if it logged one."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = f"{type(exc).__name__}: {first}"
    try:
        log = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        log = []
    errors = [ln.strip() for ln in log if re.match(r"^\w+(\.\w+)*(Error|Exception): ", ln.strip())]
    return text + (f"; the server logged {errors[-1]}" if errors else "")


def _check_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise Skipped("playwright is not installed (pip install -e '.[test]')") from None
    if not CHROMIUM.exists():
        raise Skipped(f"{CHROMIUM} not found")


def measure_browser(server: PacsdashServer, patient: str, slices: int, repetitions: int,
                    shots: Path | None, study_uid: str) -> tuple[list[dict[str, Any]], dict]:
    """``repetitions`` browser sessions against ``server``, each in a fresh browser context; and the foreign load.

    The load is measured while the browser still runs: Chromium's helper processes are not our children once
    it has exited, and their CPU time would count as another program's.
    """
    from playwright.sync_api import sync_playwright

    sessions = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            with ForeignLoad(server.pid) as load:
                _sessions(browser, server, patient, slices, repetitions, shots, sessions, study_uid)
        finally:
            browser.close()
    return sessions, load.result


def _sessions(browser: Any, server: PacsdashServer, patient: str, slices: int, repetitions: int,
              shots: Path | None, sessions: list[dict[str, Any]], study_uid: str) -> None:
    """Run the sessions one after the other, appending each one's figures to ``sessions``."""
    for rep in range(repetitions):
        b = browser_session(browser, server.base_url, patient, slices, shots if rep == 0 else None, study_uid)
        sessions.append(b)
        say(f"  session {rep + 1}: search {b['browser_search_ms']} ms, first frame {b['first_frame_ms']} ms, "
            f"{slices} slices held {b['all_slices_cached_after_first_ms']} ms later; scroll every slice "
            f"{b['scroll_paced']['fps']} fps ({b['scroll_paced']['slices_skipped']} skipped), keys at "
            f"{b['key_presses_per_s']}/s {b['scroll']['fps']} fps ({b['scroll']['slices_skipped']} skipped); "
            f"study link to first frame {b['link_first_frame_ms']} ms")


# -- the phase -------------------------------------------------------------------------
def meets(target: tuple[str, float], value: float) -> bool:
    """Whether ``value`` meets a target such as ``("<", 200.0)``."""
    op, bound = target
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def target_text(target: tuple[str, float], unit: str) -> str:
    op, bound = target
    return f"target {op} {bound:g} {unit}"


def _set(results: Results, id: str, value: float, target: tuple[str, float] | None) -> None:
    metric = results.metrics[id]
    metric.values["pacsdash"] = value
    if target is not None:
        metric.notes["pacsdash"] = "meets target" if meets(target, value) else "MISSES target"


def run(plan: Any, results: Results, guard: Guard) -> None:
    """The dashboard phase (pacsdash only): rows, data, search, then the browser."""
    from pydicom import dcmread

    only = ("pacsdash",)
    search_ids: list[str] = []
    index_plan = DashIndexPlan(plan.dash_studies)
    cases = search_cases(index_plan)
    search_target = TARGETS["search"]
    for case in cases:
        for stat in ("median", "p95"):
            id = f"dash_search_{case.name}_{stat}"
            results.metric(id, f"Dashboard search, {plan.dash_studies:,} studies, {case.label} ({case.expected:,} "
                           f"matches), {stat} ({target_text(search_target, 'ms')})", "ms", "lower", only)
            search_ids.append(id)
    n = plan.web_instances
    first, fps, link_target = TARGETS["first_frame"], TARGETS["fps"], TARGETS["link"]
    browser_rows = {
        "dash_browser_search": (f"Dashboard search in the browser, Enter to the table showing the study (name), "
                                f"median ({target_text(search_target, 'ms')})", "ms", "lower", search_target),
        "dash_first_frame": (f"Dashboard: click on a study to its first frame drawn, CT 512x512, median "
                             f"({target_text(first, 'ms')})", "ms", "lower", first),
        "dash_first_frame_cold": (f"Dashboard: the same, first opening after the server started "
                                  f"({target_text(first, 'ms')})", "ms", "lower", first),
        "dash_link_first_frame": (f"Dashboard: a study link (/study/{{uid}}) opened in a logged-in browser to its "
                                  f"first frame drawn, median ({target_text(link_target, 'ms')})", "ms", "lower",
                                  link_target),
        "dash_all_cached": (f"Dashboard: first frame to all {n} slices held by the browser, median", "ms", "lower",
                            None),
        "dash_scroll_fps": (f"Dashboard: scrolling the loaded {n}-slice CT series one arrow key per slice, every "
                            f"slice drawn, median ({target_text(fps, 'fps')})", "fps", "higher", fps),
        "dash_scroll_fast_fps": ("Dashboard: the same, arrow keys as fast as Playwright sends them (slices drawn "
                                 "per second; skipped ones in the details), median", "fps", "higher", None),
    }
    for id, (label, unit, better, _) in browser_rows.items():
        results.metric(id, label, unit, better, only)
    if "pacsdash" not in plan.servers:
        return
    details = results.details.setdefault("dashboard", {})

    def search_part() -> None:
        index_path = generated_index(index_plan)
        details["index"] = {"studies": index_plan.studies, "patients": index_plan.patients,
                            "instances": index_plan.studies * index_plan.per_study,
                            "file_mib": round(index_path.stat().st_size / 2**20, 1)}
        plan.tmp_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="dash-search-", dir=plan.tmp_root))
        say(f"dashboard: search, {index_plan.studies} studies")
        try:
            def run_search() -> tuple[dict, dict]:
                with ForeignLoad(os.getpid()) as load:
                    measured = measure_search(index_path, index_plan, plan.repetitions, folder)
                return measured, load.result

            measured = guard.measure("pacsdash dashboard search", search_ids, "pacsdash", run_search)
        finally:
            if not plan.keep:
                shutil.rmtree(folder, ignore_errors=True)
        details["search"] = measured
        results.details.setdefault("pacsdash_source", {})["dashboard search"] = source_state()
        for name, row in measured.items():
            _set(results, f"dash_search_{name}_median", row["median_ms"], search_target)
            _set(results, f"dash_search_{name}_p95", row["p95_ms"], search_target)
            say(f"  {row['label']}: {row['matches']} matches, median {row['median_ms']} ms, p95 {row['p95_ms']} ms "
                f"(index page {row['index_find_page_median_ms']} ms, count {row['index_count_median_ms']} ms)")

    guard.attempt(search_ids, "pacsdash", search_part)

    def browser_part() -> None:
        _check_browser()
        index_path = generated_index(index_plan)
        ct = ct_volume(n)
        header = dcmread(ct.files()[0], stop_before_pixels=True)
        patient, study_uid = str(header.PatientName), str(header.StudyInstanceUID)
        family = patient.split("^")[0]
        say(f"dashboard: browser, {index_plan.studies} generated studies + {n} CT 512x512")
        with PacsdashServer(plan.tmp_root, plan.keep) as server:
            try:
                server.home.mkdir(parents=True, exist_ok=True)
                shutil.copy(index_path, server.home / "index.duckdb")
                server.add_user()
                summary = server.import_offline(ct.shards, timeout=600)
                server.start()
                details["browser_setup"] = f"generated index + `pacsdash import` of the CT: {summary}"
                shots = server.folder / "screenshots" if plan.keep else None
                if shots:
                    shots.mkdir()

                def run_browser() -> tuple[list, dict]:
                    try:
                        return measure_browser(server, family, n, plan.browser_repetitions, shots, study_uid)
                    except Exception as exc:
                        raise BenchError(_browser_failure(exc, server)) from exc

                sessions = guard.measure("pacsdash dashboard browser", list(browser_rows), "pacsdash", run_browser)
            finally:
                server.stop()
                record_server(results, server, "dashboard")
        details["browser_sessions"] = sessions
        values = {
            "dash_browser_search": statistics.median(s["browser_search_ms"] for s in sessions),
            "dash_first_frame": statistics.median(s["first_frame_ms"] for s in sessions),
            "dash_first_frame_cold": sessions[0]["first_frame_ms"],
            "dash_link_first_frame": statistics.median(s["link_first_frame_ms"] for s in sessions),
            "dash_all_cached": statistics.median(s["all_slices_cached_after_first_ms"] for s in sessions),
            "dash_scroll_fps": statistics.median(s["scroll_paced"]["fps"] for s in sessions),
            "dash_scroll_fast_fps": statistics.median(s["scroll"]["fps"] for s in sessions),
        }
        for id, value in values.items():
            _set(results, id, round(value, 1), browser_rows[id][3])

    guard.attempt(list(browser_rows), "pacsdash", browser_part)


def record_server(results: Results, server: PacsdashServer, where: str) -> None:
    from benchmarks.phases import record_server as record

    record(results, server, where)
