"""``[storage] url``, ``endpoint_url``, ``region``: checked when the settings are built,
and the factory opening the store they name (an object store on moto's server)."""

from __future__ import annotations

import re

import pytest

from pacsdash.archive.factory import open_archive, open_store
from pacsdash.archive.s3store import S3Store
from pacsdash.archive.store import LocalStore
from pacsdash.config import ConfigError, load_settings
from tests.helpers import VALID


def settings_with(tmp_path, storage: str):
    (tmp_path / "pacsdash.toml").write_text(f"[storage]\n{storage}\n")
    return load_settings(tmp_path)


def test_an_s3_url_names_bucket_and_prefix(tmp_path):
    settings = settings_with(tmp_path, 'url = "s3://my-bucket.example/site/archive/"\n'
                                       'endpoint_url = "http://minio:9000"\nregion = "us-east-1"')
    assert settings.storage.s3 == ("my-bucket.example", "site/archive")
    assert settings.storage.endpoint_url == "http://minio:9000"
    assert settings_with(tmp_path, 'url = "s3://bucket"').storage.s3 == ("bucket", "")


def test_a_file_url_is_the_local_folder(tmp_path):
    settings = settings_with(tmp_path, 'url = "file:files"')
    assert settings.storage.s3 is None
    assert settings.store_path == tmp_path.resolve() / "files"
    assert settings_with(tmp_path, 'url = "file:///srv/pacs"').store_path.as_posix() == "/srv/pacs"
    assert isinstance(open_store(settings), LocalStore)


def test_without_url_the_path_keeps_working(tmp_path):
    settings = settings_with(tmp_path, 'path = "elsewhere"')
    assert settings.store_path == tmp_path.resolve() / "elsewhere"


@pytest.mark.parametrize("storage, said", [
    ('url = "s3://Bad_Bucket/x"', "not a valid S3 bucket name"),
    ('url = "s3://ab/x"', "not a valid S3 bucket name"),
    ('url = "s3://192.168.1.2/x"', "not a valid S3 bucket name"),
    ('url = "s3://a..b/x"', "not a valid S3 bucket name"),
    ('url = "s3://key:secret@bucket/x"', "must not hold credentials"),
    ('url = "s3://bucket/a//b"', "prefix"),
    ('url = "s3://bucket/a/../b"', "prefix"),
    ('url = "s3://bucket/x?versionId=1"', "without ? or #"),
    ('url = "gs://bucket/x"', "must be s3://bucket/prefix"),
    ('url = "file:"', "names no folder"),
    ('url = "s3://bucket/x"\npath = "store"', "url replaces path"),
    ('endpoint_url = "http://minio:9000"', "needs url"),
    ('region = "eu-west-1"', "needs url"),
    ('backend = "s3"', "backend must be 'local'"),
    ('url = "s3://bucket/x"\nendpoint_url = "minio:9000"', "endpoint_url must be http(s)"),
    ('url = "s3://bucket/x"\nendpoint_url = "http://u:p@minio:9000"', "endpoint_url must be http(s)"),
    ('url = "s3://bucket/x"\nregion = "eu west"', "region must be"),
])
def test_a_bad_storage_setting_is_said(tmp_path, storage, said):
    with pytest.raises(ConfigError, match=re.escape(said)) as caught:
        settings_with(tmp_path, storage)
    assert "[storage]" in str(caught.value)


def test_the_factory_opens_the_object_store_and_the_archive_on_it(tmp_path, s3_bucket):
    settings = settings_with(tmp_path, f'url = "{s3_bucket.url("site/archive")}"\n'
                                       f'endpoint_url = "{s3_bucket.endpoint_url}"\nregion = "us-east-1"')
    store = open_store(settings)
    assert isinstance(store, S3Store) and (store.bucket, store.prefix) == (s3_bucket.name, "site/archive")
    with open_archive(settings) as archive:
        assert isinstance(archive.store, S3Store)
        archive.store_file(VALID[0])
    names = [item["Key"] for item in s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert len(names) == 1 and names[0].startswith("site/archive/")
    assert not (tmp_path / "store").exists()  # no local folder for the files


def test_an_unreachable_bucket_is_a_configuration_error_at_open(tmp_path, s3_bucket):
    settings = settings_with(tmp_path, f'url = "s3://{s3_bucket.name}-absent/x"\n'
                                       f'endpoint_url = "{s3_bucket.endpoint_url}"')
    with pytest.raises(ConfigError, match="bucket does not exist"):
        open_store(settings)


def test_import_into_a_missing_bucket_is_one_line_not_a_traceback(tmp_path, s3_bucket):
    from tests.helpers import run_cli

    (tmp_path / "pacsdash.toml").write_text(f'[storage]\nurl = "s3://{s3_bucket.name}-absent/x"\n'
                                            f'endpoint_url = "{s3_bucket.endpoint_url}"\n')
    done = run_cli("import", str(VALID[0]), "--home", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "configuration error" in done.stderr and "bucket does not exist" in done.stderr
    assert "Traceback" not in done.stderr
