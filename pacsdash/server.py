"""``pacsdash serve``: one process with the archive, the DICOM node and HTTP."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

# Serve Bokeh's and Panel's scripts from this process, never from a CDN.
os.environ.setdefault("BOKEH_RESOURCES", "server")

# Only what the DICOM side needs is imported here: after a crash the DICOM
# port must take associations again within a second (scanners give up), and
# Panel with the dashboard takes seconds to import; start_server imports
# them once the DICOM node is up.
from pacsdash import __version__  # noqa: E402
from pacsdash.access import open_accounts  # noqa: E402
from pacsdash.config import Settings, init_home  # noqa: E402
from pacsdash.dimse.workers import DicomWorkers  # noqa: E402
from pacsdash.logs import configure_logging as _configure_logging  # noqa: E402
from pacsdash.runtime import HomeLock, ServerInfo, new_token, write_server_info  # noqa: E402
from pacsdash.traffic.recorder import TrafficRecorder  # noqa: E402

if TYPE_CHECKING:
    from pacsdash.dimse.scp import DicomNode
    from pacsdash.web.base import AppContext

LOGGER = logging.getLogger("pacsdash")
#: ``PACSDASH_TRAFFIC=off`` starts the server without its traffic record
#: (the /activity page then says so): to measure what recording costs.
TRAFFIC_VARIABLE = "PACSDASH_TRAFFIC"
#: Largest request body read whole (JSON API, login form): anything larger is
#: refused before it is read. STOW-RS alone streams up to ``max_upload_mb``,
#: raised per request once its caller is authenticated (:mod:`pacsdash.web.stow`).
MAX_BODY_BYTES = 4 * 2**20
#: Largest read buffer of a connection: above bokeh's largest websocket
#: message (20 MiB); the dashboard upload's messages are 1 MiB chunks.
MAX_BUFFER_BYTES = 32 * 2**20


def configure_logging(settings: Settings, verbose: bool = False) -> None:
    """Log to ``HOME/logs/pacsdash.log`` (rotated) and to standard error."""
    _configure_logging(settings.log_path, "pacsdash", verbose)


def allow_dashboard_origins(http: object, settings: Settings, port: int) -> None:
    """Let the dashboard's websocket be opened only from pages of this server.

    A browser sends the login cookie with a websocket handshake from any
    page; accepting any origin would let another site drive a logged-in
    user's dashboard. Allowed: this host and port, its loopback names, the
    ``public_url`` host and the CORS origins configured.
    """
    from urllib.parse import urlsplit

    origins = http._tornado.websocket_origins  # noqa: SLF001 - bokeh keeps them in this set
    origins.clear()
    for host in {settings.server.host, "127.0.0.1", "localhost", "[::1]"}:
        origins.add(f"{host}:{port}")
    if settings.server.public_url:
        origins.add(urlsplit(settings.server.public_url).netloc)
    for origin in settings.server.cors_origins:
        if origin != "*":
            origins.add(urlsplit(origin).netloc)


@dataclass
class RunningServer:
    """Handles on a started server (used by ``serve`` and by tests)."""

    app: AppContext
    node: DicomNode | DicomWorkers
    http: object
    lock: HomeLock

    @property
    def http_port(self) -> int:
        return int(self.http.port)

    def stop(self) -> None:
        """Stop listening, finish pending writes, release the home."""
        self.app.ready = False
        self.node.stop()
        try:
            self.http.stop()
        except Exception:  # already stopped
            pass
        self.app.archive.close()
        self.lock.release()


def start_server(settings: Settings) -> RunningServer:
    """Open the home and start every listener; return once all are up.

    Call ``IOLoop.current().start()`` afterwards to serve HTTP.
    """
    init_home(settings.home)
    lock = HomeLock(settings.run_path)
    lock.acquire()
    traffic = None if os.environ.get(TRAFFIC_VARIABLE, "").lower() == "off" else TrafficRecorder()
    workers = None
    if settings.server.dicom_workers > 0:
        # Connections queue from now on, and the workers set up while the
        # archive opens (and recovers, after a crash).
        workers = DicomWorkers(settings, None, settings.server.dicom_workers, traffic=traffic)
        try:
            workers.spawn()
            workers.accept_when_ready()  # C-ECHO answered as soon as they listen; the index follows
        except Exception:
            workers.stop()
            lock.release()
            raise
    # The dashboard's and the HTTP doors' modules (Panel, Bokeh: a second or more) load in
    # a thread while the archive opens and recovers.
    threading.Thread(target=_import_http_side, name="pacsdash-import", daemon=True).start()
    from pacsdash.archive import audit
    from pacsdash.archive.factory import open_archive
    from pacsdash.dimse import compat

    try:
        archive = open_archive(settings)
    except Exception:
        if workers is not None:
            workers.stop()
        lock.release()
        raise
    # After an unclean stop: what must be settled before serving, now; the orphan files
    # once serving (logged when done; the home stays marked unclean until then).
    archive.reconcile_in_background()
    if settings.audit.syslog:  # each audit entry also to the site's collector (PS3.15 A.5 over RFC 5424)
        from pacsdash.archive.audit_syslog import SyslogForwarder

        archive.on_record(SyslogForwarder(settings.audit.syslog, aet=settings.server.aet))
    accounts = open_accounts(settings)
    if settings.auth.enabled and not accounts.users():
        LOGGER.warning("no users yet: add one with `pacsdash users add NAME --role admin --password-stdin`")
    if traffic is not None:
        traffic.on_rejected = audit.peer_refusal_recorder(archive)
        archive.subscribe(traffic.on_commit)  # which association brought which patient's study
    compat.install(plain=settings.server.plain_pynetdicom)  # this process's SCUs and DICOM node
    if workers is not None:
        workers.archive = archive
        node: DicomNode | DicomWorkers = workers
        dicom_port = workers.start()
        dicom_tls_port = workers.tls_port
    else:
        from pacsdash.dimse.scp import DicomNode

        node = DicomNode(archive, accounts, settings.server, traffic=traffic)
        node.start()
        dicom_port = node.port
        dicom_tls_port = node.tls_port or 0
    # The DICOM node is up: now the dashboard and the HTTP doors.
    import panel as pn

    from pacsdash.archive.actions import StudyActions
    from pacsdash.dashboard.auth import cookie_secret, make_auth_provider
    from pacsdash.dashboard.pages import served_pages
    from pacsdash.dimse.scu import send_files
    from pacsdash.tls import write_local_client
    from pacsdash.traffic.http import record_requests
    from pacsdash.web.base import AppContext, SecurityHeaders
    from pacsdash.web.routes import http_routes

    actions = StudyActions(archive, settings.home, accounts, settings.server.aet, sender=send_files)
    app = AppContext(settings=settings, archive=archive, accounts=accounts, local_token=new_token(), actions=actions,
                     traffic=traffic)
    app.dicom_port = dicom_port
    routes = http_routes(app)
    auth: dict = {}
    if settings.auth.enabled:
        auth = {"auth_provider": make_auth_provider(accounts, audit.login_recorder(archive)),
                "cookie_secret": cookie_secret(settings.run_path)}
    # With client certificates demanded over HTTPS: one for the command line, new at each start.
    local_client = write_local_client(settings.run_path) if settings.server.tls_client_ca else None
    http = pn.serve(
        served_pages(app),
        port=settings.server.http_port,
        address=settings.server.host,
        websocket_origin=["localhost"],  # completed below, once the port is known
        show=False,
        start=False,
        title="pacsdash",
        extra_patterns=routes,
        **auth,
        http_server_kwargs={"max_body_size": MAX_BODY_BYTES, "max_buffer_size": MAX_BUFFER_BYTES,
                            **https_options(settings, local_client[1] if local_client else b"")},
    )
    http._tornado.transforms.append(SecurityHeaders)  # noqa: SLF001 - on the dashboard's pages too
    if settings.auth.enabled:
        from pacsdash.dashboard.admin_only import admin_pages_transform

        http._tornado.transforms.append(  # noqa: SLF001 - 403 on /admin and /activity for non-admins
            admin_pages_transform(accounts, auth["cookie_secret"]))
    if traffic is not None:
        record_requests(http._tornado, traffic, routes)  # noqa: SLF001 - the Tornado application
    http.start()
    allow_dashboard_origins(http, settings, int(http.port))
    app.ready = True
    info = ServerInfo(
        pid=os.getpid(),
        host=settings.server.host,
        http_port=int(http.port),
        dicom_port=dicom_port,
        aet=settings.server.aet,
        token=app.local_token,
        certificate=settings.server.tls_cert,
        dicom_tls_port=dicom_tls_port,
        client_certificate=str(local_client[0]) if local_client else "",
    )
    write_server_info(settings.run_path, info)
    LOGGER.info(
        "pacsdash %s serving %s: %s %s/ DICOM %s@%s:%d%s",
        __version__,
        settings.home,
        "HTTPS" if settings.server.tls_cert else "HTTP",
        info.base_url,
        settings.server.aet,
        settings.server.host,
        dicom_port,
        f", DICOM over TLS :{dicom_tls_port}" if dicom_tls_port else "",
    )
    return RunningServer(app, node, http, lock)


def _import_http_side() -> None:
    """Import what serving HTTP needs (the main thread imports the same modules later, and
    waits for whatever this thread is still importing)."""
    import importlib

    try:  # behind the DICOM workers' own start-up: a C-ECHO is the first promise (Linux: per thread)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    try:
        for module in ("panel", "pacsdash.dashboard.pages", "pacsdash.web.routes"):
            importlib.import_module(module)
    except Exception:  # the main thread's own import reports it
        LOGGER.debug("preloading the HTTP side failed", exc_info=True)


def https_options(settings: Settings, local_client: bytes = b"") -> dict[str, object]:
    """Tornado's ``ssl_options`` (an :class:`ssl.SSLContext`, see
    :func:`pacsdash.tls.server_context`) when ``[server] tls_cert``/``tls_key``
    are set: the HTTP port then speaks HTTPS only, and with ``tls_client_ca``
    demands a client certificate signed by those CAs, or ``local_client``
    (the command line's own, :func:`pacsdash.tls.write_local_client`; not
    trusted on the DICOM TLS port). (Bokeh's own ``ssl_certfile`` cannot ask
    for client certificates.)"""
    if not settings.server.tls_cert:
        return {}
    from pacsdash.tls import server_context

    server = settings.server
    return {"ssl_options": server_context(server.tls_cert, server.tls_key, server.tls_client_ca, local_client)}


class PortTaken(OSError):
    """A port the server must listen on is in use; the message names it."""


def check_ports(settings: Settings) -> None:
    """Refuse to start, naming the port, when the HTTP or DICOM port is taken
    (before any worker starts, so the failure is one line, not a traceback).

    Raises
    ------
    PortTaken
        With the port, the address and what the setting is called.
    """
    import socket

    host = settings.server.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for what, port, flag in (("HTTP", settings.server.http_port, "--http-port"),
                             ("DICOM", settings.server.dicom_port, "--dicom-port"),
                             ("DICOM TLS", settings.server.dicom_tls_port, "--dicom-tls-port")):
        if not port:
            continue  # port 0: the system picks a free one
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"the {what} port {port} on {host} is taken ({exc.strerror}); stop what uses it or "
                            f"choose another with {flag} or [server] {what.lower().replace(' ', '_')}_port") from None
        finally:
            probe.close()


def serve(settings: Settings) -> None:
    """Run the server until SIGINT or SIGTERM (one that comes while it starts
    stops it cleanly once started: an unclean stop costs a recovery)."""
    check_ports(settings)
    stopping = threading.Event()
    loop = None

    def shutdown(signum: int, frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        if loop is not None:
            loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    running = start_server(settings)
    from tornado.ioloop import IOLoop

    loop = IOLoop.current()
    if stopping.is_set():  # asked to stop while starting
        loop.add_callback(loop.stop)
    try:
        loop.start()
    finally:
        running.stop()
        LOGGER.info("stopped cleanly: every acknowledged instance is on disk and indexed")
