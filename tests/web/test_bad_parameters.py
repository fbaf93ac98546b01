"""Every bad query parameter is a 400 (or an empty result), never a 500, and
the server keeps serving (PS3.18 8.3.4, 10.6)."""

from __future__ import annotations

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import VALID
from tests.web.conftest import session_for
from tests.web.test_dicomweb import multipart

KEYS = ["PatientBirthDate", "StudyDate", "StudyTime", "PatientName", "PatientID", "ModalitiesInStudy",
        "StudyInstanceUID", "SeriesInstanceUID", "limit", "offset", "includefield", "fuzzymatching",
        "AccessionNumber", "00100030", "0020000D", "SliceThickness", "NumberOfFrames", "Rows", "orderby"]
NASTY = ["-", "--", "", "*", "?", "\\", "20201301", "-20200101", "2020-", "1e309", "-1", "99999999999999999999",
         "0" * 5000, "\x00", "%", "'; DROP TABLE x; --", "a" * 10000, "<=1", ">1e400", "!=", "NaN", "Infinity",
         "20200101-20191231", "1.2.3\\4.5.6", "\\\\\\", "ÿ", "\ud7ff", "*" * 300]


@pytest.fixture(scope="module")
def loaded(base_url):
    body, content_type = multipart([p.read_bytes() for p in VALID[:5]])
    response = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 202), response.text


def _check(base_url: str, path: str, params: dict) -> None:
    response = session_for("viewer").get(f"{base_url}{path}", params=params, timeout=30)
    assert response.status_code < 500, (path, params, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.text, "an error says why"


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("key", ["PatientBirthDate", "StudyDate", "StudyTime", "limit", "offset", "SliceThickness"])
def test_nasty_values_of_common_keys(loaded, base_url, key, value):
    _check(base_url, "/dicom-web/studies", {key: value})


def test_the_birth_date_dash_of_the_report_is_not_a_500(loaded, base_url):
    response = session_for("viewer").get(f"{base_url}/dicom-web/studies", params={"PatientBirthDate": "-"})
    assert response.status_code in (200, 204, 400), response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(KEYS), st.one_of(st.sampled_from(NASTY), st.text(max_size=40)),
                              min_size=1, max_size=4),
       level=st.sampled_from(["/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances"]))
def test_qido_never_answers_500(loaded, base_url, params, level):
    _check(base_url, level, params)


def test_the_server_still_answers_afterwards(loaded, base_url):
    assert requests.get(f"{base_url}/api/health", timeout=5).status_code == 200
def test_a_5000_digit_wado_uri_frame_number_is_a_400(loaded, base_url):
    from pydicom import dcmread

    ds = dcmread(VALID[0], stop_before_pixels=True)
    response = session_for("viewer").get(f"{base_url}/wado", params={
        "requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID, "contentType": "image/jpeg", "frameNumber": "9" * 5000})
    assert response.status_code == 400, response.text[:200]




def _first_instance():
    from pydicom import dcmread

    return dcmread(VALID[0], stop_before_pixels=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["frameNumber", "rows", "columns", "imageQuality", "windowCenter", "windowWidth",
                            "contentType", "transferSyntax", "studyUID", "requestType"]),
       value=st.one_of(st.sampled_from(NASTY + ["²", "٣", "0", "1.5", "+1", " 1", "1,2"]), st.text(max_size=30)))
def test_every_bad_wado_uri_parameter_is_a_4xx(loaded, base_url, key, value):
    ds = _first_instance()
    params = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
              "objectUID": ds.SOPInstanceUID, "contentType": "image/jpeg", key: value}
    _check(base_url, "/wado", params)


def test_repeated_frames_are_sent_once_and_never_beyond_number_of_frames(loaded, base_url):
    ds = _first_instance()
    url = (f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/frames/")
    viewer = session_for("viewer")
    one = viewer.get(url + "1", timeout=30)
    assert one.status_code == 200
    repeated = viewer.get(url + ",".join(["1"] * 10_000), timeout=60)
    assert repeated.status_code == 200
    assert repeated.content.count(b"Content-Location: frames/1\r\n") == 1
    assert len(repeated.content) < 2 * len(one.content)
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    beyond = viewer.get(url + f"1,{count + 1}", timeout=30)
    assert beyond.status_code == 404 and f"frame {count + 1}" in beyond.json()["error"]
    for bad in ("0", "1,,2", "9" * 5000, "1²", "-1"):
        assert viewer.get(url + bad, timeout=60).status_code == 400, bad[:20]
