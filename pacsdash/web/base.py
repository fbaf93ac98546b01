"""What every HTTP handler shares: the app context, login, CORS, errors."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, ClassVar

from tornado.web import HTTPError, OutputTransform, RequestHandler
from tornado.httputil import HTTPHeaders, HTTPServerRequest

from pacsdash.access import Accounts, Action, User
from pacsdash.access.throttle import TooManyAttempts
from pacsdash.archive import Archive, Scope, audit
from pacsdash.archive.actions import Actor, StudyActions
from pacsdash.config import Settings
from pacsdash.traffic.recorder import TrafficRecorder
from pacsdash.access import grants
from pacsdash.access.grants import Grant
from pacsdash.web.auth import LOCAL_CLI, Authenticator, session_user
from pacsdash.web.metadata_cache import MetadataCache

LOGGER = logging.getLogger(__name__)
#: The DICOM JSON media type (PS3.18 Annex F), sent exactly so: no parameters.
DICOM_JSON = "application/dicom+json"
#: Methods that change something: the CSRF rule applies (:meth:`BaseHandler.check_change_request`).
CHANGES = ("POST", "PUT", "PATCH", "DELETE")
#: Request media types that no HTML form and no CORS-simple request can carry: a
#: browser sends them cross-origin only after a preflight (Fetch standard, "CORS-
#: safelisted request-header"), which only the configured origins pass.
#: ``multipart/related`` is STOW-RS's (PS3.18 10.5).
NON_FORM_TYPES = frozenset({"application/json", DICOM_JSON, "multipart/related"})
#: Headers on every response, the dashboard's too: no page may be framed by
#: another site (CSP Level 2 ``frame-ancestors``, RFC 7034 for older browsers).
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders(OutputTransform):
    """Adds :data:`SECURITY_HEADERS` to every response of the Tornado
    application it is added to (``app.transforms.append(SecurityHeaders)``)."""

    def __init__(self, request: HTTPServerRequest) -> None:
        super().__init__(request)

    def transform_first_chunk(self, status_code: int, headers: HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, HTTPHeaders, bytes]:
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        return status_code, headers, chunk


@dataclass
class AppContext:
    """Everything a handler may use, handed to it at construction."""

    settings: Settings
    archive: Archive
    accounts: Accounts
    #: Token of local command-line calls (see :mod:`pacsdash.runtime`).
    local_token: str
    dicom_port: int = 0
    ready: bool = False
    authenticator: Authenticator = field(init=False)
    #: Records queries, retrievals and uploads in the audit trail (see :meth:`BaseHandler.on_finish`).
    audit_request: Callable[[str, str, str, bool, list[str], dict[str, Any]], None] = field(init=False)
    #: Encoded DICOM JSON of instances (see :mod:`pacsdash.web.metadata_cache`).
    metadata_cache: MetadataCache = field(default_factory=MetadataCache)
    #: Send, delete, anonymize, export (see :mod:`pacsdash.archive.actions`).
    actions: StudyActions | None = None
    #: The server's record of DICOM and HTTP traffic (see :mod:`pacsdash.traffic`), or None when off.
    traffic: TrafficRecorder | None = None

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.accounts, self.settings.auth.enabled, self.local_token)
        self.authenticator.on_failure = audit.login_recorder(self.archive)
        self.audit_request = audit.request_recorder(self.archive)
        if self.actions is None:
            self.actions = StudyActions(self.archive, self.settings.home, self.accounts, self.settings.server.aet)


#: :meth:`BaseHandler.require` before :meth:`BaseHandler.authenticate` ran.
_UNCHECKED = object()


class BaseHandler(RequestHandler):
    """A handler with the app context, login and JSON helpers.

    Subclasses call :meth:`require` with the :class:`Action` a route needs:
    no or wrong credentials answer 401 (with ``WWW-Authenticate``), a role
    that may not act answers 403 (CONTRACT.md).
    """

    user: User | None = None
    #: What the caller may do, and to which studies; set by :meth:`require`.
    grant: Grant | None = None
    #: The studies the caller may see (None: every study): the grant's scope.
    scope: Scope | None = None
    #: What a request to this route is in the audit trail ("query", "retrieve"), if anything.
    audit_action: ClassVar[str | None] = None
    #: The studies a request concerned when its path does not name them (set by the route).
    audit_studies: list[str] | None = None

    def initialize(self, app: AppContext) -> None:
        self.app = app
        self.set_default_headers()  # Tornado sets them before initialize()

    async def prepare(self) -> None:
        """Refuse a change that a cross-site page could have made (see
        :meth:`check_change_request`); check the credentials sent, off the event loop."""
        self.check_change_request()
        await self.authenticate()

    def on_finish(self) -> None:
        """Put an authenticated query, retrieval or upload in the audit trail
        (:func:`pacsdash.archive.audit.request_recorder`)."""
        action = self.audited_as()
        if action is None or self.user is None:
            return
        try:
            studies = self.audit_studies
            if studies is None:
                named = self.path_args[0] if self.path_args else self.get_query_argument("studyUID", "")
                studies = [named] if named and len(named) <= 64 else []
            details: dict[str, Any] = {"route": type(self).__name__, "status": self.get_status()}
            if action == "query" and self.request.query:
                details["query"] = self.request.query[:1000]
            self.app.audit_request(self.user.name, self.request.remote_ip or "", action, self.get_status() < 400,
                                   studies, details)
        except Exception:  # the trail never fails a request; a lost entry is logged
            LOGGER.warning("audit: could not record a %s by %s", action, self.user.name, exc_info=True)

    def audited_as(self) -> str | None:
        """This request's action in the audit trail (a route's ``audit_action`` unless it says otherwise)."""
        return self.audit_action

    # -- access ----------------------------------------------------------------
    async def authenticate(self) -> None:
        """Who the ``Authorization`` header names, for :meth:`require`: a
        password is verified in a thread pool (scrypt), so guessing clients
        never hold up the event loop and every other request."""
        try:
            self._caller = await self.app.authenticator.user_for_async(
                self.request.headers.get("Authorization"), self.request.remote_ip or "")
        except TooManyAttempts as exc:
            self._caller = exc

    def require(self, action: Action) -> User:
        caller = getattr(self, "_caller", _UNCHECKED)
        if caller is _UNCHECKED:  # a route whose prepare() did not authenticate
            try:
                caller = self.app.authenticator.user_for(self.request.headers.get("Authorization"),
                                                         self.request.remote_ip or "")
            except TooManyAttempts as exc:
                caller = exc
        if isinstance(caller, TooManyAttempts):
            raise ApiError(429, str(caller), caller.retry_after)
        user = caller
        if user is None and self.request.method in ("GET", "HEAD"):
            user = self._dashboard_user()
        if user is None:
            raise ApiError(401, "login required")
        grant = grants.for_role(user.name, user.role, user.labels, kind="local" if user is LOCAL_CLI else "user")
        if not grant.may(action):
            raise ApiError(403, f"the {user.role.value} role may not {action.value}")
        self.user, self.grant, self.scope = user, grant, grant.scope
        return user

    @property
    def archive(self) -> Any:
        """The archive as the caller may see it (call :meth:`require` first):
        a study outside their labels is not there, a 404 like an unknown UID."""
        if self.user is None:
            raise RuntimeError("require() decides whose archive this is")
        return self.app.archive.scoped(self.scope)

    @property
    def actor(self) -> Actor:
        """Who asks, for the archive's actions (call :meth:`require` first)."""
        grant = self.grant
        return Actor(name=grant.name if grant else "anonymous", kind=grant.kind if grant else "user",
                     address=self.request.remote_ip or "", scope=self.scope)

    def _dashboard_user(self) -> User | None:
        """The user logged in to the dashboard, for the downloads it links to.

        Only for GET and HEAD from this server's own pages: a cookie is sent
        by the browser on its own, so it never authorises a change (CSRF) nor
        a request from another origin. The session must still be valid
        (:func:`pacsdash.web.auth.session_user`: logout, a new password or
        role, or removing the user ends it); the role is read now.
        """
        if not self.application.settings.get("cookie_secret") or self.cross_origin():
            return None
        name = session_user(self.get_secure_cookie, self.app.accounts)
        return self.app.accounts.user(name) if name else None

    def own_origins(self) -> set[str]:
        """This server's origins (RFC 6454) as the caller may know them."""
        return {f"{self.request.protocol}://{self.request.host}".lower(), self.base_url().lower()}

    def cross_origin(self) -> bool:
        """Whether the browser says the request comes from another origin or site:
        an ``Origin`` header not ours (RFC 6454 7), or ``Sec-Fetch-Site``
        (Fetch Metadata) other than ``same-origin`` or ``none``."""
        origin = self.request.headers.get("Origin")
        if origin and origin.lower() not in self.own_origins():
            return True
        return self.request.headers.get("Sec-Fetch-Site", "none").lower() not in ("same-origin", "none")

    def check_change_request(self) -> None:
        """The CSRF rule of every POST, PUT, PATCH and DELETE.

        Passes a request carrying ``X-Requested-With`` or a body of a type no
        form can send (:data:`NON_FORM_TYPES`: JSON, STOW-RS's
        multipart/related): a browser sends those cross-origin only after a
        CORS preflight. Any other body type answers 415. A request without a
        body type passes only when authenticated by an ``Authorization``
        header (scripts, dicomweb-client) and not sent from another origin;
        otherwise 403. A request with neither cookie nor credentials falls
        through to the route's own 401.
        """
        headers = self.request.headers
        if self.request.method not in CHANGES or headers.get("X-Requested-With"):
            return
        media = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media:
            if media not in NON_FORM_TYPES:
                raise ApiError(415, f"a change takes Content-Type: application/json (not {media[:60]}) "
                                    "or an X-Requested-With header")
            return
        if headers.get("Authorization") and not self.cross_origin():
            return
        if headers.get("Authorization") or "user" in self.request.cookies:
            raise ApiError(403, "a change from a browser needs Content-Type: application/json "
                                "or an X-Requested-With header")

    # -- CORS ------------------------------------------------------------------
    def set_default_headers(self) -> None:
        """CORS (Fetch standard, "CORS protocol") and :data:`SECURITY_HEADERS`.

        An origin listed in ``[server] cors_origins`` is echoed, with
        credentials allowed (OHIF sends its own ``Authorization``); ``"*"``
        answers a literal ``*`` and never allows credentials, so no other
        site can read a response through a logged-in browser. Cookies never
        authorise a cross-origin request whatever this says
        (:meth:`_dashboard_user`).
        """
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        origin = self.request.headers.get("Origin")
        allowed = self.app.settings.server.cors_origins if hasattr(self, "app") else ()
        if not origin:
            return
        if origin in allowed:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.add_header("Vary", "Origin")
        elif "*" in allowed:
            self.set_header("Access-Control-Allow-Origin", "*")
        else:
            return
        self.set_header("Access-Control-Expose-Headers", "Content-Type, Content-Length, Warning")

    def options(self, *args: Any) -> None:
        """CORS preflight: no login needed, nothing else answered."""
        if "Access-Control-Allow-Origin" in self._headers:
            self.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
            self.set_header(
                "Access-Control-Allow-Headers",
                self.request.headers.get("Access-Control-Request-Headers", "Authorization, Content-Type, Accept"),
            )
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- replies ---------------------------------------------------------------
    def check_xsrf_cookie(self) -> None:
        """Callers prove who they are with headers, not cookies: no XSRF risk."""
        return

    def base_url(self) -> str:
        """``scheme://host[:port]`` of the URLs handed to this caller.

        ``[server] public_url`` if set; else, when ``trust_proxy_headers`` is
        on, the proxy's ``Forwarded`` (RFC 7239) or ``X-Forwarded-Proto`` /
        ``X-Forwarded-Host``; else the request's own scheme and Host. A Host
        without a port (dicomweb-client sends one) gets the port the request
        arrived on.
        """
        server = self.app.settings.server
        if server.public_url:
            return server.public_url.rstrip("/")
        scheme, host = self.request.protocol, self.request.host
        if server.trust_proxy_headers:
            forwarded = parse_forwarded(self.request.headers.get("Forwarded", ""))
            scheme = forwarded.get("proto") or self.request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
            host = forwarded.get("host") or self.request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
            return f"{scheme}://{host}"
        if ":" not in host.rsplit("]", 1)[-1]:
            try:
                port = self.request.connection.stream.socket.getsockname()[1]
            except (AttributeError, OSError):
                port = None
            if port and port != {"http": 80, "https": 443}.get(scheme):
                host = f"{host}:{port}"
        return f"{scheme}://{host}"

    def write_json(self, value: Any, status: int = 200, content_type: str = "application/json") -> None:
        """``value`` as JSON, always UTF-8. ``application/dicom+json`` goes out
        without a charset parameter: the media type is UTF-8 by definition
        (PS3.18 8.7.3.1), and clients such as dicomweb-client compare it
        exactly."""
        self.set_status(status)
        self.set_header("Content-Type", content_type if content_type == DICOM_JSON else f"{content_type}; charset=utf-8")
        self.finish(json.dumps(value, ensure_ascii=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A JSON body with the message; the status line keeps its standard
        reason, so nothing from the request is ever reflected into it."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            message = error.message
        elif status_code < 500:
            message = self._reason
        else:
            message = "internal error"
        if isinstance(error, ApiError) and error.retry_after:
            self.set_header("Retry-After", str(error.retry_after))
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="pacsdash", charset="UTF-8"')
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message, "status": status_code}, ensure_ascii=False))


def parse_forwarded(header: str) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header, quotes removed.

    ``for=1.2.3.4;host="127.0.0.1:8080";proto=http, for=...`` ->
    ``{"for": "1.2.3.4", "host": "127.0.0.1:8080", "proto": "http"}``.
    """
    in_quotes, current = False, ""
    for char in header:
        if char == '"':
            in_quotes = not in_quotes
        if char == "," and not in_quotes:
            break
        current += char
    out: dict[str, str] = {}
    for pair in _split_unquoted(current, ";"):
        key, sep, value = pair.partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            out[key.strip().lower()] = value
    return out


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts, current, in_quotes = [], "", False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
        if char == separator and not in_quotes:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


class ApiError(HTTPError):
    """An HTTP error whose message goes into the JSON body."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(status)
        self.message = message
        #: Seconds to wait, sent as ``Retry-After`` (429, 503).
        self.retry_after = retry_after


def bad_request(message: str) -> ApiError:
    """A 400 whose message names the parameter and the rule."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
