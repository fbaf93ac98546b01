"""HTTP requests are recorded by route template, never by raw path."""

from __future__ import annotations

from pacsdash.traffic.http import RouteTemplates
from pacsdash.web.routes import http_routes
from pacsdash.web.qido import QidoHandler


def templates() -> tuple[RouteTemplates, dict]:
    routes = http_routes(object())
    return RouteTemplates(routes), {handler.__name__: handler for _, handler, *_ in routes}


def test_dicomweb_paths_become_templates():
    routes, handlers = templates()
    path = "/dicom-web/studies/1.2.840.113619.2.1/series/1.2.3.4/instances"
    assert routes.route(QidoHandler, path, 200) == "/dicom-web/studies/{study}/series/{series}/instances"
    path = "/dicom-web/studies/1.2.3/series/4.5.6/instances/7.8.9/frames/1,2"
    assert routes.route(handlers["FramesHandler"], path, 200) == \
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frame}"


def test_other_paths_keep_plain_segments_only():
    routes, _ = templates()
    assert routes.route(object, "/activity", 200) == "/activity"
    assert routes.route(object, "/static/js/bokeh.min.js", 200) == "/static/js/bokeh.min.js"
    assert routes.route(object, "/x/1.2.3.4/DOE^JANE", 200) == "/x/{uid}/{value}"
    assert routes.route(object, "/whatever/DOE^JANE", 404) == "(no such route)"
