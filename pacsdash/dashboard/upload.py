"""Upload DICOM files, folders or ZIPs of them from the browser (editor and admin).

:class:`~pacsdash.dashboard.receiver.FileReceiver` brings the files over the
session's websocket: the browser announces all of them first, then sends
each in acknowledged chunks. It refuses everything when the user may not
upload (the panel is never shown to a viewer, and a forced message is
refused too) and files that would take the upload past
``[server] max_upload_mb``. "Store" takes every file picked so far: it
waits for those still uploading, hands what arrived to
:func:`~pacsdash.dashboard.ingest.ingest` in a worker thread, with a
progress bar, and reports what became of each file, including any that
never arrived whole.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import panel as pn
import param

from pacsdash.dashboard.ingest import FAILED, FileOutcome, UploadReport, ingest
from pacsdash.dashboard.receiver import REFUSED, FileReceiver, PickedFile

LOGGER = logging.getLogger(__name__)
#: Seconds between looks at the files still uploading while "Store" waits.
WAIT_STEP = 0.2
#: Failed files listed by name in the summary (the rest are counted).
MAX_LISTED = 200
RESULT_CSS = """
table.pd-upload-failed { border-collapse: collapse; font-size: 13px; }
table.pd-upload-failed th, table.pd-upload-failed td { text-align: left; padding: 3px 10px 3px 0;
  border-bottom: 1px solid #ddd; vertical-align: top; word-break: break-all; }
.pd-upload-refused { color: #a00; }
"""


def not_received(picked: PickedFile, closed: bool) -> FileOutcome:
    """The report line of a picked file that did not arrive whole."""
    if picked.state == REFUSED or picked.reason:
        return FileOutcome(picked.name, FAILED, f"not received: {picked.reason}")
    if closed:
        return FileOutcome(picked.name, FAILED, "not received: the page was closed while it was uploading")
    return FileOutcome(picked.name, FAILED, "not received whole")


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
    """Drop DICOM files, folders or ZIPs, then store them in the archive."""

    archive = param.Parameter(doc="The pacsdash Archive to store into.")
    user = param.String(default="anonymous", doc="Who uploads (logged and recorded as the origin).")
    may_upload = param.Callable(default=lambda: False, doc="Whether the user may upload, asked at each step.")
    limit_mb = param.Integer(default=1024, bounds=(1, None), doc="[server] max_upload_mb.")
    spool_dir = param.String(default=None, allow_None=True,
                             doc="Where files arriving are spooled beyond a few MB (the home's run folder).")
    busy = param.Boolean(default=False)
    report = param.Parameter(default=None, doc="The last UploadReport.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.receiver = FileReceiver(lambda: self.may_upload(), self.limit, spool_dir=self.spool_dir, min_height=120)
        self.receiver.on_refusal = self._on_refusal
        self.receiver.param.watch(self._on_received, ["picked", "arrived"])
        self._store = pn.widgets.Button(label="Store in the archive", color="primary", width=360, disabled=True)
        self._store.on_click(self._on_store)
        self._progress = pn.indicators.Progress(value=0, max=1, visible=False, sizing_mode="stretch_width",
                                                bar_color="primary")
        self._status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-upload-status"],
                                    stylesheets=[RESULT_CSS])
        self._result = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pd-upload-result"],
                                    stylesheets=[RESULT_CSS])

    @property
    def limit(self) -> int:
        return self.limit_mb * 2**20

    def _on_refusal(self, message: str) -> None:
        LOGGER.warning("refused dashboard upload by %s: %s", self.user, message)
        self._status.object = f'<p class="pd-upload-refused"><b>Not accepted:</b> {html.escape(message)}</p>'

    def _on_received(self, *_: Any) -> None:
        count, arrived = self.receiver.picked, self.receiver.arrived
        self._store.disabled = not count or self.busy
        # The label changes with the number of files only, never with chunks: a
        # button redrawn under the pointer could swallow the click.
        label = f"Store {count} file{'s' if count != 1 else ''} in the archive" if count else "Store in the archive"
        if self._store.label != label:
            self._store.label = label
        if not self.busy:
            self._status.object = (f'<p class="pd-upload-waiting">{count - arrived} still uploading: Store may be '
                                   f"pressed now, they are stored with the rest once they arrive.</p>"
                                   if count > arrived else "")

    async def _on_store(self, *_: Any) -> None:
        await self.store()

    async def store(self) -> UploadReport | None:
        """Store every file picked so far, once those still uploading have
        arrived; return the report (None if nothing to do)."""
        receiver = self.receiver
        batch = [i for i, f in receiver.files.items() if f.state != REFUSED]
        if self.busy or not batch:
            return None
        if not self.may_upload():
            receiver.take(batch)
            self.report = UploadReport(refused="your role may not upload")
            LOGGER.warning("refused dashboard upload by %s: role may not upload", self.user)
            self._result.object = report_html(self.report)
            return self.report
        self.busy = True
        self._store.disabled = True
        self._result.object = ""
        try:
            while receiver.unfinished(batch) and not receiver.closed:
                waiting = len(receiver.unfinished(batch))
                self._status.object = (f"<p>Waiting for {waiting} of {len(batch)} file{'s' if len(batch) != 1 else ''}"
                                       f" still uploading; they are stored with the rest once they arrive…</p>")
                await asyncio.sleep(WAIT_STEP)
            arrived, missing = receiver.take(batch)
            try:
                report = await self._ingest(arrived)
            finally:
                for _, spooled in arrived:
                    spooled.close()  # removes it
        finally:
            self.busy = False
            self._progress.visible = False
            self._status.object = ""
            self._on_received()  # files picked meanwhile are the next upload
        if not report.refused:
            report.files[:0] = [not_received(picked, receiver.closed) for picked in missing]
        self._log(len(batch), report)
        self.report = report
        self._result.object = report_html(report)
        return report

    async def _ingest(self, files: list[tuple[str, Any]]) -> UploadReport:
        """Store ``files`` in a worker thread, moving the progress bar."""
        self._status.object = "<p>Storing…</p>"
        self._progress.param.update(value=0, max=1, visible=True)
        done = {"done": 0, "total": 1}

        def progress(count: int, total: int) -> None:
            done.update(done=count, total=max(total, 1))

        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, lambda: ingest(self.archive, files, f"dashboard:{self.user}", self.limit,
                                                        progress))
        while not job.done():
            await asyncio.wait([job], timeout=0.2)
            self._progress.max = done["total"]
            self._progress.value = min(done["done"], done["total"])
            self._status.object = f"<p>Storing… {done['done']} of {done['total']} files</p>"
        return job.result()

    def _log(self, picked: int, report: UploadReport) -> None:
        if report.refused:
            LOGGER.warning("refused dashboard upload by %s (%d files): %s", self.user, picked, report.refused)
        else:
            LOGGER.info("dashboard upload by %s: %d files received, %s, studies %s", self.user, picked,
                        report.summary(), ", ".join(report.studies[:20]) or "none")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML(f"<h3>Upload</h3><p>DICOM files, folders, or ZIPs of them (folders inside are fine), at "
                         f"most {self.limit_mb} MB in all. Each file is stored as it is, like a C-STORE; an "
                         f"instance already in the archive is kept once. Store may be pressed while files are "
                         f"still uploading: they are stored once they have all arrived.</p>"),
            self.receiver, pn.Row(self._store), self._progress, self._status, self._result,
            sizing_mode="stretch_width", max_width=900,
        )
