"""HTTP requests into the traffic record, at one place: the Tornado
application's ``log_request``, which every handler calls once it has answered
(Panel's pages, Bokeh's resources and websockets, the DICOMweb and JSON API
routes alike).

A request is recorded by its route as a template
(``/dicom-web/studies/{study}/series/{series}/metadata``), never by its raw
path: paths carry UIDs and patient IDs.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from pacsdash.traffic.events import HttpRequest
from pacsdash.traffic.recorder import TrafficSink

LOGGER = logging.getLogger(__name__)
_UID_SEGMENT = re.compile(r"\d+(\.\d+)+")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")


class RouteTemplates:
    """Templates of the request paths of a list of Tornado routes."""

    def __init__(self, routes: list[Any]) -> None:
        self._patterns: dict[type, list[re.Pattern[str]]] = {}
        for route in routes:
            if isinstance(route, (tuple, list)):
                pattern, handler = route[0], route[1]
            else:  # a tornado URLSpec
                pattern, handler = route.regex.pattern, route.handler_class
            if not pattern.endswith("$"):
                pattern += "$"
            self._patterns.setdefault(handler, []).append(re.compile(pattern))

    def route(self, handler_class: type, path: str, status: int) -> str:
        """The template of ``path`` served by ``handler_class``.

        A path of one of the routes: its captured parts named after the
        segment before them (``/studies/1.2.3`` -> ``/studies/{study}``).
        Any other path (the dashboard's own): its UID-like or unusual
        segments replaced; a path nothing served (404) is not shown at all.
        """
        for pattern in self._patterns.get(handler_class, ()):
            match = pattern.match(path)
            if match is not None:
                return _template(path, match)
        if status == 404:
            return "(no such route)"
        return "/".join(_segment(part) for part in path.split("/"))


def _template(path: str, match: re.Match[str]) -> str:
    parts, end = [], 0
    for index in range(1, (match.re.groups or 0) + 1):
        start, stop = match.span(index)
        if start < end or start < 0:
            continue  # absent, or nested in a part already replaced
        before = path[:start].rstrip("/").rsplit("/", 1)[-1]
        parts.append(path[end:start])
        parts.append("{" + _singular(before) + "}")
        end = stop
    parts.append(path[end:])
    return "".join(parts)


def _singular(segment: str) -> str:
    if not segment or not _PLAIN_SEGMENT.fullmatch(segment):
        return "value"
    if segment == "series":
        return segment
    if segment.endswith("ies"):
        return segment[:-3] + "y"
    return segment[:-1] if segment.endswith("s") else segment


def _segment(part: str) -> str:
    if not part or _PLAIN_SEGMENT.fullmatch(part):
        return part
    if _UID_SEGMENT.fullmatch(part):
        return "{uid}"
    return "{value}"


def record_requests(application: Any, sink: TrafficSink, routes: list[Any]) -> None:
    """Record every request ``application`` answers into ``sink``, then log it as before."""
    templates = RouteTemplates(routes)
    previous = application.log_request

    def log_request(handler: Any) -> None:
        try:
            request = handler.request
            status = handler.get_status()
            sink.record(HttpRequest(time.time(), request.method or "", templates.route(type(handler), request.path,
                                                                                      status),
                                    status, request.request_time()))
        except Exception:  # recording never fails a request
            LOGGER.debug("could not record an HTTP request", exc_info=True)
        previous(handler)

    application.log_request = log_request
