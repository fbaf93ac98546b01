"""WADO-RS: retrieve instances, metadata and bulk data (PS3.18 10.4).

Instances are sent as they are stored (CONTRACT.md: byte for byte as
received), one part each of ``multipart/related; type="application/dicom"``,
streamed from the store file by file.
"""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydicom import dcmread, dcmwrite
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


def stored_path(archive: Any, location: InstanceLocation) -> Path:
    """The stored file of ``location``, there and the size received; else 410
    Gone (the index knows the instance, its bytes are not there: ``pacsdash
    check`` names the cause), never a 500 and never a cut-short file."""
    try:
        return archive.verified_path(location)
    except StoredFileError as exc:
        raise ApiError(410, f"instance {location.SOPInstanceUID}: {_FILE_STATES.get(type(exc).__name__, 'unreadable')}"
                            " in the store (see `pacsdash check`)") from None


_FILE_STATES = {"MissingFile": "its file is missing", "DamagedFile": "its file is damaged"}


def readable(archive: Any, locations: list[InstanceLocation]) -> tuple[list[tuple[InstanceLocation, Path]], list[str]]:
    """``(the instances whose files are whole with their paths, the SOP Instance
    UIDs of the others)``; 410 when none is left."""
    found, gone = [], []
    for location in locations:
        try:
            found.append((location, archive.verified_path(location)))
        except StoredFileError:
            gone.append(location.SOPInstanceUID)
    if not found:
        raise ApiError(410, f"the {len(gone)} instance(s) asked for are missing or damaged in the store "
                            "(see `pacsdash check`)")
    return found, gone


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
        if instance is not None:
            files = [(locations[0], await IOLoop.current().run_in_executor(
                None, stored_path, self.app.archive, locations[0]))]
        else:  # checked before the first byte: a response is never cut off mid-stream
            files, gone = await IOLoop.current().run_in_executor(None, readable, self.app.archive, locations)
            warn_partial(self, gone)
        boundary = secrets.token_hex(16)
        self.set_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        for location, path in files:
            if syntax == EXPLICIT_LE and location.TransferSyntaxUID != EXPLICIT_LE:
                data = await IOLoop.current().run_in_executor(None, transcode, path)
                self.write(f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={EXPLICIT_LE}\r\n\r\n".encode())
                self.write(data)
                self.write(b"\r\n")
                await self.flush()
                continue
            self.write(f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Length: {location.size}\r\n\r\n".encode())
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    self.write(chunk)
                    await self.flush()
            self.write(b"\r\n")
        self.write(f"--{boundary}--\r\n".encode())
        await self.finish()


def transcode(path: Path) -> bytes:
    """The stored file in Explicit VR Little Endian (pixel data decoded).

    Raises a 406 when no installed codec can decode the pixel data.
    """
    ds = dcmread(path)
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


def read_header(path: Path) -> Any:
    """A stored file's data set with large values left unread."""
    return dcmread(path, defer_size=DEFER)


class MetadataHandler(_InstancesHandler):
    """GET .../metadata: the instances' attributes in DICOM JSON (10.4.1.1.2)."""

    async def get(self, study: str, series: str | None = None, instance: str | None = None) -> None:
        self.require(Action.VIEW)
        if not accepts_json(self):
            raise ApiError(406, f"metadata is sent as {DICOM_JSON}")
        base = f"{self.base_url()}/dicom-web"
        cache = self.app.metadata_cache

        gone: list[str] = []

        def build() -> bytes:
            parts = []
            locations = self.locations(study, series, instance)
            if instance is None:
                files, missing = readable(self.app.archive, locations)
                locations = [location for location, _ in files]
                gone.extend(missing)
            for location in locations:
                blob = cache.get(location.file, lambda loc=location: self._encode(loc))
                instance_url = (f"{base}/studies/{quote(location.StudyInstanceUID)}/series/"
                                f"{quote(location.SeriesInstanceUID)}/instances/{quote(location.SOPInstanceUID)}")
                parts.append(with_url(blob, instance_url))
            return b"[" + b",".join(parts) + b"]"

        body = await IOLoop.current().run_in_executor(None, build)
        warn_partial(self, gone)
        self.set_header("Content-Type", DICOM_JSON)  # UTF-8 by definition, no parameter
        self.finish(body)

    def _encode(self, location: InstanceLocation) -> bytes:
        """One instance's DICOM JSON, with :data:`URL_MARK` for its URL."""
        ds = read_header(stored_path(self.app.archive, location))
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
            ds = dcmread(stored_path(self.app.archive, location))
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
