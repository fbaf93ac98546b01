"""Driving OHIF in a Playwright page: its config, what it drew, what it asked for.

:func:`app_config` writes OHIF's ``app-config.js`` for a pacsdash DICOMweb
root. OHIF 3.13's DICOMweb data source takes its ``Authorization`` header
only from the ``userAuthenticationService`` (``requestOptions.auth`` is no
longer read by the data source), which is filled by OIDC or a ``?token=``
Bearer token. For HTTP Basic the config registers a tiny inline extension
(``window.config.extensions`` accepts extension objects) whose
``preRegistration`` hook sets ``getAuthorizationHeader`` on that service. The
same hook keeps the services manager at ``window.__pacsdash`` so the test can
ask OHIF which display sets it built and which image a viewport shows.

:class:`OhifPage` wraps a page: it records every DICOMweb response and
failed request, and reads the viewport canvas pixels.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # pragma: no cover - conftest skips (or fails in CI) without Playwright
    PlaywrightTimeoutError = TimeoutError

#: Default wait for OHIF to do something (load, query, decode, draw), in ms.
WAIT_MS = 30_000

APP_CONFIG = """\
/* Written by tests/ohif: OHIF pointed at a pacsdash under test. */
window.config = {
  routerBasename: '/',
  extensions: [{
    id: 'pacsdash-test-basic-auth',
    preRegistration({ servicesManager }) {
      window.__pacsdash = { servicesManager };
      servicesManager.services.userAuthenticationService.setServiceImplementation({
        getAuthorizationHeader: () => ({ Authorization: %(authorization)s }),
      });
    },
  }],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showLoadingIndicator: true,
  showCPUFallbackMessage: false,
  investigationalUseDialog: { option: 'never' },
  customizationService: { 'ohif.tours': { $set: [] } },
  defaultDataSourceName: 'pacsdash',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'pacsdash',
    configuration: {
      friendlyName: 'pacsdash under test',
      name: 'pacsdash',
      qidoRoot: %(root)s,
      wadoRoot: %(root)s,
      wadoUriRoot: %(root)s,
      qidoSupportsIncludeField: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      staticWado: false,
      singlepart: false,
      bulkDataURI: { enabled: true },
    },
  }],
};
"""


def app_config(dicomweb_root: str, user: str, password: str) -> str:
    """OHIF's ``app-config.js`` for one DICOMweb root with HTTP Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return APP_CONFIG % {"root": json.dumps(dicomweb_root), "authorization": json.dumps(f"Basic {token}")}


#: Runs in every page before OHIF. Notes which image each viewport shows and
#: when it was drawn (cornerstone's element events do not bubble, so listen in
#: the capture phase), and defines the probes the test evaluates.
INIT_SCRIPT = """
(() => {
  // Keep every resource timing entry: the test counts frame requests in them.
  performance.setResourceTimingBufferSize(100000);
  const events = { newImage: {}, rendered: {} };
  document.addEventListener('CORNERSTONE_STACK_NEW_IMAGE', e => {
    const d = e.detail || {};
    events.newImage[d.viewportId] = { index: d.imageIdIndex, imageId: d.imageId };
    events.rendered[d.viewportId] = false;
  }, true);
  document.addEventListener('CORNERSTONE_IMAGE_RENDERED', e => {
    const d = e.detail || {};
    if (d.viewportId in events.newImage) events.rendered[d.viewportId] = true;
  }, true);
  const services = () => window.__pacsdash?.servicesManager.services;

  // What the active viewport shows, from OHIF's own services.
  function viewportState() {
    const s = services();
    if (!s) return null;
    const grid = s.viewportGridService.getState();
    const id = grid.activeViewportId;
    const shown = grid.viewports.get(id)?.displaySetInstanceUIDs || [];
    const vp = id && s.cornerstoneViewportService.getCornerstoneViewport(id);
    if (!vp || typeof vp.getImageIds !== 'function') return { viewportId: id, displaySets: shown };
    return {
      viewportId: id, displaySets: shown,
      imageIds: vp.getImageIds(), index: vp.getCurrentImageIdIndex(),
      imageId: vp.getCornerstoneImage?.()?.imageId || null,
      newImage: events.newImage[id] || null, rendered: !!events.rendered[id],
    };
  }

  // Statistics of every pixel of the active viewport's canvas.
  function canvasStats() {
    const s = services();
    const id = s?.viewportGridService.getState().activeViewportId;
    const pane = id && document.querySelector(`[data-viewport-uid="${id}"]`);
    const canvas = (pane || document).querySelector('canvas.cornerstone-canvas');
    if (!canvas || !canvas.width || !canvas.height) return null;
    const ctx = canvas.getContext('2d');
    if (!ctx) return { error: 'no 2d context' };
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    let lit = 0, chromatic = 0, hash = 2166136261;
    for (let i = 0; i < data.length; i += 4) {
      const r = data[i], g = data[i + 1], b = data[i + 2];
      if (r || g || b) lit++;
      if (Math.max(r, g, b) - Math.min(r, g, b) > 40) chromatic++;
      if (colours.size < 4096) colours.add((r << 16) | (g << 8) | b);
      hash = Math.imul(hash ^ r ^ (g << 8) ^ (b << 16), 16777619) >>> 0;
    }
    return { width: canvas.width, height: canvas.height, pixels: data.length / 4,
             colours: colours.size, lit, chromatic, hash };
  }

  // The active viewport shows image `index` (any if null) of `displaySet`
  // (any if null), drawn after it was set, on a canvas of several colours.
  function imageShown(index, displaySet, minColours) {
    const st = viewportState();
    if (!st || !st.imageIds || !st.newImage || !st.rendered) return false;
    if (displaySet && !st.displaySets.includes(displaySet)) return false;
    if (index !== null && (st.index !== index || st.newImage.index !== index)) return false;
    if (st.imageId !== st.imageIds[st.index]) return false;
    const c = canvasStats();
    return !!c && !c.error && c.colours >= minColours;
  }

  // OHIF's display sets: what a study was split into.
  function displaySets() {
    const s = services();
    if (!s) return [];
    return s.displaySetService.getActiveDisplaySets().map(d => ({
      uid: d.displaySetInstanceUID, modality: d.Modality,
      multiFrame: !!d.isMultiFrame, frames: d.numImageFrames || 0,
      sopInstanceUIDs: (d.instances || (d.instance ? [d.instance] : [])).map(i => i.SOPInstanceUID),
      handler: d.SOPClassHandlerId,
    }));
  }

  function shownDisplaySets() {
    const s = services();
    if (!s) return [];
    const grid = s.viewportGridService.getState();
    return grid.viewports.get(grid.activeViewportId)?.displaySetInstanceUIDs || [];
  }

  // A canvas with something on it (any viewport type: stack, ECG, ...).
  function canvasDrawn(minColours, minChromatic) {
    const c = canvasStats();
    return !!c && !c.error && c.colours >= minColours && c.chromatic >= minChromatic;
  }

  // How many finished requests had `part` in their URL.
  function requestsDone(part) {
    return performance.getEntriesByType('resource').filter(e => e.name.includes(part)).length;
  }

  window.__pacsdashTest = { viewportState, canvasStats, imageShown, canvasDrawn, displaySets, shownDisplaySets,
                            requestsDone };
})();
"""


@dataclass
class Exchange:
    """One DICOMweb request of the page: its answer's status, or why it failed."""

    method: str
    url: str
    status: int | str
    response: object = field(default=None, repr=False)


@dataclass
class OhifPage:
    """One Playwright page on OHIF, recording its DICOMweb traffic.

    Every wait polls its condition and, in between, fails at once with the
    URLs if a DICOMweb request has failed, rather than running into its
    timeout; a timeout names what was awaited, the failed requests and the
    page's console errors.
    """

    page: object
    base_url: str
    shots: Path
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[Exchange] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    step: int = 0

    def __post_init__(self) -> None:
        self.page.add_init_script(INIT_SCRIPT)
        self.page.on("response", self._on_response)
        self.page.on("requestfailed", self._on_failed)
        self.page.on("console", lambda m: self.console_errors.append(m.text[:500]) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"[:500]))

    # -- traffic ------------------------------------------------------------------
    @staticmethod
    def _is_dicomweb(url: str) -> bool:
        return "/dicom-web" in url

    def _on_response(self, response) -> None:
        if self._is_dicomweb(response.url):
            exchange = Exchange(response.request.method, response.url, response.status, response)
            self.exchanges.append(exchange)
            if response.status >= 400:
                self.failures.append(exchange)

    def _on_failed(self, request) -> None:
        if self._is_dicomweb(request.url):
            reason = request.failure or "failed"
            # A request the page itself cancelled (navigation, prefetch no longer
            # needed) is not the server's doing; anything else (CORS, reset) is.
            if "ERR_ABORTED" not in reason:
                self.failures.append(Exchange(request.method, request.url, reason))

    def dicomweb_urls(self, part: str = "") -> list[str]:
        return [e.url for e in self.exchanges if part in e.url]

    def _failed_text(self) -> str:
        return "failed DICOMweb requests:\n" + "\n".join(f"  {f.status} {f.method} {f.url}" for f in self.failures)

    def _console_text(self) -> str:
        if not self.console_errors:
            return ""
        return "\nbrowser console errors (last 5):\n" + "\n".join(f"  {e}" for e in self.console_errors[-5:])

    def assert_no_failed_requests(self) -> None:
        assert not self.failures, self._failed_text() + self._console_text()

    def _until(self, what: str, attempt, timeout: float = WAIT_MS):
        """Run ``attempt(ms)`` (a Playwright wait) in slices of at most a second
        until it succeeds; between slices, stop on a failed DICOMweb request."""
        deadline = time.monotonic() + timeout / 1000
        while True:
            if self.failures:
                raise AssertionError(f"while waiting for {what}: {self._failed_text()}{self._console_text()}")
            left = (deadline - time.monotonic()) * 1000
            if left <= 0:
                recent = "\n".join(f"  {e.status} {e.method} {e.url}" for e in self.exchanges[-3:])
                raise AssertionError(f"timed out after {timeout / 1000:.0f} s waiting for {what}; no DICOMweb request "
                                     f"failed; the last ones:\n{recent}{self._console_text()}")
            try:
                return attempt(max(1.0, min(1000.0, left)))
            except PlaywrightTimeoutError:
                continue

    def _wait_js(self, what: str, expression: str, arg=None, timeout: float = WAIT_MS):
        return self._until(what, lambda ms: self.page.wait_for_function(expression, arg=arg, timeout=ms, polling=100),
                           timeout)

    def wait_for_response(self, part: str, timeout: float = WAIT_MS) -> Exchange:
        """The first DICOMweb answer whose URL contains ``part`` (waiting for it)."""
        def attempt(ms: float) -> Exchange:
            for exchange in self.exchanges:
                if part in exchange.url and exchange.response is not None:
                    return exchange
            # (The sync API delivers events only inside Playwright calls: none
            # can slip by between the look above and this wait.)
            response = self.page.wait_for_event("response", lambda r: part in r.url, timeout=ms)
            return Exchange(response.request.method, response.url, response.status, response)

        return self._until(f"a DICOMweb answer to {part!r}", attempt, timeout)

    # -- pages --------------------------------------------------------------------
    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path, wait_until="domcontentloaded")

    def screenshot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    # -- the study list -----------------------------------------------------------
    def study_rows(self):
        return self.page.locator("tr[aria-selected]")

    def wait_for_rows(self, count: int, timeout: float = WAIT_MS) -> None:
        self._wait_js(f"{count} rows in the study list",
                      "n => document.querySelectorAll('tr[aria-selected]').length === n", count, timeout)

    def patient_filter(self):
        """The Patient (name) text filter: the first text box of the list's filter row."""
        return self.page.locator("table input:not([id]):not([role])").first

    # -- the viewer ---------------------------------------------------------------
    def display_sets(self) -> list[dict]:
        return self.page.evaluate("() => window.__pacsdashTest.displaySets()")

    def wait_for_display_sets(self, count: int) -> list[dict]:
        self._wait_js(f"{count} display set(s)", "n => !!window.__pacsdashTest && "
                      "window.__pacsdashTest.displaySets().length >= n", count)
        return self.display_sets()

    def viewport_state(self) -> dict | None:
        return self.page.evaluate("() => window.__pacsdashTest.viewportState()")

    def canvas_stats(self) -> dict | None:
        return self.page.evaluate("() => window.__pacsdashTest.canvasStats()")

    def wait_for_image(self, index: int | None = None, display_set: str | None = None,
                       min_colours: int = 8, timeout: float = WAIT_MS) -> dict:
        """Wait until the active viewport shows image ``index`` (any if None) of
        ``display_set``, drawn, on a canvas of at least ``min_colours`` colours;
        return the canvas statistics and the viewport state."""
        self._wait_js(f"image {index} of display set {display_set} drawn",
                      "([i, ds, n]) => window.__pacsdashTest.imageShown(i, ds, n)",
                      [index, display_set, min_colours], timeout)
        stats = self.canvas_stats()
        stats["viewport"] = self.viewport_state()
        return stats

    def wait_for_canvas(self, min_colours: int = 8, min_chromatic: int = 0, timeout: float = WAIT_MS) -> dict:
        """Wait until the active viewport's canvas has something drawn on it."""
        self._wait_js("the viewport canvas drawn", "([n, c]) => window.__pacsdashTest.canvasDrawn(n, c)",
                      [min_colours, min_chromatic], timeout)
        return self.canvas_stats()

    def wait_for_requests(self, part: str, count: int, timeout: float = WAIT_MS) -> None:
        """Wait until ``count`` requests whose URL contains ``part`` have finished."""
        self._wait_js(f"{count} finished requests to {part!r}",
                      "([p, n]) => window.__pacsdashTest.requestsDone(p) >= n", [part, count], timeout)

    def show_display_set(self, uid: str) -> None:
        """Double-click a series thumbnail, as a user picks a series."""
        self.page.locator(f"#thumbnail-{uid}").dblclick()
        self._wait_js(f"display set {uid} in the viewport",
                      "uid => window.__pacsdashTest.shownDisplaySets().includes(uid)", uid)

    def next_image(self) -> None:
        """OHIF's 'Next Image' hotkey (down arrow)."""
        self.page.keyboard.press("ArrowDown")

    def last_image(self) -> None:
        """OHIF's 'Last Image' hotkey (End)."""
        self.page.keyboard.press("End")

    def set_image_index(self, index: int) -> None:
        """Show image ``index`` of the active stack, as the scroll bar does."""
        self.page.evaluate(
            """i => { const s = window.__pacsdash.servicesManager.services;
                      const id = s.viewportGridService.getState().activeViewportId;
                      s.cornerstoneViewportService.getCornerstoneViewport(id).setImageIdIndex(i); }""", index)
