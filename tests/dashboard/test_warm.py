"""The start-up warm-up of the dashboard, and what opening a study no longer builds before it is used."""

from __future__ import annotations

import numpy as np
import pytest

from pacsdash.access import Role
from pacsdash.dashboard import warm
from pacsdash.dashboard.overview import Overview
from pacsdash.dashboard.study import StudyPanel
from pacsdash.dashboard.viewer.series import SeriesFrames
from tests.dashboard.viewer.conftest import make_viewer_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    study = make_viewer_study(tmp_path_factory.mktemp("warm") / "home")
    yield study
    study.archive.close()


def test_the_warm_up_image_is_a_ct_slice_in_hounsfield_units():
    frame = SeriesFrames.from_datasets([warm.tiny_ct()]).frame(0)
    assert frame.pixels.shape == (warm.SIZE, warm.SIZE)
    assert frame.minimum == -1024 and frame.maximum == -1024 + 8 * (warm.SIZE * warm.SIZE - 1)
    assert (frame.default_window.center, frame.default_window.width) == (40, 400)
    assert np.array_equal(frame.pixels.ravel()[:3], [-1024, -1016, -1008])


def test_warming_runs_once_in_a_background_thread(monkeypatch):
    calls = []
    monkeypatch.setattr(warm, "_started", type(warm._started)())
    monkeypatch.setattr(warm, "warm", lambda: calls.append(1) or 0.0)
    thread = warm.start_warming()
    assert thread is not None and thread.daemon
    thread.join(10)
    assert warm.start_warming() is None and calls == [1]


def test_warming_never_raises(monkeypatch, caplog):
    monkeypatch.setattr(warm, "warm_pixels", lambda ds: 1 / 0)
    assert warm.warm() >= 0
    assert "warm-up failed" in caplog.text


def test_the_real_warm_up_completes_without_the_archive():
    warm.warm_pixels(warm.tiny_ct())
    warm.warm_models(warm.tiny_ct())


def test_the_anonymization_section_is_built_only_when_opened(study):
    panel = StudyPanel(archive=study.archive, role=Role.ADMIN, study_uid=study.study_uid)
    assert panel._research_parts is None and panel._research_slot.objects == []
    panel._research_toggle.value = True
    assert panel._research.visible and panel._research_slot.objects == [panel._research]
    assert panel._anonymize.study_uid == panel._compare.study_uid == study.study_uid
    panel.study_uid = ""
    assert not panel._research.visible and panel._anonymize.study_uid == ""


def test_the_overview_reads_the_archive_once_shown(study):
    overview = Overview(archive=study.archive, shown=False)
    assert overview._body.objects == []
    overview.refresh()  # an arrival before it is shown: still nothing read
    assert overview._body.objects == []
    overview.shown = True
    assert len(overview._body.objects) == 2
