"""The pixel budget: a small file declaring a huge frame is refused before
decoding, and thumbnails of large frames do their arithmetic small (float32)."""

from __future__ import annotations

import io
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from pacsdash import imaging
from pacsdash.imaging.decoding import MAX_FRAME_SAMPLES
from pacsdash.imaging.rendering import decimation


def jpeg_instance(side: int) -> Dataset:
    """A Secondary Capture whose one frame is a JPEG of side x side, a left-to-right ramp."""
    buffer = io.BytesIO()
    ramp = np.tile(np.linspace(0, 255, side).astype(np.uint8), (side, 1))  # dark left, bright right
    Image.fromarray(ramp).save(buffer, "JPEG", quality=50)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    return ds


def test_a_small_jpeg_declaring_8192_squared_is_refused_before_decoding():
    ds = jpeg_instance(8192)
    assert len(ds.PixelData) < 1_000_000  # the attack: well under a megabyte on the wire
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(imaging.OverBudget, match="8192 x 8192"):
        imaging.thumbnail(ds)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse it"
    assert seconds < 5  # generous: the point is that nothing was decoded
    assert imaging.OverBudget.http_status == 406
    with pytest.raises(imaging.OverBudget):
        imaging.decode_frame(ds)


def test_the_largest_frame_in_budget_is_still_rendered():
    side = 2048
    assert side * side <= MAX_FRAME_SAMPLES
    thumb = np.asarray(Image.open(io.BytesIO(imaging.thumbnail(jpeg_instance(side), media_type="image/png"))))
    assert thumb.shape == (128, 128)
    expected = np.linspace(0, 255, 128)  # the ramp, through windowing and resampling
    assert np.abs(thumb.mean(axis=0) - expected).max() < 6


def test_thumbnails_of_large_frames_work_on_every_nth_pixel():
    assert decimation(512, 512, (512, 512)) == 1  # shown at full size: every pixel
    assert decimation(512, 512, (256, 256)) == 1  # halved: the resampling filter does it
    assert decimation(4096, 4096, (128, 128)) == 16  # 256 x 256 left for the filter
    assert decimation(4096, 1024, (128, 32)) == 16
    assert decimation(100, 100, (0, 0)) == 50


def test_display_arithmetic_is_float32():
    from pacsdash.imaging.display import modality_lut

    ds = jpeg_instance(64)
    values = modality_lut(ds, np.zeros((64, 64), dtype=np.uint16))
    assert values.dtype == np.float32
