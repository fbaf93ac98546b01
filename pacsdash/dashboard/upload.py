"""Upload DICOM files or ZIPs of them from the browser (editor and admin).

Panel's :class:`~panel.widgets.FileDropper` sends the files in chunks over
the session's websocket, with a progress bar per file. The server side
refuses chunks when the user may not upload (the widget is never shown to a
viewer, and a forced message is dropped too) or when the upload grows past
``[server] max_upload_mb``. "Store" then hands the files to
:func:`~pacsdash.dashboard.ingest.ingest` in a worker thread, with a
progress bar, and shows what became of each file.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from pacsdash.dashboard.ingest import FAILED, UploadReport, ingest, megabytes

LOGGER = logging.getLogger(__name__)
#: Bytes per websocket message of the file dropper.
CHUNK_SIZE = 4 * 2**20
#: Failed files listed by name in the summary (the rest are counted).
MAX_LISTED = 200
RESULT_CSS = """
table.pd-upload-failed { border-collapse: collapse; font-size: 13px; }
table.pd-upload-failed th, table.pd-upload-failed td { text-align: left; padding: 3px 10px 3px 0;
  border-bottom: 1px solid #ddd; vertical-align: top; word-break: break-all; }
.pd-upload-refused { color: #a00; }
"""


class GuardedFileDropper(pn.widgets.FileDropper):
    """A FileDropper that accepts chunks only from a user allowed to upload,
    and only up to ``limit`` bytes in all."""

    def __init__(self, allowed: Callable[[], bool], limit: int, **params: Any) -> None:
        super().__init__(**params)
        self._allowed = allowed
        self._limit = limit
        self.refusals: list[str] = []
        self.on_refusal: Callable[[str], None] = lambda message: None

    def _held(self) -> int:
        buffered = sum(len(chunk) for chunks in self._file_buffer.values() for chunk in chunks)
        return buffered + sum(len(data) for data in self.value.values())

    def _refuse(self, message: str) -> None:
        self.refusals.append(message)
        self.on_refusal(message)

    def _process_event(self, event: Any) -> None:
        if event.event_name == "upload_event":
            if not self._allowed():
                self._file_buffer.clear()
                self._refuse("your role may not upload")
                return
            data = event.data
            if data.get("chunk") != 1 and data.get("name") not in self._file_buffer:
                return  # the rest of a file already refused
            chunk = data.get("data") or b""
            if self._held() + len(chunk) > self._limit:
                self._file_buffer.pop(data.get("name"), None)
                self._refuse(f"{data.get('name', 'a file')!s:.200} makes the upload larger than the "
                             f"{megabytes(self._limit)} allowed ([server] max_upload_mb)")
                return
        super()._process_event(event)


def report_html(report: UploadReport) -> str:
    """The outcome of an upload as HTML; every name and reason escaped."""
    e = html.escape
    if report.refused:
        return f'<p class="pd-upload-refused"><b>Upload refused:</b> {e(report.refused)}</p>'
    parts = [f'<p class="pd-upload-summary"><b>{e(report.summary())}</b>'
             + (f" in {len(report.studies)} stud{'y' if len(report.studies) == 1 else 'ies'}" if report.studies else "")
             + ".</p>"]
    failed = [f for f in report.files if f.outcome == FAILED]
    if failed:
        rows = "".join(f"<tr><td>{e(f.name)}</td><td>{e(f.reason)}</td></tr>" for f in failed[:MAX_LISTED])
        more = f"<p>… and {len(failed) - MAX_LISTED} more.</p>" if len(failed) > MAX_LISTED else ""
        parts.append(f'<table class="pd-upload-failed"><tr><th>Not stored</th><th>Why</th></tr>{rows}</table>{more}')
    return "".join(parts)


class UploadPanel(pn.viewable.Viewer):
    """Drop DICOM files or ZIPs, then store them in the archive."""

    archive = param.Parameter(doc="The pacsdash Archive to store into.")
    user = param.String(default="anonymous", doc="Who uploads (logged and recorded as the origin).")
    may_upload = param.Callable(default=lambda: False, doc="Whether the user may upload, asked at each step.")
    limit_mb = param.Integer(default=1024, bounds=(1, None), doc="[server] max_upload_mb.")
    busy = param.Boolean(default=False)
    report = param.Parameter(default=None, doc="The last UploadReport.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._slot = pn.Column(sizing_mode="stretch_width")
        self._store = pn.widgets.Button(label="Store in the archive", color="primary", width=200)
        self._store.on_click(self._on_store)
        self._progress = pn.indicators.Progress(value=0, max=1, visible=False, sizing_mode="stretch_width",
                                                bar_color="primary")
        self._status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-upload-status"],
                                    stylesheets=[RESULT_CSS])
        self._result = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-upload-result"],
                                    stylesheets=[RESULT_CSS])
        self.dropper = self._new_dropper()

    @property
    def limit(self) -> int:
        return self.limit_mb * 2**20

    def _new_dropper(self) -> GuardedFileDropper:
        dropper = GuardedFileDropper(
            self.may_upload, self.limit, multiple=True, chunk_size=CHUNK_SIZE, previews=[],
            max_total_file_size=f"{self.limit_mb}MB", max_file_size=f"{self.limit_mb}MB",
            sizing_mode="stretch_width", height=160, label="DICOM files or ZIPs",
        )
        dropper.on_refusal = self._on_refusal
        dropper.param.watch(self._on_received, "value")
        self._slot[:] = [dropper]
        self.dropper = dropper
        self._on_received()
        return dropper

    def _on_refusal(self, message: str) -> None:
        LOGGER.warning("refused dashboard upload by %s: %s", self.user, message)
        self._status.object = f'<p class="pd-upload-refused"><b>Upload refused:</b> {html.escape(message)}</p>'

    def _on_received(self, *_: Any) -> None:
        count = len(self.dropper.value)
        self._store.disabled = not count or self.busy
        self._store.label = f"Store {count} file{'s' if count != 1 else ''} in the archive" if count else \
            "Store in the archive"

    async def _on_store(self, *_: Any) -> None:
        await self.store()

    async def store(self) -> UploadReport | None:
        """Store what was dropped so far; return the report (None if nothing to do)."""
        if self.busy or not self.dropper.value:
            return None
        if not self.may_upload():
            self.report = UploadReport(refused="your role may not upload")
            LOGGER.warning("refused dashboard upload by %s: role may not upload", self.user)
            self._result.object = report_html(self.report)
            self._new_dropper()
            return self.report
        files = dict(self.dropper.value)
        self.dropper.value.clear()
        self.busy = True
        self._store.disabled = True
        self._status.object = "<p>Storing…</p>"
        self._result.object = ""
        self._progress.param.update(value=0, max=1, visible=True)
        done = {"done": 0, "total": 1}

        def progress(count: int, total: int) -> None:
            done.update(done=count, total=max(total, 1))

        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, lambda: ingest(self.archive, files, f"dashboard:{self.user}", self.limit,
                                                        progress))
        try:
            while not job.done():
                await asyncio.wait([job], timeout=0.2)
                self._progress.max = done["total"]
                self._progress.value = min(done["done"], done["total"])
                self._status.object = f"<p>Storing… {done['done']} of {done['total']} files</p>"
            report = job.result()
        finally:
            self.busy = False
            self._progress.visible = False
        self._log(files, report)
        self.report = report
        self._status.object = ""
        self._result.object = report_html(report)
        self._new_dropper()  # an empty drop zone for the next upload
        return report

    def _log(self, files: dict[str, Any], report: UploadReport) -> None:
        if report.refused:
            LOGGER.warning("refused dashboard upload by %s (%d files): %s", self.user, len(files), report.refused)
        else:
            LOGGER.info("dashboard upload by %s: %d files received, %s, studies %s", self.user, len(files),
                        report.summary(), ", ".join(report.studies[:20]) or "none")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML(f"<h3>Upload</h3><p>DICOM files, or ZIPs of them (folders inside are fine), at most "
                         f"{self.limit_mb} MB in all. Each file is stored as it is, like a C-STORE; an instance "
                         f"already in the archive is kept once.</p>"),
            self._slot, pn.Row(self._store), self._progress, self._status, self._result,
            sizing_mode="stretch_width", max_width=900,
        )
