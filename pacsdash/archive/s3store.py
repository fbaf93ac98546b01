"""The file store in an S3-compatible object store (``[storage] url = "s3://bucket/prefix"``).

One object per instance, named ``PREFIX/<key>`` with the keys the local
store makes (``20261125/08/<32 hex digits>.dcm``), holding the bytes exactly
as received. Any server speaking the S3 API will do: AWS S3, MinIO, Ceph's
RADOS Gateway, moto in the tests (``endpoint_url``).

Durability: an S3 PUT (or the completion of a multipart upload) is atomic
and durable when it returns: the object is then complete under its name, or
absent. :meth:`S3Store.write` returns only after that, and sends each
body's MD5 (``Content-MD5``) so the server refuses bytes damaged on the way;
the archive acknowledges an instance only after the write returned and its
index row is durable, as with the local store. There are no temporary
objects to clean after a crash; an interrupted multipart upload leaves
invisible parts, which :meth:`S3Store.clean_temporary` aborts.

Reading never fetches more than asked for: :meth:`S3Store.open` returns a
seekable stream over ranged GETs with a small read-ahead, so a header or a
frame costs a range, not the object. Credentials come from boto3's standard
chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
``~/.aws/credentials`` or ``AWS_SHARED_CREDENTIALS_FILE``, instance roles),
never from pacsdash's config.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import io
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from pacsdash.archive.store import FILE_SUFFIX, KEY_PATTERN, TMP_SUFFIX, _check_key, _fsync_dir

#: Bodies from this size on go up as a multipart upload (a single PUT takes up to 5 GiB).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Size of each part of a multipart upload (S3's minimum is 5 MiB, the last part excepted).
PART_SIZE = 16 * 1024 * 1024
#: What one ranged GET of a stream fetches at least: a header parse is a few of them at most.
READ_AHEAD = 256 * 1024
#: Connections per store: the archive's file writers plus the readers serving meanwhile.
MAX_CONNECTIONS = 32
#: Piece size when copying an object to a local file.
COPY_CHUNK = 1024 * 1024

#: Error codes of S3 that mean "no such object".
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class StoreError(OSError):
    """The object store failed (unreachable, refused, misconfigured): the
    write or read did not happen. An OSError, as a failing disk's would be."""


def _error(exc: Exception, what: str) -> OSError:
    """Translate a boto3 error about ``what`` into FileNotFoundError, PermissionError or StoreError."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or code
        if code in _NOT_FOUND:
            return FileNotFoundError(errno.ENOENT, f"no object {what}")
        if code == "NoSuchBucket":
            return StoreError(errno.ENOENT, f"{what}: the bucket does not exist ({message})")
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return PermissionError(errno.EACCES, f"{what}: access denied by the object store ({code}: {message}); "
                                   "check the credentials in the AWS environment variables or credential files")
        return StoreError(errno.EIO, f"{what}: the object store answered {status} {code}: {message}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoreError(errno.EACCES, f"{what}: no credentials for the object store; set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / AWS_SHARED_CREDENTIALS_FILE")
    return StoreError(errno.EIO, f"{what}: {exc}")


def _md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")  # noqa: S324 - integrity, as S3 asks


class S3Store:
    """Files as objects in one bucket, below a prefix.

    Parameters
    ----------
    bucket
        The bucket (it must exist: pacsdash does not create it).
    prefix
        Folder-like prefix of every object name (``""``: the bucket's root).
    endpoint_url
        The S3 API's address for a store other than AWS's (``http://minio:9000``).
    region
        The bucket's region (AWS), or what the S3-compatible server expects.
    client
        A boto3 S3 client to use instead of one built from the above.
    multipart_threshold, part_size, read_ahead
        Tuning (see :data:`MULTIPART_THRESHOLD`, :data:`PART_SIZE`, :data:`READ_AHEAD`).
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None, multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE, read_ahead: int = READ_AHEAD) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.read_ahead = read_ahead
        if client is None:
            config = Config(
                max_pool_connections=MAX_CONNECTIONS,
                retries={"mode": "standard", "max_attempts": 5},
                # Servers other than AWS (MinIO, Ceph, moto) are reached by path, not a DNS name per bucket.
                s3={"addressing_style": "path"} if self.endpoint_url else {},
                # Content-MD5 is sent by write(); the newer trailing checksums are not
                # understood by every S3-compatible server.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url,
                                                    region_name=region or None, config=config)
        self.client = client
        #: Multipart uploads started before this are a stopped process's (see :meth:`clean_temporary`).
        self._opened = dt.datetime.now(dt.timezone.utc)

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store(s3://{self.bucket}/{self.prefix}{where})"

    def _name(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _what(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"

    # -- the store's promise ----------------------------------------------------------
    def check(self) -> None:
        """Fail now, with the reason, unless the bucket can be reached with the credentials given.

        Raises
        ------
        OSError
            :class:`StoreError` or PermissionError, saying what the store answered.
        """
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._prefix(), MaxKeys=1)
        except Exception as exc:  # botocore raises several families
            raise _error(exc, f"s3://{self.bucket}/{self.prefix}") from None

    def new_key(self) -> str:
        """A new random key in the "folder" of the current day and hour (UTC)."""
        now = time.gmtime()
        return f"{time.strftime('%Y%m%d', now)}/{time.strftime('%H', now)}/{secrets.token_hex(16)}{FILE_SUFFIX}"

    def write(self, raw: bytes, key: str | None = None) -> str:
        """PUT ``raw`` (with its MD5) and return the key once the store has it durably;
        a large body goes up in parts, each with its MD5, never copied whole."""
        key = key or self.new_key()
        name = self._name(key)
        try:
            if len(raw) < self.multipart_threshold:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=raw, ContentMD5=_md5(raw),
                                       ContentType="application/dicom")
            else:
                self._write_parts(name, memoryview(raw))
        except Exception as exc:
            raise _error(exc, f"writing s3://{self.bucket}/{name}") from None
        return key

    def _write_parts(self, name: str, view: memoryview) -> None:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=name, ContentType="application/dicom")
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(view), self.part_size), start=1):
                piece = view[start:start + self.part_size]
                answer = self.client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                 PartNumber=number, Body=piece.tobytes(), ContentMD5=_md5(piece))
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except Exception:  # noqa: S110 - clean_temporary aborts it at the next start
                pass
            raise

    def open(self, key: str) -> S3Reader:
        """A seekable, read-only stream of the object, fetched in ranges as it is read."""
        return S3Reader(self, key)

    def read(self, key: str) -> bytes:
        """The whole object (one instance's bytes)."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
            with answer["Body"] as body:
                return body.read()
        except Exception as exc:
            raise _error(exc, self._what(key)) from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` in one ranged GET (fewer at the object's end)."""
        if offset < 0 or length < 0:
            raise ValueError(f"a range needs a non-negative offset and length, got {offset}, {length}")
        name = self._name(key)
        if length == 0:
            self.size(key)  # FileNotFoundError if absent, as for any other length
            return b""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={offset}-{offset + length - 1}")
            with answer["Body"] as body:
                data = body.read()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # at or past the end
                self.size(key)
                return b""
            raise _error(exc, self._what(key)) from None
        except Exception as exc:
            raise _error(exc, self._what(key)) from None
        if "ContentRange" not in answer:  # a server that ignored the range sent everything
            data = data[offset:offset + length]
        return data

    def _head(self, key: str) -> dict[str, Any]:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise _error(exc, self._what(key)) from None

    def size(self, key: str) -> int:
        """The object's length."""
        return int(self._head(key)["ContentLength"])

    def modified(self, key: str) -> float:
        """When the object was written (POSIX seconds; the store's clock, to the second)."""
        return self._head(key)["LastModified"].timestamp()

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object (no error if absent: S3 deletes are idempotent)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise _error(exc, f"deleting {self._what(key)}") from None

    def _prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def keys(self) -> Iterator[str]:
        """Every stored key, a page of names at a time (objects that are not the store's are passed over)."""
        prefix = self._prefix()
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(prefix):]
                    if KEY_PATTERN.match(key):
                        yield key
        except Exception as exc:
            raise _error(exc, f"listing s3://{self.bucket}/{prefix}") from None

    def listing(self) -> tuple[list[str], list[Path]]:
        """Every stored key; no temporary files (an object appears complete or not at all)."""
        return list(self.keys()), []

    def clean_temporary(self) -> int:
        """Abort multipart uploads below the prefix that a stopped process
        left (started before this store was opened); return how many.

        Nothing else can be half-written: a PUT is atomic.
        """
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._prefix())
            for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] < self._opened:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                        aborted += 1
        except Exception as exc:
            raise _error(exc, f"cleaning s3://{self.bucket}/{self._prefix()}") from None
        return aborted

    def move_out(self, key: str, destination: Path) -> None:
        """Copy the object to the local file ``destination`` (synced), then delete it."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + TMP_SUFFIX)
        with self.open(key) as source, open(partial, "wb") as target:
            while chunk := source.read(COPY_CHUNK):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
        os.replace(partial, destination)
        _fsync_dir(destination.parent)
        self.delete(key)


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class S3Reader(io.RawIOBase):
    """A stored object as a read-only, seekable file, fetched by ranged GETs.

    Opening fetches the first :attr:`S3Store.read_ahead` bytes (which also
    tells the object's size, and that it exists); a read outside what was
    fetched fetches at least that much again from where it starts, so
    pydicom's many small reads of a header cost one or two requests and a
    frame read at its offset costs one. The object is never held whole
    unless the caller reads it whole.

    Raises
    ------
    FileNotFoundError
        When opened, if nothing is stored under the key.
    """

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__()
        self.store = store
        self.key = key
        self.name = store._what(key)
        self._object = store._name(key)
        self._position = 0
        self._buffer = b""
        self._buffer_start = 0
        #: The object's length.
        self.size = 0
        self._buffer, self.size = self._fetch(0, store.read_ahead)

    def _fetch(self, start: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes from ``start`` and the object's size."""
        client = self.store.client
        try:
            answer = client.get_object(Bucket=self.store.bucket, Key=self._object,
                                       Range=f"bytes={start}-{start + length - 1}")
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # an empty object, or past its end
                return b"", self.store.size(self.key)
            raise _error(exc, self.name) from None
        except Exception as exc:
            raise _error(exc, self.name) from None
        try:
            with answer["Body"] as body:
                match = _CONTENT_RANGE.match(answer.get("ContentRange", ""))
                if match is None:  # the whole object came (the range ignored): keep what was asked
                    data = body.read(start + length)[start:]
                    return data, int(answer["ContentLength"])
                total = match.group(3)
                return body.read(), int(total) if total != "*" else self.store.size(self.key)
        except Exception as exc:
            raise _error(exc, f"reading {self.name}") from None

    # -- io.RawIOBase -------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise OSError(errno.EINVAL, f"negative seek position {position}")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        if end <= self._position:
            return b""
        start = self._position
        buffered_end = self._buffer_start + len(self._buffer)
        if self._buffer_start <= start and end <= buffered_end:
            data = self._buffer[start - self._buffer_start:end - self._buffer_start]
        elif end - start >= self.store.read_ahead:
            data = self._fetch(start, end - start)[0]  # a large read: exactly its range, not kept
        else:
            self._buffer, _ = self._fetch(start, self.store.read_ahead)
            self._buffer_start = start
            data = self._buffer[:end - start]
        self._position = start + len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._buffer = b""
        super().close()
