"""A real S3 API on loopback for the object-store tests: moto's server mode.

``moto_server`` (session) starts ``python -m moto.server`` on 127.0.0.1 on a
free port; ``s3_bucket`` gives each test a fresh bucket on it, and test
credentials in the standard AWS environment variables (the only place
pacsdash takes them from), with any credential file of the machine hidden.
Without moto the tests are skipped with the reason; in CI they fail.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_port

#: Credentials moto accepts (any would do); never real ones.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
}
REGION = "us-east-1"
_buckets = itertools.count()


def _require_moto() -> None:
    try:
        import moto.server  # noqa: F401
        import boto3  # noqa: F401
    except ImportError as exc:
        reason = f"moto's server mode is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must install it)")
        pytest.skip(reason)


@dataclass(frozen=True)
class MotoServer:
    """moto's S3 server on loopback."""

    endpoint_url: str
    process: subprocess.Popen


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on :class:`MotoServer`, and the environment that reaches it."""

    endpoint_url: str
    name: str
    #: Environment variables a server process needs (the test's own environment has them too).
    env: dict[str, str]

    def url(self, prefix: str = "archive") -> str:
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    def client(self):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).client("s3", endpoint_url=self.endpoint_url, region_name=REGION)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    """``python -m moto.server`` on 127.0.0.1, for the whole session."""
    _require_moto()
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)
        yield MotoServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def s3_bucket(moto_server: MotoServer, monkeypatch, tmp_path: Path) -> S3Bucket:
    """A new, empty bucket; test credentials in this process's environment."""
    return new_bucket(moto_server, monkeypatch, tmp_path)


#: Variables of the machine's own AWS set-up that must not reach the code under test.
_FOREIGN = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def new_bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, folder: Path) -> S3Bucket:
    """A new, empty bucket on ``moto_server``, with test credentials (and nothing
    of the machine's AWS set-up) in this process's environment through ``monkeypatch``
    (a fixture's, or a ``pytest.MonkeyPatch()`` undone by a module-scoped fixture)."""
    env = {
        **TEST_CREDENTIALS,
        # Nothing of the machine's own AWS setup: no profile, no credential or config file.
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = S3Bucket(moto_server.endpoint_url, f"pacsdash-test-{os.getpid()}-{next(_buckets)}", env)
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket
