"""Request bodies: nothing large is read before the caller is known.

A 400 MB POST from nobody must not raise the server's memory (it did by
400 MB: every body was read whole, up to max_upload_mb, before any login
check); STOW-RS streams its body after the login, refuses what exceeds
``max_upload_mb`` (413), and answers every body, malformed, truncated or
stalled (PS3.18 10.5; RFC 9110 15.5.9, 15.5.14).
"""

from __future__ import annotations

import functools
import json
import socket
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsdash.web.multipart import part_spans
from pacsdash.web.stow import STALL_SECONDS, BodySpool
from tests.helpers import VALID, ServerProcess, run_cli
from tests.web.test_dicomweb import multipart

UPLOAD_MB = 8
BIG = 400 * 2**20
#: Most the server's peak memory may grow while a large body is refused.
SLACK = 40 * 2**20
EDITOR = ("editor", "editor-password")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("limits") / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(f"[server]\nmax_upload_mb = {UPLOAD_MB}\n")
    added = run_cli("users", "add", EDITOR[0], "--role", "editor", "--password-stdin", "--home", str(home),
                    input=EDITOR[1] + "\n")
    assert added.returncode == 0, added.stderr
    running = ServerProcess.start(home)
    running.pid = json.loads((home / "run" / "server.json").read_text())["pid"]
    yield running
    running.stop()


def peak_memory(pid: int) -> int:
    """The process's peak resident memory (VmHWM, /proc/PID/status), in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def raw_request(port: int, head: str, body_chunks, read_timeout: float = 30) -> bytes:
    """Send ``head`` then the body chunks until the server stops reading; return what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head.encode("utf-8"))
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed without reading the rest: as it should
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
        return answer


def megabytes(total: int, chunked: bool = False):
    block = b"\0" * 2**20
    for _ in range(total // len(block)):
        yield (b"100000\r\n" + block + b"\r\n") if chunked else block
    if chunked:
        yield b"0\r\n\r\n"


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_a_400_mb_post_from_nobody_is_refused_unread(server):
    requests.get(f"http://127.0.0.1:{server.http_port}/api/health", timeout=30)
    before = peak_memory(server.pid)
    for path, extra in (("/api/health", ""), ("/api/studies/1.2.3/send", "Content-Type: application/json\r\n"),
                        ("/dicom-web/studies", 'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n')):
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {BIG}\r\n\r\n"
        started = time.monotonic()
        answer = raw_request(server.http_port, head, megabytes(BIG))
        assert status_of(answer) in (400, 401, 413), (path, answer[:200])
        assert time.monotonic() - started < 20, path
        chunked = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
        answer = raw_request(server.http_port, chunked, megabytes(BIG, chunked=True))
        assert status_of(answer) in (400, 401, 413), (path, answer[:200])
    assert peak_memory(server.pid) - before < SLACK, "the refused bodies were held in memory"
    assert requests.get(f"http://127.0.0.1:{server.http_port}/api/health", timeout=30).json()["status"] == "ok"


def test_stow_beyond_max_upload_mb_is_413_before_it_is_read(server):
    port = server.http_port
    before = peak_memory(server.pid)
    head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(*EDITOR)}\r\n"
            f'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\nContent-Length: {BIG}\r\n\r\n')
    answer = raw_request(port, head, megabytes(BIG))
    assert status_of(answer) == 413, answer[:300]
    assert b"max_upload_mb" in answer
    # Chunked: read up to the limit, then refused with an answer.
    head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(*EDITOR)}\r\n"
            f'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n')
    answer = raw_request(port, head, megabytes(4 * UPLOAD_MB * 2**20, chunked=True))
    assert status_of(answer) in (400, 413), answer[:300]
    assert peak_memory(server.pid) - before < SLACK + UPLOAD_MB * 2**20


def basic(name: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_a_stalled_stow_body_gets_408(server):
    body, content_type = multipart([VALID[0].read_bytes()])
    head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(*EDITOR)}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=STALL_SECONDS + 15) as sock:
        sock.sendall(head.encode("latin-1") + body[: len(body) // 2])  # and then nothing: cut short
        answer = sock.recv(65536)
    assert status_of(answer) == 408, answer[:300]
    assert STALL_SECONDS - 1 < time.monotonic() - started < STALL_SECONDS + 10


def test_stow_stays_byte_exact_when_streamed(server):
    raws = [p.read_bytes() for p in VALID[:3]]
    body, content_type = multipart(raws)
    base = f"http://127.0.0.1:{server.http_port}/dicom-web"
    stored = requests.post(f"{base}/studies", data=iter([body[i:i + 7919] for i in range(0, len(body), 7919)]),
                           headers={"Content-Type": content_type}, auth=EDITOR, timeout=60)  # chunked
    assert stored.status_code == 200, stored.text[:300]
    for raw, item in zip(raws, stored.json()["00081199"]["Value"]):
        url = item["00081190"]["Value"][0]
        got = requests.get(url, auth=EDITOR, headers={"Accept": 'multipart/related; type="application/dicom"'},
                           timeout=60)
        assert raw in got.content


def test_the_spool_goes_to_disk_and_parts_are_found_in_it(tmp_path):
    raws = [p.read_bytes() for p in VALID[:3]]
    body, content_type = multipart(raws)
    boundary = content_type.split("boundary=")[1].strip('"')
    spool = BodySpool(limit=len(body), folder=tmp_path, memory=1000)
    for start in range(0, len(body), 4096):
        spool.write(body[start:start + 4096])
    assert not spool.too_large and spool._file is not None  # noqa: SLF001 - it did spill to disk
    mapped = spool.body()
    assert [mapped[start:end] for _, start, end in part_spans(mapped, boundary)] == raws
    spool.close()
    over = BodySpool(limit=10, folder=tmp_path)
    over.write(b"x" * 11)
    assert over.too_large


@functools.cache
def valid_body() -> tuple[bytes, str]:
    return multipart([VALID[0].read_bytes(), VALID[1].read_bytes()])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_malformed_or_truncated_stow_body_gets_an_answer(server, data):
    body, content_type = valid_body()
    how = data.draw(st.sampled_from(["truncate", "flip", "boundary", "garbage", "splice"]))
    if how == "truncate":
        body = body[: data.draw(st.integers(0, len(body)))]
    elif how == "flip":
        at = data.draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
    elif how == "boundary":
        content_type = data.draw(st.sampled_from([
            'multipart/related; type="application/dicom"', 'multipart/related; boundary=""',
            'multipart/related; boundary="é€"', "multipart/related; boundary=" + "x" * 300,
            'multipart/related; type="application/dicom"; boundary=nope']))
    elif how == "garbage":
        body = data.draw(st.binary(max_size=2000))
    else:
        cut = data.draw(st.integers(0, len(body)))
        body = body[:cut] + data.draw(st.binary(max_size=64)) + body[cut:]
    head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(*EDITOR)}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    started = time.monotonic()
    answer = raw_request(server.http_port, head, [body], read_timeout=15)
    status = status_of(answer)
    assert status in (200, 202, 400, 409, 415), (how, answer[:300])
    assert time.monotonic() - started < 15
