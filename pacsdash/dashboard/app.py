"""The dashboard page served at ``/``: who is logged in, overview, search."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from pacsdash.access import Role
from pacsdash.dashboard.overview import Overview
from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.study import StudyPanel


def current_role(context: Any) -> Role | None:
    """The logged-in user's role (admin when logins are off)."""
    if not context.settings.auth.enabled:
        return Role.ADMIN
    user = pn.state.user
    stamp = context.accounts.credential_stamp(user) if user else None
    return Role(stamp[0]) if stamp else None


def dashboard(context: Any) -> pn.viewable.Viewable:
    """One session's page."""
    role = current_role(context)
    if role is None:  # logged in, then removed: nothing of the archive
        return pn.pane.HTML('<p>Your account no longer exists. <a href="/logout">Log out</a></p>')
    user = pn.state.user or "anonymous"
    search = StudySearch(archive=context.archive)
    study = StudyPanel(archive=context.archive, role=role, accounts=context.accounts)
    search.param.watch(lambda event: setattr(study, "study_uid", event.new), "selected")
    who = pn.pane.HTML(
        f'<span class="pd-user">{html.escape(user)} ({role.value})</span>'
        + (' · <a href="/logout">Log out</a>' if context.settings.auth.enabled else ""),
        margin=(10, 10),
    )
    tabs = pn.Tabs(("Studies", pn.Column(search, study, sizing_mode="stretch_width")),
                   ("Overview", Overview(archive=context.archive)), dynamic=True, sizing_mode="stretch_width")
    return pn.Column(
        pn.Row(pn.pane.Markdown("## pacsdash", margin=(0, 10)), pn.HSpacer(), who, sizing_mode="stretch_width"),
        tabs,
        sizing_mode="stretch_width",
    )
