"""The index backends the archive's index tests run against: DuckDB, and
PostgreSQL (a throwaway server, :mod:`tests.pg`)."""

from __future__ import annotations

import pytest

from tests.pg import BACKENDS, ArchiveHome, archive_home


@pytest.fixture(scope="module", params=BACKENDS)
def index_backend(request) -> str:
    """``duckdb`` or ``postgresql``: a module's tests run once on each."""
    return request.param


@pytest.fixture
def home(index_backend, tmp_path, request) -> ArchiveHome:
    """A test's archive home on the module's index backend (open it with ``home.open()``)."""
    return archive_home(index_backend, tmp_path, request)


@pytest.fixture
def backend_archive(home):
    """An open archive on the module's index backend."""
    archive = home.open()
    yield archive
    archive.close()
