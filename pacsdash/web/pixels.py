"""Pixel resources: WADO-RS frames, rendered and thumbnail (PS3.18 10.4),
and WADO-URI (PS3.18 9). The pixel work is :mod:`pacsdash.imaging`'s."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from tornado.ioloop import IOLoop

from pacsdash import imaging
from pacsdash.access import Action
from pacsdash.archive import InstanceLocation, StoredFileError
from pacsdash.imaging.attributes import check_index, pixel_keyword
from pacsdash.imaging.stored import StoredFrames, one_frame, stored_frames
from pacsdash.web.base import ApiError, BaseHandler, bad_request
from pacsdash.web.multipart import closing, part_head
from pacsdash.web.qido import check_uid_path
from pacsdash.web.wado import (MediaRange, _InstancesHandler, gone, open_stored, opened, read_header, stored_dataset,
                               write_stream)

UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MAX_VIEWPORT = 8192
LOGGER = logging.getLogger(__name__)
#: Tags of the pixel data elements, as bulk data paths (PS3.18 10.4.3.3.6).
PIXEL_TAGS = {"PixelData": "7FE00010", "FloatPixelData": "7FE00008", "DoubleFloatPixelData": "7FE00009"}


#: Most frame numbers one frames request may list (after duplicates are dropped).
MAX_FRAMES = 10_000
#: Digits of the largest frame number taken (NumberOfFrames is an IS: at most 12 characters).
MAX_FRAME_DIGITS = 7


def whole(text: str, digits: int) -> bool:
    """Whether ``text`` is ASCII digits only, at most ``digits`` of them (``int()`` takes it at once:
    no 5,000-digit number, no superscript two that ``str.isdigit`` lets through)."""
    return text.isascii() and text.isdigit() and len(text) <= digits


def frame_number(text: str, name: str = "frame number") -> int:
    """A 1-based frame number -> its 0-based index; 400 for anything else
    (checked by length first: ``int()`` of thousands of digits raises)."""
    text = text.strip()
    if not whole(text, MAX_FRAME_DIGITS) or int(text) < 1:
        raise bad_request(f"a {name} is a whole number from 1 to {10 ** MAX_FRAME_DIGITS - 1}, got {text[:20]!r}")
    return int(text) - 1


def parse_frames(text: str) -> list[int]:
    """``1,3,5`` -> 0-based indexes, each once, in the order first asked;
    400 for anything else (PS3.18 8.3.3.1.3: frame numbers, no duplicates)."""
    if text.count(",") > 10 * MAX_FRAMES:
        raise bad_request(f"at most {MAX_FRAMES} frames per request")
    frames = list(dict.fromkeys(frame_number(item) for item in text.split(",")))
    if len(frames) > MAX_FRAMES:
        raise bad_request(f"at most {MAX_FRAMES} frames per request")
    return frames


def imaging_error(exc: imaging.ImagingError) -> ApiError:
    return ApiError(getattr(exc, "http_status", 500), str(exc))


def frame_transfer_syntax(accept: str, stored: str) -> str:
    """The transfer syntax to send frames in, from the Accept header.

    ``transfer-syntax=*`` (OHIF) takes the stored one; an absent parameter,
    or an explicit little endian one, asks for uncompressed bytes; asking for
    the stored compressed syntax gets it; anything else is a 406.
    """
    ranges = MediaRange.parse(accept) or [MediaRange("*/*")]
    for item in ranges:
        if item.media not in ("*/*", "multipart/related", "multipart/*", "application/octet-stream"):
            if item.media in ("image/jpeg", "image/jls", "image/jp2", "image/x-dicom-rle", "image/dicom-rle"):
                syntax = item.params.get("transfer-syntax")
                if syntax in (None, "*", stored) and stored not in UNCOMPRESSED:
                    return stored
            continue
        part_type = item.params.get("type", "application/octet-stream").lower() if item.media.startswith("multipart") else "application/octet-stream"
        syntax = item.params.get("transfer-syntax")
        if part_type in ("application/octet-stream", "*/*"):
            if syntax == "*":
                return stored if stored not in UNCOMPRESSED else EXPLICIT_LE
            if syntax in (None, EXPLICIT_LE):
                return EXPLICIT_LE
            if syntax == stored:
                return stored
        elif syntax in ("*", stored, None) and stored not in UNCOMPRESSED and part_type.startswith("image/"):
            return stored
    raise ApiError(406, f"frames can be sent uncompressed ({EXPLICIT_LE}) or as stored ({stored})")


def part_media_type(syntax: str) -> str:
    """Media type of a frame part in ``syntax`` (PS3.18 Table 8.7.3-2)."""
    if syntax in UNCOMPRESSED:
        return "application/octet-stream"
    if syntax in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        return "image/jpeg"
    if syntax in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
        return "image/jls"
    if syntax in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"):
        return "image/jp2"
    if syntax == "1.2.840.10008.1.2.5":
        return "image/dicom-rle"
    return "application/octet-stream"


class StoredInstance:
    """The frames of one stored instance, read one at a time: its header, then
    each frame asked for as a range (native data) or from the stream (the
    fragments of an encapsulated frame, :mod:`pacsdash.imaging.stored`), never
    the rest of the file.

    Whatever that way does not handle (deflated or big endian files, 1-bit
    data, no pixel data, a damaged element or frame) is read whole as before
    (:meth:`whole`), so that answers and errors stay what they were. Opened in
    a worker thread; 410 when the file is missing or damaged (:func:`gone`).
    Close it after (it may keep the stored stream open for encapsulated frames).
    """

    def __init__(self, archive: Any, location: InstanceLocation) -> None:
        self.archive = archive
        self.location = location
        self._whole: Dataset | None = None
        self._stream = open_stored(archive, location)
        try:
            self.stored: StoredFrames | None = stored_frames(self._stream)
        except Exception:  # noqa: BLE001 - pydicom cannot read it: the whole read says so (410)
            self.stored = None
        if self.stored is None or not self.stored.encapsulated:
            self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def whole(self) -> Dataset:
        """The instance read whole by pydicom (once); 410 as :func:`stored_dataset`."""
        if self._whole is None:
            self._whole = stored_dataset(self.archive, self.location)
        return self._whole

    def count(self) -> int:
        """:func:`pacsdash.imaging.frame_count` of the instance."""
        return self.stored.count if self.stored is not None else imaging.frame_count(self.whole())

    def stored_frame(self, index: int) -> bytes | None:
        """Frame ``index`` as stored (native bytes or the encapsulated frame's fragments joined), read
        alone; None when it is to be found in the whole instance (no such frame, damaged data...)."""
        stored = self.stored
        if stored is None or not 0 <= index < stored.count:
            return None
        if stored.encapsulated:
            if self._stream is None:
                return None
            try:
                return stored.encapsulated_frame(self._stream, index)
            except Exception:  # noqa: BLE001 - damaged fragments or a failing store: the whole read says which
                return None
        span = stored.native_span(index)
        if span is None:
            return None
        try:
            return self.archive.read_range(self.location, *span)
        except StoredFileError as exc:
            raise gone(self.location, exc) from None
        except ValueError:  # beyond the size received: the whole read says what is wrong
            return None

    def frame_dataset(self, index: int, data: bytes | None = None) -> tuple[Dataset, int]:
        """``(a data set, the index of frame index in it)`` for :mod:`pacsdash.imaging`: the header
        and that frame alone when it can be read alone (``data``, if already read), else the whole
        instance. FrameOutOfRange for a frame the header says is not there."""
        if self.stored is not None:
            check_index(index, self.stored.count)
            if data is None:
                data = self.stored_frame(index)
            if data is not None:
                return one_frame(self.stored, index, data), 0
        return self.whole(), index


def frame_part(source: StoredInstance, syntax: str, index: int) -> bytes:
    """Frame ``index`` of ``source`` as a frames part in ``syntax``: the stored
    encapsulated bitstream (:func:`pacsdash.imaging.compressed_frame`) or
    uncompressed little endian bytes (:func:`pacsdash.imaging.frame_bytes`),
    reading that frame alone where it can; ApiError from ImagingError."""
    try:
        data = source.stored_frame(index)
        if data is not None and syntax != EXPLICIT_LE and source.stored is not None and source.stored.encapsulated:
            return data  # as stored: what compressed_frame gives
        ds, at = source.frame_dataset(index, data)
        if syntax != EXPLICIT_LE:
            return imaging.compressed_frame(ds, at) or imaging.frame_bytes(ds, at)
        return imaging.frame_bytes(ds, at)
    except imaging.ImagingError as exc:
        raise imaging_error(exc) from None


class FramesHandler(_InstancesHandler):
    """GET .../instances/{i}/frames/{list} (PS3.18 10.4.1.1.3)."""

    async def get(self, study: str, series: str, instance: str, frames: str) -> None:
        """Each frame asked for once (at most NumberOfFrames of them, else 404
        naming the first beyond), read and written one at a time: each alone,
        not the whole instance (:class:`StoredInstance`)."""
        self.require(Action.VIEW)
        indexes = parse_frames(frames)
        loop = IOLoop.current()

        def load() -> tuple[StoredInstance, str]:
            [location] = self.locations(study, series, instance)
            source = StoredInstance(self.app.archive, location)
            try:
                source.count()  # a file read whole is read here: 410 before the Accept header's 406
                syntax = frame_transfer_syntax(self.request.headers.get("Accept", ""), location.TransferSyntaxUID)
            except BaseException:
                source.close()
                raise
            keep = syntax == location.TransferSyntaxUID and syntax not in UNCOMPRESSED
            return source, syntax if keep else EXPLICIT_LE

        source, syntax = await loop.run_in_executor(None, load)
        try:
            count = source.count()
            beyond = next((i for i in indexes if i >= count), None)
            if beyond is not None:
                raise ApiError(404, f"frame {beyond + 1} is beyond the instance's {count} frame(s)")
            data = await loop.run_in_executor(None, frame_part, source, syntax, indexes[0])  # errors before any byte
            media = part_media_type(syntax)
            boundary = secrets.token_hex(16)
            self.set_header("Content-Type", f'multipart/related; type="{media}"; boundary={boundary}')
            for position, index in enumerate(indexes):
                if position:
                    try:
                        data = await loop.run_in_executor(None, frame_part, source, syntax, index)
                    except ApiError as exc:
                        LOGGER.warning("frame %d could not be sent, closing the connection: %s", index + 1, exc.message)
                        self.request.connection.close()
                        return
                self.write(
                    f"--{boundary}\r\nContent-Type: {media}; transfer-syntax={syntax}\r\n"
                    f"Content-Location: frames/{index + 1}\r\n\r\n".encode()
                )
                self.write(data)
                self.write(b"\r\n")
                if len(indexes) > 1:
                    await self.flush()
            await self.finish(f"--{boundary}--\r\n".encode())
        finally:
            source.close()


def check_pixel_data_accept(accept: str) -> None:
    """Refuse (406) an Accept header that does not take uncompressed little
    endian ``application/octet-stream`` parts, the only representation of the
    Pixel Data resources served here (PS3.18 8.7.3.5; ``transfer-syntax=*``
    lets the origin server choose it)."""
    ranges = MediaRange.parse(accept) or [MediaRange("*/*")]
    for item in ranges:
        if item.media in ("*/*", "multipart/*", "multipart/related"):
            part_type = item.params.get("type", "application/octet-stream").lower()
        elif item.media == "application/octet-stream":
            part_type = item.media
        else:
            continue
        if part_type in ("application/octet-stream", "application/*", "*/*") and \
                item.params.get("transfer-syntax") in (None, "*", EXPLICIT_LE):
            return
    raise ApiError(406, f"pixel data is sent as multipart/related; type=\"application/octet-stream\"; "
                        f"transfer-syntax={EXPLICIT_LE}")


def pixel_frames(ds: Dataset) -> Iterator[bytes]:
    """Every frame of an instance's pixel data, uncompressed, little endian
    (each as the frames resource sends it, :func:`pacsdash.imaging.frame_bytes`)."""
    for index in range(imaging.frame_count(ds)):
        yield imaging.frame_bytes(ds, index)


@dataclass(frozen=True)
class PixelSpan:
    """Where an instance file holds its pixel data as :func:`pixel_frames` would give it joined."""

    keyword: str
    offset: int
    length: int


class SpanCache:
    """:class:`PixelSpan` of files by store key, at most ``max_entries``, least recently used forgotten first.

    A stored file never changes (every instance gets a new store key, see
    :mod:`pacsdash.web.metadata_cache`), so where its pixel data lies can be
    remembered: a series asked for again is read, not parsed again.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, PixelSpan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PixelSpan | None:
        with self._lock:
            span = self._entries.get(key)
            if span is not None:
                self._entries.move_to_end(key)
            return span

    def put(self, key: str, span: PixelSpan) -> None:
        with self._lock:
            self._entries[key] = span
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


SPANS = SpanCache()


def native_pixel_data(ds: Dataset, keyword: str) -> bytes | None:
    """All frames at once where the stored value already is what :func:`pixel_frames` would give joined:
    native little endian data of whole bytes a sample, cut to frames x frame size (a trailing padding byte
    dropped); None otherwise (encapsulated, big endian, 1-bit, too short...: left to :func:`pixel_frames`,
    which decodes, swaps, realigns or says what is wrong)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not syntax or syntax.is_encapsulated or not syntax.is_little_endian or ds.get("BitsAllocated") == 1:
        return None
    value = ds[keyword].value
    size = imaging.frame_count(ds) * imaging.frame_size(ds)
    if not isinstance(value, bytes) or not 0 < size <= len(value):
        return None
    return value if len(value) == size else value[:size]


def deferred_offsets(ds: Dataset) -> dict[str, int]:
    """Where the pixel data values that pydicom left unread start in the file, by keyword (call before
    anything reads them; none for deflated files, whose offsets are not the file's)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not syntax or syntax.is_deflated:
        return {}
    offsets = {}
    for keyword in PIXEL_TAGS:
        if keyword in ds:
            raw = ds.get_item(keyword, keep_deferred=True)
            if isinstance(raw, RawDataElement) and raw.value is None and raw.length != 0xFFFFFFFF:
                offsets[keyword] = raw.value_tell
    return offsets


def read_span(archive: Any, location: InstanceLocation, span: PixelSpan) -> bytes:
    """The bytes of ``span`` in the stored file of ``location`` (a range read:
    the rest of the file is not read); 410 if the file is missing or ends
    before it (:func:`~pacsdash.web.wado.gone`)."""
    try:
        return archive.read_range(location, span.offset, span.length)
    except StoredFileError as exc:
        raise gone(location, exc) from None


@dataclass
class InstancePixels:
    """One instance's pixel data, ready to send: its element's keyword, the first bytes, and, for frames
    that must be decoded, swapped or realigned, those after them (produced one at a time, so a long
    multi-frame instance is never decoded whole)."""

    keyword: str
    first: bytes
    rest: Iterator[bytes] | None = None


def load_pixels(archive: Any, location: InstanceLocation) -> InstancePixels | None:
    """The pixel data of a stored instance (None when it has none); raises ImagingError when it cannot
    be decoded, 410 when its file is missing or damaged. Where the file's bytes are sent as they are,
    where they lie is remembered (:data:`SPANS`, by store key): next time they are read as a range,
    without parsing the file."""
    key = location.file
    span = SPANS.get(key)
    if span is not None:
        return InstancePixels(span.keyword, read_span(archive, location, span))
    with opened(archive, location) as handle:
        ds = read_header(handle)  # large values left in the file, read from the stream below
        offsets = deferred_offsets(ds)
        keyword = pixel_keyword(ds)
        if keyword is None:
            return None
        whole = native_pixel_data(ds, keyword)
        if whole is not None:
            if keyword in offsets:
                SPANS.put(key, PixelSpan(keyword, offsets[keyword], len(whole)))
            return InstancePixels(keyword, whole)
        ds[keyword]  # read now, while the stream is open; decoded frame by frame after
    frames = pixel_frames(ds)
    return InstancePixels(keyword, next(frames), frames)


class PixelDataHandler(_InstancesHandler):
    """GET .../pixeldata of a study, a series or an instance (PS3.18 10.4.1.1.6).

    One part per instance with pixel data, in the order of the series: its
    frames uncompressed and joined, with a ``Content-Location`` naming the
    instance's pixel data element as the metadata does
    (``.../instances/{uid}/bulkdata/7FE00010``, PS3.18 10.4.3.3.6). Instances
    without pixel data are left out; none at all is a 404. Parts are streamed:
    the next instance is read while one is sent, so memory stays at two
    instances. Should an instance fail after the first part is sent, the
    connection is closed before the closing delimiter: the client sees a
    broken body, never a short series that looks whole.
    """

    async def get(self, study: str, series: str | None = None, instance: str | None = None) -> None:
        self.require(Action.VIEW)
        if self.request.query_arguments:
            name = next(iter(self.request.query_arguments))
            raise bad_request(f"the Pixel Data resource takes no query parameters, got {name[:40]!r}")
        check_pixel_data_accept(self.request.headers.get("Accept", ""))
        locations = await IOLoop.current().run_in_executor(None, self.locations, study, series, instance)
        base = f"{self.base_url()}/dicom-web"
        boundary = secrets.token_hex(16)
        sent = 0
        ahead = self._read(locations, 0)
        for k, location in enumerate(locations):
            try:
                loaded = await ahead
                ahead = self._read(locations, k + 1)  # read the next one while this one is sent
                if loaded is not None:
                    await self._send(loaded, location, base, boundary, first=not sent)
                    sent += 1
            except Exception as exc:
                if not sent:
                    raise imaging_error(exc) if isinstance(exc, imaging.ImagingError) else exc from None
                self._abort(location, exc)
                return
        if not sent:
            raise ApiError(404, "no pixel data in this " + ("instance" if instance else "series" if series else "study"))
        await self.finish(closing(boundary))

    def _read(self, locations: list[InstanceLocation], k: int) -> Awaitable[InstancePixels | None]:
        """:func:`load_pixels` of ``locations[k]`` in a worker thread (None past the end)."""
        if k >= len(locations):
            done: asyncio.Future[InstancePixels | None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        location = locations[k]
        archive = self.app.archive
        pending = IOLoop.current().run_in_executor(None, load_pixels, archive, location)
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even when left behind
        return pending

    async def _send(self, loaded: InstancePixels, location: InstanceLocation, base: str, boundary: str,
                    first: bool) -> None:
        """Write one instance's part, frame after frame."""
        if first:
            self.set_header("Content-Type", f'multipart/related; type="application/octet-stream"; boundary={boundary}')
        headers = {"Content-Type": f"application/octet-stream; transfer-syntax={EXPLICIT_LE}",
                   "Content-Location": f"{base}/{pixel_data_path(location)}/bulkdata/{PIXEL_TAGS[loaded.keyword]}"}
        if loaded.rest is None:
            headers["Content-Length"] = str(len(loaded.first))
        self.write(part_head(boundary, headers))
        frame: bytes | None = loaded.first
        while frame is not None:
            self.write(frame)
            await self.flush()
            frame = None if loaded.rest is None else \
                await IOLoop.current().run_in_executor(None, next, loaded.rest, None)
        self.write(b"\r\n")

    def _abort(self, location: InstanceLocation, exc: Exception) -> None:
        """End a response whose headers are sent by closing its connection (no closing delimiter)."""
        LOGGER.warning("pixel data of %s could not be sent, closing the connection: %s", location.SOPInstanceUID, exc)
        self.request.connection.close()


def pixel_data_path(location: InstanceLocation) -> str:
    """``studies/{study}/series/{series}/instances/{instance}``, percent-encoded."""
    return (f"studies/{quote(location.StudyInstanceUID)}/series/{quote(location.SeriesInstanceUID)}/"
            f"instances/{quote(location.SOPInstanceUID)}")


def rendered_media_type(accept: str) -> str:
    """image/jpeg (default) or image/png, from the Accept header; else 406."""
    ranges = MediaRange.parse(accept)
    if not ranges:
        return "image/jpeg"
    for item in ranges:
        if item.media in ("image/jpeg", "image/png"):
            return item.media
        if item.media in ("*/*", "image/*"):
            return "image/jpeg"
    raise ApiError(406, "rendered images are sent as image/jpeg or image/png")


def viewport_of(handler: BaseHandler, key: str = "viewport") -> tuple[int, int] | None:
    raw = handler.get_query_argument(key, None)
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) < 2 or not all(whole(p.strip(), 5) for p in parts[:2]):
        raise bad_request(f"{key} must be columns,rows (whole numbers), got {raw[:40]!r}")
    columns, rows = int(parts[0]), int(parts[1])
    if not (0 < columns <= MAX_VIEWPORT and 0 < rows <= MAX_VIEWPORT):
        raise bad_request(f"{key} sides must be from 1 to {MAX_VIEWPORT}")
    return columns, rows


class RenderedHandler(_InstancesHandler):
    """GET .../instances/{i}[/frames/{n}]/rendered and .../thumbnail (10.4.1.1.4)."""

    def initialize(self, app: Any, thumbnail: bool = False) -> None:
        super().initialize(app)
        self.thumbnail = thumbnail

    async def get(self, study: str, series: str, instance: str, frames: str | None = None) -> None:
        self.require(Action.VIEW)
        media = rendered_media_type(self.request.headers.get("Accept", ""))
        index = None
        if frames is not None:
            indexes = parse_frames(frames)
            if len(indexes) != 1:
                raise bad_request("one frame at a time is rendered")
            index = indexes[0]
        window_text = self.get_query_argument("window", None)
        viewport = viewport_of(self)
        quality_text = self.get_query_argument("quality", "90")
        if not whole(quality_text, 3) or not 1 <= int(quality_text) <= 100:
            raise bad_request("quality must be a whole number from 1 to 100")

        def draw() -> bytes:
            [location] = self.locations(study, series, instance)
            source = StoredInstance(self.app.archive, location)  # the frame drawn is read alone
            try:
                window = imaging.parse_window(window_text) if window_text else None
                if self.thumbnail:
                    size = max(viewport) if viewport else 128
                    ds, at = source.frame_dataset(source.count() // 2 if index is None else index)
                    return imaging.thumbnail(ds, size=size, index=at, media_type=media)
                ds, at = source.frame_dataset(index or 0)
                return imaging.render(ds, at, window, viewport, media, int(quality_text))
            except imaging.ImagingError as exc:
                raise imaging_error(exc) from None
            finally:
                source.close()

        data = await IOLoop.current().run_in_executor(None, draw)
        self.set_header("Content-Type", media)
        await self.finish(data)


class WadoUriHandler(BaseHandler):
    """GET /wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=... (PS3.18 9)."""

    audit_action = "retrieve"

    async def get(self) -> None:
        self.require(Action.VIEW)
        args = {k: v[0].decode("utf-8", "replace") for k, v in self.request.query_arguments.items()}
        if args.get("requestType") != "WADO":
            raise bad_request("requestType must be WADO")
        uids = {}
        for key, keyword in (("studyUID", "StudyInstanceUID"), ("seriesUID", "SeriesInstanceUID"), ("objectUID", "SOPInstanceUID")):
            if not args.get(key):
                raise bad_request(f"{key} is required")
            uids[keyword] = check_uid_path(args[key], keyword)
        content_type = args.get("contentType", "image/jpeg").split(",")[0].strip().lower()
        found = await IOLoop.current().run_in_executor(
            None, lambda: self.archive.locate_instance(uids["SOPInstanceUID"])
        )
        if found is None or (found.StudyInstanceUID, found.SeriesInstanceUID) != (
            uids["StudyInstanceUID"], uids["SeriesInstanceUID"]
        ):
            raise ApiError(404, "no such object")
        location: InstanceLocation = found
        if content_type == "application/dicom":
            self.require(Action.DOWNLOAD)
            wanted = args.get("transferSyntax")
            if wanted and wanted != location.TransferSyntaxUID:
                raise ApiError(406, f"the object is kept as received, in {location.TransferSyntaxUID}")
            handle = await IOLoop.current().run_in_executor(None, open_stored, self.app.archive, location)
            with handle:  # streamed, never whole in memory
                self.set_header("Content-Type", "application/dicom")
                self.set_header("Content-Length", str(location.size))
                await write_stream(self, handle)
            await self.finish()
            return
        if content_type not in ("image/jpeg", "image/png"):
            raise ApiError(406, "contentType must be application/dicom, image/jpeg or image/png")
        frame_index = frame_number(args.get("frameNumber", "1"), "frameNumber")
        window = None
        if "windowCenter" in args or "windowWidth" in args:
            window = f"{args.get('windowCenter', '')},{args.get('windowWidth', '')}"
        viewport = None
        rows, columns = args.get("rows"), args.get("columns")
        if rows or columns:
            if not all(v is None or (whole(v, 5) and 0 < int(v) <= MAX_VIEWPORT) for v in (rows, columns)):
                raise bad_request(f"rows and columns must be whole numbers from 1 to {MAX_VIEWPORT}")
        quality = args.get("imageQuality", "90")
        if not whole(quality, 3) or not 1 <= int(quality) <= 100:
            raise bad_request("imageQuality must be a whole number from 1 to 100")

        def draw() -> bytes:
            source = StoredInstance(self.app.archive, location)  # the frame drawn is read alone
            try:
                header = source.stored.header if source.stored is not None else source.whole()
                nonlocal viewport
                if rows or columns:
                    r = int(rows) if rows else int(header.Rows)
                    c = int(columns) if columns else int(header.Columns)
                    viewport = (c, r)
                parsed = imaging.parse_window(window) if window else None
                ds, at = source.frame_dataset(frame_index)
                return imaging.render(ds, at, parsed, viewport, content_type, int(quality))
            except imaging.ImagingError as exc:
                raise imaging_error(exc) from None
            finally:
                source.close()

        data = await IOLoop.current().run_in_executor(None, draw)
        self.set_header("Content-Type", content_type)
        await self.finish(data)

