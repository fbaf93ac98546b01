"""Fixtures: archives, a DICOM node on a loopback port, registered peers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pacsdash.access import Accounts
from pacsdash.archive import Archive
from pacsdash.config import ServerSettings
from pacsdash.dimse.scp import DicomNode
from tests.helpers import have_dcmtk
from tests.pg import postgres_server  # noqa: F401 - the throwaway PostgreSQL (session)
from tests.s3 import moto_server, s3_bucket  # noqa: F401 - fixtures: S3 on loopback (moto)

#: AE titles the tests register as peers.
SCU_AET = "TESTSCU"


@pytest.fixture
def archive(tmp_path: Path):
    archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
    yield archive
    archive.close()


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(tmp_path / "accounts.sqlite")
    accounts.add_modality("test", SCU_AET, "127.0.0.1", 11112)
    return accounts


def make_node(archive: Archive, accounts: Accounts, **settings) -> DicomNode:
    """A DICOM node on a free loopback port; unregistered peers may C-STORE
    (as in the demo) unless the test says ``accept_unknown_store=False``."""
    settings.setdefault("accept_unknown_store", True)
    node = DicomNode(archive, accounts, ServerSettings(host="127.0.0.1", dicom_port=0, **settings))
    node.start()
    return node


@pytest.fixture
def node(archive: Archive, accounts: Accounts):
    node = make_node(archive, accounts)
    yield node
    node.stop()


def require_tool(available: bool, reason: str) -> None:
    """Skip with ``reason`` when a real peer is missing; in CI, fail instead."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it)")
    pytest.skip(reason)


@pytest.fixture
def dcmtk() -> None:
    """dcmtk's command-line tools, needed as real DICOM peers."""
    require_tool(have_dcmtk(), "dcmtk is not installed (/usr/bin/echoscu missing); .ci/run installs it")


#: Debian's chromium, which the browser tests drive (Playwright's own download is not used).
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium, one per test module (Playwright)."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        require_tool(False, "playwright is not installed (pip install -e '.[test]')")
    require_tool(CHROMIUM.exists(), "Debian's chromium is not installed; .ci/run installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """A module must not leave an asyncio loop running in the main thread once its
    fixtures are torn down: Playwright's sync API (and anything else that runs a loop)
    refuses to start in every later module. Fail the module that did it, by name."""
    yield
    if nextitem is not None and nextitem.path == item.path:
        return
    import asyncio

    if asyncio._get_running_loop() is not None:  # noqa: SLF001
        pytest.fail(f"{item.path.name} left an asyncio loop running in the main thread "
                    "(a session-scoped Playwright or event loop?)", pytrace=False)
