"""Fixtures for the OHIF interop tests: OHIF's build, pacsdash, two deployments, Chromium.

Two deployments, each a pacsdash holding every valid sample (uploaded by
STOW-RS) and OHIF 3.13 served from a loopback port:

- ``same-origin``: one front server serves OHIF at ``/`` and proxies
  ``/dicom-web`` to pacsdash (``trust_proxy_headers = true``), as behind
  nginx; OHIF's data source root is the relative ``/dicom-web``.
- ``cross-origin``: OHIF on one port, pacsdash on another with
  ``cors_origins`` set to OHIF's origin; OHIF calls pacsdash directly.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from tests.conftest import require_tool
from tests.helpers import VALID, ServerProcess, run_cli
from tests.ohif.ohif_dist import OHIF_VERSION, OhifUnavailable, ensure_ohif_dist
from tests.ohif.servers import ViewerServer
from tests.ohif.viewer import OhifPage, app_config

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CHROMIUM = Path(os.environ.get("PACSDASH_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # Only loopback: any other host name fails at once instead of waiting on DNS.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
USERS = {"viewer": "ohif-viewer-pw", "editor": "ohif-editor-pw"}
DEPLOYMENTS = ("same-origin", "cross-origin")


@pytest.fixture(scope="session")
def ohif_dist() -> Path:
    """OHIF's built viewer, fetched from npm on first use and cached."""
    require_tool(sync_playwright is not None,
                 "Playwright for Python is not installed (pip install playwright; the browser is Debian's chromium)")
    require_tool(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        return ensure_ohif_dist()
    except OhifUnavailable as exc:
        require_tool(False, f"cannot get OHIF {OHIF_VERSION}: {exc}")


@pytest.fixture(scope="module")
def browser(ohif_dist):
    """One chromium per module: a Playwright left open for the session keeps its asyncio
    loop running in this thread, and the next module's sync Playwright refuses to start."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass(frozen=True)
class Study:
    uid: str
    patient_name: str
    patient_id: str
    modalities: frozenset[str]
    files: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]


@pytest.fixture(scope="session")
def studies() -> dict[str, Study]:
    """The valid samples' studies, keyed by Study Instance UID."""
    grouped: dict[str, list] = {}
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        grouped.setdefault(ds.StudyInstanceUID, []).append((path.name, ds))
    return {
        uid: Study(uid, str(items[0][1].get("PatientName", "")), str(items[0][1].get("PatientID", "")),
                   frozenset(str(ds.get("Modality", "")) for _, ds in items),
                   tuple(name for name, _ in items), tuple(ds.SOPInstanceUID for _, ds in items))
        for uid, items in grouped.items()
    }


def study_of(studies: dict[str, Study], file_name: str) -> Study:
    return next(s for s in studies.values() if file_name in s.files)


def stow(url: str, auth: tuple[str, str], paths: list[Path]) -> requests.Response:
    boundary = secrets.token_hex(12)
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
                    for p in paths) + f"--{boundary}--\r\n".encode()
    return requests.post(url, data=body, auth=auth, timeout=120,
                         headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})


@dataclass
class Deployment:
    """pacsdash plus OHIF, one of :data:`DEPLOYMENTS`."""

    name: str
    pacs: ServerProcess
    front: ViewerServer
    dicomweb_root: str

    @property
    def url(self) -> str:
        """Where the browser opens OHIF."""
        return self.front.origin

    @property
    def dicomweb_origin(self) -> str:
        """The origin every DICOMweb request of the browser must go to."""
        return self.front.origin if self.name == "same-origin" else f"http://127.0.0.1:{self.pacs.http_port}"


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployment(request, ohif_dist, tmp_path_factory):
    name = request.param
    home = tmp_path_factory.mktemp(f"ohif-{name}") / "home"
    for user, password in USERS.items():
        result = run_cli("users", "add", user, "--role", user, "--password-stdin", "--home", str(home),
                         input=password + "\n")
        assert result.returncode == 0, result.stderr
    front = ViewerServer(ohif_dist)
    if name == "same-origin":
        (home / "pacsdash.toml").write_text("[server]\ntrust_proxy_headers = true\n")
    else:
        (home / "pacsdash.toml").write_text(f'[server]\ncors_origins = ["{front.origin}"]\n')
    pacs = None
    try:
        pacs = ServerProcess.start(home)
        direct = f"http://127.0.0.1:{pacs.http_port}/dicom-web"
        answer = stow(f"{direct}/studies", ("editor", USERS["editor"]), list(VALID))
        assert answer.status_code == 200, answer.text[:2000]
        if name == "same-origin":
            front.upstream = ("127.0.0.1", pacs.http_port)
            root = "/dicom-web"
        else:
            root = direct
        front.app_config = app_config(root, "viewer", USERS["viewer"])
        front.start()
        yield Deployment(name, pacs, front, root)
    finally:
        front.stop()
        if pacs is not None:
            pacs.stop()


@pytest.fixture(scope="module")
def browser_context(browser, deployment):
    """One browser profile per deployment, so OHIF's scripts are cached between tests."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.ohif_call_failed = report.failed


@pytest.fixture
def ohif(request, browser_context, deployment, tmp_path) -> OhifPage:
    """A fresh page on OHIF; screenshots go to the test's tmp_path."""
    page = browser_context.new_page()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    wrapped = OhifPage(page, deployment.url, shots)
    yield wrapped
    if getattr(request.node, "ohif_call_failed", False):
        try:
            wrapped.screenshot("at-failure")
        except Exception as exc:  # noqa: BLE001 - the failure itself matters more
            print(f"no screenshot at failure: {exc}")
        print(f"OHIF screenshots: {shots}")
    page.close()

