"""The browser's address bar and history, and a copyable link.

Panel's ``pn.state.location`` pushes a history entry when its ``search``
changes but never hears of the back and forward buttons (it has no
``popstate`` listener), so the dashboard keeps its URL with this small
component instead (see :class:`BrowserHistory`).
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.custom import JSComponent


class BrowserHistory(JSComponent):
    """The page's URL (path and query), kept in the browser's history.

    Python calls :meth:`write`; the browser pushes the URL as a new entry (the
    first one replaces the page's own, so a link's URL becomes its canonical
    form). Back or forward sets :attr:`popped` and counts :attr:`pops`; Python
    shows that state and writes nothing. Each write carries the number of
    pops Python had seen, and the browser drops a write made before its last
    back/forward reached Python (it would otherwise push a stale URL and cut
    the forward history).
    """

    entry = param.String(default="", doc="'sequence|pops seen|url' of the last write.")
    popped = param.String(default="", doc="The URL the browser went back or forward to.")
    pops = param.Integer(default=0, doc="Back/forward moves so far (the same URL may be popped twice).")

    _esm = """
    export function render({ model }) {
      const here = () => window.location.pathname + window.location.search
      let first = true
      let pops = 0
      const write = () => {
        if (!model.entry) return
        const [, seen, ...rest] = model.entry.split("|")
        const url = rest.join("|")
        if (Number(seen) < pops) return
        if (url && url !== here()) {
          if (first) { window.history.replaceState({}, "", url) } else { window.history.pushState({}, "", url) }
        }
        first = false
      }
      const pop = () => { pops += 1; model.popped = here(); model.pops = pops }
      model.on("entry", write)
      window.addEventListener("popstate", pop)
      model.on("remove", () => window.removeEventListener("popstate", pop))
      write()
      const marker = document.createElement("span")
      marker.className = "pd-history"
      return marker
    }
    """

    def __init__(self, **params: Any) -> None:
        params.setdefault("height", 0)
        params.setdefault("width", 0)
        params.setdefault("margin", 0)
        super().__init__(**params)
        self._writes = 0

    @property
    def url(self) -> str:
        """The URL written last ("" before any)."""
        return self.entry.split("|", 2)[2] if self.entry else ""

    def write(self, url: str) -> None:
        """Show ``url`` in the address bar as a new history entry (nothing if it is there already)."""
        if url == self.url and self.entry.split("|", 2)[1] == str(self.pops):
            return
        self._writes += 1
        self.entry = f"{self._writes}|{self.pops}|{url}"


class LinkBox(pn.viewable.Viewer):
    """A link to what is shown, to select and copy, with a Copy button."""

    url = param.String(default="", doc="The absolute URL.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._text = pn.widgets.TextInput(value=self.url, width=360, css_classes=["pd-link"],
                                          stylesheets=[":host input { font-family: monospace; font-size: 12px; }"])
        self._copy = pn.widgets.Button(label="Copy link", width=100)
        # The clipboard API needs a secure context; the field can always be selected and copied.
        self._copy.js_on_click(args={"text": self._text}, code="""
            const value = text.value
            if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(value) }
        """)
        self.param.watch(lambda e: setattr(self._text, "value", e.new), "url")

    @property
    def text(self) -> str:
        """The link shown."""
        return self._text.value

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.pane.HTML("<small>Link:</small>", margin=(14, 0, 0, 10)), self._text, self._copy,
                      visible=self.param.url.rx.bool())


def absolute(path: str) -> str:
    """``path`` on this server as the browser reached it (``http://host:port/path``)."""
    headers: dict[str, Any] = {}
    try:
        headers = dict(pn.state.headers or {})
    except Exception:  # no session (tests, notebooks)
        headers = {}
    host = str(headers.get("Host") or "").strip()
    if not host or any(c in host for c in "/\\ \"'<>"):
        return path
    scheme = "https" if str(headers.get("X-Forwarded-Proto", "")).lower() == "https" else "http"
    try:
        request = pn.state.curdoc.session_context.request  # type: ignore[union-attr]
        scheme = getattr(request, "protocol", None) or scheme
    except Exception:
        pass
    return f"{scheme}://{host}{path}"
