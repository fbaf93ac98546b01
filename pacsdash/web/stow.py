"""STOW-RS: store instances sent over HTTP (PS3.18 10.5).

The same ingest as C-STORE: each part is kept byte for byte, and the answer
comes only once every stored instance is durable. The response lists stored
instances in ReferencedSOPSequence and refused ones in FailedSOPSequence with
a FailureReason (PS3.18 Table 10.5.3-2): 200 when all were stored, 202 when
some were, 409 when none was.

The body is streamed (Tornado's ``stream_request_body``, set on the routes):
the caller is authenticated and the headers checked before a byte of it is
read, it is held in memory up to :data:`MEMORY_BYTES` and beyond that in an
unlinked temporary file, never more than ``[server] max_upload_mb``; every
body gets an answer, one that stalls for :data:`STALL_SECONDS` a 408.
"""

from __future__ import annotations

import asyncio
import io
import logging
import mmap
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydicom import dcmread
from tornado.ioloop import IOLoop
from tornado.web import HTTPError

from pacsdash.access import Action
from pacsdash.archive import StoreResult
from pacsdash.archive.outcomes import OUTCOMES, StoreOutcome, classify
from pacsdash.web.base import ApiError, bad_request
from pacsdash.web.multipart import MalformedMultipart, Part, parameters, part_spans
from pacsdash.web.qido import DICOM_JSON, check_uid_path

LOGGER = logging.getLogger(__name__)
#: Bytes of a body held in memory; the rest goes to a temporary file.
MEMORY_BYTES = 64 * 2**20
#: Seconds a body may stall (no byte arriving) before the answer is 408.
STALL_SECONDS = 20.0


class BodySpool:
    """A request body as it arrives: in memory up to ``memory`` bytes, then
    in an unlinked temporary file in ``folder`` (gone even after kill -9);
    bytes beyond ``limit`` are dropped and :attr:`too_large` set."""

    def __init__(self, limit: int, folder: Path | None, memory: int = MEMORY_BYTES) -> None:
        self.limit, self.folder, self.memory = limit, folder, memory
        self.size = 0
        self.too_large = False
        self._chunks: list[bytes] = []
        self._file: Any = None
        self._map: mmap.mmap | None = None

    def write(self, chunk: bytes) -> None:
        if self.too_large or self.size + len(chunk) > self.limit:
            self.too_large = True
            self._chunks.clear()
            return
        self.size += len(chunk)
        if self._file is None and self.size > self.memory:
            self._file = tempfile.TemporaryFile(dir=self.folder)
            self._file.writelines(self._chunks)
            self._chunks.clear()
        if self._file is not None:
            self._file.write(chunk)
        else:
            self._chunks.append(chunk)

    def body(self) -> bytes | mmap.mmap:
        """The whole body: bytes, or a read-only map of the temporary file."""
        if self._file is None:
            return b"".join(self._chunks)
        self._file.flush()
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def close(self) -> None:
        self._chunks.clear()
        if self._map is not None:
            self._map.close()
        if self._file is not None:
            self._file.close()


class StowMixin:
    """POST /studies and /studies/{study}: store the body's DICOM parts.

    Mixed into handlers routed with ``tornado.web.stream_request_body``.
    """

    _spool: BodySpool | None = None
    _last_byte: float = 0.0

    def audited_as(self: Any) -> str | None:
        """A POST is an upload in the audit trail, naming the studies it stored."""
        return "upload" if self.request.method == "POST" else super().audited_as()  # type: ignore[misc]

    async def prepare(self: Any) -> None:
        """Before any of the body is read: the CSRF rule, the login and role
        (401, 403), the media type (415) and the declared size (413); then
        the connection may read up to ``max_upload_mb`` for this request."""
        try:
            await super().prepare()
            if self.request.method != "POST":
                return
            self.require(Action.UPLOAD)
            self._stow_media()
            limit = self.app.settings.server.max_upload_mb * 2**20
            declared = self.request.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(413, f"the body is larger than [server] max_upload_mb ({limit // 2**20} MB)")
        except HTTPError:
            # Answered before the body is read: the connection cannot carry another request (the
            # unread body is in the way), so say so, or a client's next request on it is reset.
            self._answered_early = True
            raise
        self.request.connection.set_max_body_size(limit)
        self._spool = BodySpool(limit, self.app.settings.run_path)
        self._last_byte = time.monotonic()
        IOLoop.current().call_later(STALL_SECONDS, self._check_stall)

    def set_default_headers(self: Any) -> None:
        """The handler's headers, and ``Connection: close`` on an answer given before the body was read
        (an error page clears the headers and sets these again)."""
        super().set_default_headers()
        if getattr(self, "_answered_early", False):
            self.set_header("Connection", "close")

    def data_received(self: Any, chunk: bytes) -> None:
        """Spool the body; never raises (Tornado would drop the connection unanswered)."""
        self._last_byte = time.monotonic()
        if self._spool is not None:
            self._spool.write(chunk)

    def _check_stall(self: Any) -> None:
        """Answer 408 when no byte came for :data:`STALL_SECONDS` (a body cut short)."""
        if self._finished or self._spool is None or self.request._body_future.done():  # noqa: SLF001
            return
        idle = time.monotonic() - self._last_byte
        if idle < STALL_SECONDS:
            IOLoop.current().call_later(STALL_SECONDS - idle, self._check_stall)
            return
        LOGGER.info("STOW-RS body from %s stalled after %d bytes", self.request.remote_ip, self._spool.size)
        self.send_error(408, exc_info=(ApiError, ApiError(408, f"the body stalled for {STALL_SECONDS:.0f} s"), None))

    def on_finish(self: Any) -> None:
        if self._spool is not None:
            self._spool.close()
        super().on_finish()  # the audit trail

    def on_connection_close(self: Any) -> None:
        super().on_connection_close()
        if self._spool is not None:
            self._spool.close()

    def _stow_media(self: Any) -> str:
        """The multipart boundary, once the media types are acceptable (else 415)."""
        media, params = parameters(self.request.headers.get("Content-Type", ""))
        if media != "multipart/related":
            raise ApiError(415, 'STOW-RS takes multipart/related; type="application/dicom"')
        part_type = params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise ApiError(415, f"parts of type {part_type[:60]} are not supported; send application/dicom")
        return params.get("boundary", "")

    async def post(self: Any, study: str | None = None, *rest: str) -> None:
        if rest:
            raise ApiError(405, "STOW-RS stores to /studies or /studies/{StudyInstanceUID}")
        user = self.require(Action.UPLOAD)
        if study is not None:
            check_uid_path(study, "StudyInstanceUID")
            if self.scope is not None and self.app.archive.sees(study) and not self.archive.sees(study):
                raise ApiError(404, "no such study")  # another's study: as if unknown
        boundary = self._stow_media()
        spool = self._spool
        if spool is None:  # not streamed (a handler routed without stream_request_body)
            spool = self._spool = BodySpool(len(self.request.body), None)
            spool.write(self.request.body)
        if spool.too_large:
            raise ApiError(413, f"the body is larger than [server] max_upload_mb ({spool.limit // 2**20} MB)")
        body = spool.body()
        try:
            spans = part_spans(body, boundary)
        except MalformedMultipart as exc:
            raise bad_request(f"malformed multipart body: {exc}") from None
        if not spans:
            raise bad_request("the multipart body has no parts")
        origin = f"http:{user.name}"
        loop = IOLoop.current()
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(None, self._store_span, body, span, origin, study) for span in spans)
        )
        base = f"{self.base_url()}/dicom-web"
        self.audit_studies = sorted({r.StudyInstanceUID for r in outcomes if isinstance(r, StoreResult)}
                                    | ({study} if study else set()))
        referenced, failed = [], []
        for result in outcomes:
            if isinstance(result, StoreResult):
                referenced.append(
                    {
                        "00081150": {"vr": "UI", "Value": [result.SOPClassUID]},
                        "00081155": {"vr": "UI", "Value": [result.SOPInstanceUID]},
                        "00081190": {"vr": "UR", "Value": [
                            f"{base}/studies/{quote(result.StudyInstanceUID)}/series/"
                            f"{quote(result.SeriesInstanceUID)}/instances/{quote(result.SOPInstanceUID)}"
                        ]},
                    }
                )
            else:
                sop_class, sop_instance, reason = result
                item: dict[str, Any] = {"00081197": {"vr": "US", "Value": [reason]}}
                item["00081150"] = {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"}
                item["00081155"] = {"vr": "UI", "Value": [sop_instance]} if sop_instance else {"vr": "UI"}
                failed.append(item)
        body: dict[str, Any] = {}
        if study is not None:
            body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{quote(study)}"]}
        if referenced:
            body["00081199"] = {"vr": "SQ", "Value": referenced}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else 202 if referenced else 409
        self.write_json(body, status=status, content_type=DICOM_JSON)

    def _store_span(self: Any, body: bytes | mmap.mmap, span: tuple[dict[str, str], int, int], origin: str,
                    study: str | None) -> StoreResult | tuple[str, str, int]:
        """Store one part, copied out of the body only now (a few at a time, in the executor)."""
        headers, start, end = span
        return self._store_part(Part(headers, body[start:end]), origin, study)

    def _store_part(self: Any, part: Part, origin: str, study: str | None) -> StoreResult | tuple[str, str, int]:
        if part.content_type not in ("", "application/dicom"):
            return "", "", OUTCOMES[StoreOutcome.UNSUPPORTED].failure_reason
        try:
            # What a user restricted to labels uploads, they keep seeing: a study it makes gets their labels.
            return self.app.archive.store_bytes(part.content, origin=origin, expect_study=study,
                                                labels=self.user.labels if self.user is not None else ())
        except Exception as exc:  # every failure becomes its FailureReason (archive/outcomes.py)
            outcome = classify(exc)
            if outcome is StoreOutcome.PROCESSING_FAILURE:
                LOGGER.exception("STOW-RS part could not be stored")
            return (*_identity(part.content), OUTCOMES[outcome].failure_reason)


def _identity(raw: bytes) -> tuple[str, str]:
    """SOP Class and Instance UIDs of a refused part, when they can be read."""
    try:
        ds = dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return str(ds.get("SOPClassUID", "") or "")[:64], str(ds.get("SOPInstanceUID", "") or "")[:64]
    except Exception:  # unreadable: the failure is reported without UIDs
        return "", ""
