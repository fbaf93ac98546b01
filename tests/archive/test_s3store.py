"""The store contract, held by the local folder and by an S3-compatible object
store alike (moto's server on loopback, a real S3 API); then an archive on S3.

One set of tests runs against both: written bytes come back unchanged, whole,
as a stream and in ranges; a missing key is FileNotFoundError; a key the
store did not make is refused; a large object is read in ranges without
being fetched whole.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread

from pacsdash.archive import Archive
from pacsdash.archive.archive import Outcome
from pacsdash.archive.attributes import Level
from pacsdash.archive.s3store import S3Store
from pacsdash.archive.store import KEY_PATTERN, LocalStore
from tests.helpers import VALID, manifest
from tests.s3 import REGION, S3Bucket

MiB = 1024 * 1024


class CountingClient:
    """A boto3 client that counts the bytes its GETs return."""

    def __init__(self, client) -> None:
        self._client = client
        self.gets: list[str] = []

    def get_object(self, **kwargs):
        self.gets.append(kwargs.get("Range", "whole"))
        return self._client.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def s3_store(bucket: S3Bucket, prefix: str = "archive", **tuning) -> S3Store:
    """The store as the factory makes it: credentials from the environment."""
    return S3Store(bucket.name, prefix, endpoint_url=bucket.endpoint_url, region=REGION, **tuning)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    # Small parts, so the 20 MB object goes up as a multipart upload.
    return s3_store(bucket, multipart_threshold=8 * MiB, part_size=5 * MiB, read_ahead=64 * 1024)


def test_written_bytes_come_back_whole_as_a_stream_and_in_ranges(store):
    raw = bytes(range(256)) * 40 + b"end"
    key = store.write(raw)
    assert KEY_PATTERN.match(key)
    assert store.exists(key)
    assert store.size(key) == len(raw)
    assert store.read(key) == raw
    assert store.read_range(key, 100, 50) == raw[100:150]
    assert store.read_range(key, len(raw) - 3, 10) == b"end"  # fewer at the end
    assert store.read_range(key, len(raw), 10) == b""
    assert store.read_range(key, 5, 0) == b""
    with store.open(key) as handle:
        assert handle.seekable() and handle.readable()
        assert handle.read(4) == raw[:4]
        handle.seek(-3, io.SEEK_END)
        assert handle.read() == b"end"
        handle.seek(1000)
        assert handle.tell() == 1000
        assert handle.read(24) == raw[1000:1024]
        handle.seek(0)
        assert handle.read() == raw
        assert handle.read(10) == b""
    assert abs(store.modified(key) - time.time()) < 120
    assert list(store.keys()) == [key]
    assert store.listing() == ([key], [])


def test_a_key_given_is_used(store):
    key = store.new_key()
    assert store.write(b"DICM", key) == key
    assert store.read(key) == b"DICM"


def test_an_empty_file(store):
    key = store.write(b"")
    assert store.size(key) == 0
    assert store.read(key) == b""
    assert store.read_range(key, 0, 10) == b""
    with store.open(key) as handle:
        assert handle.read() == b""


def test_a_missing_key_is_file_not_found(store):
    key = store.new_key()
    assert not store.exists(key)
    for read in (store.open, store.read, store.size, store.modified, lambda k: store.read_range(k, 0, 10)):
        with pytest.raises(FileNotFoundError):
            read(key)
    store.delete(key)  # no error when absent
    assert list(store.keys()) == []


def test_deleted_is_gone(store):
    keep, drop = store.write(b"keep"), store.write(b"drop")
    store.delete(drop)
    assert not store.exists(drop)
    assert list(store.keys()) == [keep]
    with pytest.raises(FileNotFoundError):
        store.read(drop)


@pytest.mark.parametrize("key", ["../escape.dcm", "20261202/08/../../../x.dcm", "/etc/passwd", "20261202/08/ab.dcm"])
def test_a_key_that_is_not_the_stores_own_is_refused(store, key):
    for call in (lambda: store.write(b"x", key), lambda: store.open(key), lambda: store.read(key),
                 lambda: store.read_range(key, 0, 1), lambda: store.exists(key), lambda: store.delete(key)):
        with pytest.raises(KeyError):
            call()
    assert list(store.keys()) == []


def test_move_out_leaves_the_bytes_in_a_local_file_only(store, tmp_path):
    key = store.write(b"damaged bytes")
    destination = tmp_path / "quarantine" / key
    store.move_out(key, destination)
    assert destination.read_bytes() == b"damaged bytes"
    assert not store.exists(key)


def test_a_large_object_round_trips_byte_for_byte(store):
    """20 MB written (in parts on S3) and read back in ranges and as a stream, never whole."""
    raw = os.urandom(20 * MiB + 12345)
    key = store.write(raw)
    assert store.size(key) == len(raw)
    digest = hashlib.sha256()
    with store.open(key) as handle:
        while chunk := handle.read(3 * MiB):
            digest.update(chunk)
        handle.seek(12 * MiB + 7)
        assert handle.read(100) == raw[12 * MiB + 7:12 * MiB + 107]
    assert digest.hexdigest() == hashlib.sha256(raw).hexdigest()
    for offset in (0, 5 * MiB - 1, 19 * MiB, len(raw) - 10):
        assert store.read_range(key, offset, 4096) == raw[offset:offset + 4096]


def test_the_s3_stream_fetches_ranges_not_the_object(s3_bucket):
    """A header read and a frame read cost a range each, never the whole object."""
    store = s3_store(s3_bucket, read_ahead=64 * 1024)
    raw = os.urandom(12 * MiB)
    key = store.write(raw)
    store.client = counting = CountingClient(store.client)
    with store.open(key) as handle:
        assert handle.read(132) == raw[:132]
        for _ in range(100):  # many small reads, as pydicom's, from the read-ahead
            handle.read(16)
        handle.seek(8 * MiB)
        assert handle.read(1000) == raw[8 * MiB:8 * MiB + 1000]
    assert "whole" not in counting.gets
    assert counting.gets == ["bytes=0-65535", f"bytes={8 * MiB}-{8 * MiB + 65535}"]
    assert store.read_range(key, 5 * MiB, 10) == raw[5 * MiB:5 * MiB + 10]
    assert counting.gets[-1] == f"bytes={5 * MiB}-{5 * MiB + 9}"


def test_s3_keys_are_below_the_prefix_and_other_objects_are_passed_over(s3_bucket):
    store = s3_store(s3_bucket, prefix="site/archive")
    key = store.write(b"DICM")
    client = s3_bucket.client()
    client.put_object(Bucket=s3_bucket.name, Key="site/archive/notes.txt", Body=b"not ours")
    client.put_object(Bucket=s3_bucket.name, Key="elsewhere/" + key, Body=b"not ours")
    names = [item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert f"site/archive/{key}" in names
    assert list(store.keys()) == [key]
    assert list(s3_store(s3_bucket, prefix="").keys()) == []  # the root holds no store keys


@pytest.mark.parametrize("size", [1000, 12 * MiB])
def test_s3_writes_send_each_bodys_md5(s3_bucket, size):
    """Each PUT (or part) carries its body's MD5, so the store refuses bytes damaged on the way."""
    store = s3_store(s3_bucket, multipart_threshold=8 * MiB, part_size=5 * MiB)
    sent: list[bytes | None] = []

    def capture(request, **_):
        sent.append(request.headers.get("Content-MD5"))

    store.client.meta.events.register("before-send.s3.PutObject", capture)
    store.client.meta.events.register("before-send.s3.UploadPart", capture)
    raw = os.urandom(size)
    key = store.write(raw)
    assert store.read(key) == raw
    bodies = [raw] if size < 8 * MiB else [raw[:5 * MiB], raw[5 * MiB:10 * MiB], raw[10 * MiB:]]
    assert sent == [base64.b64encode(hashlib.md5(body).digest()) for body in bodies]


def test_an_interrupted_multipart_upload_is_aborted_by_clean_temporary(s3_bucket):
    client = s3_bucket.client()
    store = s3_store(s3_bucket)
    left = client.create_multipart_upload(Bucket=s3_bucket.name, Key=f"archive/{store.new_key()}")
    restarted = s3_store(s3_bucket)  # the next start
    assert restarted.clean_temporary() == 1
    assert not client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads")
    assert left["UploadId"]


def test_no_credentials_is_said(s3_bucket, monkeypatch):
    """Credentials come from the AWS environment or credential files only; none is a clear OSError."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(OSError, match="AWS_ACCESS_KEY_ID"):
        s3_store(s3_bucket).write(b"DICM")


def test_an_unreachable_store_fails_the_write_with_an_oserror(s3_bucket):
    store = S3Store(s3_bucket.name, "archive", endpoint_url="http://127.0.0.1:9", region=REGION)
    with pytest.raises(OSError, match="127.0.0.1:9"):
        store.write(b"DICM")
    with pytest.raises(OSError):
        store.check()


def test_a_missing_bucket_is_said(s3_bucket):
    store = S3Store(s3_bucket.name + "-absent", "archive", endpoint_url=s3_bucket.endpoint_url, region=REGION)
    with pytest.raises(OSError, match="bucket does not exist"):
        store.check()


# -- an archive on the object store -------------------------------------------------------
def test_an_archive_on_s3_returns_the_samples_byte_for_byte(s3_bucket, tmp_path):
    store = s3_store(s3_bucket)
    expected = {row["sop_instance_uid"] for row in manifest().values() if row["set"] == "valid"}
    with Archive(store, _duckdb_index(tmp_path)) as archive:
        stored = {}
        for path in VALID:
            result = archive.store_file(path)
            if result.outcome is Outcome.STORED:
                stored[result.SOPInstanceUID] = path
        archive.wait_indexed()
        locations = archive.locate(Level.IMAGE)
        assert set(stored) == {location.SOPInstanceUID for location in locations} == expected
        assert sorted(store.keys()) == sorted(location.file for location in locations)
        for location in locations:
            path = stored[location.SOPInstanceUID]
            with archive.open(location) as handle:
                assert handle.read() == path.read_bytes(), path.name
            assert archive.read_range(location, 128, 4) == b"DICM"
            assert archive.read_dataset(location, stop_before_pixels=True).SOPInstanceUID == location.SOPInstanceUID
        # The index's sizes and the objects' agree; a header read does not fetch the pixels.
        biggest = max(locations, key=lambda location: location.size or 0)
        store.client = counting = CountingClient(store.client)
        with archive.open(biggest) as handle:
            dcmread(handle, stop_before_pixels=True)
        assert "whole" not in counting.gets


def _duckdb_index(tmp_path: Path):
    from pacsdash.archive.index import DuckDBIndex

    return DuckDBIndex(tmp_path / "index.duckdb")


# -- pacsdash serve on the object store -------------------------------------------------
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


@pytest.mark.slow
@pytest.mark.dcmtk
def test_serve_on_s3_stores_by_storescu_and_returns_by_wado_rs_byte_for_byte(s3_bucket, tmp_path, dcmtk):
    """``[storage] url = "s3://..."``: dcmtk's storescu stores, WADO-RS gives back what was stored.

    The server inherits the test credentials through the environment (the only
    place they come from); nothing of the files lands in the home.
    """
    import subprocess

    import requests

    from tests.helpers import DCMTK, ServerProcess, dataset_bytes, run_cli
    from tests.web.test_dicomweb import parts_of

    home = tmp_path / "home"
    home.mkdir()
    (home / "pacsdash.toml").write_text(
        f'[auth]\nenabled = false\n\n[storage]\nurl = "{s3_bucket.url("site/archive")}"\n'
        f'endpoint_url = "{s3_bucket.endpoint_url}"\nregion = "{REGION}"\n')
    files = [p for p in VALID
             if dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID in UNCOMPRESSED
             and dcmread(p, stop_before_pixels=True).SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4"]
    added = run_cli("modalities", "add", "getter", "--home", str(home), "--aet", "GETTER", "--host", "127.0.0.1",
                    "--port", "11112", "--allow", "get")
    assert added.returncode == 0, added.stderr
    server = ServerProcess.start(home)
    try:
        sent = subprocess.run([str(DCMTK / "storescu"), "-aet", "SCANNER", "-aec", server.aet, "127.0.0.1",
                               str(server.dicom_port), *map(str, files)], capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        client = s3_bucket.client()
        objects = client.list_objects_v2(Bucket=s3_bucket.name, Prefix="site/archive/")
        assert objects["KeyCount"] == len(files)  # acknowledged: the objects are there
        stored = {}  # SOP Instance UID -> the object's bytes
        for item in objects["Contents"]:
            raw = client.get_object(Bucket=s3_bucket.name, Key=item["Key"])["Body"].read()
            stored[dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID] = raw
        base = f"http://127.0.0.1:{server.http_port}/dicom-web"
        for path in files:
            ds = dcmread(path, stop_before_pixels=True)
            response = requests.get(
                f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
                headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=60)
            assert response.status_code == 200, (path.name, response.text[:300])
            [part] = parts_of(response)
            assert part == stored[ds.SOPInstanceUID], path.name  # the stored bytes, unchanged
            assert dcmread(io.BytesIO(part)).get("PixelData") == dcmread(path).get("PixelData"), path.name
        # ZIP of a study: every entry the stored object's bytes.
        ds = dcmread(files[0], stop_before_pixels=True)
        response = requests.get(f"http://127.0.0.1:{server.http_port}/api/studies/{ds.StudyInstanceUID}/archive",
                                timeout=60)
        assert response.status_code == 200, response.text[:300]
        with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
            entries = [bundle.read(name) for name in bundle.namelist()]
        assert entries and all(entry in stored.values() for entry in entries)
        # C-GET (dcmtk's getscu): the stored data set, as stored.
        out = tmp_path / "got"
        out.mkdir()
        got = subprocess.run([str(DCMTK / "getscu"), "-S", "+B", "-aet", "GETTER", "-aec", server.aet, "-od", str(out),
                              "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                              "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={ds.SOPInstanceUID}",
                              "127.0.0.1", str(server.dicom_port)], capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        [received] = list(out.iterdir())
        kept = tmp_path / "kept.dcm"
        kept.write_bytes(stored[ds.SOPInstanceUID])
        assert dataset_bytes(received) == dataset_bytes(kept)
    finally:
        assert server.stop() == 0
    assert not (home / "store").exists()


def test_recovery_and_check_work_on_s3(s3_bucket, tmp_path):
    """An object the index lacks is indexed by the reconcile after an unclean stop, a row whose
    object is gone dropped; ``check`` reads objects, and its repair moves one out to the quarantine."""
    from pacsdash.archive.check import ProblemKind, check_archive

    store = s3_store(s3_bucket)
    orphan_path, kept_path, lost_path = VALID[:3]
    with Archive(store, _duckdb_index(tmp_path)) as archive:
        archive.store_file(kept_path)
        lost = archive.store_file(lost_path)
        archive.wait_indexed()
        [gone] = archive.locate(Level.IMAGE, lost.SOPInstanceUID)
        store.delete(gone.file)
        orphan = store.write(orphan_path.read_bytes())  # written, never acknowledged
        report = archive.reconcile(full=True)
        assert (report["indexed"], report["missing"]) == (1, 1)
        [adopted] = archive.locate(Level.IMAGE, dcmread(orphan_path, stop_before_pixels=True).SOPInstanceUID)
        assert adopted.file == orphan
        with archive.open(adopted) as handle:
            assert handle.read() == orphan_path.read_bytes()
        assert check_archive(archive).ok
        stray = store.write(b"not DICOM")
        checked = check_archive(archive, repair=True, quarantine=tmp_path / "quarantine")
        assert [(p.kind, p.file) for p in checked.problems] == [(ProblemKind.ORPHAN_FILE, stray)]
        assert (tmp_path / "quarantine" / stray).read_bytes() == b"not DICOM"
        assert not store.exists(stray)
