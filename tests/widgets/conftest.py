"""Servers for the widget tests: pacsdash serving the sample files (its index
locked by the server, as a notebook finds it), Debian's Orthanc holding the
same files, and an archive of its own built from them for comparisons."""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from pacsdash.archive import Archive
from pacsdash.client import Client, connect
from tests.conftest import require_tool
from tests.helpers import VALID, OrthancProcess, ServerProcess, have_orthanc, run_cli

USER, PASSWORD = "viewer", "viewer-password"


@dataclass
class Server:
    """A DICOMweb server under test and the sample files it holds."""

    name: str
    url: str
    files: list[Path]
    auth: tuple[str, str] | None = None
    process: Any = field(default=None, repr=False)

    def client(self) -> Client:
        """What a notebook user makes: ``connect(url, user=..., password=...)``."""
        user, password = self.auth or (None, None)
        return connect(self.url, user=user, password=password)

    def widget_client(self) -> Client:
        """The client the widget tests use: the one a notebook user makes."""
        return self.client()


def studies_of(files: list[Path]) -> dict[str, list[Path]]:
    """StudyInstanceUID -> its files."""
    studies: dict[str, list[Path]] = {}
    for path in files:
        studies.setdefault(str(dcmread(path, stop_before_pixels=True).StudyInstanceUID), []).append(path)
    return studies


@pytest.fixture(scope="session")
def pacsdash_server(tmp_path_factory):
    """``pacsdash serve`` with the valid samples imported first: the server holds its index's lock."""
    home = tmp_path_factory.mktemp("widgets-pacsdash") / "home"
    added = run_cli("users", "add", USER, "--role", "viewer", "--password-stdin", "--home", str(home),
                    input=f"{PASSWORD}\n")
    assert added.returncode == 0, added.stderr
    imported = run_cli("import", "--home", str(home), *[str(p) for p in VALID])
    assert imported.returncode == 0, imported.stderr
    process = ServerProcess.start(home)
    yield Server("pacsdash", f"http://127.0.0.1:{process.http_port}/dicom-web", list(VALID), (USER, PASSWORD), process)
    process.stop()


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory):
    """Debian's Orthanc holding the valid samples it accepts (it may refuse a few odd ones)."""
    require_tool(have_orthanc(), "Debian's orthanc and orthanc-dicomweb are not installed; .ci/run installs them")
    process = OrthancProcess.start(tmp_path_factory.mktemp("widgets-orthanc"))
    accepted = []
    for path in VALID:
        try:
            process.upload(path)
        except urllib.error.HTTPError:
            continue
        accepted.append(path)
    assert len(accepted) >= len(VALID) - 5, "Orthanc refused most samples"
    yield Server("orthanc", f"http://127.0.0.1:{process.http_port}/dicom-web", accepted, None, process)
    process.stop()


@pytest.fixture(scope="session", params=["pacsdash", "orthanc"])
def server(request) -> Server:
    """Each DICOMweb server in turn."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def reference_archive(tmp_path_factory):
    """An archive of its own holding every valid sample (read in-process)."""
    folder = tmp_path_factory.mktemp("widgets-archive")
    archive = Archive.open_home(folder / "store", folder / "index.duckdb")
    for path in VALID:
        archive.store_file(path)
    yield archive
    archive.close()
