"""Audit entries forwarded to a syslog collector (PS3.15 A.5 messages over
RFC 5424): a real UDP socket and a real TCP server on loopback receive them;
an unreachable or stuck collector never slows or fails the recording; a
server configured with ``[audit] syslog`` sends a failed login."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from pacsdash.archive.audit_syslog import EVENTS, SyslogForwarder, octet_counted, syslog_message
from pacsdash.archive.records import ActionRecord
from tests.helpers import ServerProcess, run_cli, wait_until

STUDY = "1.2.826.0.1.3680043.8.498.1"
#: RFC 5424 6: PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG.
HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z) (?P<host>[\x21-\x7e]+) pacsdash "
    rb"(?P<procid>\d+) DICOM\+RFC3881 (?P<sd>(\[[^\]]*\])+) (?P<msg><\?xml.*)$", re.DOTALL)


def parse(message: bytes) -> tuple[re.Match, ET.Element]:
    """The header fields and the audit message's XML of one syslog message."""
    match = HEADER.match(message)
    assert match, message[:300]
    assert not match["msg"].startswith(b"\xef\xbb\xbf")
    return match, ET.fromstring(match["msg"])


def event_id(root: ET.Element) -> str:
    return root.find("EventIdentification/EventID").get("csd-code")


def studies_of(root: ET.Element) -> list[str]:
    return [p.get("ParticipantObjectID") for p in root.findall("ParticipantObjectIdentification")
            if p.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"]


def requester(root: ET.Element) -> ET.Element:
    [user] = [p for p in root.findall("ActiveParticipant") if p.get("UserIsRequestor") == "true"]
    return user


@pytest.fixture
def udp_collector():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


class TcpCollector:
    """A syslog collector over TCP with octet-counting framing (RFC 6587 3.4.1)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages: list[bytes] = []
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, rest = buffer.split(b" ", 1)
                assert length.isdigit(), buffer[:50]
                if len(rest) < int(length):
                    break
                self.messages.append(rest[:int(length)])
                buffer = rest[int(length):]

    def drop_connections(self) -> None:
        for conn in self.connections:
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.connections.clear()

    def close(self) -> None:
        self.server.close()
        self.drop_connections()


def test_a_message_is_rfc_5424_with_a_ps3_15_audit_message():
    hostile = 'ev"e]<script>&\'\\'
    record = ActionRecord(actor=hostile, action="login", studies=[], address="10.1.2.3", outcome="failure")
    match, root = parse(syslog_message(record, 7, aet="PACSDASH", host="pacs.example.org"))
    assert int(match["pri"]) == 10 * 8 + 4  # authpriv, warning
    assert match["host"] == b"pacs.example.org"
    assert b'[meta sequenceId="7"]' in match["sd"] and b'software="pacsdash"' in match["sd"]
    assert event_id(root) == "110114"
    ident = root.find("EventIdentification")
    assert ident.get("EventActionCode") == "E" and ident.get("EventOutcomeIndicator") == "4"
    assert ident.find("EventTypeCode").get("csd-code") == "110122"
    user = requester(root)
    assert user.get("UserID") == hostile  # escaped in the XML, the same value after parsing
    assert user.get("NetworkAccessPointID") == "10.1.2.3" and user.get("NetworkAccessPointTypeCode") == "2"
    assert root.find("AuditSourceIdentification").get("AuditSourceID") == "pacs.example.org"

    ok = ActionRecord(actor="ada", action="query", studies=[], outcome="success", details={"query": "PatientID=1"})
    match, root = parse(syslog_message(ok, 8))
    assert int(match["pri"]) == 85 and event_id(root) == "110112"
    [query] = root.findall("ParticipantObjectIdentification")
    assert base64.b64decode(query.find("ParticipantObjectQuery").text) == b"PatientID=1"


def test_every_action_has_a_standard_event():
    from pacsdash.archive.audit import ACTIONS

    assert set(EVENTS) == set(ACTIONS)
    assert {e.code for e in EVENTS.values()} <= {"110100", "110103", "110104", "110105", "110106", "110112",
                                                 "110113", "110114"}


def test_a_long_message_keeps_fewer_studies_and_stays_xml():
    studies = [f"1.2.3.{n}" for n in range(2000)]
    record = ActionRecord(actor="eve", action="export", studies=studies)
    message = syslog_message(record, 1, max_bytes=8192)
    assert len(message) <= 8192
    _, root = parse(message)
    kept = studies_of(root)
    assert 10 < len(kept) < 2000 and kept == studies[:len(kept)]
    assert octet_counted(b"abc") == b"3 abc"


def test_entries_recorded_by_the_archive_arrive_over_udp(archive, udp_collector):
    forwarder = SyslogForwarder(f"udp://127.0.0.1:{udp_collector.getsockname()[1]}", aet="PACSDASH")
    archive.on_record(forwarder)
    try:
        number = archive.record(ActionRecord(actor="vic", action="retrieve", studies=[STUDY], address="127.0.0.1"))
        match, root = parse(udp_collector.recv(65536))
        assert int(match["pri"]) == 85 and event_id(root) == "110104"
        assert root.find("EventIdentification").get("EventOutcomeIndicator") == "0"
        assert requester(root).get("UserID") == "vic"
        assert studies_of(root) == [STUDY]
        assert number == archive.records(limit=1)[0].id
    finally:
        forwarder.close()
    assert forwarder.sent == 1 and forwarder.dropped == 0


def test_tcp_is_octet_counted_and_reconnects(archive):
    collector = TcpCollector()
    forwarder = SyslogForwarder(f"tcp://127.0.0.1:{collector.port}")
    archive.on_record(forwarder)
    try:
        for name in ("ada", "eve"):
            archive.record(ActionRecord(actor=name, action="delete", studies=[STUDY], outcome="success"))
        wait_until(lambda: len(collector.messages) == 2, 10, what="two messages")
        roots = [parse(m)[1] for m in collector.messages]
        assert [requester(r).get("UserID") for r in roots] == ["ada", "eve"]
        assert {event_id(r) for r in roots} == {"110105"}
        collector.drop_connections()  # the collector restarts: the forwarder connects again

        def arrived() -> bool:
            archive.record(ActionRecord(actor="again", action="login", studies=[], outcome="failure"))
            return any(requester(parse(m)[1]).get("UserID") == "again" for m in collector.messages[2:])

        wait_until(arrived, 20, interval=0.3, what="a message on a new connection")
    finally:
        forwarder.close()
        collector.close()


def test_an_unreachable_or_stuck_collector_never_holds_up_recording(archive):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there
    refused = SyslogForwarder(f"tcp://127.0.0.1:{port}", queue_size=100)
    stuck_server = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog) and never reads
    stuck = SyslogForwarder(f"tcp://127.0.0.1:{stuck_server.getsockname()[1]}", queue_size=100, timeout=30)
    archive.on_record(refused)
    archive.on_record(stuck)
    big = [f"1.2.3.{n}" for n in range(500)]  # ~60 kB a message: the socket buffers fill at once
    try:
        start = time.monotonic()
        for n in range(50):
            archive.record(ActionRecord(actor=f"u{n}", action="export", studies=big))
        for n in range(5000):
            refused(ActionRecord(actor="x", action="query", studies=[]))
            stuck(ActionRecord(actor="x", action="export", studies=big))
        assert time.monotonic() - start < 15
        assert len(archive.records(limit=100)) == 50
        assert refused.dropped > 0 and stuck.dropped > 0
        wait_until(lambda: refused.failed > 0, 10, what="a failed connection counted")
    finally:
        start = time.monotonic()
        refused.close(timeout=0.5)
        stuck.close(timeout=0.5)
        assert time.monotonic() - start < 5
        stuck_server.close()


def test_a_server_with_audit_syslog_sends_a_failed_login(tmp_path, udp_collector):
    home = tmp_path / "home"
    assert run_cli("users", "add", "vic", "--role", "viewer", "--password-stdin", "--home", str(home),
                   input="vic-password-1\n").returncode == 0
    config = home / "pacsdash.toml"
    config.write_text((config.read_text(encoding="utf-8") if config.exists() else "")
                      + f'\n[audit]\nsyslog = "udp://127.0.0.1:{udp_collector.getsockname()[1]}"\n',
                      encoding="utf-8")
    server = ServerProcess.start(home)
    try:
        answer = requests.post(f"http://127.0.0.1:{server.http_port}/login",
                               data={"username": "vic", "password": "not-it"}, allow_redirects=False, timeout=30)
        assert answer.status_code == 302
        udp_collector.settimeout(30)
        while True:  # other entries may come first
            match, root = parse(udp_collector.recv(65536))
            if event_id(root) == "110114":
                break
        assert int(match["pri"]) == 84
        assert root.find("EventIdentification").get("EventOutcomeIndicator") == "4"
        assert requester(root).get("UserID") == "vic"
        assert requester(root).get("NetworkAccessPointID") == "127.0.0.1"
    finally:
        server.stop()
