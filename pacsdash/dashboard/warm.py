"""Warm what the first dashboard session needs, once, right after the server starts.

The first study opened after a start used to pay for imports (the viewer, its
canvas, the attribute browser), the first pixel decode and encode (pydicom's
pixel handlers, NumPy paths), the first thumbnail (Pillow's JPEG encoder) and
the first Bokeh models of the study panel's widgets (Tabulator, the canvas's
ES module, sliders). :func:`start_warming` does all of that on a tiny
synthetic CT image in a daemon thread, so the listeners and ``/api/health``
never wait for it; nothing of the archive is read or written.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)
#: Side of the synthetic image, pixels.
SIZE = 16
_started = threading.Event()


def tiny_ct() -> Any:
    """A 16 x 16 CT slice (int16, rescaled to HU, with a window) with file meta, in memory."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.InstanceNumber = "CT", 1
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = (np.arange(SIZE * SIZE, dtype=np.int16) * 8).reshape(SIZE, SIZE).tobytes()
    return ds


def warm_pixels(ds: Any) -> None:
    """Decode, window and ship one frame the viewer's way; render a thumbnail."""
    from pacsdash.dashboard.viewer.series import SeriesFrames
    from pacsdash.imaging import thumbnail

    frames = SeriesFrames.from_datasets([ds])
    frames.frame(0).to_message(0)
    thumbnail(ds, size=64)


def warm_models(ds: Any) -> None:
    """Build (and drop) the Bokeh models of a viewer and a series list, as a study panel shows them."""
    from bokeh.document import Document

    import panel as pn
    from pacsdash.dashboard.series_list import SeriesList
    from pacsdash.dashboard.viewer.series import SeriesFrames
    from pacsdash.dashboard.viewer.viewer import SeriesViewer
    from pacsdash.dashboard import research, study  # noqa: F401 - imported for the first study panel

    viewer = SeriesViewer()
    viewer.canvas.show_series(SeriesFrames.from_datasets([ds]))
    layout = pn.Row(SeriesList(), viewer, pn.widgets.Toggle(label="warm"))
    document = Document()
    layout.get_root(document)
    layout._cleanup(document.roots[0] if document.roots else None)  # noqa: SLF001 - forget the throwaway models


def warm() -> float:
    """Warm everything; seconds it took. Failures are logged, never raised."""
    started = time.perf_counter()
    try:
        ds = tiny_ct()
        warm_pixels(ds)
        warm_models(ds)
    except Exception:  # a warm-up must never take the server down
        LOGGER.warning("dashboard warm-up failed (the first study opened will be slower)", exc_info=True)
    return time.perf_counter() - started


def start_warming() -> threading.Thread | None:
    """Warm in a daemon thread (once per process); the thread, or None when already started."""
    if _started.is_set():
        return None
    _started.set()

    def run() -> None:
        LOGGER.info("dashboard warmed in %.2f s", warm())

    thread = threading.Thread(target=run, name="pacsdash-dashboard-warm", daemon=True)
    thread.start()
    return thread
