"""The dashboard's pages, by URL path, as ``pn.serve`` takes them.

``/`` is the archive (search, study, patient, export, upload, overview);
``/study/{uid}`` and ``/patient/{patient_id}`` are the same page opened on a
study or a patient (links to share; Panel's path templates, the values read
with ``pn.state.route_params`` and checked before use); ``/admin`` and
``/activity`` are for the admin role only. Each entry is a function of the
server's :class:`~pacsdash.web.base.AppContext` that builds one session's page;
login (when on) is Panel's, in front of every page, and brings the user back to
the link afterwards.
"""

from __future__ import annotations

from typing import Any, Callable

import panel as pn

from pacsdash.dashboard.activity import activity_page
from pacsdash.dashboard.admin import admin_page
from pacsdash.dashboard.app import dashboard
from pacsdash.dashboard.warm import start_warming

Page = Callable[[Any], pn.viewable.Viewable]

PAGES: dict[str, Page] = {
    "/": dashboard,
    "/study/{uid}": dashboard,
    "/patient/{patient_id}": dashboard,
    "/admin": admin_page,
    "/activity": activity_page,
}


def login_from_nested_pages() -> None:
    """Send a logged-out visitor of a nested page to the real login page.

    Panel (1.9.4) redirects to ``'.' + login_endpoint``, relative to the page:
    from ``/study/1.2.3`` the browser resolves ``./login`` to ``/study/login``,
    itself a study page behind the login, and loops. The page handler here
    climbs to the root first (``../login``); ``next`` still holds the link.
    """
    from panel.io import server

    original = server.DocHandler

    class DocHandler(original):  # type: ignore[misc, valid-type]
        def get_login_url(self) -> str:
            url = super().get_login_url()
            depth = self.request.path.rstrip("/").count("/") - 1
            return "../" * depth + url[2:] if depth > 0 and url.startswith("./") else url

    server.per_app_patterns[:] = [(route, DocHandler if handler is original else handler)
                                  for route, handler in server.per_app_patterns]


def served_pages(context: Any) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    """The ``pn.serve`` mapping of every page, bound to ``context``; starts
    warming what the first session needs (in the background)."""
    login_from_nested_pages()
    start_warming()
    return {path: (lambda page=page: page(context)) for path, page in PAGES.items()}
