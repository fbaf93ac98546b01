"""The audit trail sent to a site's collector: DICOM audit messages over syslog.

Each entry the archive records (:meth:`Archive.record
<pacsdash.archive.archive.Archive.record>`) becomes one DICOM audit message
(PS3.15 A.5.1, the XML of the Audit Trail Message Format Profile) carried as
the MSG of one RFC 5424 syslog message::

    <PRI>1 TIMESTAMP HOSTNAME pacsdash PROCID DICOM+RFC3881 [origin ...][meta sequenceId="N"] <?xml ...?><AuditMessage>...

- PRI: facility 10, security/authorization, as PS3.15 A.6 (SYSLOG-TLS) and
  A.7 (Syslog-UDP) and IHE ITI TF-2 3.20 (ITI-20 Record Audit Event) say;
  severity 5 (notice) for a success, 4 (warning) for a failure, which A.7
  allows: ``<85>`` and ``<84>``.
- MSGID ``DICOM+RFC3881`` (PS3.15 A.7). MSG is the XML in UTF-8 with its
  XML declaration and without a BOM (RFC 5424 6.4 MSG-ANY; a BOM upsets the
  XML parsers of audit repositories, IHE left it out for that reason).
- STRUCTURED-DATA: the registered ``origin`` (software, version) and
  ``meta`` ``sequenceId`` (RFC 5424 7.2, 7.3.1): it counts every entry
  handed over, so a collector sees a message dropped here as a gap.

Transports (``[audit] syslog``): ``udp://HOST:PORT``, one datagram per
message (RFC 5426), at most :data:`MAX_UDP_BYTES`; ``tcp://HOST:PORT``,
octet-counting framing (RFC 6587 3.4.1, the framing RFC 5425 uses over
TLS). Plain TCP is not PS3.15 A.6, which requires TLS: put a TLS-speaking
relay (stunnel, rsyslog) in between when the collector asks for it.

Sending never holds up or fails the caller: entries go to a bounded queue
and one background thread formats and sends them; a full queue drops the
entry and counts it; a TCP connection that fails is made again, waiting
longer after each failure (up to :data:`MAX_BACKOFF_SECONDS`); failures and
drops are logged at most once per :data:`LOG_EVERY_SECONDS`.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import ipaddress
import logging
import os
import queue
import re
import select
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pacsdash import __version__
from pacsdash.archive.records import ActionRecord

LOGGER = logging.getLogger(__name__)

#: security/authorization messages (PS3.15 A.6, A.7; IHE ITI-20).
FACILITY = 10
SEVERITY_NOTICE = 5
SEVERITY_WARNING = 4
APP_NAME = "pacsdash"
#: PS3.15 A.7: "The value DICOM+RFC3881 may be used for messages that comply with this profile."
MSGID = "DICOM+RFC3881"
#: Largest UDP datagram sent [bytes]: RFC 5426 3.2 asks receivers for 2048 at least; common
#: collectors (rsyslog, syslog-ng) take 8 KiB by default. A longer message loses studies until it fits.
MAX_UDP_BYTES = 8192
#: Largest TCP message [bytes] (PS3.15 A.6: collectors take 32768 octets at least).
MAX_TCP_BYTES = 65536
QUEUE_SIZE = 10_000
MAX_BACKOFF_SECONDS = 60.0
LOG_EVERY_SECONDS = 60.0
#: How long a TCP send or connect may take before the connection is given up and made again [s].
SOCKET_TIMEOUT_SECONDS = 10.0
#: Study Root Query/Retrieve Information Model - FIND: what a query searched (PS3.15 A.5.3.10).
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@dataclass(frozen=True)
class Event:
    """How one pacsdash action is told in PS3.15 A.5.3: EventID, EventActionCode, EventTypeCode."""

    code: str
    meaning: str
    action_code: str  # C create, R read, U update, D delete, E execute
    type_code: tuple[str, str] | None = None
    #: RoleIDCode of pacsdash itself in a transfer (110153 Source, 110152 Destination; PS3.15 A.5.2).
    own_role: tuple[str, str] | None = None


SOURCE = ("110153", "Source Role ID")
DESTINATION = ("110152", "Destination Role ID")

#: Each action of :data:`pacsdash.archive.audit.ACTIONS` as a DICOM audit event (PS3.15 A.5.3, 2024 edition).
EVENTS: dict[str, Event] = {
    "login": Event("110114", "User Authentication", "E", ("110122", "Login")),  # A.5.3.12
    "query": Event("110112", "Query", "E"),  # A.5.3.10
    "retrieve": Event("110104", "DICOM Instances Transferred", "R", own_role=SOURCE),  # A.5.3.7
    "upload": Event("110104", "DICOM Instances Transferred", "C", own_role=DESTINATION),  # A.5.3.7
    "send": Event("110104", "DICOM Instances Transferred", "R", own_role=SOURCE),  # A.5.3.7
    "export": Event("110106", "Export", "R", own_role=SOURCE),  # A.5.3.4 Data Export
    "anonymize": Event("110103", "DICOM Instances Accessed", "C"),  # A.5.3.6: a de-identified copy created
    "delete": Event("110105", "DICOM Study Deleted", "D"),  # A.5.3.8
    "repair": Event("110103", "DICOM Instances Accessed", "U"),  # A.5.3.6: index and store mended
    "peer_refused": Event("110113", "Security Alert", "E", ("110126", "Node Authentication")),  # A.5.3.11
    "user_change": Event("110113", "Security Alert", "E",
                         ("110137", "User Security Attributes Changed")),  # A.5.3.11
    "label_change": Event("110113", "Security Alert", "E", ("110129", "Security Configuration")),  # A.5.3.11
}
#: An action not in the table (one added later): Application Activity (A.5.3.1).
OTHER = Event("110100", "Application Activity", "E")


def _coded(parent: ET.Element, tag: str, code: str, system: str, meaning: str) -> ET.Element:
    """A PS3.15 A.5.1 CodedValueType element."""
    return ET.SubElement(parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": meaning})


def _xml_text(value: object, limit: int = 1024) -> str:
    """``value`` as text XML 1.0 can hold (control characters dropped), at most ``limit`` characters."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", str(value))[:limit]


def _access_point_type(address: str) -> str:
    """NetworkAccessPointTypeCode: 2 an IP address, 1 a machine name (PS3.15 A.5.1)."""
    try:
        ipaddress.ip_address(address.strip("[]"))
        return "2"
    except ValueError:
        return "1"


def audit_message(record: ActionRecord, aet: str = "PACSDASH", host: str = "", max_studies: int | None = None
                  ) -> bytes:
    """``record`` as a PS3.15 A.5.1 ``AuditMessage`` (UTF-8 XML with its declaration).

    The user is the requesting ActiveParticipant (its address the network
    access point), pacsdash the other (AE title, process id); each study is a
    ParticipantObject (type 2 system object, role 3 report, ID type 110180
    Study Instance UID), the query of a query one too (ID type 110181 SOP
    Class UID, ParticipantObjectQuery base64, A.5.3.10). Values are set with
    ElementTree, which escapes them. ``max_studies`` keeps the first ones only.
    """
    event = EVENTS.get(record.action, OTHER)
    when = (record.time or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    failed = record.outcome != "success"
    root = ET.Element("AuditMessage")
    ident = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": event.action_code, "EventDateTime": when.isoformat(timespec="milliseconds"),
        "EventOutcomeIndicator": "4" if failed else "0"})  # 0 success, 4 minor failure
    _coded(ident, "EventID", event.code, "DCM", event.meaning)
    if event.type_code:
        _coded(ident, "EventTypeCode", event.type_code[0], "DCM", event.type_code[1])
    reason = record.details.get("reason") or (f"HTTP status {record.details['status']}"
                                              if failed and "status" in record.details else "")
    if failed and reason:
        ET.SubElement(ident, "EventOutcomeDescription").text = _xml_text(reason)
    user = {"UserID": _xml_text(record.actor or "-", 256), "UserIsRequestor": "true"}
    if record.address:
        user.update(NetworkAccessPointID=_xml_text(record.address, 64),
                    NetworkAccessPointTypeCode=_access_point_type(record.address))
    ET.SubElement(root, "ActiveParticipant", user)
    own = ET.SubElement(root, "ActiveParticipant", {
        "UserID": _xml_text(aet, 16), "AlternativeUserID": str(os.getpid()), "UserIsRequestor": "false",
        **({"NetworkAccessPointID": _xml_text(host, 255), "NetworkAccessPointTypeCode": _access_point_type(host)}
           if host else {})})
    if event.own_role:
        _coded(own, "RoleIDCode", event.own_role[0], "DCM", event.own_role[1])
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": _xml_text(host or aet, 255)})
    _coded(source, "AuditSourceTypeCode", "4", "DCM", "Application Server")
    if record.action == "query":
        query = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": STUDY_ROOT_FIND, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _coded(query, "ParticipantObjectIDTypeCode", "110181", "DCM", "SOP Class UID")
        ET.SubElement(query, "ParticipantObjectQuery").text = base64.b64encode(
            str(record.details.get("query", "")).encode("utf-8")).decode("ascii")
    studies = record.studies if max_studies is None else record.studies[:max_studies]
    for uid in studies:
        study = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": _xml_text(uid, 64), "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _coded(study, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _printable(text: str, limit: int) -> str:
    """A header field of PRINTUSASCII (RFC 5424 6): anything else becomes ``_``; NILVALUE if empty."""
    return re.sub(r"[^\x21-\x7e]", "_", text)[:limit] or "-"


def _sd_value(text: str) -> str:
    """An SD PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 6.3.3)."""
    return re.sub(r'(["\\\]])', r"\\\1", text)


def syslog_message(record: ActionRecord, sequence: int, aet: str = "PACSDASH", host: str = "",
                   max_bytes: int = MAX_TCP_BYTES) -> bytes:
    """One RFC 5424 SYSLOG-MSG carrying ``record``'s audit message, at most ``max_bytes``.

    A message too long keeps fewer studies (the whole entry stays in the
    archive's trail); should even none be short enough, the bytes are cut
    (at a character boundary), which leaves the XML incomplete.
    """
    severity = SEVERITY_NOTICE if record.outcome == "success" else SEVERITY_WARNING
    when = (record.time or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    stamp = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    data = (f'[origin software="{APP_NAME}" swVersion="{_sd_value(__version__[:32])}"]'
            f'[meta sequenceId="{(sequence - 1) % 2147483647 + 1}"]')
    header = (f"<{FACILITY * 8 + severity}>1 {stamp} {_printable(host, 255)} {APP_NAME} {os.getpid()} {MSGID} "
              f"{data} ").encode("ascii")

    def build(keep: int | None) -> bytes:
        return header + audit_message(record, aet, host, keep)

    message = build(None)
    if len(message) <= max_bytes:
        return message
    low, high = 0, len(record.studies)  # the most studies that fit: low fits (or none does)
    while low < high:
        middle = (low + high + 1) // 2
        if len(build(middle)) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    message = build(low)
    if len(message) > max_bytes:
        message = message[:max_bytes].decode("utf-8", "ignore").encode("utf-8")
    return message


def octet_counted(message: bytes) -> bytes:
    """``MSG-LEN SP SYSLOG-MSG``: RFC 6587 3.4.1 octet-counting framing."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogForwarder:
    """Sends audit entries to ``url`` (``udp://HOST:PORT`` or ``tcp://HOST:PORT``) from a background thread.

    Hand it to :meth:`Archive.on_record <pacsdash.archive.archive.Archive.on_record>`:
    calling it only queues the entry. ``sent``, ``dropped`` (queue full)
    and ``failed`` (send errors) count what became of entries.
    """

    def __init__(self, url: str, aet: str = "PACSDASH", host: str | None = None, queue_size: int = QUEUE_SIZE,
                 max_udp_bytes: int = MAX_UDP_BYTES, max_tcp_bytes: int = MAX_TCP_BYTES,
                 timeout: float = SOCKET_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp") or not parts.hostname or not parts.port:
            raise ValueError(f"a syslog collector is udp://HOST:PORT or tcp://HOST:PORT, got {url!r}")
        self.url, self.transport, self.address = url, parts.scheme, (parts.hostname, parts.port)
        self.aet = aet
        self.host = socket.gethostname() if host is None else host
        self.max_bytes = max_udp_bytes if self.transport == "udp" else max_tcp_bytes
        self.timeout, self.clock = timeout, clock
        self.sent = self.dropped = self.failed = 0
        self._queue: queue.Queue[tuple[int, ActionRecord] | None] = queue.Queue(queue_size)
        self._sequence = 0
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._last_log = -LOG_EVERY_SECONDS
        self._thread = threading.Thread(target=self._run, name="pacsdash-audit-syslog", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def __call__(self, record: ActionRecord) -> None:
        """Queue ``record`` for sending; never blocks, never raises (a full queue drops it, counted)."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        try:
            self._queue.put_nowait((sequence, record))
        except queue.Full:
            with self._lock:
                self.dropped += 1
            self._complain("audit syslog: the queue to %s is full, entries dropped", self.url)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then stop."""
        if self._stopping.is_set():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._stopping.set()
        self._thread.join(0.5)
        self._disconnect()
        atexit.unregister(self.close)

    # -- the sending thread ------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                return
            sequence, record = item
            try:
                message = syslog_message(record, sequence, self.aet, self.host, self.max_bytes)
            except Exception:  # a record that cannot be told: counted, logged, never the caller's problem
                self.failed += 1
                LOGGER.exception("audit syslog: could not format the %s entry of %s", record.action, record.actor)
                continue
            while not self._stopping.is_set():
                try:
                    self._send(message)
                    self.sent += 1
                    backoff = 0.0
                    break
                except OSError as exc:
                    self._disconnect()
                    self.failed += 1
                    self._complain("audit syslog: sending to %s failed (%s); %d sent, %d failed, %d dropped so far",
                                   self.url, exc, self.sent, self.failed, self.dropped)
                    if self.transport == "udp":
                        break  # a datagram is not resent
                    backoff = min(MAX_BACKOFF_SECONDS, max(0.5, backoff * 2))
                    self._stopping.wait(backoff)

    def _send(self, message: bytes) -> None:
        if self._socket is not None and self.transport == "tcp" and self._closed_by_peer(self._socket):
            self._disconnect()
        if self._socket is None:
            self._socket = self._connect()
        if self.transport == "udp":
            self._socket.send(message)
        else:
            self._socket.sendall(octet_counted(message))

    @staticmethod
    def _closed_by_peer(sock: socket.socket) -> bool:
        """Whether the collector closed the connection (it never sends: readable means closed)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and not sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _connect(self) -> socket.socket:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        family, _, _, _, address = socket.getaddrinfo(*self.address, type=kind)[0]
        sock = socket.socket(family, kind)
        sock.settimeout(self.timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _disconnect(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _complain(self, message: str, *args: object) -> None:
        """Log a warning, at most once per :data:`LOG_EVERY_SECONDS`."""
        now = self.clock()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            LOGGER.warning(message, *args)
