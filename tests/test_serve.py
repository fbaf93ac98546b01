"""Starting and stopping ``pacsdash serve`` as a person does: a busy port, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from tests.helpers import pacsdash_cmd


def test_a_busy_port_is_named_in_one_line_before_anything_starts(tmp_path):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        for flag, name in (("--http-port", "HTTP"), ("--dicom-port", "DICOM")):
            other = "--dicom-port" if flag == "--http-port" else "--http-port"
            result = subprocess.run(pacsdash_cmd("serve", "--home", str(tmp_path / "home"), flag, str(port), other, "0"),
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 1
            lines = result.stderr.strip().splitlines()
            assert lines == [f"error: the {name} port {port} on 127.0.0.1 is taken (Address already in use); stop "
                             f"what uses it or choose another with {flag} or [server] {name.lower()}_port"], lines
            assert "Traceback" not in result.stdout + result.stderr
    finally:
        squatter.close()


def start_serve(tmp_path, until: str, step: float = 0.1):
    """``pacsdash serve`` on a fresh home, its output in ``serve.log``; returns
    ``(process, home, log)`` once the file ``until`` (relative to the home) exists."""
    import time

    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(pacsdash_cmd("serve", "--home", str(home), "--http-port", "0", "--dicom-port", "0"),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (home / until).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{until} never appeared: {log.read_text()}")
        time.sleep(step)
    return process, home, log


def test_ctrl_c_stops_server_and_workers_cleanly_in_one_line(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: the server and its
    DICOM workers (which used to print a RemoteError traceback each)."""
    import json
    import time

    process, home, log = start_serve(tmp_path, "run/server.json")
    try:
        assert json.loads((home / "run" / "server.json").read_text())["dicom_port"]
        time.sleep(1)  # the workers are up
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output and "RemoteError" not in output, output
    assert output.count("stopped cleanly") == 1


def test_the_dicom_side_starts_before_the_dashboard_is_imported():
    """After a crash the DICOM port must take associations again within about a
    second (scanners give up on a PACS that does not answer); Panel and the
    dashboard take seconds to import. So ``pacsdash serve`` reaches the point
    where it takes the DICOM port and starts its workers with neither
    imported, nor pydicom (the workers import it themselves, meanwhile).
    The restart times are measured by ``make soak``."""
    import sys

    probe = ("import sys, pacsdash.cli, pacsdash.server\n"
             "heavy = sorted(m for m in ('panel', 'bokeh', 'holoviews', 'pacsdash.dashboard', 'pacsdash.web', 'pydicom',"
             " 'pynetdicom', 'duckdb') if m in sys.modules)\n"
             "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported before the DICOM port is taken: {result.stdout.strip()}"


def test_a_sigterm_while_starting_stops_the_server_cleanly(tmp_path):
    """A service manager may stop the server while it is still starting; it
    then stops cleanly once started (exit 0, the home marked clean) instead
    of dying half-started, which would cost a recovery at the next start."""
    process, home, log = start_serve(tmp_path, "index.duckdb", step=0.02)  # begun: it opened its archive
    try:
        assert not (home / "run" / "server.json").exists(), "started already: the test came too late"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert "Traceback" not in output and output.count("stopped cleanly") == 1, output
