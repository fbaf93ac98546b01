"""STOW-RS: store instances sent over HTTP (PS3.18 10.5).

The same ingest as C-STORE: each part is kept byte for byte, and the answer
comes only once every stored instance is durable. The response lists stored
instances in ReferencedSOPSequence and refused ones in FailedSOPSequence with
a FailureReason (PS3.18 Table 10.5.3-2): 200 when all were stored, 202 when
some were, 409 when none was.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any
from urllib.parse import quote

from pydicom import dcmread
from tornado.ioloop import IOLoop

from pacsdash.access import Action
from pacsdash.archive import StoreResult
from pacsdash.archive.outcomes import OUTCOMES, StoreOutcome, classify
from pacsdash.web.base import ApiError, bad_request
from pacsdash.web.multipart import MalformedMultipart, Part, parameters, split_parts
from pacsdash.web.qido import DICOM_JSON, check_uid_path

LOGGER = logging.getLogger(__name__)


class StowMixin:
    """POST /studies and /studies/{study}: store the body's DICOM parts."""

    async def post(self: Any, study: str | None = None, *rest: str) -> None:
        if rest:
            raise ApiError(405, "STOW-RS stores to /studies or /studies/{StudyInstanceUID}")
        user = self.require(Action.UPLOAD)
        if study is not None:
            check_uid_path(study, "StudyInstanceUID")
        media, params = parameters(self.request.headers.get("Content-Type", ""))
        if media != "multipart/related":
            raise ApiError(415, 'STOW-RS takes multipart/related; type="application/dicom"')
        part_type = params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise ApiError(415, f"parts of type {part_type[:60]} are not supported; send application/dicom")
        try:
            parts = split_parts(self.request.body, params.get("boundary", ""))
        except MalformedMultipart as exc:
            raise bad_request(f"malformed multipart body: {exc}") from None
        if not parts:
            raise bad_request("the multipart body has no parts")
        origin = f"http:{user.name}"
        loop = IOLoop.current()
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(None, self._store_part, part, origin, study) for part in parts)
        )
        base = f"{self.base_url()}/dicom-web"
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

    def _store_part(self: Any, part: Part, origin: str, study: str | None) -> StoreResult | tuple[str, str, int]:
        if part.content_type not in ("", "application/dicom"):
            return "", "", OUTCOMES[StoreOutcome.UNSUPPORTED].failure_reason
        try:
            return self.app.archive.store_bytes(part.content, origin=origin, expect_study=study)
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
