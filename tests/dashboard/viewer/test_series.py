"""The series loader: frames of instances, multi-frame counted, decoded lazily, cached."""

from __future__ import annotations

import numpy as np
import pytest

from pacsdash.dashboard.viewer.series import LRUCache, SeriesFrames
from pacsdash.imaging import FrameOutOfRange
from tests.dashboard.viewer.conftest import CINE_FRAMES, CT_SLICES
from tests.imaging.samples import PIXEL_SAMPLES, VALID, manifest


@pytest.mark.parametrize("sample", [s for s in PIXEL_SAMPLES if s.frames > 1], ids=str)
def test_multi_frame_files_count_as_several_frames(sample):
    series = SeriesFrames.from_files([VALID / sample.file])
    assert len(series) == sample.frames
    assert [ref.frame for ref in series.refs] == list(range(sample.frames))
    last = series.frame(sample.frames - 1)
    assert last.frame == sample.frames - 1


def test_a_folder_of_samples_counts_every_frame_and_skips_non_images():
    series = SeriesFrames.from_files(sorted(VALID.glob("*.dcm")), sort=False)
    assert len(series.instances) == len(PIXEL_SAMPLES)
    assert len(series) == sum(s.frames for s in PIXEL_SAMPLES)
    assert len(manifest()) > len(PIXEL_SAMPLES)  # SR, RT Plan, ECG were left out


def test_archived_series_in_instance_number_order(viewer_study):
    series = SeriesFrames.from_archive(viewer_study.archive, viewer_study.ct_series_uid)
    assert len(series) == CT_SLICES
    assert [i.InstanceNumber for i in series.instances] == list(range(1, CT_SLICES + 1))
    expected = viewer_study.ct[6]
    frame = series.frame(6)
    assert frame.SOPInstanceUID == expected.SOPInstanceUID
    np.testing.assert_array_equal(frame.pixels, expected.pixel_array.astype(np.int32) - 1024)
    assert series.index_of(expected.SOPInstanceUID) == 6
    with pytest.raises(FrameOutOfRange):
        series.frame(CT_SLICES)


def test_archived_multi_frame_series(viewer_study):
    series = SeriesFrames.from_archive(viewer_study.archive, viewer_study.cine_series_uid)
    assert len(series) == CINE_FRAMES and len(series.instances) == 1
    assert series.frame_time == 100.0
    assert series.frame(CINE_FRAMES - 1).pixels.shape == (64, 64, 3)
    assert series.estimated_bytes() == CINE_FRAMES * 64 * 64 * 3


def test_lru_cache_is_bounded_and_keeps_the_recently_used():
    cache: LRUCache[int, str] = LRUCache(3)
    for key in range(5):
        cache.put(key, str(key))
    assert len(cache) == 3 and cache.keys() == [2, 3, 4]
    assert cache.get(2) == "2"  # now the most recent
    cache.put(5, "5")
    assert cache.keys() == [4, 2, 5]
    assert cache.get_or_load(4, lambda: "loaded") == "4"
    assert cache.get_or_load(9, lambda: "loaded") == "loaded"
    assert len(cache) == 3


def test_series_frame_cache_is_bounded(viewer_study):
    series = SeriesFrames.from_archive(viewer_study.archive, viewer_study.ct_series_uid, frame_cache=4, dataset_cache=2)
    for index in range(CT_SLICES):
        series.frame(index)
    assert len(series.frames) == 4 and sorted(series.frames.keys()) == [16, 17, 18, 19]
    assert len(series.datasets) <= 2
    misses = series.frames.misses
    series.frame(19)
    assert series.frames.misses == misses  # served from the cache
    series.frame(0)
    assert series.frames.misses == misses + 1
