"""Helpers of the link, results and layout browser tests: a served home with
known studies, logging in, waiting for the page."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.factories import make_instance
from tests.helpers import ServerProcess, run_cli
from tests.web.test_dicomweb import multipart

#: Where the page may fetch from: this machine only.
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
#: Screenshots are kept here when set (CI collects the folder), else in the test's tmp_path.
ARTEFACTS = os.environ.get("PACSDASH_TEST_ARTEFACTS", "")
#: Studies of the generated patients ``LINK^00`` ... (one CT series each, two for the first).
STUDIES = 30


@dataclass
class Served:
    """A running server and what was stored in it."""

    server: ServerProcess
    home: Path
    #: StudyInstanceUID -> its attributes as stored.
    studies: dict[str, dict] = field(default_factory=dict)
    #: The two series of the first study.
    series: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def qido(self, path: str, **params) -> list[dict]:
        response = requests.get(f"{self.url}/dicom-web/{path}", params=params, auth=("admin", "admin-password"))
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else []


def start(home: Path, users: tuple[str, ...] = ("admin", "editor", "viewer")) -> Served:
    """A server on ``home`` with users named after their roles, others viewers (password ``NAME-password``)
    and generated studies: ``LINK^nn`` patients, CT or MR, SliceThickness 1 or 5."""
    home.mkdir(parents=True)
    for user in dict.fromkeys(("admin", *users)):  # the admin stores the studies
        role = user if user in ("admin", "editor", "viewer") else "viewer"
        done = run_cli("users", "add", user, "--role", role, "--password-stdin", "--home", str(home),
                       input=f"{user}-password\n")
        assert done.returncode == 0, done.stderr
    served = Served(ServerProcess.start(home), home)
    files = []
    for k in range(STUDIES):
        attributes = dict(PatientName=f"LINK^{k:02d}", PatientID=f"LNK{k:02d}", StudyDate=f"2020{1 + k % 12:02d}15",
                          StudyTime=f"{k % 24:02d}{k:02d}00", Modality="CT" if k % 3 else "MR", AccessionNumber=f"A{k:03d}",
                          StudyDescription=f"LINK STUDY {k:02d}", SliceThickness="1" if k % 2 else "5",
                          ConvolutionKernel="B30f" if k % 5 == 0 else "B70f", SeriesNumber=1, InstanceNumber=1)
        ds_bytes = make_instance(**attributes)
        files.append(ds_bytes)
        from pydicom import dcmread
        import io

        ds = dcmread(io.BytesIO(ds_bytes))
        served.studies[ds.StudyInstanceUID] = attributes
        if k == 0:
            served.series.append(ds.SeriesInstanceUID)
            second = make_instance(**{**attributes, "SeriesNumber": 2, "SeriesDescription": "SECOND SERIES"},
                                   StudyInstanceUID=ds.StudyInstanceUID)
            files.append(second)
            served.series.append(dcmread(io.BytesIO(second)).SeriesInstanceUID)
    body, content_type = multipart(files)
    response = requests.post(f"{served.url}/dicom-web/studies", data=body, headers={"Content-Type": content_type},
                             auth=("admin", "admin-password"))
    assert response.status_code == 200, response.text
    return served


def first_study(served: Served) -> str:
    """The StudyInstanceUID of ``LINK^00`` (two series)."""
    return next(uid for uid, a in served.studies.items() if a["PatientID"] == "LNK00")


def new_page(browser, viewport: tuple[int, int] = (1400, 1000)):
    """A fresh browser context (no login) and its page; requests leaving the machine are recorded."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    page = context.new_page()
    page.outside = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.outside.append(r.url) if not r.url.startswith(LOCAL) else None)
    return context, page


def log_in(page, user: str) -> None:
    """Fill the login form the page was sent to and wait for the dashboard."""
    assert "/login" in page.url, page.url
    page.fill("#username", user)
    page.fill("#password", f"{user}-password")
    page.click("button[type=submit]")
    page.wait_for_selector(".pd-header", timeout=60_000)


def open_logged_in(browser, served: Served, user: str, path: str = "/", viewport: tuple[int, int] = (1400, 1000)):
    """A new context whose user logs in on the way to ``path``; returns (context, page)."""
    context, page = new_page(browser, viewport)
    page.goto(served.url + path)
    log_in(page, user)
    return context, page


def shot(page, folder: Path, name: str) -> Path:
    """A screenshot in the artefacts folder (or ``folder``)."""
    target = Path(ARTEFACTS) if ARTEFACTS else folder
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    page.screenshot(path=path)
    return path


def path_and_query(page) -> str:
    """The page's URL without scheme and host."""
    from urllib.parse import urlsplit

    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
