"""The dashboard page served at ``/``, ``/study/{StudyInstanceUID}`` and
``/patient/{PatientID}``: who is logged in, search, study, patient, export,
upload, overview; what a link asks for is shown, and the URL follows the user
(see :mod:`pacsdash.dashboard.navigation`)."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from pacsdash.access import Action, Role
from pacsdash.access import grants
from pacsdash.dashboard.admin_views import client_address
from pacsdash.dashboard.navigation import Navigation, request_link
from pacsdash.dashboard.overview import Overview
from pacsdash.dashboard.patient import PatientView
from pacsdash.dashboard.research import ExportPanel
from pacsdash.dashboard.search import StudySearch
from pacsdash.dashboard.study import StudyPanel
from pacsdash.dashboard.upload import UploadPanel
from pacsdash.web.research import export_jobs  # the API's export jobs: its download route serves ours


def current_role(context: Any, user: str | None = None, session: str | None = None) -> Role | None:
    """The role of ``user`` (default: the logged-in one) as the accounts say
    now; admin when logins are off. With ``session`` (the user's session stamp
    when the page opened), None once that session has ended: a logout
    anywhere, a new password, a role change, the user removed and added again."""
    if not context.settings.auth.enabled:
        return Role.ADMIN
    user = user or pn.state.user
    stamp = context.accounts.credential_stamp(user) if user else None
    if stamp is None or (session is not None and context.accounts.session_stamp(user) != session):
        return None
    return Role(stamp[0])


def opened_session(context: Any, user: str | None) -> str | None:
    """``user``'s session stamp as this page opens (None when logins are off)."""
    if not context.settings.auth.enabled or not user:
        return None
    return context.accounts.session_stamp(user)


def may(context: Any, user: str | None, action: Action, session: str | None = None) -> bool:
    """Whether ``user`` may ``action`` at this moment (a role changed, a user
    removed or, given ``session``, a session ended since the page opened
    counts at once); the user's grant decides (:mod:`pacsdash.access.grants`)."""
    role = current_role(context, user, session)
    return role is not None and grants.for_role(user or "", role).may(action)


def only_admins(context: Any) -> pn.viewable.Viewable | None:
    """A refusal for anyone but an admin (checked when the page opens), or None."""
    if current_role(context) is Role.ADMIN:
        return None
    return pn.pane.HTML('<p class="pd-refused">This page is for administrators. <a href="/">Back to the archive</a></p>')


class ArrivalCounter:
    """Counts committed instances, so sessions can tell that something arrived."""

    def __init__(self, archive: Any) -> None:
        self.count = 0
        archive.subscribe(self._on_commit)

    def _on_commit(self, records: list) -> None:
        self.count += len(records)


def watch_arrivals(archive: Any, refreshers: list, period_ms: int = 2000) -> None:
    """Refresh this session's views when instances arrive (C-STORE, STOW-RS,
    import), checking every ``period_ms``; no page reload needed."""
    counter = getattr(archive, "_arrivals", None)
    if counter is None:
        counter = archive._arrivals = ArrivalCounter(archive)  # noqa: SLF001 - one per archive
    seen = {"count": counter.count}

    def check() -> None:
        if counter.count != seen["count"]:
            seen["count"] = counter.count
            for refresh in refreshers:
                refresh()

    if pn.state.curdoc is not None:
        pn.state.add_periodic_callback(check, period=period_ms)


def resolve_from_any_depth() -> None:
    """Let this session's resources load after the URL moved between ``/`` and
    ``/study/...`` (no reload): Panel writes stylesheet URLs relative to the
    page it served ("static/..."), which a tab opened after a move would look
    for under ``/study/static/...``. "../static" resolves alike from both
    depths (Panel's own Location does this when its pathname changes); set once
    the page is loaded, when Panel has written its own."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return

    def from_any_depth() -> None:
        if not pn.state.rel_path:
            pn.state.rel_path = ".."
        variables = doc._template_variables  # noqa: SLF001 - where Panel keeps the stylesheets' base URL
        if str(variables.get("dist_url", "")).startswith("static/"):
            variables["dist_url"] = "../" + variables["dist_url"]
        pn.state._stylesheets.pop(doc, None)  # noqa: SLF001 - made with the old base

    pn.state.onload(from_any_depth)
    # Panel's page names the icon relative to the page ("./favicon.ico"): after a move to
    # /study/..., the browser would ask for /study/favicon.ico, a study page of its own.
    doc._template_variables["app_favicon"] = "/favicon.ico"  # noqa: SLF001


def dashboard(context: Any) -> pn.viewable.Viewable:
    """One session's page: tabs for the search, a study, a patient, the export
    of the search's studies, upload (editor, admin) and the overview."""
    role = current_role(context)
    if role is None:  # logged in, then removed: nothing of the archive
        return pn.pane.HTML('<p class="pd-refused">Your account no longer exists, so this page (and any study '
                            'or patient it links to) is not shown. <a href="/logout">Log out</a></p>')
    asked = request_link()
    resolve_from_any_depth()
    login = pn.state.user
    user = login or "anonymous"
    session = opened_session(context, login)
    pn.extension("tabulator")  # the upload's drop zone is a JSComponent of ours: no extension
    # What this user may see: every component reads through it (a changed label list ends the session).
    account = context.accounts.user(login) if login else None
    grant = grants.for_role(user, role, account.labels if account is not None else ())
    address = client_address()

    def audit(action: str, succeeded: bool, studies: list[str], details: dict[str, Any]) -> None:
        context.audit_request(user, address, action, succeeded, studies, {**details, "door": "dashboard"})

    archive = context.archive.scoped(grant.scope, audit=audit)
    search = StudySearch(archive=archive)
    study = StudyPanel(archive=archive, role=role, accounts=context.accounts, user=user,
                       home=str(context.settings.home),
                       actions=context.actions, current_role=lambda: current_role(context, login, session))
    patient = PatientView(archive=archive)
    overview = Overview(archive=archive, shown=False)  # read when its tab first opens
    export = ExportPanel(archive=archive, search=search, jobs=export_jobs(context), role=role, user=user,
                         current_role=lambda: current_role(context, login, session))
    pages: list[tuple[str, Any]] = [("Studies", search), ("Study", study), ("Patient", patient), ("Export", export)]
    upload = None
    if role.may(Action.UPLOAD):  # never shown to a viewer; the upload itself checks again
        upload = pn.Column(UploadPanel(
            archive=archive, user=user, limit_mb=context.settings.server.max_upload_mb,
            spool_dir=str(context.settings.run_path),
            may_upload=lambda: may(context, login, Action.UPLOAD, session),
        ), visible=False, sizing_mode="stretch_width", margin=(0, 5))
        # Its tab is an empty page; the upload itself is shown below the tabs
        # while that tab is open and only hidden otherwise, never taken out of
        # the page: the files being sent live in the browser, and dynamic tabs
        # that rebuilt it on a quick switch left a page deaf to the server.
        pages.append(("Upload", pn.Spacer(height=0)))
    pages.append(("Overview", overview))
    tabs = pn.Tabs(*pages, dynamic=True, sizing_mode="stretch_width", margin=(0, 5))
    names = [name for name, _ in pages]
    tabs.param.watch(lambda e: setattr(overview, "shown", overview.shown or names[e.new] == "Overview"), "active")
    if upload is not None:
        tabs.param.watch(lambda e: setattr(upload, "visible", names[e.new] == "Upload"), "active")

    def show(name: str) -> None:
        tabs.active = names.index(name)

    def open_study(event: Any) -> None:
        study.study_uid = event.new
        show("Study")

    def open_patient(event: Any) -> None:
        if patient.patient_id == event.new:
            patient.refresh()
        else:
            patient.patient_id = event.new
        show("Patient")

    def after_delete(_: Any) -> None:
        search.refresh()
        patient.refresh()

    search.param.watch(open_study, "selected")
    patient.param.watch(open_study, "selected")
    search.param.watch(open_patient, "patient")
    study.param.watch(open_patient, "patient")
    study.param.watch(after_delete, "deleted")
    watch_arrivals(context.archive, [search.refresh, patient.refresh, overview.refresh, export.refresh])
    navigation = Navigation(search, study, patient, tabs, names)
    navigation.start(asked)
    problem = pn.pane.HTML(
        f'<span class="pd-link-problem" style="color:#8a3b0b">This link was not used in full: '
        f"{html.escape(asked.problem)}</span>" if asked.problem else "",
        margin=(8, 10), sizing_mode="stretch_width", height=28, styles={"overflow": "hidden"})
    who = pn.pane.HTML(
        f'<span class="pd-user">{html.escape(user)} ({role.value})</span>'
        + (' · <a href="/logout">Log out</a>' if context.settings.auth.enabled else ""),
        margin=(6, 10),
    )
    return pn.Column(
        pn.Row(pn.pane.HTML("<b style='font-size: 1.4em'>pacsdash</b>", margin=(4, 10)), problem, who,
               sizing_mode="stretch_width", height=36, css_classes=["pd-header"]),
        tabs,
        *([upload] if upload is not None else []),
        navigation.history,
        sizing_mode="stretch_width",
    )
