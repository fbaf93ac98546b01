"""``/admin``: users, peers, the settings, the log and the audit trail, for admins.

Everything ``pacsdash users ...`` and ``pacsdash modalities ...`` do, through
the same :class:`~pacsdash.access.Accounts` calls, plus editing and echoing a
peer. The page is refused to other roles when it opens, and every action asks
the accounts again whether its user is still an admin.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from pacsdash.access import Role
from pacsdash.dashboard.admin_actions import AdminActions
from pacsdash.dashboard.admin_audit import AuditView
from pacsdash.dashboard.admin_views import LogView, PeersView, SettingsView, UsersView, client_address
from pacsdash.dashboard.app import current_role, only_admins, opened_session


def header(context: Any, user: str) -> pn.viewable.Viewable:
    """The page's top line: title, the other pages, who is logged in."""
    logout = ' · <a href="/logout">Log out</a>' if context.settings.auth.enabled else ""
    return pn.Row(
        pn.pane.HTML("<b style='font-size: 1.4em'>pacsdash</b> <span style='font-size: 1.2em'>· Administration</span>",
                     margin=(4, 10)),
        pn.pane.HTML('<a href="/">Archive</a> · <a href="/activity">Activity</a>', margin=(8, 10)),
        pn.HSpacer(),
        pn.pane.HTML(f'<span class="pd-user">{html.escape(user)} (admin)</span>{logout}', margin=(6, 10)),
        sizing_mode="stretch_width", height=36,
    )


def admin_page(context: Any) -> pn.viewable.Viewable:
    """One admin session's page (refused to other roles)."""
    refused = only_admins(context)
    if refused is not None:
        return refused
    pn.extension("tabulator")
    login = pn.state.user
    session = opened_session(context, login)
    actions = AdminActions(
        accounts=context.accounts,
        still_admin=lambda: current_role(context, login, session) is Role.ADMIN,
        actor=login or "anonymous",
        calling_aet=context.settings.server.aet,
        archive=context.archive,
        address=client_address(),
    )
    tabs = pn.Tabs(
        ("Users", UsersView(actions)),
        ("Peers", PeersView(actions)),
        ("Settings", SettingsView(context.settings, context.dicom_port)),
        ("Log", LogView(context.settings, context.archive, actions.still_admin)),
        ("Audit", AuditView(context.archive, actions.still_admin)),
        dynamic=True, sizing_mode="stretch_width", margin=(0, 5),
    )
    return pn.Column(header(context, login or "anonymous"), tabs, sizing_mode="stretch_width")
