"""WADO-RS Pixel Data resources (PS3.18 10.4.1.1.6, payload 10.4.3.3.6):
``.../pixeldata`` of a study, a series and an instance, against a real server."""

from __future__ import annotations

import io
import secrets

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import generate_uid

from pacsdash.web.multipart import MalformedMultipart, parameters, split_parts
from tests.factories import PREFIX, make_dataset, make_instance
from tests.helpers import VALID
from tests.web.conftest import USERS, session_for

OCTETS = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
LE = "1.2.840.10008.1.2.1"
SLICES = 5
ROWS, COLUMNS = 48, 64  # 6 KB a slice: bulk data in the metadata, not inline
IMAGES = [p for p in VALID if "PixelData" in dcmread(p)]
#: Samples whose values pydicom decodes exactly: compressed losslessly, or big endian.
DECODED = ("MR_small_jp2klossless.uidfix.dcm", "MR_small_RLE.uidfix.dcm", "MR_small_bigendian.uidfix.dcm")


def post(base_url: str, files: list[bytes]) -> None:
    boundary = secrets.token_hex(12)
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()
    response = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert response.status_code == 200, response.text


def parts(response: requests.Response):
    assert response.status_code == 200, response.text
    media, params = parameters(response.headers["Content-Type"])
    assert media == "multipart/related"
    assert params["type"] == "application/octet-stream"
    return split_parts(response.content, params["boundary"])


@pytest.fixture(scope="module")
def series(base_url):
    """A CT series of five 64x48 slices (signed, random), an instance without pixel data in it, and the
    valid samples (each in its own series)."""
    study, uid = generate_uid(PREFIX), generate_uid(PREFIX)
    rng = np.random.default_rng(7)
    slices = []
    for k in range(SLICES):
        pixels = rng.integers(-1000, 2000, (ROWS, COLUMNS), dtype=np.int16)
        slices.append(make_instance(StudyInstanceUID=study, SeriesInstanceUID=uid, InstanceNumber=k + 1, Rows=ROWS,
                                    Columns=COLUMNS, BitsStored=16, PixelRepresentation=1, PixelData=pixels.tobytes()))
    no_pixels = make_instance(StudyInstanceUID=study, SeriesInstanceUID=uid, InstanceNumber=99, Rows=None,
                              Columns=None, PixelData=None, BitsAllocated=None, BitsStored=None, HighBit=None,
                              SamplesPerPixel=None, PhotometricInterpretation=None, PixelRepresentation=None)
    post(base_url, slices + [no_pixels] + [p.read_bytes() for p in VALID])
    return study, uid, {str(dcmread(io.BytesIO(raw)).SOPInstanceUID): raw for raw in slices}


def url_of(base_url: str, study: str, series: str | None = None, instance: str | None = None) -> str:
    url = f"{base_url}/dicom-web/studies/{study}"
    if series:
        url += f"/series/{series}"
    if instance:
        url += f"/instances/{instance}"
    return url + "/pixeldata"


def test_series_pixel_data_is_each_slice_pixel_data_named_by_its_location(series, base_url):
    study, uid, slices = series
    got = parts(session_for("viewer").get(url_of(base_url, study, uid), headers={"Accept": OCTETS}))
    assert len(got) == SLICES  # the instance without pixel data is left out
    seen = set()
    for part in got:
        assert part.headers["content-type"] == f"application/octet-stream; transfer-syntax={LE}"
        location = part.headers["content-location"]
        prefix = f"{base_url}/dicom-web/studies/{study}/series/{uid}/instances/"
        assert location.startswith(prefix) and location.endswith("/bulkdata/7FE00010"), location
        sop = location[len(prefix):].split("/")[0]
        ds = dcmread(io.BytesIO(slices[sop]))
        assert part.content == ds.PixelData  # stored little endian: the value itself, byte for byte
        assert np.array_equal(np.frombuffer(part.content, "<i2").reshape(ROWS, COLUMNS), ds.pixel_array)
        seen.add(sop)
    assert seen == set(slices)


def test_the_location_names_the_element_the_metadata_names(series, base_url):
    study, uid, _ = series
    session = session_for("viewer")
    metadata = session.get(f"{base_url}/dicom-web/studies/{study}/series/{uid}/metadata").json()
    in_metadata = {item["7FE00010"]["BulkDataURI"] for item in metadata if "BulkDataURI" in item.get("7FE00010", {})}
    got = parts(session.get(url_of(base_url, study, uid)))
    assert {p.headers["content-location"] for p in got} == in_metadata


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_instance_pixel_data_is_its_frames_uncompressed(series, base_url, path):
    ds = dcmread(path)
    session = session_for("viewer")
    url = url_of(base_url, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    [part] = parts(session.get(url, headers={"Accept": OCTETS}))
    [again] = parts(session.get(url, headers={"Accept": OCTETS}))  # where the server remembered where it lies
    assert again.content == part.content
    numbers = ",".join(str(n) for n in range(1, int(ds.get("NumberOfFrames", 1) or 1) + 1))
    frames = parts(session.get(f"{url.removesuffix('/pixeldata')}/frames/{numbers}", headers={"Accept": OCTETS}))
    assert part.content == b"".join(f.content for f in frames)
    if ds.file_meta.TransferSyntaxUID == LE and ds.BitsAllocated > 1:
        assert part.content == ds.PixelData[:len(part.content)]  # at most a padding byte less
    if path.name in DECODED:
        values = ds.pixel_array
        assert part.content == values.astype(values.dtype.newbyteorder("<")).tobytes()


def test_study_pixel_data_holds_every_image_of_the_study(series, base_url):
    study, uid, slices = series
    got = parts(session_for("viewer").get(url_of(base_url, study)))
    assert len(got) == SLICES


def test_dicomweb_client_reads_the_series_pixel_data(series, base_url):
    study, uid, slices = series
    client = DICOMwebClient(f"{base_url}/dicom-web", session=session_for("viewer"))
    got = client.retrieve_bulkdata(url_of(base_url, study, uid), media_types=(("application/octet-stream", LE),))
    assert sorted(got) == sorted(dcmread(io.BytesIO(raw)).PixelData for raw in slices.values())


def test_unknown_or_pixel_less_series_and_bad_uids_are_404(series, base_url):
    study, uid, _ = series
    session = session_for("viewer")
    sr = dcmread(next(p for p in VALID if p.name == "test-SR.dcm"), stop_before_pixels=True)
    for url in (url_of(base_url, study, "1.2.3.404"), url_of(base_url, "1.2.3.404", uid),
                url_of(base_url, study, uid, "1.2.3.404"), url_of(base_url, study, "..%2F..%2Fetc"),
                url_of(base_url, study, "1" * 65), url_of(base_url, sr.StudyInstanceUID, sr.SeriesInstanceUID)):
        response = session.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert response.headers["Content-Type"].startswith("application/json")


def test_login_is_needed_as_for_frames_and_every_role_may_view(series, base_url):
    study, uid, _ = series
    url = url_of(base_url, study, uid)
    assert requests.get(url).status_code == 401
    assert requests.get(url, auth=("viewer", "wrong")).status_code == 401
    for role in USERS:
        assert session_for(role).get(url).status_code == 200, role


@pytest.mark.parametrize("accept", [
    'multipart/related; type="image/jpeg"', "image/jp2", "application/dicom",
    'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.2',
    'multipart/related; type="application/dicom"'])
def test_what_cannot_be_sent_is_406(series, base_url, accept):
    study, uid, _ = series
    response = session_for("viewer").get(url_of(base_url, study, uid), headers={"Accept": accept})
    assert response.status_code == 406, accept
    assert "application/octet-stream" in response.json()["error"]


@pytest.mark.parametrize("accept", ["", "*/*", "multipart/related", "application/octet-stream",
                                    'multipart/related; type="application/octet-stream"; transfer-syntax=*',
                                    'image/jpeg, multipart/related; type="application/octet-stream"'])
def test_what_takes_uncompressed_octets_is_served(series, base_url, accept):
    study, uid, _ = series
    headers = {"Accept": accept} if accept else {}
    assert len(parts(session_for("viewer").get(url_of(base_url, study, uid), headers=headers))) == SLICES


@pytest.mark.parametrize("query", ["frames=1", "accept=image/jpeg", "x=" + "y" * 5000])
def test_query_parameters_are_400(series, base_url, query):
    study, uid, _ = series
    response = session_for("viewer").get(f"{url_of(base_url, study, uid)}?{query}")
    assert response.status_code == 400
    assert "no query parameters" in response.json()["error"]


def test_a_slice_that_cannot_be_decoded_never_gives_a_whole_looking_answer(base_url):
    """A series whose second slice claims JPEG 2000 but holds garbage: the answer is an error status, or a body
    cut short (no closing delimiter), never a complete multipart body with a slice missing."""
    from pydicom.encaps import encapsulate

    study, uid = generate_uid(PREFIX), generate_uid(PREFIX)
    good = make_instance(StudyInstanceUID=study, SeriesInstanceUID=uid, InstanceNumber=1, Rows=ROWS, Columns=COLUMNS,
                         PixelData=b"\x01\x00" * ROWS * COLUMNS)
    bad = make_dataset(StudyInstanceUID=study, SeriesInstanceUID=uid, InstanceNumber=2, Rows=ROWS, Columns=COLUMNS,
                       PixelData=encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64]))
    bad.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    bad["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    bad.save_as(buffer, enforce_file_format=True)
    post(base_url, [good, buffer.getvalue()])
    try:
        response = session_for("viewer").get(url_of(base_url, study, uid), headers={"Accept": OCTETS})
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):  # cut short
        return
    if response.status_code == 200:
        _, params = parameters(response.headers["Content-Type"])
        with pytest.raises(MalformedMultipart):
            split_parts(response.content, params["boundary"])
    else:
        assert response.status_code in (406, 500), response.status_code
    assert session_for("viewer").get(url_of(base_url, study, uid, "1.2.3")).status_code == 404  # still serving
