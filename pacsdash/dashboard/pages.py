"""The dashboard's pages, by URL path, as ``pn.serve`` takes them.

``/`` is the archive (search, study, patient, export, upload, overview);
``/admin`` and ``/activity`` are for the admin role only. Each entry is a
function of the server's :class:`~pacsdash.web.base.AppContext` that builds one
session's page; login (when on) is Panel's, in front of every page.
"""

from __future__ import annotations

from typing import Any, Callable

import panel as pn

from pacsdash.dashboard.activity import activity_page
from pacsdash.dashboard.admin import admin_page
from pacsdash.dashboard.app import dashboard

Page = Callable[[Any], pn.viewable.Viewable]

PAGES: dict[str, Page] = {
    "/": dashboard,
    "/admin": admin_page,
    "/activity": activity_page,
}


def served_pages(context: Any) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    """The ``pn.serve`` mapping of every page, bound to ``context``."""
    return {path: (lambda page=page: page(context)) for path, page in PAGES.items()}
