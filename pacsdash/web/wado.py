"""WADO-RS: retrieve instances, metadata and bulk data (PS3.18 10.4).

Instances are sent as they are stored (CONTRACT.md: byte for byte as
received), one part each of ``multipart/related; type="application/dicom"``,
streamed from the store file by file.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import quote

from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from tornado.ioloop import IOLoop

from pacsdash.access import Action
from pacsdash.archive import InstanceLocation, Level, StoredFileError
from pacsdash.web.base import ApiError, BaseHandler
from pacsdash.web.dicomjson import dataset_to_json, find_element
from pacsdash.web.metadata_cache import URL_MARK, with_url
from pacsdash.web.qido import DICOM_JSON, accepts_json, check_uid_path

CHUNK = 1 << 20
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFER = 4096
LOGGER = logging.getLogger(__name__)


class MediaRange:
    """One item of an Accept header: type, subtype, parameters."""

    def __init__(self, text: str) -> None:
        parts = [p.strip() for p in text.split(";")]
        self.media = parts[0].lower()
        self.params: dict[str, str] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            self.params[key.strip().lower()] = value.strip().strip('"')

    @classmethod
    def parse(cls, header: str) -> list[MediaRange]:
        return [cls(item) for item in header.split(",") if item.strip()] if header else []


def accepted_transfer_syntax(header: str, part_type: str) -> str | None:
    """The transfer syntax asked for with ``part_type`` parts, ``*`` for any.

    Raises a 406 when nothing in ``header`` can be answered with parts of
    ``part_type`` (PS3.18 8.7).
    """
    ranges = MediaRange.parse(header)
    if not ranges:
        return "*"
    for item in ranges:
        if item.media in ("*/*", "multipart/*", "multipart/related"):
            wanted_type = item.params.get("type", part_type).lower()
            if wanted_type in (part_type, "*/*", "application/*"):
                return item.params.get("transfer-syntax", "*")
        if item.media == part_type:
            return item.params.get("transfer-syntax", "*")
    raise ApiError(406, f'this resource is sent as multipart/related; type="{part_type}"')


class _InstancesHandler(BaseHandler):
    """Finds the instances a WADO-RS URL names."""

    audit_action = "retrieve"

    def locations(self, study: str, series: str | None = None, instance: str | None = None) -> list[InstanceLocation]:
        if instance is not None and series is not None:
            # One instance (frames, rendered, its metadata): the remembered location.
            study = check_uid_path(study, "StudyInstanceUID")
            series = check_uid_path(series, "SeriesInstanceUID")
            location = self.archive.locate_instance(check_uid_path(instance, "SOPInstanceUID"))
            if location is None or (location.StudyInstanceUID, location.SeriesInstanceUID) != (study, series):
                raise ApiError(404, "no such instance")
            return [location]
        keys = {"StudyInstanceUID": check_uid_path(study, "StudyInstanceUID")}
        if series is not None:
            keys["SeriesInstanceUID"] = check_uid_path(series, "SeriesInstanceUID")
        if instance is not None:
            keys["SOPInstanceUID"] = check_uid_path(instance, "SOPInstanceUID")
        found = self.archive.locate(Level.IMAGE, None, **keys)
        if not found:
            raise ApiError(404, "no such " + ("instance" if instance else "series" if series else "study"))
        return found


def gone(location: InstanceLocation, exc: StoredFileError) -> ApiError:
    """410 Gone for an instance the index knows whose bytes are not there as
    received (``pacsdash check`` names the cause): never a 500, never a
    cut-short file."""
    return ApiError(410, f"instance {location.SOPInstanceUID}: {_FILE_STATES.get(type(exc).__name__, 'unreadable')}"
                         " in the store (see `pacsdash check`)")


_FILE_STATES = {"MissingFile": "its file is missing", "DamagedFile": "its file is damaged"}


@contextmanager
def opened(archive: Any, location: InstanceLocation) -> Iterator[BinaryIO]:
    """The stored bytes of ``location`` as a stream (:meth:`Archive.open
    <pacsdash.archive.Archive.open>`: there, the size received), closed
    after; else 410 (:func:`gone`)."""
    try:
        handle = archive.open(location)
    except StoredFileError as exc:
        raise gone(location, exc) from None
    with handle:
        yield handle


def stored_dataset(archive: Any, location: InstanceLocation) -> Dataset:
    """The stored instance read whole by pydicom; else 410 (:func:`gone`)."""
    try:
        return archive.read_dataset(location)
    except StoredFileError as exc:
        raise gone(location, exc) from None


def readable(archive: Any, locations: list[InstanceLocation]) -> tuple[list[InstanceLocation], list[str]]:
    """``(the instances whose files are whole, the SOP Instance UIDs of the
    others)``, checked without opening them; 410 when none is left."""
    found, missing = [], []
    for location in locations:
        try:
            archive.verify(location)
            found.append(location)
        except StoredFileError:
            missing.append(location.SOPInstanceUID)
    if not found:
        raise ApiError(410, f"the {len(missing)} instance(s) asked for are missing or damaged in the store "
                            "(see `pacsdash check`)")
    return found, missing


def reads_block(handle: BinaryIO) -> bool:
    """Whether reading ``handle`` may wait on the network: no OS file behind
    it (an object store's body), so it is read in a worker thread. A local
    file is read on the loop, as reads from the page cache are quicker than
    the hop to a thread."""
    try:
        handle.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    return False


async def write_stream(handler: BaseHandler, handle: BinaryIO) -> None:
    """Write ``handle`` to the response in :data:`CHUNK` pieces, flushing each (never whole in memory)."""
    loop = IOLoop.current()
    slow = reads_block(handle)
    while chunk := (await loop.run_in_executor(None, handle.read, CHUNK) if slow else handle.read(CHUNK)):
        handler.write(chunk)
        await handler.flush()


def warn_partial(handler: BaseHandler, gone: list[str]) -> None:
    """206 Partial Content with a Warning naming what was left out (PS3.18 10.4.3, 8.3.4.4.1)."""
    if gone:
        handler.set_status(206)
        handler.set_header("Warning", f'299 pacsdash "{len(gone)} instance(s) left out, missing or damaged '
                                      f'in the store: {", ".join(gone[:20])}{" ..." if len(gone) > 20 else ""}"')


class RetrieveHandler(_InstancesHandler):
    """GET a study, a series or an instance as DICOM files (10.4.1.1.1)."""

    async def get(self, study: str, series: str | None = None, instance: str | None = None) -> None:
        self.require(Action.DOWNLOAD)
        syntax = accepted_transfer_syntax(self.request.headers.get("Accept", ""), "application/dicom")
        locations = await IOLoop.current().run_in_executor(None, self.locations, study, series, instance)
        if syntax not in ("*", None, EXPLICIT_LE) and any(loc.TransferSyntaxUID != syntax for loc in locations):
            raise ApiError(406, f"transfer syntax {syntax[:64]} cannot be produced: instances are kept as "
                                f"received, or sent as {EXPLICIT_LE}")
        loop = IOLoop.current()
        archive = self.app.archive
        if instance is not None:  # opened before the first byte: a missing file is a 410
            files = locations
        else:  # checked before the first byte: a response is never cut off mid-stream
            files, missing = await loop.run_in_executor(None, readable, archive, locations)
            warn_partial(self, missing)
        boundary = secrets.token_hex(16)
        self.set_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        pending: Any = None
        try:
            for k, location in enumerate(files):
                if _transcoded(syntax, location):
                    data = await loop.run_in_executor(None, lambda loc=location: transcode(stored_dataset(archive, loc)))
                    self.write(f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={EXPLICIT_LE}\r\n\r\n".encode())
                    self.write(data)
                    self.write(b"\r\n")
                    await self.flush()
                    continue
                if pending is None:
                    pending = loop.run_in_executor(None, open_stored, archive, location)
                try:
                    handle = await pending
                except ApiError as exc:
                    if k:  # gone since it was checked, parts already sent: the body cannot be whole
                        LOGGER.warning("instance %s could not be sent, closing the connection: %s",
                                       location.SOPInstanceUID, exc.message)
                        self.request.connection.close()
                        return
                    raise
                # the next file is opened while this one is sent
                pending = loop.run_in_executor(None, open_stored, archive, files[k + 1]) \
                    if k + 1 < len(files) and not _transcoded(syntax, files[k + 1]) else None
                with handle:
                    self.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n"
                               f"Content-Length: {location.size}\r\n\r\n".encode())
                    await write_stream(self, handle)
                self.write(b"\r\n")
        finally:
            if pending is not None:  # opened ahead, not sent (the client left): closed
                pending.add_done_callback(_close_opened)
        self.write(f"--{boundary}--\r\n".encode())
        await self.finish()


def open_stored(archive: Any, location: InstanceLocation) -> BinaryIO:
    """:meth:`Archive.open <pacsdash.archive.Archive.open>`, else 410 (:func:`gone`)."""
    try:
        return archive.open(location)
    except StoredFileError as exc:
        raise gone(location, exc) from None


def _transcoded(syntax: str | None, location: InstanceLocation) -> bool:
    """Whether ``location`` is sent converted to Explicit VR Little Endian, not as stored."""
    return syntax == EXPLICIT_LE and location.TransferSyntaxUID != EXPLICIT_LE


def _close_opened(future: Any) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def transcode(ds: Dataset) -> bytes:
    """A stored instance (read whole) in Explicit VR Little Endian (pixel data decoded).

    Raises a 406 when no installed codec can decode the pixel data.
    """
    try:
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed and "PixelData" in ds:
            ds.decompress(generate_instance_uid=False)
        elif not syntax.is_little_endian and "PixelData" in ds:
            pixels = ds.pixel_array  # native values, swapped to little endian below
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    except Exception as exc:  # a codec missing or failing: the media type cannot be produced
        raise ApiError(406, f"cannot convert to {EXPLICIT_LE}: {exc}") from None
    return buffer.getvalue()


def read_header(handle: BinaryIO) -> Any:
    """A stored file's data set with large values left unread (read from
    ``handle`` when asked for: use it before the stream is closed)."""
    return dcmread(handle, defer_size=DEFER)


class MetadataHandler(_InstancesHandler):
    """GET .../metadata: the instances' attributes in DICOM JSON (10.4.1.1.2)."""

    async def get(self, study: str, series: str | None = None, instance: str | None = None) -> None:
        self.require(Action.VIEW)
        if not accepts_json(self):
            raise ApiError(406, f"metadata is sent as {DICOM_JSON}")
        base = f"{self.base_url()}/dicom-web"
        cache = self.app.metadata_cache

        left_out: list[str] = []

        def build() -> bytes:
            parts = []
            locations = self.locations(study, series, instance)
            if instance is None:
                locations, missing = readable(self.app.archive, locations)
                left_out.extend(missing)
            for location in locations:
                blob = cache.get(location.file, lambda loc=location: self._encode(loc))
                instance_url = (f"{base}/studies/{quote(location.StudyInstanceUID)}/series/"
                                f"{quote(location.SeriesInstanceUID)}/instances/{quote(location.SOPInstanceUID)}")
                parts.append(with_url(blob, instance_url))
            return b"[" + b",".join(parts) + b"]"

        body = await IOLoop.current().run_in_executor(None, build)
        warn_partial(self, left_out)
        self.set_header("Content-Type", DICOM_JSON)  # UTF-8 by definition, no parameter
        self.finish(body)

    def _encode(self, location: InstanceLocation) -> bytes:
        """One instance's DICOM JSON, with :data:`URL_MARK` for its URL."""
        with opened(self.app.archive, location) as handle:  # deferred values are read from it
            ds = read_header(handle)
            item = dataset_to_json(ds, lambda path: f"{URL_MARK}/bulkdata/{path}")
        item["00020010"] = {"vr": "UI", "Value": [location.TransferSyntaxUID]}
        return json.dumps(item, ensure_ascii=False).encode()


class BulkDataHandler(_InstancesHandler):
    """GET .../bulkdata/{path}: one bulk data value (10.4.1.1.5)."""

    async def get(self, study: str, series: str, instance: str, path: str) -> None:
        self.require(Action.VIEW)
        accept = MediaRange.parse(self.request.headers.get("Accept", ""))
        single = bool(accept) and all(m.media == "application/octet-stream" for m in accept)

        def value() -> bytes:
            [location] = self.locations(study, series, instance)
            ds = stored_dataset(self.app.archive, location)
            try:
                elem = find_element(ds, path)
            except KeyError as exc:
                raise ApiError(404, f"no bulk data at {path[:80]}: {exc.args[0]}") from None
            data = elem.value
            if not isinstance(data, bytes):
                raise ApiError(404, f"{path[:80]} is not bulk data")
            return data

        data = await IOLoop.current().run_in_executor(None, value)
        if single:
            self.set_header("Content-Type", "application/octet-stream")
            await self.finish(data)
            return
        if accept and not any(m.media in ("*/*", "multipart/related", "multipart/*", "application/octet-stream") for m in accept):
            raise ApiError(406, "bulk data is sent as application/octet-stream")
        boundary = secrets.token_hex(16)
        self.set_header("Content-Type", f'multipart/related; type="application/octet-stream"; boundary={boundary}')
        self.write(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
        self.write(data)
        await self.finish(f"\r\n--{boundary}--\r\n".encode())
