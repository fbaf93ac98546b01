"""The JSON API under ``/api`` (CONTRACT.md, "JSON API")."""

from __future__ import annotations

import hmac
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

from tornado.ioloop import IOLoop

from pacsdash import __version__
from pacsdash.access import Action, Role
from pacsdash.archive import InstanceLocation, InvalidQuery, Level, Query, StoredFileError, audit, store_many
from pacsdash.archive.check import check_archive, quarantine_folder
from pacsdash.archive.export import zip_name
from pacsdash.archive.actions import ActionError
from pacsdash.web.base import ApiError, BaseHandler, bad_request
from pacsdash.web.labels import StudyLabelHandler, StudyLabelsHandler
from pacsdash.web.qido import check_uid_path, parse_int
from pacsdash.web.research import research_routes
from pacsdash.web.wado import reads_block

#: Most paths one import request may name.
MAX_IMPORT_PATHS = 1000
#: The ZIP entry naming instances whose files are missing or damaged.
MISSING_NOTE = "MISSING.txt"
#: Most studies one list request returns.
MAX_STUDIES = 1000
STUDY_FIELDS = (
    "StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


class HealthHandler(BaseHandler):
    """``GET /api/health``: 200 once every listener is up (no login needed).

    Anyone learns the status; only a logged-in caller also learns the
    version, AE title and DICOM port (what an attacker would look up first).
    """

    def get(self) -> None:
        if not self.app.ready:
            self.write_json({"status": "starting"}, status=503)
            return
        try:
            self.require(Action.VIEW)
        except ApiError:
            self.write_json({"status": "ok"})
            return
        self.write_json(
            {"status": "ok", "version": __version__, "aet": self.app.settings.server.aet, "dicom_port": self.app.dicom_port}
        )


class StudiesHandler(BaseHandler):
    """``GET /api/studies?PatientName=...&StudyDate=...&limit=&offset=``."""

    audit_action = "query"

    async def get(self) -> None:
        self.require(Action.SEARCH)
        filters = {}
        for name, values in self.request.query_arguments.items():
            if name in ("limit", "offset"):
                continue
            if len(values) > 1:
                raise bad_request(f"{name[:60]} is given more than once")
            filters[name] = values[0].decode("utf-8", "replace")
        limit = min(parse_int(self, "limit", 100) or 0, MAX_STUDIES)
        offset = parse_int(self, "offset", 0) or 0
        try:
            query = Query(Level.STUDY, filters, list(STUDY_FIELDS), limit=limit, offset=offset,
                          order_by=[("StudyDate", True), ("StudyTime", True)], include_defaults=False)
            loop = IOLoop.current()
            rows = await loop.run_in_executor(None, self.archive.find, query)
            total = await loop.run_in_executor(None, self.archive.count, query)
        except InvalidQuery as exc:
            raise bad_request(str(exc)) from None
        self.write_json({"total": total, "limit": limit, "offset": offset, "studies": rows})


class StudyHandler(BaseHandler):
    """``DELETE /api/studies/{StudyInstanceUID}`` (admin)."""

    async def delete(self, study: str) -> None:
        self.require(Action.DELETE)
        check_uid_path(study, "StudyInstanceUID")
        actor = self.actor
        try:
            removed = await IOLoop.current().run_in_executor(None, self.app.actions.delete, study, actor)
        except ActionError as exc:
            raise ApiError(exc.status, str(exc)) from None
        self.write_json({"StudyInstanceUID": study, "deleted_instances": removed})


class _Chunks:
    """A write-only file object collecting what zipfile writes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class ArchiveHandler(BaseHandler):
    """``GET /api/studies/{uid}/archive``: the original files as a ZIP, streamed."""

    audit_action = "retrieve"

    async def get(self, study: str) -> None:
        self.require(Action.DOWNLOAD)
        check_uid_path(study, "StudyInstanceUID")
        locations, unavailable = await IOLoop.current().run_in_executor(None, self._available, study)
        if not locations and not unavailable:
            raise ApiError(404, "no such study")
        if not locations:
            raise ApiError(410, f"the files of study {study} are missing or damaged; see pacsdash check")
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", f'attachment; filename="{study}.zip"')
        sink = _Chunks()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for location in locations:
                try:
                    source = await IOLoop.current().run_in_executor(None, self.app.archive.open, location)
                except StoredFileError as exc:  # gone since it was checked: named in the note
                    unavailable.append(exc)
                    continue
                slow = reads_block(source)
                name = zip_name(location)
                with archive.open(name, "w", force_zip64=location.size > 2**31) as entry, source:
                    while chunk := (await IOLoop.current().run_in_executor(None, source.read, 1 << 20) if slow
                                    else source.read(1 << 20)):
                        entry.write(chunk)
                        self.write(sink.take())
                        await self.flush()
                self.write(sink.take())
            if unavailable:  # said in the download itself, never left out silently
                archive.writestr(MISSING_NOTE, "".join(f"{e.SOPInstanceUID}\t{e}\n" for e in unavailable))
        self.write(sink.take())
        await self.finish()

    def _available(self, study: str) -> tuple[list[InstanceLocation], list[StoredFileError]]:
        """The study's instances whose files are there as received, and the errors of the others
        (checked without opening them; each is opened as it is written)."""
        found, unavailable = [], []
        for location in self.archive.locate(Level.STUDY, study):
            try:
                self.app.archive.verify(location)
                found.append(location)
            except StoredFileError as exc:
                unavailable.append(exc)
        return found, unavailable


class SendHandler(BaseHandler):
    """``POST /api/studies/{uid}/send`` with ``{"modality": NAME}`` (editor)."""

    async def post(self, study: str) -> None:
        self.require(Action.SEND)
        check_uid_path(study, "StudyInstanceUID")
        try:
            name = json.loads(self.request.body or b"{}")["modality"]
        except (ValueError, KeyError, TypeError):
            raise bad_request('the body must be {"modality": NAME}') from None
        actor = self.actor
        try:
            summary = await IOLoop.current().run_in_executor(
                None, lambda: self.app.actions.send(study, str(name), actor))
        except ActionError as exc:
            raise ApiError(exc.status, str(exc)) from None
        self.write_json(summary.as_json())


class LocalImportHandler(BaseHandler):
    """``POST /api/local/import``: the command line's ``import`` while the server runs.

    Only the owner of the home can read the token this needs; the files are
    read from this machine's disk, so nothing but their paths crosses HTTP.
    """

    async def post(self) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip().encode()
        if not header.startswith("Bearer ") or not hmac.compare_digest(token, self.app.local_token.encode()):
            raise ApiError(401, "this route is for the command line on the server's machine")
        try:
            body = json.loads(self.request.body or b"{}")
            paths = [Path(p) for p in body["paths"]]
        except (ValueError, KeyError, TypeError):
            raise bad_request('the body must be {"paths": [...]}') from None
        if len(paths) > MAX_IMPORT_PATHS:
            raise bad_request(f"at most {MAX_IMPORT_PATHS} paths per request")
        done = await IOLoop.current().run_in_executor(None, lambda: list(store_many(self.app.archive, paths)))
        results: list[dict[str, Any]] = [
            {"path": str(path), "error": str(result)}
            if isinstance(result, Exception)
            else {"path": str(path), "outcome": result.outcome.value}
            for path, result in done
        ]
        self.write_json({"results": results})


class CheckHandler(BaseHandler):
    """``POST /api/check`` with optional ``{"repair": true}`` (admin, or the local
    command line): ``pacsdash check`` while the server runs. Answers the
    report (:meth:`pacsdash.archive.check.CheckReport.as_json`); one check at a time."""

    running = threading.Lock()

    async def post(self) -> None:
        user = self.require(Action.SEARCH)
        if user.role is not Role.ADMIN:
            raise ApiError(403, "checking the archive is for admins")
        try:
            body = json.loads(self.request.body or b"{}")
            repair = body.get("repair", False)
        except (ValueError, AttributeError):
            raise bad_request('the body must be {"repair": true|false}') from None
        if not isinstance(repair, bool):
            raise bad_request('"repair" must be true or false')
        if not self.running.acquire(blocking=False):
            raise ApiError(409, "a check is running already")
        actor = self.actor.origin
        try:
            report = await IOLoop.current().run_in_executor(None, lambda: check_archive(
                self.app.archive, repair=repair, quarantine=quarantine_folder(self.app.settings.home), live=True,
                actor=actor))
        finally:
            self.running.release()
        self.write_json(report.as_json())


class AuditHandler(BaseHandler):
    """``GET /api/audit?user=&action=&study=&since=&until=&limit=&offset=&format=csv``
    (admin): the audit trail, newest first (:mod:`pacsdash.archive.audit`)."""

    async def get(self) -> None:
        user = self.require(Action.SEARCH)
        if user.role is not Role.ADMIN:
            raise ApiError(403, "the audit trail is for admins")
        args = {k: self.get_query_argument(k, "") for k in ("user", "action", "study", "since", "until")}
        try:
            wanted = audit.filters(**args, limit=self.get_query_argument("limit", "100"),
                                   offset=self.get_query_argument("offset", "0"))
        except audit.BadFilter as exc:
            raise bad_request(str(exc)) from None
        form = self.get_query_argument("format", "json")
        if form not in ("json", "csv"):
            raise bad_request("format must be json or csv")
        found = await IOLoop.current().run_in_executor(None, lambda: self.app.archive.records(**wanted))
        entries = [audit.entry(r) for r in found]
        if form == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="pacsdash-audit.csv"')
            self.finish(audit.as_csv(entries))
            return
        self.write_json({"entries": entries})


class NoRouteHandler(BaseHandler):
    """Any other ``/api/...`` path: a JSON 404, as every API error is JSON."""

    def prepare(self) -> None:
        if self.request.method != "OPTIONS":
            raise ApiError(404, "no such API route")


def api_routes(app: Any) -> list:
    """Tornado routes of the JSON API."""
    uid = r"([^/]+)"
    return [
        (r"/api/health", HealthHandler, {"app": app}),
        (r"/api/studies/?", StudiesHandler, {"app": app}),
        (rf"/api/studies/{uid}/?", StudyHandler, {"app": app}),
        (rf"/api/studies/{uid}/archive", ArchiveHandler, {"app": app}),
        (rf"/api/studies/{uid}/send", SendHandler, {"app": app}),
        (rf"/api/studies/{uid}/labels/?", StudyLabelsHandler, {"app": app}),
        (rf"/api/studies/{uid}/labels/{uid}", StudyLabelHandler, {"app": app}),
        (r"/api/local/import", LocalImportHandler, {"app": app}),
        (r"/api/check", CheckHandler, {"app": app}),
        (r"/api/audit", AuditHandler, {"app": app}),
        *research_routes(app),
        (r"/api/.*", NoRouteHandler, {"app": app}),
    ]
