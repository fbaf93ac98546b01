"""The widgets a notebook user is shown, on a DICOMweb server that is running:
pacsdash (whose index the server holds locked) and Debian's Orthanc, loaded
with the same sample files. No browser: the Python side of each component."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import panel as pn
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from PIL import Image
from pydicom import dcmread

from pacsdash.archive import Archive
from pacsdash.dashboard.overview import Overview
from pacsdash.dashboard.series_list import middle_instances
from pacsdash.dashboard.sources import DicomWebSource, as_source
from pacsdash.dashboard.viewer.viewer import NON_IMAGE_MODALITIES
from pacsdash.widgets import Explorer, SeriesViewer
from tests.helpers import VALID
from tests.widgets.conftest import Server, studies_of

#: The study searched for by name: CompressedSamples^MR1, 7 instances of one MR
#: series in as many transfer syntaxes.
MR_NAME = "compressed*mr1"
SR_FILE = "test-SR.dcm"
THUMBNAIL_SRC = re.compile(r'<img class="pd-thumb"[^>]* src="(data:image/jpeg;base64,[A-Za-z0-9+/=]+)"')
NO_IMAGE_BOX = re.compile(r'^<div class="pd-thumb-none">([^<]*)</div>$')


def sample(name: str) -> Path:
    return next(p for p in VALID if p.name == name)


def uid_of(name: str, keyword: str = "StudyInstanceUID") -> str:
    return str(dcmread(sample(name), stop_before_pixels=True)[keyword].value)


def files_by_sop(files: list[Path]) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


def modality_values(path: Path, slope: float, intercept: float) -> np.ndarray:
    """What the viewer must ship for a grayscale frame: pydicom's stored values through the linear Modality LUT."""
    return dcmread(path).pixel_array.astype(np.float64) * slope + intercept


def thumbnail_jpeg(cell: str) -> Image.Image:
    """The image of a series-list thumbnail cell that must be a data: URI."""
    found = THUMBNAIL_SRC.search(cell)
    assert found, f"not a data: URI thumbnail: {cell[:120]}"
    image = Image.open(io.BytesIO(base64.b64decode(found.group(1).split(",", 1)[1])))
    image.load()
    return image


def as_notebook_shows(component) -> list:
    """The Bokeh models a notebook cell builds to show ``component``."""
    models = list(pn.panel(component).get_root().references())
    assert models, f"{type(component).__name__} built no models"
    return models


# -- the viewer on its own ---------------------------------------------------------------------------------------
def test_pacsdash_holds_its_index_locked_while_it_serves(pacsdash_server):
    """The case that used to fail: a notebook cannot open the archive, only ask the server."""
    home = pacsdash_server.process.home
    with pytest.raises(Exception, match="already running|lock|Conflicting|Could not set lock"):
        Archive.open_home(home / "store", home / "index.duckdb")


@pytest.mark.parametrize("how", ["connect", "DICOMwebClient"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_series_viewer_shows_the_stored_modality_values(server: Server, how: str, name: str):
    """SeriesViewer(archive=connect(...) or DICOMwebClient(...), study_uid=X): every frame of the
    series equals pydicom's pixel_array of the file it came from, through the frame's Modality LUT."""
    if how == "connect":
        archive = server.client()
    else:
        session = create_session_from_user_pass(*server.auth) if server.auth else None
        archive = DICOMwebClient(server.url, session=session)
    original = dcmread(sample(name), stop_before_pixels=True)
    viewer = SeriesViewer(archive=archive, study_uid=original.StudyInstanceUID)
    assert viewer.series_uid == original.SeriesInstanceUID
    assert list(viewer.series_options.values()) == [original.SeriesInstanceUID]
    files = studies_of(server.files)[original.StudyInstanceUID]
    assert len(viewer.series) == len(files)  # single-frame samples: one frame per file
    by_sop = files_by_sop(files)
    for index in range(len(viewer.series)):
        frame = viewer.series.frame(index)
        path = by_sop[frame.SOPInstanceUID]
        stored = dcmread(path, stop_before_pixels=True)
        assert (frame.RescaleSlope, frame.RescaleIntercept) == (float(stored.get("RescaleSlope", 1)),
                                                                 float(stored.get("RescaleIntercept", 0)))
        expected = modality_values(path, frame.RescaleSlope, frame.RescaleIntercept)
        assert frame.pixels.shape == expected.shape, path.name
        assert np.array_equal(frame.pixels.astype(np.float64), expected), path.name
    first = viewer.series.frame(0)
    assert viewer.current_instance == first.SOPInstanceUID
    assert viewer.canvas.frame_count == len(files) and not viewer.canvas.message
    assert "image 1 / " in viewer._info.object  # noqa: SLF001 - the caption a user reads
    as_notebook_shows(viewer)


def test_series_viewer_of_a_report_says_there_is_no_image(server: Server):
    viewer = SeriesViewer(archive=server.client(), study_uid=uid_of(SR_FILE))
    assert viewer.series_uid == uid_of(SR_FILE, "SeriesInstanceUID")
    assert len(viewer.series) == 0
    assert "no image" in viewer.canvas.message


# -- the Explorer ------------------------------------------------------------------------------------------------
def renders(server: Server, study: str, series: str, instance: str) -> bool:
    """Whether the server renders the instance as a 64-pixel JPEG (asked as Orthanc 1.10.1 understands)."""
    url = (f"{server.url}/studies/{study}/series/{series}/instances/{instance}/rendered?viewport=64,64")
    response = requests.get(url, headers={"Accept": "image/jpeg"}, auth=server.auth, timeout=30)
    return response.status_code == 200


def check_series_list(explorer: Explorer, server: Server, study_uid: str) -> int:
    """One row per series of the study: thumbnail, modality, instance count. The thumbnail is a
    data: URI of the server's rendered image, or a box naming the modality for a series without
    images (or whose image the server cannot render: Orthanc 1.10.1 cannot decode JPEG 2000).
    Returns how many thumbnails are images."""
    files = studies_of(server.files)[study_uid]
    series: dict[str, list[Path]] = {}
    for path in files:
        series.setdefault(str(dcmread(path, stop_before_pixels=True).SeriesInstanceUID), []).append(path)
    table = explorer.series.table.value
    assert sorted(table["SeriesInstanceUID"]) == sorted(series)
    middles = middle_instances(explorer.client, study_uid)
    images = 0
    for _, row in table.iterrows():
        uid = row["SeriesInstanceUID"]
        first = dcmread(series[uid][0], stop_before_pixels=True)
        modality = str(first.get("Modality") or "")
        assert row["Modality"] == modality
        assert row["Instances"] == str(len(series[uid]))
        has_image = modality.upper() not in NON_IMAGE_MODALITIES and "Rows" in first
        if has_image and server.name == "pacsdash":
            assert uid in middles
        if has_image and uid in middles and renders(server, study_uid, uid, middles[uid]):
            image = thumbnail_jpeg(row["Thumbnail"])
            assert image.format == "JPEG" and 0 < max(image.size) <= 64, (image.format, image.size)
            images += 1
        else:
            box = NO_IMAGE_BOX.match(row["Thumbnail"])
            assert box and box.group(1) == (modality or "no image"), row["Thumbnail"]
    return images


def test_explorer_searches_opens_a_study_and_shows_a_series(server: Server):
    explorer = Explorer(server.widget_client())
    assert isinstance(as_source(explorer.client), DicomWebSource)
    studies = studies_of(server.files)
    assert explorer.search.total == len(studies)
    assert set(explorer.search._table.value["StudyInstanceUID"]) <= set(studies)  # noqa: SLF001 - the rows shown

    # a report: its series has no thumbnail and nothing to view
    explorer.search.patient_name = "test*"
    assert explorer.search.total == 1
    explorer.search.open_row(0)
    assert explorer.study_uid == uid_of(SR_FILE)
    check_series_list(explorer, server, uid_of(SR_FILE))
    assert "no image" in explorer.viewer.canvas.message

    # a CT study, found by name as people type it: a thumbnail both servers render
    explorer.search.patient_name = "compressed*ct1"
    assert explorer.search.total == 1
    explorer.search.open_row(0)
    assert explorer.study_uid == uid_of("CT_small.dcm")
    assert check_series_list(explorer, server, uid_of("CT_small.dcm")) == 1
    assert explorer.viewer.series_uid == uid_of("CT_small.dcm", "SeriesInstanceUID")

    # the MR study
    explorer.search.patient_name = MR_NAME
    mr_study = uid_of("MR_small.dcm")
    assert explorer.search.total == 1
    assert list(explorer.search._table.value["StudyInstanceUID"]) == [mr_study]  # noqa: SLF001
    assert explorer.search._table.value["Patient"].iloc[0] == "CompressedSamples, MR1"  # noqa: SLF001
    explorer.search.open_row(0)
    assert explorer.study_uid == mr_study and explorer.series.study_uid == mr_study
    check_series_list(explorer, server, mr_study)
    mr_series = uid_of("MR_small.dcm", "SeriesInstanceUID")
    assert explorer.viewer.study_uid == mr_study and explorer.viewer.series_uid == mr_series  # first image series

    # choosing the series (a click on its row) shows it, highlighted
    explorer.series.series_uid = mr_series
    assert explorer.series_uid == mr_series and explorer.viewer.series_uid == mr_series
    assert explorer.series.table.selection == [0]
    assert len(explorer.viewer.series) == len(studies[mr_study])
    sop = explorer.viewer.current_instance
    expected = modality_values(files_by_sop(studies[mr_study])[sop], 1.0, 0.0)
    assert np.array_equal(explorer.viewer.series.frame(0).pixels.astype(np.float64), expected)

    models = as_notebook_shows(explorer)
    assert sum("Tabulator" in type(m).__name__ for m in models) == 2  # studies and series
    assert explorer.message == f"Connected to {server.url}"


def test_explorer_finds_studies_by_modality(server: Server):
    explorer = Explorer(server.widget_client())
    explorer.search.modality = "US"
    expected = {uid for uid, files in studies_of(server.files).items()
                if any(dcmread(p, stop_before_pixels=True).get("Modality") == "US" for p in files)}
    assert explorer.search.total == len(expected) > 0
    assert set(explorer.search._table.value["StudyInstanceUID"]) == expected  # noqa: SLF001


def test_explorer_connects_with_its_form(server: Server):
    explorer = Explorer()
    assert explorer.client is None
    explorer._connect.clicks += 1  # noqa: SLF001 - no URL yet
    assert explorer.client is None and "URL" in explorer.message
    explorer._url.value = server.url  # noqa: SLF001
    if server.auth:
        explorer._user.value, explorer._password.value = server.auth[0], "wrong"  # noqa: SLF001
        explorer._connect.clicks += 1  # noqa: SLF001
        assert explorer.client is None and "401" in explorer.message
        explorer._password.value = server.auth[1]  # noqa: SLF001
    explorer._connect.clicks += 1  # noqa: SLF001
    assert explorer.client is not None and explorer.message == f"Connected to {server.url}"
    assert explorer.search.total == len(studies_of(server.files))


# -- Orthanc with the client a user makes --------------------------------------------------------------------------
def test_plain_client_finds_a_patient_by_name_on_orthanc(orthanc_server: Server):
    """What a notebook user is shown must work: Explorer(connect(orthanc)) with a name typed.

    Fails while pacsdash.client sends ``*`` percent-encoded (``PatientName=compressed%2Amr1``):
    Debian's Orthanc 1.10.1 (DICOMweb plugin 1.7) does not decode query values and matches nothing.
    """
    explorer = Explorer(orthanc_server.client())
    explorer.search.patient_name = MR_NAME
    assert explorer.search.total == 1


def test_plain_client_gets_thumbnails_from_orthanc(orthanc_server: Server):
    """Fails while the client sends ``viewport=64%2C64``: Orthanc 1.10.1 answers 400, every
    series shows a no-image box."""
    explorer = Explorer(orthanc_server.client())
    explorer.study_uid = uid_of("CT_small.dcm")
    assert check_series_list(explorer, orthanc_server, uid_of("CT_small.dcm")) == 1


# -- the overview ----------------------------------------------------------------------------------------------------
def overview_numbers(overview: Overview) -> dict[str, int]:
    numbers = overview._body[0].objects  # noqa: SLF001 - the indicators shown
    return {n.name: n.value for n in numbers}


def test_overview_over_dicomweb_equals_the_archive(server: Server, reference_archive: Archive, tmp_path):
    if server.files == list(VALID):
        archive = reference_archive
    else:  # Orthanc refused some: an archive of the same files
        archive = Archive.open_home(tmp_path / "store", tmp_path / "index.duckdb")
        for path in server.files:
            archive.store_file(path)
    try:
        local, remote = Overview(archive=archive), Overview(archive=server.client())
        assert overview_numbers(remote) == overview_numbers(local)
        assert overview_numbers(remote)["Studies"] == len(studies_of(server.files))
        assert overview_numbers(remote)["Instances"] == len(server.files)
        mine, theirs = archive.summary(), as_source(server.client()).summary()
        assert theirs["totals"] == mine["totals"]
        assert sorted(theirs["by_modality"]) == sorted(mine["by_modality"])
        assert theirs["by_month"] == mine["by_month"]
        as_notebook_shows(remote)
    finally:
        if archive is not reference_archive:
            archive.close()
