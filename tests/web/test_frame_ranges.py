"""One frame of a stored multi-frame instance is read alone (issue 16): the
header, then that frame as a range (native) or the offset table and that
frame's fragments (encapsulated), never the whole file, on the local store
and on S3; and it is byte for byte what pydicom gives of the whole file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames, get_frame
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from pacsdash import imaging
from pacsdash.archive import Archive
from pacsdash.archive.attributes import Level
from pacsdash.archive.store import LocalStore
from pacsdash.web.pixels import EXPLICIT_LE, StoredInstance, frame_part
from tests.imaging.samples import VALID

FRAMES = 100


class CountingFile(io.FileIO):
    """A stored file that counts the bytes read from it (under any buffering)."""

    def __init__(self, path: Path, counter: CountingStore) -> None:
        super().__init__(path, "rb")
        self.counter = counter

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.counter.read += count or 0
        return count

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.counter.read += len(data or b"")
        return data

    def readall(self) -> bytes:
        return self.read(-1)


class CountingStore(LocalStore):
    """The local store, counting the bytes its streams and ranges give."""

    read = 0

    def open(self, key: str):
        return io.BufferedReader(CountingFile(self._path(key), self))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        data = super().read_range(key, offset, length)
        self.read += len(data)
        return data


def _dataset(syntax, frames: int = FRAMES, size: int = 128) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = generate_uid(), generate_uid(), "RANGES", "OT"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.NumberOfFrames = 1, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    pixels = np.random.default_rng(16).integers(0, 4096, (frames, size, size), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def _save(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian)
    return buffer.getvalue()


def native(syntax=ExplicitVRLittleEndian) -> bytes:
    return _save(_dataset(syntax))


def rle(offset_table: bool = True) -> bytes:
    ds = _dataset(ExplicitVRLittleEndian)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    if not offset_table:
        ds.PixelData = encapsulate(list(generate_frames(ds.PixelData, number_of_frames=FRAMES)), has_bot=False)
    return _save(ds)


def jpeg_baseline() -> bytes:
    """The 30-frame JPEG baseline sample, 300 frames of it (with its Basic Offset Table)."""
    ds = pydicom.dcmread(VALID / "examples_ybr_color.dcm")
    frames = list(generate_frames(ds.PixelData, number_of_frames=30)) * 10
    ds.PixelData, ds.NumberOfFrames = encapsulate(frames, has_bot=True), len(frames)
    return _save(ds)


def archived(store, tmp_path: Path, raw: bytes):
    from pacsdash.archive.index import DuckDBIndex

    archive = Archive(store, DuckDBIndex(tmp_path / "index.duckdb"))
    result = archive.store_bytes(raw, origin="test")
    assert result.SOPInstanceUID, result
    archive.wait_indexed()
    [location] = archive.locate(Level.IMAGE)
    return archive, location


CASES = {"native explicit": native, "native implicit": lambda: native(ImplicitVRLittleEndian),
         "RLE": rle, "JPEG baseline": jpeg_baseline}


@pytest.mark.parametrize("case", CASES)
def test_one_frame_is_read_alone_and_is_pydicoms_frame(case, tmp_path):
    raw = CASES[case]()
    full = pydicom.dcmread(io.BytesIO(raw))
    syntax = str(full.file_meta.TransferSyntaxUID)
    count = int(full.NumberOfFrames)
    store = CountingStore(tmp_path / "store")
    archive, location = archived(store, tmp_path, raw)
    with archive:
        for index in (0, count // 2, count - 1):
            store.read = 0
            source = StoredInstance(archive, location)
            try:
                assert source.count() == count
                if full.file_meta.TransferSyntaxUID.is_encapsulated:
                    expected = get_frame(full.PixelData, index, number_of_frames=count)
                    assert frame_part(source, syntax, index) == expected  # as stored
                    frame_length = len(expected)
                else:
                    frame_length = imaging.frame_size(full)
                assert frame_part(source, EXPLICIT_LE, index) == imaging.frame_bytes(full, index)
                ds, at = source.frame_dataset(index)
                assert imaging.render(ds, at, media_type="image/png") == \
                    imaging.render(full, index, media_type="image/png")
            finally:
                source.close()
            # the header (a few KiB, buffered), the frame (asked for up to three times here), nothing else
            assert store.read < 64 * 1024 + 3 * frame_length, (index, store.read, len(raw))
            assert store.read < len(raw) / 10, (index, store.read, len(raw))


def test_without_an_offset_table_the_frame_is_still_pydicoms(tmp_path):
    """No Basic Offset Table: the fragment headers are walked (through the stream's buffer), the frame read."""
    raw = rle(offset_table=False)
    full = pydicom.dcmread(io.BytesIO(raw))
    store = CountingStore(tmp_path / "store")
    archive, location = archived(store, tmp_path, raw)
    with archive:
        source = StoredInstance(archive, location)
        try:
            for index in (0, 57, FRAMES - 1):
                assert frame_part(source, RLELossless, index) == get_frame(full.PixelData, index,
                                                                           number_of_frames=FRAMES)
                assert frame_part(source, EXPLICIT_LE, index) == imaging.frame_bytes(full, index)
        finally:
            source.close()


def test_what_is_not_read_alone_is_read_whole_as_before(tmp_path):
    """A big endian file: no ranges, the same bytes as the whole read gives."""
    raw = (VALID / "MR_small_bigendian.uidfix.dcm").read_bytes()
    full = pydicom.dcmread(io.BytesIO(raw))
    archive, location = archived(CountingStore(tmp_path / "store"), tmp_path, raw)
    with archive:
        source = StoredInstance(archive, location)
        assert source.stored is None and source.count() == 1
        assert frame_part(source, EXPLICIT_LE, 0) == imaging.frame_bytes(full, 0)
        ds, at = source.frame_dataset(1)
        with pytest.raises(imaging.FrameOutOfRange):
            imaging.frame_bytes(ds, at)


@pytest.mark.parametrize("case", ["native explicit", "RLE"])
def test_a_frame_on_s3_costs_a_few_ranged_gets(case, s3_bucket, tmp_path):
    from pacsdash.archive.s3store import READ_AHEAD
    from tests.archive.test_s3store import CountingClient, s3_store

    raw = CASES[case]()
    full = pydicom.dcmread(io.BytesIO(raw))
    store = s3_store(s3_bucket)
    archive, location = archived(store, tmp_path, raw)
    with archive:
        store.client = counting = CountingClient(store.client)
        index = FRAMES // 2 + 7
        source = StoredInstance(archive, location)
        try:
            data = frame_part(source, EXPLICIT_LE, index)
        finally:
            source.close()
        assert data == imaging.frame_bytes(full, index)
    assert "whole" not in counting.gets
    fetched = 0
    for item in counting.gets:
        first, last = item.removeprefix("bytes=").split("-")
        fetched += min(int(last), len(raw) - 1) - int(first) + 1
    # the header's read-ahead, then the frame (native: one exact range; RLE: its offset table was in the
    # header's read-ahead, the frame a read-ahead of its own)
    assert len(counting.gets) <= 3, counting.gets
    assert fetched <= 2 * READ_AHEAD + len(data), (fetched, len(raw))
    assert fetched < len(raw) / 4, (fetched, len(raw))
