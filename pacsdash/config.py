"""Typed settings, built once from defaults, ``pacsdash.toml`` and flags.

A flag beats the config file, which beats the default (CONTRACT.md). Every
value is checked when the settings are built; a bad one raises
:class:`ConfigError` naming the section, the key, the rule and what was found.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_NAME = "pacsdash.toml"
DEFAULT_HOME = Path("pacsdash-home")
#: Where ``pacsdash demo`` puts its home unless told: never the home of a real server.
DEMO_HOME = Path("pacsdash-demo")
RETRIEVE_ACTIONS = ("store", "find", "move", "get")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: where and as whom the process listens."""

    host: str = "127.0.0.1"
    http_port: int = 8042
    dicom_port: int = 4242
    aet: str = "PACSDASH"
    accept_unknown_store: bool = False
    max_associations: int = 32
    #: Processes receiving DICOM associations (0: in the server process).
    dicom_workers: int = 2
    #: Seconds an idle association may stay open before it is aborted.
    network_timeout: int = 60
    #: Origins allowed to call the HTTP services from a browser (CORS).
    cors_origins: tuple[str, ...] = ()
    #: Base of the URLs the server hands out (RetrieveURL, BulkDataURI), e.g.
    #: "https://pacs.example.org"; empty: taken from each request.
    public_url: str = ""
    #: Take scheme and host from Forwarded / X-Forwarded-* (behind a proxy).
    trust_proxy_headers: bool = False
    #: Largest HTTP request body (a STOW-RS upload) in megabytes.
    max_upload_mb: int = 1024
    #: A registered peer is recognised by its AE title AND the address it
    #: calls from (CONTRACT.md); false only for sites whose peers call
    #: through NAT from addresses other than the registered host.
    check_peer_address: bool = True
    #: Seconds a connection may take to send its A-ASSOCIATE-RQ (and to finish
    #: any PDU it has begun before that) before it is closed (PS3.8 9.1.5 ARTIM).
    acse_timeout: int = 5
    #: Associations and not yet associated connections one address may hold
    #: open at once as an unregistered caller (per DICOM worker process).
    max_associations_per_address: int = 8
    #: Of max_associations, slots only registered peers may use.
    reserved_associations: int = 8
    #: Largest data set of one C-STORE from a registered peer [MB]; it is
    #: held in memory while it arrives.
    max_store_mb: int = 2048
    #: Largest data set of one C-STORE from an unregistered peer [MB]
    #: (when accept_unknown_store is true).
    unknown_store_max_mb: int = 64
    #: What one unregistered address may store in 24 hours [MB], counted by
    #: each DICOM worker process since it started.
    unknown_store_quota_mb: int = 1024
    #: PEM certificate (chain) and key of the HTTP listener: when both are set,
    #: ``http_port`` serves HTTPS only and login cookies are Secure. Relative
    #: paths are taken from the home (``pacsdash tls selfsigned`` writes
    #: ``tls/cert.pem`` and ``tls/key.pem``).
    tls_cert: str = ""
    tls_key: str = ""
    #: DICOM over TLS (PS3.15 B.1) on this port, with ``tls_cert`` and
    #: ``tls_key``; 0: no TLS listener. The plain ``dicom_port`` stays open.
    dicom_tls_port: int = 0
    #: PEM file of the certificate authorities whose client certificates the
    #: TLS listeners demand; empty: peers are not asked for a certificate.
    tls_client_ca: str = ""
    #: Run the DICOM node on pynetdicom as released, without the changes
    #: :mod:`pacsdash.dimse.compat` installs (slower; to tell a pacsdash bug
    #: from a pynetdicom one, or to run on a pynetdicom version they do not fit).
    plain_pynetdicom: bool = False


@dataclass(frozen=True)
class AuthSettings:
    """``[auth]``: whether HTTP callers must log in."""

    enabled: bool = True


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``: where the original files go.

    ``url`` names the store and replaces ``backend`` and ``path``:
    ``s3://bucket/prefix`` for an S3-compatible object store (reached at
    ``endpoint_url`` when it is not AWS's; credentials from the standard AWS
    environment variables or credential files, never from here), or
    ``file:PATH`` for a local folder. Without it, ``path`` is the local folder.
    """

    backend: str = "local"
    #: Folder of the local file store, relative to the home unless absolute.
    path: str = "store"
    #: ``s3://bucket/prefix`` or ``file:PATH`` (checked by :func:`check_storage`).
    url: str = ""
    #: The S3 API's address for a store other than AWS's (``http://minio:9000``).
    endpoint_url: str = ""
    #: The bucket's region (``us-east-1`` when empty and nothing in the AWS configuration says otherwise).
    region: str = ""

    @property
    def s3(self) -> tuple[str, str] | None:
        """``(bucket, prefix)`` of an ``s3://`` url (checked), else None."""
        if not self.url.startswith("s3:"):
            return None
        parts = urlsplit(self.url)
        return parts.netloc, parts.path.strip("/")


@dataclass(frozen=True)
class IndexSettings:
    """``[index]``: the metadata database."""

    #: DuckDB file, relative to the home unless absolute.
    path: str = "index.duckdb"
    #: A ``postgresql://`` URL for larger sites (overrides ``path``).
    url: str = ""


@dataclass(frozen=True)
class ModalitySettings:
    """``[modalities.NAME]``: a DICOM peer known by AE title, host and port."""

    name: str
    aet: str
    host: str
    port: int
    allow: tuple[str, ...] = RETRIEVE_ACTIONS
    #: Study labels this peer is restricted to (empty: every study).
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelRule:
    """``[[label_rules]]``: give new studies ``label`` when an instance of
    theirs comes from ``calling_aet`` (any, when empty) and matches ``where``
    (attribute keyword or tag -> value, in QIDO matching syntax)."""

    label: str
    calling_aet: str = ""
    where: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: where the audit trail goes besides the index."""

    #: ``udp://HOST:PORT`` or ``tcp://HOST:PORT`` of a syslog collector that
    #: receives each entry as an RFC 5424 message; empty: none.
    syslog: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its home and config file."""

    home: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    modalities: tuple[ModalitySettings, ...] = ()
    label_rules: tuple[LabelRule, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)

    @property
    def store_path(self) -> Path:
        """Folder of the local file store."""
        return self.home / self.storage.path

    @property
    def index_path(self) -> Path:
        """DuckDB index file."""
        return self.home / self.index.path

    @property
    def accounts_path(self) -> Path:
        """SQLite file with users and CLI-registered modalities."""
        return self.home / "accounts.sqlite"

    @property
    def run_path(self) -> Path:
        """Folder with the running server's lock and address."""
        return self.home / "run"

    @property
    def log_path(self) -> Path:
        """Folder of log files."""
        return self.home / "logs"


def check_aet(value: str, where: str) -> str:
    """Return ``value`` if it is a valid AE title (PS3.5 AE VR), else raise."""
    stripped = value.strip() if isinstance(value, str) else value
    if (
        not isinstance(stripped, str)
        or not 0 < len(stripped) <= 16
        or "\\" in stripped
        or not stripped.isprintable()
        or not stripped.isascii()
    ):
        raise ConfigError(
            f"{where} must be an AE title of 1 to 16 printable ASCII characters "
            f"without a backslash, got {value!r}"
        )
    return stripped


def check_port(value: Any, where: str, allow_zero: bool = True) -> int:
    """Return ``value`` as a TCP port number, else raise."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise ConfigError(f"{where} must be an integer from {low} to 65535, got {value!r}")
    return value


def check_allow(value: Any, where: str) -> tuple[str, ...]:
    """Return the list of permitted actions, else raise."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or any(v not in RETRIEVE_ACTIONS for v in value):
        raise ConfigError(
            f"{where} must be a list drawn from {', '.join(RETRIEVE_ACTIONS)}, got {value!r}"
        )
    return tuple(dict.fromkeys(value))


#: Integer settings that may be 0.
_ZERO_ALLOWED = {"dicom_workers", "reserved_associations", "unknown_store_quota_mb"}


def _section(cls: type, raw: Any, name: str) -> Any:
    """Build dataclass ``cls`` from the TOML table ``raw`` with type checks."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"[{name}] has unknown key {key!r}; known keys: {', '.join(known)}")
        default = getattr(cls(), key)
        where = f"[{name}] {key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif isinstance(default, int):
            if key.endswith("port"):
                value = check_port(value, where)
            elif isinstance(value, bool) or not isinstance(value, int) or value < (0 if key in _ZERO_ALLOWED else 1):
                raise ConfigError(f"{where} must be a positive integer, got {value!r}")
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where} must be a list of strings, got {value!r}")
            value = tuple(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        values[key] = value
    return cls(**values)


def _modalities(raw: Any) -> tuple[ModalitySettings, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"[modalities] must be a table of peers, got {raw!r}")
    peers = []
    for name, table in raw.items():
        where = f"[modalities.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with aet, host and port")
        unknown = set(table) - {"aet", "host", "port", "allow", "labels"}
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("aet", "host", "port"):
            if key not in table:
                raise ConfigError(f"{where} {key} is required")
        if not isinstance(table["host"], str) or not table["host"]:
            raise ConfigError(f"{where} host must be a host name or address")
        peers.append(
            ModalitySettings(
                name=name,
                aet=check_aet(table["aet"], f"{where} aet"),
                host=table["host"],
                port=check_port(table["port"], f"{where} port", allow_zero=False),
                allow=check_allow(table.get("allow", list(RETRIEVE_ACTIONS)), f"{where} allow"),
                labels=check_labels(table.get("labels", []), f"{where} labels"),
            )
        )
    return tuple(peers)


#: A study label: what ``pacsdash labels add`` and ``--labels`` accept.
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_label(value: Any, where: str) -> str:
    """Return ``value`` if it is a valid study label (letters, digits, ``_.-``; 1 to 64), else raise."""
    if not isinstance(value, str) or not LABEL.match(value):
        raise ConfigError(
            f"{where} must be a label of 1 to 64 letters, digits, '_', '.' or '-' "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


def check_labels(value: Any, where: str) -> tuple[str, ...]:
    """A list (or comma-separated text) of labels, checked, without repeats."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of labels, got {value!r}")
    return tuple(dict.fromkeys(check_label(v, where) for v in value))


def _label_rules(raw: Any) -> tuple[LabelRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"[[label_rules]] must be an array of tables, got {raw!r}")
    rules = []
    for number, table in enumerate(raw, 1):
        where = f"[[label_rules]] #{number}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with label, calling_aet and/or where")
        unknown = set(table) - {"label", "calling_aet", "where"}
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
        if "label" not in table:
            raise ConfigError(f"{where} label is required")
        conditions = table.get("where", {})
        if not isinstance(conditions, dict) or not all(isinstance(v, str) for v in conditions.values()):
            raise ConfigError(f"{where} where must be a table of attribute = \"matching value\"")
        aet = table.get("calling_aet", "")
        if not aet and not conditions:
            raise ConfigError(f"{where} needs calling_aet or where: a rule for every study is a default label")
        rules.append(LabelRule(
            label=check_label(table["label"], f"{where} label"),
            calling_aet=check_aet(aet, f"{where} calling_aet") if aet else "",
            where=tuple((str(k), v) for k, v in conditions.items()),
        ))
    return tuple(rules)


def _audit(raw: Any) -> AuditSettings:
    audit = _section(AuditSettings, raw, "audit")
    if audit.syslog and not re.match(r"^(udp|tcp)://[^/\s:]+:\d{1,5}$", audit.syslog):
        raise ConfigError(f"[audit] syslog must be udp://HOST:PORT or tcp://HOST:PORT, got {audit.syslog!r}")
    return audit


def _tls_paths(server: ServerSettings, home: Path) -> ServerSettings:
    """``tls_cert``, ``tls_key`` and ``tls_client_ca`` as absolute paths of
    existing files; cert and key both or neither, and needed by ``dicom_tls_port``."""
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("[server] tls_cert and tls_key go together: set both (HTTPS) or neither (HTTP)")
    if server.dicom_tls_port and not server.tls_cert:
        raise ConfigError("[server] dicom_tls_port needs tls_cert and tls_key (`pacsdash tls selfsigned` writes them)")
    if server.tls_client_ca and not server.tls_cert:
        raise ConfigError("[server] tls_client_ca needs tls_cert and tls_key: client certificates are asked over TLS")
    if server.dicom_tls_port and server.dicom_tls_port in (server.dicom_port, server.http_port):
        raise ConfigError(f"[server] dicom_tls_port {server.dicom_tls_port} is already dicom_port or http_port")
    if not server.tls_cert:
        return server
    paths = {}
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        if not getattr(server, key):
            continue
        path = Path(getattr(server, key)).expanduser()
        path = path if path.is_absolute() else home.resolve() / path
        if not path.is_file():
            raise ConfigError(f"[server] {key}: no file {path} (`pacsdash tls selfsigned` writes one)")
        paths[key] = str(path)
    return replace(server, **paths)


#: S3 bucket names (general purpose buckets): 3 to 63 lowercase letters, digits, dots and
#: hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Characters of an object-name prefix that every S3-compatible store takes as they are.
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


def check_storage(storage: StorageSettings, given: Collection[str] = ()) -> StorageSettings:
    """Check ``[storage]`` (``given``: the keys the config file set) and
    return it with ``file:PATH`` resolved into ``path``; else raise.

    Raises
    ------
    ConfigError
        Naming the key, the rule and what was found.
    """
    url = storage.url
    if not url:
        if storage.backend != "local":
            raise ConfigError(f"[storage] backend must be 'local' (got {storage.backend!r}); "
                              "an object store is given as url = \"s3://bucket/prefix\"")
        for key in ("endpoint_url", "region"):
            if getattr(storage, key):
                raise ConfigError(f"[storage] {key} is for an object store: it needs url = \"s3://bucket/prefix\"")
        return storage
    both = sorted(set(given) & {"backend", "path"})
    if both:
        raise ConfigError(f"[storage] url replaces {' and '.join(both)}: give url alone")
    if url.startswith("file:"):
        folder = url[len("file://"):] if url.startswith("file://") else url[len("file:"):]
        if not folder:
            raise ConfigError(f"[storage] url {url!r} names no folder: file:PATH (relative to the home) or file:///ABSOLUTE")
        for key in ("endpoint_url", "region"):
            if getattr(storage, key):
                raise ConfigError(f"[storage] {key} is for an object store, not the folder {url!r}")
        return replace(storage, path=folder)
    if not url.startswith("s3://"):
        raise ConfigError(f"[storage] url must be s3://bucket/prefix (an object store) or file:PATH (a folder), "
                          f"got {url!r}")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigError("[storage] url must not hold credentials: they come from the AWS environment variables "
                          "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or credential files")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(f"[storage] url must be s3://bucket/prefix, without ? or #, got {url!r}")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if (not _BUCKET.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket
            or _IPV4.match(bucket) or bucket.startswith(("xn--", "sthree-"))):
        raise ConfigError(f"[storage] url: {bucket!r} is not a valid S3 bucket name: 3 to 63 lowercase letters, "
                          "digits, dots and hyphens, starting and ending with a letter or digit, not an IP address")
    segments = prefix.split("/") if prefix else []
    if (not _PREFIX.match(prefix) or len(prefix) > 900
            or any(segment in {"", ".", ".."} for segment in segments)):
        raise ConfigError(f"[storage] url: the prefix {prefix!r} must be names of letters, digits and !_.*'()- "
                          "separated by single slashes (no . or .. parts), at most 900 characters")
    if storage.endpoint_url:
        endpoint = urlsplit(storage.endpoint_url)
        if endpoint.scheme not in {"http", "https"} or not endpoint.hostname or "@" in endpoint.netloc \
                or endpoint.query or endpoint.fragment:
            raise ConfigError(f"[storage] endpoint_url must be http(s)://HOST[:PORT] of the S3 API, without "
                              f"credentials, got {storage.endpoint_url!r}")
        try:
            endpoint.port
        except ValueError:
            raise ConfigError(f"[storage] endpoint_url has a bad port: {storage.endpoint_url!r}") from None
    if storage.region and not _REGION.match(storage.region):
        raise ConfigError(f"[storage] region must be a region name such as us-east-1, got {storage.region!r}")
    return replace(storage, backend="s3")


def load_settings(
    home: Path | str | None = None,
    config_file: Path | str | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults, then the config file, then ``overrides``.

    Parameters
    ----------
    home
        The home folder (default ``./pacsdash-home``).
    config_file
        A TOML file; default ``HOME/pacsdash.toml`` if it exists.
    overrides
        ``[server]`` values given as command-line flags (``None`` means unset).
    """
    home_path = Path(home) if home is not None else DEFAULT_HOME
    path = Path(config_file) if config_file is not None else home_path / CONFIG_NAME
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    elif config_file is not None:
        raise ConfigError(f"config file {path} does not exist")
    unknown = set(raw) - {"server", "auth", "storage", "index", "modalities", "label_rules", "audit"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    try:
        server = _section(ServerSettings, raw.get("server"), "server")
        flags = {k: v for k, v in overrides.items() if v is not None}
        for key, value in flags.items():
            if key.endswith("port"):
                check_port(value, f"--{key.replace('_', '-')}")
        server = replace(server, **flags)
        check_aet(server.aet, "[server] aet")
        server = _tls_paths(server, home_path)
        if server.reserved_associations >= server.max_associations:
            raise ConfigError(
                f"[server] reserved_associations ({server.reserved_associations}) must be smaller than "
                f"max_associations ({server.max_associations}): unregistered callers need a slot to echo"
            )
        settings = Settings(
            home=home_path.resolve(),
            server=server,
            auth=_section(AuthSettings, raw.get("auth"), "auth"),
            storage=_section(StorageSettings, raw.get("storage"), "storage"),
            index=_section(IndexSettings, raw.get("index"), "index"),
            modalities=_modalities(raw.get("modalities")),
            label_rules=_label_rules(raw.get("label_rules")),
            audit=_audit(raw.get("audit")),
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        settings = replace(settings, storage=check_storage(settings.storage, set(raw.get("storage") or ())))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if settings.index.url:  # a PostgreSQL index (pacsdash.archive.pg_index); the password never here
        try:
            check_index_url(settings.index.url)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return settings


def check_index_url(url: str) -> None:
    """Raise unless ``url`` is ``postgresql://user@host:port/database`` with no password in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigError(f"[index] url must be postgresql://user@host:port/database (got {url.split('@')[-1]!r})")
    if parts.password is not None:
        raise ConfigError("[index] url holds a password: remove it and give it through PGPASSWORD "
                          "or a password file (PGPASSFILE, ~/.pgpass), never in the config")


DEFAULT_CONFIG = """\
# pacsdash configuration. A command-line flag beats a value here.

[server]
host = "127.0.0.1"      # address the HTTP and DICOM listeners bind to
http_port = 8042        # dashboard, DICOMweb, WADO-URI and JSON API
dicom_port = 4242       # DICOM DIMSE listener
aet = "PACSDASH"        # our AE title
accept_unknown_store = false  # let unregistered peers C-STORE (the demo does; find/move/get never)
dicom_workers = 2       # processes receiving associations (0: inside the server process)
# check_peer_address = true   # a peer is its AE title AND its registered host (false: peers behind NAT)
# acse_timeout = 5             # seconds a new connection has to send its A-ASSOCIATE-RQ
# max_associations = 32        # open associations per DICOM worker process
# max_associations_per_address = 8  # of those, per address of an unregistered caller
# reserved_associations = 8    # of max_associations, kept for registered peers
# max_store_mb = 2048          # largest C-STORE data set from a registered peer
# unknown_store_max_mb = 64    # ... from an unregistered one (accept_unknown_store)
# unknown_store_quota_mb = 1024  # what one unregistered address may store per 24 h (0: nothing)
# public_url = "https://pacs.example.org"   # base of RetrieveURL/BulkDataURI behind a proxy
# trust_proxy_headers = false               # or take it from Forwarded / X-Forwarded-*
# cors_origins = ["http://viewer.example:3000"]   # browsers on these origins may call DICOMweb
# tls_cert = "tls/cert.pem"   # with tls_key: HTTPS only on http_port (`pacsdash tls selfsigned`)
# tls_key = "tls/key.pem"
# dicom_tls_port = 2762       # DICOM over TLS (PS3.15 B.1) with the same certificate
# tls_client_ca = "tls/peers-ca.pem"   # demand client certificates signed by these CAs
# plain_pynetdicom = false    # true: the DICOM node on pynetdicom as released (slower; for diagnosis)

[auth]
enabled = true          # HTTP callers log in (users: `pacsdash users add`)

[storage]
path = "store"          # original files, byte for byte
# url = "s3://bucket/prefix"          # or an S3-compatible object store instead (replaces path)
# endpoint_url = "http://minio:9000"  # its S3 API when not AWS's; credentials: AWS_* variables or files
# region = "us-east-1"

[index]
path = "index.duckdb"   # metadata index
# url = "postgresql://pacs@db.example:5432/pacs"   # or PostgreSQL (several servers may share it);
#                                                  # the password from PGPASSWORD or PGPASSFILE, never here

# Peers may be listed here or added with `pacsdash modalities add`:
# [modalities.workstation]
# aet = "WORKSTATION"
# host = "127.0.0.1"
# port = 11112
# allow = ["store", "find", "move", "get"]
# labels = ["trial-7"]          # this peer sees only studies with one of these labels

# New studies get a label when an instance matches a rule (`pacsdash labels add` by hand):
# [[label_rules]]
# label = "trial-7"
# calling_aet = "CT_TRIAL"      # sent by this AE title (optional)
# where = { StudyDescription = "TRIAL-7*" }   # and matching these values (optional)

# [audit]
# syslog = "udp://127.0.0.1:514"   # also send each audit entry as RFC 5424 syslog
"""


#: The home and what is written in it are its owner's alone: health records.
HOME_MODE, PRIVATE_UMASK = 0o700, 0o077


def set_server_option(home: Path, key: str, value: bool | int | str) -> None:
    """Write ``[server] key = value`` into ``HOME/pacsdash.toml``, keeping the
    rest of the file (its comments too); the file is made if absent."""
    if key not in {f.name for f in fields(ServerSettings)}:
        raise ConfigError(f"[server] has no setting {key!r}")
    set_option(home, "server", key, value)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", re.MULTILINE)


def _section_span(text: str, section: str) -> tuple[int, int] | None:
    """Where the body of ``[section]`` is in ``text`` (after its header, up to the next header)."""
    headers = list(_HEADER.finditer(text))
    for k, header in enumerate(headers):
        if header.group(1) == section and not header.group(0).lstrip().startswith("[["):
            end = headers[k + 1].start() if k + 1 < len(headers) else len(text)
            return header.end(), end
    return None


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(key)}\s*=.*?(?=\s*(#.*)?$)\n?", re.MULTILINE)


def set_option(home: Path, section: str, key: str, value: bool | int | str) -> None:
    """Write ``[section] key = value`` into ``HOME/pacsdash.toml``, keeping the
    rest of the file (its comments too; the key's own comment on its line);
    the section (and the file) are made if absent."""
    path = home / CONFIG_NAME
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    literal = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    span = _section_span(text, section)
    if span is None:
        text = f"[{section}]\n{key} = {literal}\n\n" + text
    else:
        body = text[span[0]:span[1]]
        line = re.compile(rf"^{re.escape(key)}\s*=.*?(?=\s*(#.*)?$)", re.MULTILINE)
        body = line.sub(f"{key} = {literal}", body, count=1) if line.search(body) else f"\n{key} = {literal}" + body
        text = text[:span[0]] + body + text[span[1]:]
    tomllib.loads(text)  # still valid TOML, before anything is written
    path.write_text(text, encoding="utf-8")


def remove_option(home: Path, section: str, key: str) -> None:
    """Take ``key`` (its whole line) out of ``[section]`` of ``HOME/pacsdash.toml``, if there."""
    path = home / CONFIG_NAME
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    span = _section_span(text, section)
    if span is None:
        return
    body = _key_line(key).sub("", text[span[0]:span[1]], count=1)
    text = text[:span[0]] + body + text[span[1]:]
    tomllib.loads(text)
    path.write_text(text, encoding="utf-8")


def init_home(home: Path) -> None:
    """Create the home folder (0700) and a commented default config if absent.

    From here on this process writes files only its user may read (umask
    077: the store's instances, the index, logs, exports are 0600), and a
    home created earlier with looser permissions is narrowed to 0700.
    """
    os.umask(PRIVATE_UMASK)
    home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    status = home.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        home.chmod(HOME_MODE)
    config = home / CONFIG_NAME
    if not config.exists():
        config.write_text(DEFAULT_CONFIG, encoding="utf-8")
