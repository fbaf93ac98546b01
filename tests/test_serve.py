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


def test_ctrl_c_stops_server_and_workers_cleanly_in_one_line(tmp_path):
    """Ctrl-C in a terminal signals the whole process group: the server and its
    DICOM workers (which used to print a RemoteError traceback each)."""
    import json
    import time

    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(pacsdash_cmd("serve", "--home", str(home), "--http-port", "0", "--dicom-port", "0"),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (home / "run" / "server.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
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
