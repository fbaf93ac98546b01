"""The admin page's parts: users, peers, settings and log (Panel views).

The views only lay out and call: what they do to users and peers is
:class:`~pacsdash.dashboard.admin_actions.AdminActions`, what they read of the
log is :mod:`pacsdash.dashboard.admin_log`. Everything shown that came from
outside (names, AE titles, hosts, log lines) is escaped: tables use
Tabulator's plain-text formatters, messages go through :func:`html.escape`.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any, Callable

import pandas as pd
import panel as pn

from pacsdash.access import MIN_PASSWORD_LENGTH, AccountError, Role
from pacsdash.config import RETRIEVE_ACTIONS, Settings
from pacsdash.dashboard.admin_actions import AdminActions, Refused
from pacsdash.dashboard.admin_log import LEVELS, PERIODS, filter_log, filter_records, read_logs, since
from pacsdash.dashboard.admin_settings import settings_rows

FORM_WIDTH = 340
TABLE_HEIGHT = 420
ROLES = [role.value for role in Role]
PASSWORD_HINT = f"at least {MIN_PASSWORD_LENGTH} characters"
LABELS_HINT = "comma-separated; empty: every study"
USER_COLUMNS = ["Name", "Role", "Labels"]



def client_address() -> str:
    """The address of this dashboard session's browser, for the audit trail ("" outside a session)."""
    try:
        return str(pn.state.curdoc.session_context.request.remote_ip or "")  # type: ignore[union-attr]
    except Exception:  # no session (tests, notebooks)
        return ""


def confirmation(on_yes: Any, confirm: Any) -> tuple[pn.widgets.Button, pn.widgets.Button, pn.Row]:
    """The hidden "Yes, remove" / "Cancel" row of a removal: ``on_yes(event)``
    removes, Cancel calls ``confirm(False)``."""
    yes = pn.widgets.Button(name="Yes, remove", button_type="danger")
    yes.on_click(on_yes)
    cancel = pn.widgets.Button(name="Cancel")
    cancel.on_click(lambda _: confirm(False))
    return yes, cancel, pn.Row(yes, cancel, visible=False)

class Notice(pn.pane.HTML):
    """One line saying what the last action did, or why it did not."""

    def __init__(self, **params: Any) -> None:
        super().__init__("", min_height=24, sizing_mode="stretch_width", margin=(4, 10), **params)

    def say(self, text: str, ok: bool = True) -> None:
        kind = "pd-ok" if ok else "pd-error"
        colour = "#1a7f37" if ok else "#b42318"
        self.object = f'<div class="{kind}" style="color: {colour}">{html.escape(text)}</div>'


def attempt(notice: Notice, action: Callable[[], str], after: Callable[[], None] | None = None) -> bool:
    """Run ``action``, show its message or its refusal; True if it was done."""
    try:
        notice.say(action())
    except (Refused, AccountError, ValueError) as exc:
        notice.say(str(exc), ok=False)
        return False
    finally:
        if after is not None:
            after()
    return True


def table(columns: list[str], **params: Any) -> pn.widgets.Tabulator:
    """A read-only table whose cells show text as text."""
    return pn.widgets.Tabulator(pd.DataFrame(columns=columns), show_index=False, disabled=True,
                                sizing_mode="stretch_width", layout="fit_data_stretch", **params)


class UsersView(pn.viewable.Viewer):
    """Every user with their role and labels; add one, change a role or labels, reset a password, remove."""

    def __init__(self, actions: AdminActions, **params: Any) -> None:
        super().__init__(**params)
        self.actions = actions
        self.notice = Notice()
        self.table = table(USER_COLUMNS, selectable=1, height=TABLE_HEIGHT, min_width=300)
        self.table.param.watch(self._on_select, "selection")
        self.new_name = pn.widgets.TextInput(name="Name", placeholder="letters, digits, . _ - @")
        self.new_role = pn.widgets.Select(name="Role", options=ROLES, value="viewer")
        self.new_password = pn.widgets.PasswordInput(name="Password", placeholder=PASSWORD_HINT)
        self.new_again = pn.widgets.PasswordInput(name="Password again")
        self.new_labels = pn.widgets.TextInput(name="Only studies labelled", placeholder=LABELS_HINT)
        self.add_button = pn.widgets.Button(name="Add user", button_type="primary")
        self.add_button.on_click(self._add)
        self.chosen = pn.pane.HTML("<i>Click a user in the table.</i>", margin=(4, 10))
        self.role = pn.widgets.Select(name="Role", options=ROLES, disabled=True, width=160)
        self.role_button = pn.widgets.Button(name="Change role", disabled=True, width=120, align="end")
        self.role_button.on_click(self._set_role)
        self.labels = pn.widgets.TextInput(name="Only studies labelled", placeholder=LABELS_HINT, disabled=True,
                                           width=160)
        self.labels_button = pn.widgets.Button(name="Set labels", disabled=True, width=120, align="end")
        self.labels_button.on_click(self._set_labels)
        self.password = pn.widgets.PasswordInput(name="New password", placeholder=PASSWORD_HINT, disabled=True)
        self.again = pn.widgets.PasswordInput(name="New password again", disabled=True)
        self.password_button = pn.widgets.Button(name="Reset password", disabled=True)
        self.password_button.on_click(self._reset_password)
        self.remove_button = pn.widgets.Button(name="Remove user…", disabled=True)
        self.remove_button.on_click(lambda _: self._confirm(True))
        self.confirm_button, self.cancel_button, self.confirm_row = confirmation(self._remove, self._confirm)
        self.selected = ""
        self.refresh()

    @property
    def _selection_widgets(self) -> list:
        return [self.role, self.role_button, self.labels, self.labels_button, self.password, self.again,
                self.password_button, self.remove_button]

    def refresh(self) -> None:
        """Read the users again (none for someone no longer admin); keep the chosen one if it still exists."""
        users = self.actions.accounts.users() if self.actions.still_admin() else []
        self.table.value = pd.DataFrame([(u.name, u.role.value, ", ".join(u.labels)) for u in users],
                                        columns=USER_COLUMNS)
        names = [u.name for u in users]
        self.table.selection = [names.index(self.selected)] if self.selected in names else []
        self._choose(self.selected if self.selected in names else "")

    def _on_select(self, event: Any) -> None:
        rows = event.new
        self._choose(str(self.table.value.iloc[rows[0]]["Name"]) if rows else "")

    def _choose(self, name: str) -> None:
        self.selected = name
        self._confirm(False)
        for widget in self._selection_widgets:
            widget.disabled = not name
        if name:
            row = self.table.value.set_index("Name").loc[name]
            role = str(row["Role"])
            self.role.value = role
            self.labels.value = str(row["Labels"])
            self.chosen.object = f"Selected: <b>{html.escape(name)}</b> ({html.escape(role)})"
            self.confirm_button.name = f"Yes, remove {name}"
        else:
            self.chosen.object = "<i>Click a user in the table.</i>"

    def _confirm(self, show: bool) -> None:
        self.confirm_row.visible = show

    def _add(self, _: Any) -> None:
        def add() -> str:
            return self.actions.add_user(self.new_name.value, self.new_role.value,
                                         self.new_password.value, self.new_again.value, self.new_labels.value)

        if attempt(self.notice, add):
            self.new_name.value = self.new_password.value = self.new_again.value = self.new_labels.value = ""
        self.refresh()

    def _set_role(self, _: Any) -> None:
        attempt(self.notice, lambda: self.actions.set_role(self.selected, self.role.value), self.refresh)

    def _set_labels(self, _: Any) -> None:
        attempt(self.notice, lambda: self.actions.set_labels(self.selected, self.labels.value), self.refresh)

    def _reset_password(self, _: Any) -> None:
        def reset() -> str:
            return self.actions.reset_password(self.selected, self.password.value, self.again.value)

        if attempt(self.notice, reset):
            self.password.value = self.again.value = ""

    def _remove(self, _: Any) -> None:
        attempt(self.notice, lambda: self.actions.remove_user(self.selected), self.refresh)

    def __panel__(self) -> pn.viewable.Viewable:
        add = pn.Card(self.new_name, self.new_role, self.new_password, self.new_again, self.new_labels,
                      self.add_button,
                      title="Add a user", collapsible=False, width=FORM_WIDTH)
        change = pn.Card(self.chosen, pn.Row(self.role, self.role_button), pn.Row(self.labels, self.labels_button),
                         self.password, self.again,
                         self.password_button, self.remove_button, self.confirm_row,
                         title="Change the selected user", collapsible=False, width=FORM_WIDTH)
        return pn.Column(self.notice, pn.Row(self.table, pn.Column(add, change), sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")


PEER_COLUMNS = ["Name", "AE title", "Host", "Port", "May", "Labels", "From"]


class PeersView(pn.viewable.Viewer):
    """Registered DICOM peers: add, edit, echo, remove (those of pacsdash.toml are read-only)."""

    def __init__(self, actions: AdminActions, **params: Any) -> None:
        super().__init__(**params)
        self.actions = actions
        self.notice = Notice()
        self.table = table(PEER_COLUMNS, selectable=1, height=TABLE_HEIGHT, min_width=420)
        self.table.param.watch(self._on_select, "selection")
        self.peer_name = pn.widgets.TextInput(name="Name", placeholder="letters, digits, . _ -")
        self.aet = pn.widgets.TextInput(name="AE title", placeholder="up to 16 characters")
        self.host = pn.widgets.TextInput(name="Host", placeholder="127.0.0.1")
        self.port = pn.widgets.IntInput(name="Port", start=1, end=65535, value=104)
        self.allow = pn.widgets.CheckBoxGroup(name="May ask us to", options=list(RETRIEVE_ACTIONS),
                                              value=list(RETRIEVE_ACTIONS), inline=True)
        self.labels = pn.widgets.TextInput(name="Only studies labelled", placeholder=LABELS_HINT)
        self.add_button = pn.widgets.Button(name="Add peer", button_type="primary")
        self.add_button.on_click(lambda _: self._change(self.actions.add_peer))
        self.save_button = pn.widgets.Button(name="Save changes")
        self.save_button.on_click(lambda _: self._change(self.actions.edit_peer))
        self.echo_button = pn.widgets.Button(name="Echo", button_type="success")
        self.echo_button.on_click(self._echo)
        self.remove_button = pn.widgets.Button(name="Remove peer…")
        self.remove_button.on_click(lambda _: self._confirm(True))
        self.confirm_button, self.cancel_button, self.confirm_row = confirmation(self._remove, self._confirm)
        self.hint = pn.pane.HTML(
            "<small>Click a peer to edit, echo or remove it. Peers from pacsdash.toml change there.</small>",
            margin=(4, 10))
        self.refresh()

    def refresh(self) -> None:
        """Read the peers again (none for someone no longer admin)."""
        configured = {m.name for m in self.actions.accounts.configured}
        peers = self.actions.accounts.modalities() if self.actions.still_admin() else []
        rows = [(p.name, p.aet, p.host, str(p.port), ",".join(p.allow), ", ".join(p.labels),
                 "pacsdash.toml" if p.name in configured else "added")
                for p in peers]
        self.table.value = pd.DataFrame(rows, columns=PEER_COLUMNS)
        self.table.selection = []

    def _on_select(self, event: Any) -> None:
        if not event.new:
            return
        row = self.table.value.iloc[event.new[0]]
        self.peer_name.value, self.aet.value, self.host.value = str(row["Name"]), str(row["AE title"]), str(row["Host"])
        self.port.value = int(row["Port"])
        self.allow.value = [a for a in str(row["May"]).split(",") if a]
        self.labels.value = str(row["Labels"])
        self._confirm(False)

    def _confirm(self, show: bool) -> None:
        self.confirm_button.name = f"Yes, remove {self.peer_name.value}"
        self.confirm_row.visible = show

    def _change(self, method: Callable[..., str]) -> None:
        def change() -> str:
            return method(self.peer_name.value, self.aet.value, self.host.value, self.port.value or 0, self.allow.value,
                          self.labels.value)

        attempt(self.notice, change, self.refresh)

    def _remove(self, _: Any) -> None:
        self._confirm(False)
        attempt(self.notice, lambda: self.actions.remove_peer(self.peer_name.value), self.refresh)

    async def _echo(self, _: Any) -> None:
        """C-ECHO the peer named in the form, off the event loop (it may take seconds)."""
        name = self.peer_name.value
        self.echo_button.disabled = True
        self.notice.say(f"C-ECHO {name} …")
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, self.actions.echo_peer, name)
            self.notice.say(result.message, result.ok)
        except (Refused, AccountError) as exc:
            self.notice.say(str(exc), ok=False)
        finally:
            self.echo_button.disabled = False

    def __panel__(self) -> pn.viewable.Viewable:
        form = pn.Card(self.peer_name, self.aet, self.host, self.port,
                       pn.pane.HTML("May ask us to:", margin=(4, 10, 0, 10)), self.allow, self.labels,
                       pn.Row(self.add_button, self.save_button), pn.Row(self.echo_button, self.remove_button),
                       self.confirm_row, title="Peer", collapsible=False, width=FORM_WIDTH)
        return pn.Column(self.notice, pn.Row(pn.Column(self.table, self.hint, sizing_mode="stretch_width"), form,
                                             sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")


class SettingsView(pn.viewable.Viewer):
    """The settings in effect, read-only, secrets hidden."""

    def __init__(self, settings: Settings, dicom_port: int = 0, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.dicom_port = dicom_port

    def __panel__(self) -> pn.viewable.Viewable:
        cells = "".join(
            f"<tr><td>{html.escape(section)}</td><td>{html.escape(key)}</td><td><code>{html.escape(value)}</code></td></tr>"
            for section, key, value in settings_rows(self.settings, self.dicom_port))
        return pn.Column(
            pn.pane.HTML(f"<p>Read-only: change <code>{html.escape(str(self.settings.home / 'pacsdash.toml'))}</code>"
                         " (or the command-line flags) and restart the server.</p>", margin=(4, 10)),
            pn.pane.HTML(f'<table class="pd-settings"><thead><tr><th>Section</th><th>Key</th><th>Value</th></tr></thead>'
                         f"<tbody>{cells}</tbody></table>",
                         stylesheets=["table.pd-settings {border-collapse: collapse}"
                                      " .pd-settings td, .pd-settings th {padding: 3px 12px; text-align: left;"
                                      " border-bottom: 1px solid #ddd}"],
                         sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


class LogView(pn.viewable.Viewer):
    """The server's log and the records of actions on studies, with filters."""

    def __init__(self, settings: Settings, archive: Any, still_admin: Callable[[], bool] = lambda: True,
                 **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.archive = archive
        self.still_admin = still_admin
        self.level = pn.widgets.Select(name="Level at least", options=list(LEVELS), value="INFO", width=130)
        self.text = pn.widgets.TextInput(name="Text", placeholder="any part, any case", width=220)
        self.period = pn.widgets.Select(name="When", options=list(PERIODS), value="last 24 hours", width=150)
        self.reload = pn.widgets.Button(name="Reload", width=90, align="end")
        self.log = table(["Time", "Level", "Process", "Logger", "Message"], pagination="local", page_size=15,
                         formatters={"Message": {"type": "textarea"}}, min_width=600)
        self.user = pn.widgets.TextInput(name="User", placeholder="any part of the name", width=180)
        self.action = pn.widgets.Select(name="Action", width=130,
                                        options=["", "anonymize", "export", "send", "delete", "user_change",
                                                 "label_change"])
        self.records_text = pn.widgets.TextInput(name="Text", placeholder="study, address, details", width=220)
        self.records_period = pn.widgets.Select(name="When", options=list(PERIODS), value="everything", width=150)
        self.records_reload = pn.widgets.Button(name="Reload", width=90, align="end")
        self.records = table(["Time", "User", "Address", "Action", "Outcome", "Studies", "Details"],
                             pagination="local", page_size=15,
                             formatters={"Studies": {"type": "textarea"}, "Details": {"type": "textarea"}},
                             min_width=600)
        for widget in (self.level, self.text, self.period):
            widget.param.watch(lambda _: self.refresh_log(), "value")
        for widget in (self.user, self.action, self.records_text, self.records_period):
            widget.param.watch(lambda _: self.refresh_records(), "value")
        self.reload.on_click(lambda _: self.refresh_log())
        self.records_reload.on_click(lambda _: self.refresh_records())
        self.refresh_log()
        self.refresh_records()

    def refresh_log(self) -> None:
        """Read the log files again (not for someone no longer admin) and filter them."""
        entries = read_logs(self.settings.log_path) if self.still_admin() else []
        self.log.value = filter_log(entries, self.level.value, self.text.value, since(self.period.value))

    def refresh_records(self) -> None:
        """Read the action records again (not for someone no longer admin) and filter them."""
        found = self.archive.records(action=self.action.value or None, limit=10_000) if self.still_admin() else []
        self.records.value = filter_records(found, self.user.value, "", self.records_text.value,
                                            since(self.records_period.value))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Tabs(
            ("Server log", pn.Column(pn.Row(self.level, self.text, self.period, self.reload), self.log,
                                     sizing_mode="stretch_width")),
            ("Actions on studies", pn.Column(
                pn.Row(self.user, self.action, self.records_text, self.records_period, self.records_reload),
                self.records, sizing_mode="stretch_width")),
            sizing_mode="stretch_width",
        )
