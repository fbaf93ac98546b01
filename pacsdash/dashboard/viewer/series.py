"""A series as a list of frames, decoded lazily with small LRU caches.

Multi-frame instances count as several frames: the series-wide frame index
runs over the instances in order (by (0020,0013) *Instance Number*), then
over each instance's frames.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pacsdash.dashboard.viewer.frames import Frame, estimate_frame_bytes, load_frame
from pacsdash.imaging import FrameOutOfRange, ImagingError
from pacsdash.imaging.attributes import PIXEL_KEYWORDS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: What loading a frame or a data set may raise: undecodable pixels, a missing or damaged file.
LOAD_ERRORS = (ImagingError, OSError, InvalidDicomError)
#: Frames kept decoded per series (a 512 x 512 CT frame is 512 KiB).
FRAME_CACHE_SIZE = 32
#: Data sets kept open per series (multi-frame instances are read once).
DATASET_CACHE_SIZE = 4


class LRUCache(Generic[K, V]):
    """A thread-safe least-recently-used cache of at most `maxsize` entries.

    Parameters
    ----------
    maxsize : int
        Entries kept; the least recently used one goes first. At least 1.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, int(maxsize))
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def keys(self) -> list[K]:
        """Keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: K) -> V | None:
        """The cached value, marked as just used, or ``None``."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Cache `value`, dropping the least recently used entries beyond `maxsize`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, else ``load()`` (called outside the lock) cached."""
        with self._lock:
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key]
            self.misses += 1
        value = load()
        self.put(key, value)
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class SeriesInstance:
    """One image instance of a series.

    Attributes
    ----------
    SOPInstanceUID : str
    NumberOfFrames : int
        Frames it contributes (1 for single-frame IODs).
    InstanceNumber : int or None
    Rows, Columns, SamplesPerPixel, BitsAllocated : int
        From the index or header, for size estimates (0 when unknown).
    open : callable
        Returns the full data set.
    """

    SOPInstanceUID: str
    NumberOfFrames: int
    InstanceNumber: int | None = None
    Rows: int = 0
    Columns: int = 0
    SamplesPerPixel: int = 1
    BitsAllocated: int = 16
    open: Callable[[], Dataset] = field(default=lambda: Dataset(), repr=False, compare=False)


@dataclass(frozen=True)
class FrameRef:
    """Where a series-wide frame index points.

    Attributes
    ----------
    index : int
        0-based series-wide frame index.
    instance : int
        Position of the instance in :attr:`SeriesFrames.instances`.
    SOPInstanceUID : str
    frame : int
        0-based frame within the instance.
    NumberOfFrames : int
        Frames of that instance.
    """

    index: int
    instance: int
    SOPInstanceUID: str
    frame: int
    NumberOfFrames: int


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def header_frames(ds: Dataset) -> int:
    """Frames of `ds` judged from its header, without loading deferred pixel data.

    Returns
    -------
    int
        0 without a pixel data element, else (0028,0008) *Number of Frames*
        (1 when absent or not a positive integer, PS3.3 C.7.6.6).
    """
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        return 0
    number = _int(ds.get("NumberOfFrames"), 1)
    return number if number and number > 0 else 1


def _read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def _instance_from_header(ds: Dataset, open_: Callable[[], Dataset]) -> SeriesInstance:
    return SeriesInstance(
        SOPInstanceUID=str(ds.get("SOPInstanceUID") or ""),
        NumberOfFrames=header_frames(ds),
        InstanceNumber=_int(ds.get("InstanceNumber")),
        Rows=_int(ds.get("Rows"), 0) or 0,
        Columns=_int(ds.get("Columns"), 0) or 0,
        SamplesPerPixel=_int(ds.get("SamplesPerPixel"), 1) or 1,
        BitsAllocated=_int(ds.get("BitsAllocated"), 16) or 16,
        open=open_,
    )


def _by_instance_number(instances: Sequence[SeriesInstance]) -> list[SeriesInstance]:
    return sorted(instances, key=lambda i: (i.InstanceNumber is None, i.InstanceNumber or 0))


class SeriesFrames:
    """The frames of one series, decoded on demand.

    Parameters
    ----------
    instances : iterable of SeriesInstance
        In display order; instances without frames are left out.
    SeriesInstanceUID : str, optional
        For display and cache keys.
    frame_cache : int, optional
        Decoded :class:`~pacsdash.dashboard.viewer.frames.Frame` objects kept.
    dataset_cache : int, optional
        Data sets kept in memory.
    """

    def __init__(
        self,
        instances: Iterable[SeriesInstance],
        SeriesInstanceUID: str = "",
        *,
        frame_cache: int = FRAME_CACHE_SIZE,
        dataset_cache: int = DATASET_CACHE_SIZE,
    ) -> None:
        self.SeriesInstanceUID = SeriesInstanceUID
        self.instances: tuple[SeriesInstance, ...] = tuple(i for i in instances if i.NumberOfFrames > 0)
        refs = []
        for position, instance in enumerate(self.instances):
            for frame in range(instance.NumberOfFrames):
                refs.append(FrameRef(len(refs), position, instance.SOPInstanceUID, frame, instance.NumberOfFrames))
        self.refs: tuple[FrameRef, ...] = tuple(refs)
        self.frames: LRUCache[int, Frame] = LRUCache(frame_cache)
        self.datasets: LRUCache[int, Dataset] = LRUCache(dataset_cache)

    # -- constructors ----------------------------------------------------------
    @classmethod
    def from_archive(cls, archive: Any, series_uid: str, **kwargs: Any) -> SeriesFrames:
        """The image instances of a series, ordered by Instance Number.

        Parameters
        ----------
        archive : DataSource, pacsdash.archive.Archive or pacsdash.client.Client
            Where the series is (see :mod:`pacsdash.dashboard.sources`).
        series_uid : str
            (0020,000E) *Series Instance UID*.
        **kwargs
            Passed to :class:`SeriesFrames`.
        """
        from pacsdash.archive import Level, Query
        from pacsdash.dashboard.sources import as_source

        source = as_source(archive)
        locations = source.locate(Level.SERIES, series_uid)
        fields = ["NumberOfFrames", "Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "InstanceNumber"]
        query = Query(Level.IMAGE, {"SeriesInstanceUID": series_uid}, fields)
        rows = {r["SOPInstanceUID"]: r for r in source.find(query)}
        instances = []
        for location in locations:
            row = rows.get(location.SOPInstanceUID, {})
            if not row.get("Rows"):
                continue  # no Image Pixel Module: SR, presentation state, ...
            frames = _int(row.get("NumberOfFrames"), 1) or 1
            photometric = str(row.get("PhotometricInterpretation") or "").upper()
            instances.append(SeriesInstance(
                SOPInstanceUID=location.SOPInstanceUID,
                NumberOfFrames=max(frames, 1),
                InstanceNumber=_int(row.get("InstanceNumber")),
                Rows=_int(row.get("Rows"), 0) or 0,
                Columns=_int(row.get("Columns"), 0) or 0,
                SamplesPerPixel=1 if photometric.startswith("MONOCHROME") or not photometric else 3,
                BitsAllocated=_int(row.get("BitsAllocated"), 16) or 16,
                open=partial(source.read_dataset, location),
            ))
        return cls(instances, series_uid, **kwargs)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], *, sort: bool = True, **kwargs: Any) -> SeriesFrames:
        """Part 10 files as one series (headers are read now, pixels later).

        Parameters
        ----------
        paths : iterable of path
            The files.
        sort : bool, optional
            Order by Instance Number (default) rather than as given.
        **kwargs
            Passed to :class:`SeriesFrames`.
        """
        instances = []
        series_uid = ""
        for path in map(Path, paths):
            header = pydicom.dcmread(path, defer_size=4096)
            series_uid = series_uid or str(header.get("SeriesInstanceUID") or "")
            instances.append(_instance_from_header(header, partial(_read, path)))
        return cls(_by_instance_number(instances) if sort else instances, series_uid, **kwargs)

    @classmethod
    def from_datasets(cls, datasets: Iterable[Dataset], *, sort: bool = True, **kwargs: Any) -> SeriesFrames:
        """In-memory data sets (with file meta) as one series."""
        datasets = list(datasets)
        instances = [_instance_from_header(ds, partial(_same, ds)) for ds in datasets]
        series_uid = str(datasets[0].get("SeriesInstanceUID") or "") if datasets else ""
        return cls(_by_instance_number(instances) if sort else instances, series_uid, **kwargs)

    # -- questions -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    def ref(self, index: int) -> FrameRef:
        """Where series-wide frame `index` lives.

        Raises
        ------
        pacsdash.imaging.FrameOutOfRange
            When `index` is not in ``range(len(self))``.
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.refs):
            raise FrameOutOfRange(f"frame index {index!r} is not in the series (0..{len(self.refs) - 1})")
        return self.refs[index]

    def index_of(self, sop_instance_uid: str, frame: int = 0) -> int:
        """Series-wide index of a frame of an instance.

        Raises
        ------
        KeyError
            When the instance is not an image of this series.
        """
        for ref in self.refs:
            if ref.SOPInstanceUID == sop_instance_uid and ref.frame == frame:
                return ref.index
        raise KeyError(f"frame {frame} of {sop_instance_uid} is not in the series")

    def estimated_bytes(self) -> int:
        """Bytes the whole series costs to ship, estimated from the headers."""
        return sum(
            estimate_frame_bytes(i.Rows, i.Columns, i.SamplesPerPixel, i.BitsAllocated) * i.NumberOfFrames
            for i in self.instances
        )

    @property
    def frame_time(self) -> float | None:
        """(0018,1063) *Frame Time* in ms of the first multi-frame instance, if any."""
        for position, instance in enumerate(self.instances):
            if instance.NumberOfFrames > 1:
                value = self.dataset_at(position).get("FrameTime")
                try:
                    number = float(value) if value not in (None, "") else None
                except (TypeError, ValueError):
                    return None
                return number if number and number > 0 else None
        return None

    # -- loading ---------------------------------------------------------------
    def dataset_at(self, position: int) -> Dataset:
        """The data set of :attr:`instances` [`position`], cached."""
        return self.datasets.get_or_load(position, self.instances[position].open)

    def dataset(self, index: int) -> Dataset:
        """The data set holding series-wide frame `index`."""
        return self.dataset_at(self.ref(index).instance)

    def frame(self, index: int) -> Frame:
        """Series-wide frame `index`, decoded (cached).

        Raises
        ------
        pacsdash.imaging.ImagingError
            When the frame cannot be decoded (see :func:`load_frame`).
        """
        ref = self.ref(index)
        return self.frames.get_or_load(index, lambda: load_frame(self.dataset_at(ref.instance), ref.frame))


def _same(ds: Dataset) -> Dataset:
    return ds

