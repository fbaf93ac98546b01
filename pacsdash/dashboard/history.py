"""The browser's address bar and history, and a copyable link.

Panel's ``pn.state.location`` pushes a history entry when its ``search``
changes but never hears of the back and forward buttons (it has no
``popstate`` listener), so the dashboard keeps its URL with this small
component instead: Python sets :attr:`BrowserHistory.url`, the browser pushes
it as a new entry; back or forward sets :attr:`BrowserHistory.popped`.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.custom import JSComponent


class BrowserHistory(JSComponent):
    """The page's URL (path and query) as a parameter, kept in the browser's history."""

    url = param.String(default="", doc="The URL of what is shown; a change adds a history entry.")
    popped = param.String(default="", doc="The URL the browser went back or forward to.")
    pops = param.Integer(default=0, doc="Counts back/forward moves (the same URL may be popped twice).")

    _esm = """
    export function render({ model }) {
      const here = () => window.location.pathname + window.location.search
      let first = true
      const write = () => {
        const url = model.url
        if (!url || url === here()) { first = false; return }
        if (first) { window.history.replaceState({}, "", url) } else { window.history.pushState({}, "", url) }
        first = false
      }
      const pop = () => { model.popped = here(); model.pops = model.pops + 1 }
      model.on("url", write)
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
