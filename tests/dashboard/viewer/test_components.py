"""Component state without a browser: SeriesViewer, FrameCanvas and its frame protocol."""

from __future__ import annotations

import numpy as np
import panel as pn
import pytest

from pacsdash.dashboard.viewer import FrameCanvas, SeriesFrames, SeriesViewer
from tests.dashboard.viewer.conftest import CINE_FRAMES, CT_SIZE, CT_SLICES, make_viewer_study


def test_viewer_opens_the_first_image_series_of_the_study(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    assert viewer.series_uid == viewer_study.ct_series_uid  # not the report, numbered before it
    labels = list(viewer.series_options)
    assert labels[0].startswith("1 · SR") and labels[1].startswith("2 · CT · Axial 5mm (20)")
    assert viewer.series_options[labels[2]] == viewer_study.cine_series_uid
    assert viewer._series_select.value == viewer_study.ct_series_uid
    assert len(viewer.series) == CT_SLICES and viewer.canvas.frame_count == CT_SLICES
    assert (viewer.window_center, viewer.window_width) == (40.0, 400.0)  # the dataset's first window
    assert [p["explanation"] for p in viewer.presets] == ["Soft tissue", "Lung", "Bone", "Brain"]
    assert viewer.frame_index == 0 and viewer.current_instance == viewer_study.ct[0].SOPInstanceUID


def test_moving_the_frame_index_both_ways(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    viewer.frame_index = 7
    assert viewer.canvas.frame_index == 7
    assert viewer._frame_slider.value == 8  # 1-based for people
    assert viewer.current_instance == viewer_study.ct[7].SOPInstanceUID
    assert "image 8 / 20" in viewer._info.object
    viewer.canvas.frame_index = 3  # as the browser does on ArrowDown
    assert viewer.frame_index == 3 and viewer._frame_slider.value == 4
    viewer._frame_slider.value = 20
    assert viewer.frame_index == 19 and viewer.canvas.frame_index == 19


def test_presets_and_window_sliders_follow_each_other(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    window = viewer.apply_preset("Lung")
    assert (window.center, window.width) == (-600.0, 1500.0)
    assert (viewer.window_center, viewer.window_width) == (-600.0, 1500.0)
    assert (viewer.canvas.window_center, viewer.canvas.window_width) == (-600.0, 1500.0)
    assert (viewer._center.value, viewer._width.value) == (-600.0, 1500.0)
    viewer.apply_preset(2)
    assert (viewer.window_center, viewer.window_width) == (400.0, 1800.0)
    viewer._presets.objects[3].clicks += 1  # the "4 Brain" button
    assert (viewer.window_center, viewer.window_width) == (40.0, 80.0)
    viewer.canvas.param.update(window_center=123.0, window_width=321.0)  # a drag in the browser
    assert (viewer.window_center, viewer.window_width) == (123.0, 321.0)
    assert viewer._width.value == 321.0
    viewer._center.value = -50.0
    assert viewer.canvas.window_center == -50.0
    with pytest.raises(KeyError):
        viewer.apply_preset("no such preset")


def test_selecting_the_cine_series(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    viewer.frame_index = 5
    key = viewer.canvas.series_key
    viewer._series_select.value = viewer_study.cine_series_uid
    assert viewer.series_uid == viewer_study.cine_series_uid
    assert len(viewer.series) == CINE_FRAMES and viewer.canvas.frame_count == CINE_FRAMES
    assert viewer.frame_index == 0 and viewer.canvas.series_key != key
    assert viewer.canvas.fps == 10.0  # (0018,1063) Frame Time 100 ms
    assert viewer.presets == []  # colour: nothing to window
    viewer.frame_index = CINE_FRAMES - 1
    assert "frame 12 / 12" in viewer._info.object


def test_a_series_without_images_shows_a_message(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    report = next(uid for label, uid in viewer.series_options.items() if "SR" in label)
    viewer.series_uid = report
    assert len(viewer.series) == 0 and viewer.canvas.frame_count == 0
    assert "no image" in viewer.canvas.message and "no image" in viewer._info.object
    viewer.study_uid = ""
    assert viewer.series_uid == "" and viewer.series is None and viewer.series_options == {}


def test_viewer_from_a_series_uid_alone(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, series_uid=viewer_study.cine_series_uid)
    assert viewer.study_uid == viewer_study.study_uid
    assert viewer.series_uid == viewer_study.cine_series_uid


def test_viewer_escapes_user_text(tmp_path):
    study = make_viewer_study(tmp_path / "hostile", patient_name="<script>alert(1)</script>^X")
    try:
        viewer = SeriesViewer(archive=study.archive, study_uid=study.study_uid)
        assert "&lt;script&gt;" in viewer._info.object and "<script>" not in viewer._info.object
        assert viewer.tags.dataset is None  # attributes are read only when the card is opened
        viewer._tags_card.collapsed = False
        assert "&lt;script&gt;alert(1)&lt;/script&gt;^X" in viewer.tags.html
        assert "<script>" not in viewer.tags.html
        viewer.frame_index = 4
        assert viewer.tags.dataset.SOPInstanceUID == study.ct[4].SOPInstanceUID
    finally:
        study.archive.close()


def test_viewer_renders_as_panel_models(viewer_study):
    viewer = SeriesViewer(archive=viewer_study.archive, study_uid=viewer_study.study_uid)
    root = pn.panel(viewer).get_root()
    esm = [m for m in root.references() if type(m).__name__ == "ReactiveESM" or hasattr(m, "esm")]
    assert esm and "export function render" in esm[0].esm
    assert "import " not in esm[0].esm and "http" not in esm[0].esm  # inline, works offline
    assert esm[0].data.frame_count == CT_SLICES


def collect(canvas: FrameCanvas) -> list[dict]:
    sent: list[dict] = []
    canvas._send_msg = sent.append  # type: ignore[method-assign]
    return sent


def test_canvas_answers_a_wish_list_with_raw_frames(viewer_study):
    canvas = FrameCanvas()
    canvas.show_series(SeriesFrames.from_archive(viewer_study.archive, viewer_study.ct_series_uid))
    sent = collect(canvas)
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [4, 0, 19, 99, -1, "x", True]})
    assert [(m["type"], m["index"]) for m in sent] == [("frame", 4), ("frame", 0), ("frame", 19)]
    message = sent[0]
    assert message["series_key"] == canvas.series_key and message["dtype"] == "int16"
    assert len(message["pixels"]) == CT_SIZE * CT_SIZE * 2
    values = np.frombuffer(message["pixels"], dtype="<i2").reshape(CT_SIZE, CT_SIZE)
    np.testing.assert_array_equal(values, viewer_study.ct[4].pixel_array.astype(np.int32) - 1024)
    assert message["windows"][1] == {"center": -600.0, "width": 1500.0, "explanation": "LUNG", "function": "linear"}
    # frames already sent are not sent twice, unless the browser dropped them or is a new view
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [4, 5]})
    assert [m["index"] for m in sent[3:]] == [5]
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [4, 6], "evicted": [4]})
    assert [m["index"] for m in sent[4:]] == [4, 6]
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [0, 1], "reset": True})
    assert [m["index"] for m in sent[6:]] == [0, 1]
    canvas._handle_msg({"type": "need", "series_key": "old", "indices": [7]})  # from before a series change
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": "7"})
    assert len(sent) == 8


def test_canvas_reports_frames_it_cannot_decode(viewer_study):
    canvas = FrameCanvas()
    series = SeriesFrames.from_archive(viewer_study.archive, viewer_study.ct_series_uid)
    broken = series.dataset_at(2)
    del broken.PixelData
    canvas.show_series(series)
    sent = collect(canvas)
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [2]})
    assert sent[0]["type"] == "error" and sent[0]["index"] == 2 and "Pixel Data" in sent[0]["message"]
    from pacsdash.archive import Level

    [location] = viewer_study.archive.locate(Level.IMAGE, viewer_study.ct[9].SOPInstanceUID)
    viewer_study.archive.local_path(location).unlink()  # a file gone missing under the index
    canvas._handle_msg({"type": "need", "series_key": canvas.series_key, "indices": [9, 10]})
    assert [(m["type"], m["index"]) for m in sent[1:]] == [("error", 9), ("frame", 10)]


def test_canvas_reset_returns_to_the_default_window(viewer_study):
    canvas = FrameCanvas()
    canvas.show_series(SeriesFrames.from_archive(viewer_study.archive, viewer_study.ct_series_uid))
    sent = collect(canvas)
    canvas.apply_preset("Bone")
    assert (canvas.window_center, canvas.window_width) == (400.0, 1800.0)
    canvas.reset_view()
    assert (canvas.window_center, canvas.window_width) == (40.0, 400.0)
    assert sent == [{"type": "reset", "window": False}]


def test_empty_series_shows_a_message():
    canvas = FrameCanvas()
    canvas.show_series(SeriesFrames([]))
    assert canvas.frame_count == 0 and "no image" in canvas.message
