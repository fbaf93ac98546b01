"""``/admin``: users, peers, the settings and the log, for admins."""

from __future__ import annotations

from typing import Any

import panel as pn

from pacsdash.dashboard.app import only_admins


def admin_page(context: Any) -> pn.viewable.Viewable:
    """One admin session's page (refused to other roles)."""
    refused = only_admins(context)
    if refused is not None:
        return refused
    return pn.pane.HTML("<h2>Administration</h2>")
