"""JSON API of the research tools: anonymize, exports, records, pseudonyms.

Thin: each handler checks the role, parses the body, calls
:class:`~pacsdash.archive.actions.StudyActions` in a worker thread and
answers. Exports run as jobs (they can take minutes): ``POST /api/exports``
answers 202 with the job, ``GET /api/exports/{id}`` its progress,
``GET /api/exports/{id}/download`` the result (a ZIP of it when it is a
folder).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.ioloop import IOLoop

from pacsdash.access import Action
from pacsdash.archive.actions import ActionError, Actor
from pacsdash.web.auth import LOCAL_CLI
from pacsdash.web.base import ApiError, BaseHandler, bad_request
from pacsdash.web.qido import check_uid_path, parse_int

#: Finished export jobs kept (with their files) for download.
KEEP_JOBS = 20
MAX_BODY_STUDIES = 10_000


def _body(handler: BaseHandler) -> dict[str, Any]:
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _options(body: dict[str, Any]) -> list[str] | None:
    options = body.get("options")
    if options is None:
        return None
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise bad_request('"options" must be a list of option names')
    return options


class AnonymizeHandler(BaseHandler):
    """``POST /api/studies/{uid}/anonymize`` (editor), body ``{"options": [...]}``
    (optional): stores a de-identified copy (PS3.15 Annex E), answers 200 with
    its StudyInstanceUID and the instances left out."""

    async def post(self, study: str) -> None:
        self.require(Action.ANONYMIZE)
        check_uid_path(study, "StudyInstanceUID")
        body = _body(self)
        options = _options(body)
        actor = self.actor
        try:
            result = await IOLoop.current().run_in_executor(None, lambda: self.app.actions.anonymize(
                study, actor, options, bool(body.get("include_burned_in", False))))
        except ActionError as exc:
            raise ApiError(exc.status, str(exc)) from None
        self.write_json(result.as_json())


@dataclass
class ExportJob:
    """One export running or done on the server."""

    id: str
    actor: str
    request: Any
    state: str = "queued"  # queued, running, done, failed
    done: int = 0
    total: int = 0
    summary: dict[str, Any] | None = None
    error: str = ""
    started: float = field(default_factory=time.time)
    folder: Path | None = None  # made by the server (HTTP users); None: the command line's own path

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total,
                "summary": self.summary, "error": self.error, "format": self.request.format.value,
                "anonymize": self.request.anonymize,
                "download": f"/api/exports/{self.id}/download" if self.folder and self.state == "done" else None}


class ExportJobs:
    """The export jobs of one server, each run in a thread of its own."""

    def __init__(self, actions: Any, folder: Path) -> None:
        self.actions = actions
        self.folder = folder
        self.jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def start(self, request: Any, actor: Actor, own_folder: bool) -> ExportJob:
        job = ExportJob(uuid.uuid4().hex, actor.name, request)
        if own_folder:
            job.folder = self.folder / job.id
            job.folder.mkdir(parents=True, mode=0o700)
            name = "export.zip" if request.format.value == "zip" else "export"
            request.out = job.folder / name
        with self._lock:
            self.jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job, actor), name=f"pacsdash-export-{job.id[:8]}",
                         daemon=True).start()
        return job

    def _run(self, job: ExportJob, actor: Actor) -> None:
        job.state = "running"

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            job.summary = self.actions.export(job.request, actor, progress).as_json()
            if job.folder is not None:
                job.summary["out"] = job.request.out.name  # never a server path to a remote user
            job.state = "done"
        except ActionError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception as exc:  # logged, reported, never a dead job
            import logging

            logging.getLogger(__name__).exception("export %s failed", job.id)
            job.error, job.state = f"internal error: {type(exc).__name__}", "failed"

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed")]
        for job in sorted(finished, key=lambda j: j.started)[: max(0, len(finished) - KEEP_JOBS)]:
            del self.jobs[job.id]
            if job.folder is not None:
                shutil.rmtree(job.folder, ignore_errors=True)

    def get(self, job_id: str) -> ExportJob | None:
        return self.jobs.get(job_id)


def export_jobs(app: Any) -> ExportJobs:
    jobs = getattr(app, "_export_jobs", None)
    if jobs is None:
        jobs = app._export_jobs = ExportJobs(app.actions, app.settings.home / "exports")
    return jobs


def parse_export(body: dict[str, Any], local: bool) -> Any:
    """An :class:`~pacsdash.research.export.ExportRequest` from a JSON body."""
    from pacsdash.research.export import ExportFormat, ExportRequest
    from pacsdash.research.options import DEFAULT_OPTIONS, Option

    studies = body.get("studies") or []
    where = body.get("where") or {}
    if not isinstance(studies, list) or not all(isinstance(s, str) for s in studies) or len(studies) > MAX_BODY_STUDIES:
        raise bad_request(f'"studies" must be a list of at most {MAX_BODY_STUDIES} StudyInstanceUIDs')
    for uid in studies:
        check_uid_path(uid, "StudyInstanceUID")
    if not isinstance(where, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in where.items()):
        raise bad_request('"where" must be an object of attribute -> matching value')
    try:
        fmt = ExportFormat(str(body.get("format", "zip")))
    except ValueError:
        raise bad_request(f'"format" must be one of {", ".join(f.value for f in ExportFormat)}') from None
    options = _options(body)
    try:
        chosen = DEFAULT_OPTIONS if options is None else frozenset(Option.parse(o) for o in options)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    out = body.get("out")
    if out is not None and not local:
        raise bad_request('"out" is for the command line on the server\'s machine only')
    anonymize = bool(body.get("anonymize", False))
    return ExportRequest(out=Path(out) if out else Path("."), studies=studies, where=where, format=fmt,
                         anonymize=anonymize, options=chosen if anonymize else frozenset(),
                         include_burned_in=bool(body.get("include_burned_in", False)))


class ExportsHandler(BaseHandler):
    """``POST /api/exports``: start an export (viewers: originals; editors:
    anonymized too); 202 with the job."""

    async def post(self) -> None:
        user = self.require(Action.DOWNLOAD)
        body = _body(self)
        local = user is LOCAL_CLI
        request = parse_export(body, local)
        if request.anonymize:
            self.require(Action.ANONYMIZE)
        if not request.studies and not request.where:
            raise bad_request('give "studies", "where" or both')
        job = export_jobs(self.app).start(request, self.actor, own_folder=not (local and body.get("out")))
        self.write_json(job.as_json(), status=202)


class ExportHandler(BaseHandler):
    """``GET /api/exports/{id}``: the job's state and progress (its starter or an admin)."""

    def get(self, job_id: str) -> None:
        user = self.require(Action.DOWNLOAD)
        job = export_jobs(self.app).get(job_id)
        if job is None or (job.actor != user.name and not user.role.may(Action.DELETE)):
            raise ApiError(404, "no such export")
        self.write_json(job.as_json())


class ExportDownloadHandler(BaseHandler):
    """``GET /api/exports/{id}/download``: the finished export (a folder comes as a ZIP)."""

    async def get(self, job_id: str) -> None:
        user = self.require(Action.DOWNLOAD)
        job = export_jobs(self.app).get(job_id)
        if job is None or (job.actor != user.name and not user.role.may(Action.DELETE)) or job.folder is None:
            raise ApiError(404, "no such export")
        if job.state != "done":
            raise ApiError(409, f"the export is {job.state}")
        out = job.request.out
        if out.is_dir():
            bundle = job.folder / "export-folder.zip"
            if not bundle.exists():
                await IOLoop.current().run_in_executor(None, _zip_folder, out, bundle)
            out = bundle
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", f'attachment; filename="pacsdash-export-{job.id[:8]}.zip"')
        with open(out, "rb") as source:
            while chunk := source.read(1 << 20):
                self.write(chunk)
                await self.flush()
        await self.finish()


def _zip_folder(folder: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            bundle.write(path, path.relative_to(folder).as_posix())
    partial.replace(target)


class RecordsHandler(BaseHandler):
    """``GET /api/records?action=&actor=&study=&limit=&offset=`` (admin): anonymizations and exports."""

    async def get(self) -> None:
        self.require(Action.MANAGE_USERS)
        args = {name: self.get_query_argument(name, None) for name in ("action", "actor", "study")}
        limit = min(parse_int(self, "limit", 100) or 0, 1000)
        offset = parse_int(self, "offset", 0) or 0
        found = await IOLoop.current().run_in_executor(
            None, lambda: self.app.archive.records(limit=limit, offset=offset, **args))
        self.write_json({"records": [r.as_json() for r in found]})


class PseudonymHandler(BaseHandler):
    """``GET /api/pseudonyms/{pseudonym}`` (admin): whom it stands for."""

    async def get(self, pseudonym: str) -> None:
        self.require(Action.MANAGE_USERS)
        found = await IOLoop.current().run_in_executor(None, self.app.actions.lookup, pseudonym[:64])
        if found is None:
            raise ApiError(404, "no such subject")
        self.write_json(found)


def research_routes(app: Any) -> list:
    uid = r"([^/]+)"
    context = {"app": app}
    return [
        (rf"/api/studies/{uid}/anonymize", AnonymizeHandler, context),
        (r"/api/exports/?", ExportsHandler, context),
        (r"/api/exports/([0-9a-f]{32})/?", ExportHandler, context),
        (r"/api/exports/([0-9a-f]{32})/download", ExportDownloadHandler, context),
        (r"/api/records/?", RecordsHandler, context),
        (rf"/api/pseudonyms/{uid}", PseudonymHandler, context),
    ]
