"""The DICOM node's tests run on both archives (issue 16): the embedded default
(DuckDB and files) and a PostgreSQL index with an S3 bucket, through this one
parametrised ``archive`` fixture (the tests themselves are not copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsdash.archive.factory import open_archive
from pacsdash.config import load_settings

BACKENDS = ("embedded", "postgresql+s3")


@pytest.fixture(params=BACKENDS)
def archive(request, tmp_path: Path):
    home = tmp_path / "archive-home"
    home.mkdir()
    if request.param == "postgresql+s3":
        from tests.s3 import REGION

        database = request.getfixturevalue("postgres_server").new_database()
        bucket = request.getfixturevalue("s3_bucket")
        (home / "pacsdash.toml").write_text(
            f'[index]\nurl = "{database}"\n\n[storage]\nurl = "{bucket.url("dimse")}"\n'
            f'endpoint_url = "{bucket.endpoint_url}"\nregion = "{REGION}"\n', encoding="utf-8")
    archive = open_archive(load_settings(home))
    yield archive
    archive.close()
