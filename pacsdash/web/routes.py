"""Every HTTP route of ``pacsdash serve`` beside the dashboard."""

from __future__ import annotations

from typing import Any

from tornado.web import stream_request_body

from pacsdash.archive import Level
from pacsdash.web.api import api_routes
from pacsdash.web.audit_local import LocalAuditHandler
from pacsdash.web.pixels import FramesHandler, PixelDataHandler, RenderedHandler, WadoUriHandler
from pacsdash.web.qido import QidoHandler
from pacsdash.web.stow import StowMixin
from pacsdash.web.wado import BulkDataHandler, MetadataHandler, RetrieveHandler

PREFIX = "/dicom-web"
SEGMENT = r"([^/]+)"


@stream_request_body
class StudiesRoot(StowMixin, QidoHandler):
    """``/studies``: QIDO-RS search (GET), STOW-RS store (POST, body streamed)."""


@stream_request_body
class StudyResource(StowMixin, RetrieveHandler):
    """``/studies/{study}``: WADO-RS retrieve (GET), STOW-RS store (POST, body streamed)."""


def dicomweb_routes(app: Any, prefix: str = PREFIX) -> list:
    """Tornado routes of QIDO-RS, WADO-RS and STOW-RS (PS3.18 10)."""
    s = SEGMENT
    study = rf"{prefix}/studies/{s}"
    series = rf"{study}/series/{s}"
    instance = rf"{series}/instances/{s}"
    context = {"app": app}
    return [
        (rf"{prefix}/studies/?", StudiesRoot, {**context, "level": Level.STUDY}),
        (rf"{prefix}/series/?", QidoHandler, {**context, "level": Level.SERIES}),
        (rf"{prefix}/instances/?", QidoHandler, {**context, "level": Level.IMAGE}),
        (rf"{study}/series/?", QidoHandler, {**context, "level": Level.SERIES}),
        (rf"{study}/instances/?", QidoHandler, {**context, "level": Level.IMAGE}),
        (rf"{series}/instances/?", QidoHandler, {**context, "level": Level.IMAGE}),
        (rf"{study}/metadata", MetadataHandler, context),
        (rf"{series}/metadata", MetadataHandler, context),
        (rf"{instance}/metadata", MetadataHandler, context),
        (rf"{instance}/bulkdata/(.+)", BulkDataHandler, context),
        (rf"{study}/pixeldata", PixelDataHandler, context),
        (rf"{series}/pixeldata", PixelDataHandler, context),
        (rf"{instance}/pixeldata", PixelDataHandler, context),
        (rf"{instance}/frames/{s}", FramesHandler, context),
        (rf"{instance}/rendered", RenderedHandler, context),
        (rf"{instance}/frames/{s}/rendered", RenderedHandler, context),
        (rf"{instance}/thumbnail", RenderedHandler, {**context, "thumbnail": True}),
        (rf"{instance}/frames/{s}/thumbnail", RenderedHandler, {**context, "thumbnail": True}),
        (rf"{study}/?", StudyResource, context),
        (rf"{series}/?", RetrieveHandler, context),
        (rf"{instance}/?", RetrieveHandler, context),
    ]


def http_routes(app: Any) -> list:
    """All routes mounted beside the dashboard."""
    return ([(r"/api/local/audit", LocalAuditHandler, {"app": app})]  # before api_routes' catch-all
            + api_routes(app) + dicomweb_routes(app) + [(r"/wado/?", WadoUriHandler, {"app": app})])
