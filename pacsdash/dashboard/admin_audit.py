"""The admin page's Audit tab: the audit trail, newest first, with filters, pages and CSV.

What ``GET /api/audit`` and ``pacsdash audit`` give (CONTRACT.md), read the
same way: the filters are checked by :func:`pacsdash.archive.audit.filters`,
the entries come from :meth:`Archive.records
<pacsdash.archive.archive.Archive.records>` through
:func:`pacsdash.archive.audit.entry`, the CSV is
:func:`pacsdash.archive.audit.as_csv`. The entries hold what outsiders typed
(a failed login's user name): the table shows them with Tabulator's
plain-text formatter, messages go through :func:`html.escape`.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn

from pacsdash.archive import audit
from pacsdash.dashboard.admin_views import table

PAGE_SIZE = 50
HEADINGS = {"time": "Time", "user": "User", "address": "Address", "action": "Action", "outcome": "Outcome",
            "studies": "Studies"}


def read_entries(archive: Any, user: str = "", action: str = "", study: str = "", since: str = "", until: str = "",
                 limit: int = PAGE_SIZE, offset: int = 0) -> list[dict[str, Any]]:
    """Audit entries matching the text filters, newest first (``BadFilter`` says what is wrong)."""
    wanted = audit.filters(user=user.strip(), action=action, study=study.strip(), since=since, until=until,
                           limit=limit, offset=offset)
    return [audit.entry(record) for record in archive.records(**wanted)]


def entries_csv(archive: Any, **text_filters: str) -> str:
    """Every entry matching the filters (the newest :data:`audit.MAX_LIMIT`) as ``pacsdash audit --csv`` writes them."""
    return audit.as_csv(read_entries(archive, **text_filters, limit=audit.MAX_LIMIT, offset=0))


def as_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Entries as the table's rows (studies one per line)."""
    rows = [{**item, "studies": "\n".join(item["studies"])} for item in entries]
    return pd.DataFrame(rows, columns=list(audit.COLUMNS)).rename(columns=HEADINGS).fillna("")


class AuditView(pn.viewable.Viewer):
    """The audit trail with filters for user, action, study and time; a page at a time; CSV of all that match."""

    def __init__(self, archive: Any, still_admin: Callable[[], bool] = lambda: True, page_size: int = PAGE_SIZE,
                 **params: Any) -> None:
        super().__init__(**params)
        self.archive, self.still_admin, self.page_size = archive, still_admin, page_size
        self.offset = 0
        self.user = pn.widgets.TextInput(label="User", placeholder="exact name", width=160)
        self.action = pn.widgets.Select(label="Action", options=["", *audit.ACTIONS], width=130)
        self.study = pn.widgets.TextInput(label="Study", placeholder="StudyInstanceUID", width=220)
        self.since = pn.widgets.TextInput(label="Since", placeholder="2026-12-01 or …T08:00Z", width=170)
        self.until = pn.widgets.TextInput(label="Until (excluded)", placeholder="2026-12-02", width=170)
        self.reload = pn.widgets.Button(label="Reload", width=80, align="end")
        self.newer = pn.widgets.Button(label="‹ Newer", width=80, disabled=True)
        self.older = pn.widgets.Button(label="Older ›", width=80, disabled=True)
        self.where = pn.pane.HTML("", margin=(8, 10))
        self.notice = pn.pane.HTML("", margin=(4, 10), sizing_mode="stretch_width")
        self.download = pn.widgets.FileDownload(callback=self._csv_file, filename="pacsdash-audit.csv",
                                                label="Download CSV", embed=False, width=140)
        self.table = table(list(HEADINGS.values()), formatters={"Studies": {"type": "textarea"}}, min_width=600)
        for widget in (self.user, self.action, self.study, self.since, self.until):
            widget.param.watch(lambda _: self.refresh(offset=0), "value")
        self.reload.on_click(lambda _: self.refresh())
        self.newer.on_click(lambda _: self.refresh(offset=max(0, self.offset - self.page_size)))
        self.older.on_click(lambda _: self.refresh(offset=self.offset + self.page_size))
        self.refresh()

    def text_filters(self) -> dict[str, str]:
        """The filters as typed, for :func:`read_entries`."""
        return {"user": self.user.value, "action": self.action.value or "", "study": self.study.value,
                "since": self.since.value, "until": self.until.value}

    def refresh(self, offset: int | None = None) -> None:
        """Read the page at ``offset`` (the current one if None) again; say why not when a filter is wrong."""
        if offset is not None:
            self.offset = offset
        if not self.still_admin():
            self.table.value, self.notice.object = as_frame([]), "<i>Only admins see the audit trail.</i>"
            return
        try:
            # One more than a page: whether there is an older page.
            found = read_entries(self.archive, **self.text_filters(), limit=self.page_size + 1, offset=self.offset)
        except audit.BadFilter as exc:
            self.notice.object = f'<div class="pd-error" style="color: #b42318">{html.escape(str(exc))}</div>'
            return
        self.notice.object = ""
        shown = found[:self.page_size]
        self.table.value = as_frame(shown)
        self.newer.disabled = self.offset == 0
        self.older.disabled = len(found) <= self.page_size
        first = self.offset + 1 if shown else self.offset
        self.where.object = f"entries {first}–{self.offset + len(shown)}"

    def csv_text(self) -> str:
        """All entries the filters match, as CSV (empty when the user is no longer an admin or a filter is wrong)."""
        if not self.still_admin():
            return ""
        try:
            return entries_csv(self.archive, **self.text_filters())
        except audit.BadFilter as exc:
            self.notice.object = f'<div class="pd-error" style="color: #b42318">{html.escape(str(exc))}</div>'
            return ""

    def _csv_file(self) -> io.BytesIO:
        return io.BytesIO(self.csv_text().encode("utf-8"))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.user, self.action, self.study, self.since, self.until, self.reload),
            self.notice,
            pn.Row(self.newer, self.older, self.where, pn.HSpacer(), self.download, sizing_mode="stretch_width"),
            self.table,
            sizing_mode="stretch_width",
        )
