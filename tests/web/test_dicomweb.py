"""DICOMweb round trips with dicomweb-client and raw HTTP, against a real server."""

from __future__ import annotations

import copy
import io
import secrets

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread

from tests.helpers import BROKEN, VALID, manifest
from tests.web.conftest import USERS, session_for


def multipart(files: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    boundary = boundary or secrets.token_hex(12)
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n" for data in files)
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def parts_of(response: requests.Response) -> list[bytes]:
    """The bodies of a multipart/related response."""
    content_type = response.headers["Content-Type"]
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    from pacsdash.web.multipart import split_parts

    return [p.content for p in split_parts(response.content, boundary)]


@pytest.fixture(scope="module")
def stored(base_url):
    body, content_type = multipart([p.read_bytes() for p in VALID])
    response = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def client(base_url) -> DICOMwebClient:
    return DICOMwebClient(f"{base_url}/dicom-web", session=session_for("viewer"))


def test_stow_response_lists_every_instance(stored):
    referenced = stored["00081199"]["Value"]
    assert len(referenced) == len(VALID)
    uids = {item["00081155"]["Value"][0] for item in referenced}
    assert uids == {row["sop_instance_uid"] for row in manifest().values() if row["set"] == "valid"}
    assert all(item["00081190"]["Value"][0].startswith("http://127.0.0.1:") for item in referenced)


def test_wado_returns_every_instance_byte_for_byte(stored, base_url):
    session = session_for("viewer")
    for path in VALID:
        ds = dcmread(path, stop_before_pixels=True)
        url = f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        response = session.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert response.status_code == 200, (path.name, response.text)
        assert parts_of(response) == [path.read_bytes()], path.name


def test_wado_study_retrieve_with_dicomweb_client(stored, client):
    ds = dcmread(next(p for p in VALID if p.name == "MR_small.dcm"), stop_before_pixels=True)
    instances = client.retrieve_study(ds.StudyInstanceUID)
    assert len(instances) == 7
    assert {i.SOPInstanceUID for i in instances} >= {ds.SOPInstanceUID}


def test_qido_with_dicomweb_client(stored, client):
    studies = client.search_for_studies(search_filters={"PatientID": "4MR1"})
    assert len(studies) == 1
    study = studies[0]
    assert study["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^MR1"}]}
    assert study["00201208"]["Value"] == [7]
    assert study["00081190"]["Value"][0].endswith(study["0020000D"]["Value"][0])
    series = client.search_for_series(study["0020000D"]["Value"][0])
    assert len(series) == 1 and series[0]["00080060"]["Value"] == ["MR"]
    instances = client.search_for_instances(study["0020000D"]["Value"][0], series[0]["0020000E"]["Value"][0])
    assert len(instances) == 7


def test_qido_paging_is_stable_and_ends_empty(stored, client):
    every = client.search_for_studies(get_remaining=True, limit=3)
    uids = [s["0020000D"]["Value"][0] for s in every]
    assert len(uids) == len(set(uids)) == len(client.search_for_studies())


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"PatientName": "*Last Name*"}, 1),  # OHIF sends typed spaces
        ({"PatientName": "compressedsamples*"}, 4),
        ({"00100020": "*MR*"}, 1),
        ({"ModalitiesInStudy": "US"}, "US"),
        ({"StudyDate": "19000101-20991231", "includefield": "00081030,00080060"}, None),
    ],
)
def test_qido_matching(stored, base_url, params, expected):
    response = session_for("viewer").get(f"{base_url}/dicom-web/studies", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/dicom+json")
    if isinstance(expected, str):  # a modality: count its studies in the manifest
        rows = [r for r in manifest().values() if r["set"] == "valid" and r["modality"] == expected]
        expected = len({r["study_instance_uid"] for r in rows})
    if expected is not None:
        assert len(response.json()) == expected


def test_qido_never_sends_an_empty_modalities_in_study(stored, base_url):
    for study in session_for("viewer").get(f"{base_url}/dicom-web/studies").json():
        if "00080061" in study:
            assert study["00080061"].get("Value"), study


def test_metadata_and_bulkdata(stored, base_url, client):
    path = next(p for p in VALID if p.name == "waveform_ecg.dcm")
    ds = dcmread(path)
    metadata = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(metadata) == 1
    item = metadata[0]
    assert item["00080018"]["Value"] == [ds.SOPInstanceUID]
    waveform = item["54000100"]["Value"][0]["54001010"]
    uri = waveform["BulkDataURI"]
    response = session_for("viewer").get(uri, headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200
    assert response.content == ds.WaveformSequence[0].WaveformData
    multipart_response = session_for("viewer").get(uri, headers={"Accept": "*/*"})
    assert parts_of(multipart_response) == [ds.WaveformSequence[0].WaveformData]


def test_cached_metadata_carries_each_requests_own_urls(stored, base_url):
    path = next(p for p in VALID if p.name == "waveform_ecg.dcm")
    ds = dcmread(path)
    url = f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
    session = session_for("viewer")
    first = session.get(url)
    again = session.get(url)  # from the cache
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert first.json()[0]["00080018"]["Value"] == [ds.SOPInstanceUID]

    def waveform_uri(response):
        return response.json()[0]["54000100"]["Value"][0]["54001010"]["BulkDataURI"]

    proxied = session.get(url, headers={"Host": "pacs.example.org:8042"})
    assert proxied.status_code == 200
    assert waveform_uri(first).startswith(base_url + "/dicom-web/studies/")
    assert waveform_uri(proxied).startswith("http://pacs.example.org:8042/dicom-web/studies/"), waveform_uri(proxied)
    assert waveform_uri(proxied).split("/dicom-web/")[1] == waveform_uri(first).split("/dicom-web/")[1]


def test_unknown_uids_are_404(stored, base_url):
    session = session_for("viewer")
    for url in ("/dicom-web/studies/1.2.3.4", "/dicom-web/studies/1.2.3/series/4.5", "/dicom-web/studies/1.2.3/metadata",
                "/dicom-web/studies/1.2.3/series/4.5/instances/6.7", "/dicom-web/studies/..%2F..%2Fetc"):
        response = session.get(base_url + url)
        assert response.status_code == 404, url
    assert session.get(f"{base_url}/dicom-web/studies", params={"StudyInstanceUID": "1.2.3"}).json() == []


def test_retrieve_transcoded_to_explicit_little_endian(stored, base_url):
    import numpy as np

    session = session_for("viewer")
    for name in ("JPEG2000.dcm", "MR_small_RLE.uidfix.dcm", "MR_small_bigendian.uidfix.dcm", "image_dfl.dcm"):
        path = next(p for p in VALID if p.name == name)
        response = session.get(instance_url(base_url, path),
                               headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'})
        assert response.status_code == 200, (name, response.text)
        [part] = parts_of(response)
        got, original = dcmread(io.BytesIO(part)), dcmread(path)
        assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert got.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(got.pixel_array, original.pixel_array), name


def test_unproducible_media_type_is_406(stored, base_url):
    ds = dcmread(next(p for p in VALID if p.name == "JPEG2000.dcm"), stop_before_pixels=True)
    url = f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}"
    session = session_for("viewer")
    assert session.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'}).status_code == 406
    assert session.get(url, headers={"Accept": "image/gif"}).status_code == 406
    assert session.get(f"{base_url}/dicom-web/studies", headers={"Accept": "application/xml"}).status_code == 406


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "-1"},
        {"offset": "-5"},
        {"limit": "1e9"},
        {"PatientName": "x" * 10_000},
        {"StudyDate": "yesterday"},
        {"NoSuchAttribute": "1"},
        {"includefield": "NotAKeyword"},
        {"00400275.00321060": "x"},
        {"fuzzymatching": "maybe"},
    ],
)
def test_bad_parameters_are_400_with_a_message(stored, base_url, params):
    response = session_for("viewer").get(f"{base_url}/dicom-web/studies", params=params)
    assert response.status_code == 400
    assert response.json()["error"]
    assert response.reason == "Bad Request"  # nothing of the request in the status line


@pytest.mark.parametrize("value", ["' OR 1=1 --", "<script>alert(1)</script>", "%", "Robert'); DROP TABLE studies;--"])
def test_sql_and_html_in_values_match_nothing(stored, base_url, value):
    response = session_for("viewer").get(f"{base_url}/dicom-web/studies", params={"PatientName": value})
    assert response.status_code == 200
    assert response.json() == []
    assert len(session_for("viewer").get(f"{base_url}/dicom-web/studies").json()) > 0


def test_stow_malformed_bodies_are_400(base_url):
    session = session_for("editor")
    url = f"{base_url}/dicom-web/studies"
    content_type = 'multipart/related; type="application/dicom"; boundary=XYZ'
    for body in (b"", b"garbage", b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nno closing delimiter",
                 b"--XYZ\r\nContent-Type application/dicom\r\n\r\nx\r\n--XYZ--"):
        assert session.post(url, data=body, headers={"Content-Type": content_type}).status_code == 400, body
    assert session.post(url, data=b"x", headers={"Content-Type": "application/json"}).status_code == 415
    assert session.post(url, data=b"x", headers={"Content-Type": "multipart/related; boundary=XYZ; type=\"application/dicom+xml\""}).status_code == 415


def test_stow_partial_and_total_failure(base_url):
    session = session_for("editor")
    good = next(p for p in VALID if p.name == "CT_small.dcm").read_bytes()
    bad = [p.read_bytes() for p in BROKEN if p.name in ("not_dicom.dcm", "path_traversal_uid.dcm")]
    body, content_type = multipart([good] + bad)
    response = session.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failed] == [0xC000, 0xC000]
    body, content_type = multipart(bad)
    assert session.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type}).status_code == 409


def test_stow_to_a_study_refuses_other_studies(base_url):
    good = next(p for p in VALID if p.name == "CT_small.dcm")
    body, content_type = multipart([good.read_bytes()])
    response = session_for("editor").post(f"{base_url}/dicom-web/studies/1.2.3.4", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]


def test_cors_preflight_and_headers(base_url):
    # CORS is off unless [server] cors_origins allows the origin.
    response = requests.options(f"{base_url}/dicom-web/studies", headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_password_check_is_cached_but_follows_changes(base_url, web_server):
    from tests.helpers import run_cli

    session = session_for("viewer")
    assert session.get(f"{base_url}/dicom-web/studies").status_code == 200
    assert run_cli("users", "passwd", "viewer", "--password-stdin", "--home", str(web_server.home), input="new-viewer-pw\n").returncode == 0
    assert session.get(f"{base_url}/dicom-web/studies").status_code == 401
    assert requests.get(f"{base_url}/dicom-web/studies", auth=("viewer", "new-viewer-pw")).status_code == 200
    assert run_cli("users", "passwd", "viewer", "--password-stdin", "--home", str(web_server.home), input=USERS["viewer"] + "\n").returncode == 0


def instance_url(base_url: str, path) -> str:
    ds = dcmread(path, stop_before_pixels=True)
    return f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


PIXEL_SAMPLES = [p for p in VALID if "PixelData" in dcmread(p, stop_before_pixels=False, specific_tags=["PixelData"])]


@pytest.mark.parametrize("path", PIXEL_SAMPLES, ids=lambda p: p.name)
def test_rendered_png_of_every_sample(stored, base_url, path):
    from PIL import Image

    ds = dcmread(path, stop_before_pixels=True)
    response = session_for("viewer").get(f"{instance_url(base_url, path)}/rendered", headers={"Accept": "image/png"})
    assert response.status_code == 200, (path.name, response.text)
    assert response.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (ds.Columns, ds.Rows)
    assert len(set(image.convert("L").getdata())) > 1, "blank image"


def test_frames_uncompressed_and_as_stored(stored, base_url):
    session = session_for("viewer")
    ybr = next(p for p in VALID if p.name == "SC_ybr_full_422_uncompressed.dcm")
    ds = dcmread(ybr)
    response = session.get(f"{instance_url(base_url, ybr)}/frames/1",
                           headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert response.status_code == 200, response.text
    [frame] = parts_of(response)
    assert len(frame) == ds.Rows * ds.Columns * 2  # 4:2:2 is 2 bytes a pixel
    jpeg2000 = next(p for p in VALID if p.name == "JPEG2000.dcm")
    response = session.get(f"{instance_url(base_url, jpeg2000)}/frames/1",
                           headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert response.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.4.91" in response.content.split(b"\r\n\r\n")[0].decode()
    response = session.get(f"{instance_url(base_url, jpeg2000)}/frames/1",
                           headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    ds = dcmread(jpeg2000)
    [frame] = parts_of(response)
    assert len(frame) == ds.Rows * ds.Columns * ds.SamplesPerPixel * (ds.BitsAllocated // 8)
    multi = next(p for p in VALID if p.name == "SC_rgb_rle_2frame.uidfix.dcm")
    response = session.get(f"{instance_url(base_url, multi)}/frames/1,2")
    assert len(parts_of(response)) == 2
    assert session.get(f"{instance_url(base_url, multi)}/frames/3").status_code == 404
    assert session.get(f"{instance_url(base_url, multi)}/frames/0").status_code == 400
    assert session.get(f"{instance_url(base_url, multi)}/frames/x").status_code == 400


def test_rendered_window_viewport_and_thumbnail(stored, base_url):
    from PIL import Image

    session = session_for("viewer")
    ct = next(p for p in VALID if p.name == "CT_small.dcm")
    url = instance_url(base_url, ct)
    narrow = session.get(f"{url}/rendered", params={"window": "40,80,linear"}, headers={"Accept": "image/png"}).content
    wide = session.get(f"{url}/rendered", params={"window": "40,4000,linear"}, headers={"Accept": "image/png"}).content
    assert narrow != wide
    small = session.get(f"{url}/rendered", params={"viewport": "64,64"})
    assert small.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(small.content)).size == (64, 64)
    thumb = session.get(f"{url}/thumbnail")
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 128
    assert session.get(f"{url}/rendered", params={"window": "abc"}).status_code == 400
    assert session.get(f"{url}/rendered", params={"viewport": "99999,1"}).status_code == 400
    assert session.get(f"{url}/rendered", headers={"Accept": "image/gif"}).status_code == 406
    sr = next(p for p in VALID if p.name == "test-SR.dcm")
    assert session.get(f"{instance_url(base_url, sr)}/rendered").status_code == 404


def test_wado_uri(stored, base_url):
    from PIL import Image

    session = session_for("viewer")
    path = next(p for p in VALID if p.name == "MR_small.dcm")
    ds = dcmread(path, stop_before_pixels=True)
    params = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID, "objectUID": ds.SOPInstanceUID}
    response = session.get(f"{base_url}/wado", params={**params, "contentType": "application/dicom"})
    assert response.content == path.read_bytes()
    jpeg = session.get(f"{base_url}/wado", params=params)
    assert jpeg.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (ds.Columns, ds.Rows)
    png = session.get(f"{base_url}/wado", params={**params, "contentType": "image/png", "rows": "32", "columns": "32",
                                                  "windowCenter": "600", "windowWidth": "1200"})
    assert Image.open(io.BytesIO(png.content)).size == (32, 32)
    assert session.get(f"{base_url}/wado", params={**params, "requestType": "X"}).status_code == 400
    assert session.get(f"{base_url}/wado", params={**params, "objectUID": "1.2.3"}).status_code == 404
    assert session.get(f"{base_url}/wado", params={**params, "studyUID": "1.2.3"}).status_code == 404  # wrong study
    assert session.get(f"{base_url}/wado", params={**params, "seriesUID": "1.2.3"}).status_code == 404
    assert session.get(f"{base_url}/wado", params={**params, "contentType": "text/html"}).status_code == 406


def test_absurd_content_length_is_refused_at_once(base_url, web_server):
    import socket
    import time

    with socket.create_connection(("127.0.0.1", web_server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ZWRpdG9yOmVkaXRvci1wdw==\r\n"
                     b"Content-Type: multipart/related; boundary=x\r\nContent-Length: 1000000000000\r\n\r\n")
        start = time.monotonic()
        reply = sock.recv(200)
        assert time.monotonic() - start < 5
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    assert requests.get(f"{base_url}/api/health").status_code == 200


def test_request_line_bytes_are_never_reflected(base_url, web_server):
    import socket

    with socket.create_connection(("127.0.0.1", web_server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /dicom-web/studies?PatientName=%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(4096).split(b"\r\n\r\n")[0]
    assert b"X-Injected" not in head


# -- interop fixes: exact media type, inlined sequences, includefield=all, boundaries -----------

def test_every_dicom_json_answer_is_exactly_application_dicom_json(stored, base_url):
    """dicomweb-client compares the media type exactly (INTEROP.md): no charset parameter."""
    session = session_for("viewer")
    ds = dcmread(next(p for p in VALID if p.name == "CT_small.dcm"), stop_before_pixels=True)
    study = f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}"
    series = f"{study}/series/{ds.SeriesInstanceUID}"
    for url in (f"{base_url}/dicom-web/studies", f"{base_url}/dicom-web/series", f"{base_url}/dicom-web/instances",
                f"{study}/series", f"{series}/instances", f"{study}/metadata", f"{series}/metadata",
                f"{series}/instances/{ds.SOPInstanceUID}/metadata"):
        response = session.get(url)
        assert response.status_code == 200, url
        assert response.headers["Content-Type"] == "application/dicom+json", url
    good = next(p for p in VALID if p.name == "CT_small.dcm").read_bytes()
    bad = next(p for p in BROKEN if p.name == "not_dicom.dcm").read_bytes()
    for files, status in (([good], 200), ([good, bad], 202), ([bad], 409)):
        body, content_type = multipart(files)
        response = session_for("editor").post(f"{base_url}/dicom-web/studies", data=body,
                                              headers={"Content-Type": content_type})
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/dicom+json", status


def test_dicomweb_client_reads_the_stow_response(stored, base_url):
    """dicomweb-client's store_instances returns the STOW-RS response as a
    Dataset (it returned an empty one while the media type had a charset)."""
    from pydicom.uid import generate_uid

    client = DICOMwebClient(f"{base_url}/dicom-web", session=session_for("editor"))
    fresh = [dcmread(next(p for p in VALID if p.name == name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    for ds in fresh:  # new instances of a new study, so that other tests' counts hold
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    answer = client.store_instances(fresh)
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [ds.SOPInstanceUID for ds in fresh]
    assert [item.ReferencedSOPClassUID for item in answer.ReferencedSOPSequence] == [ds.SOPClassUID for ds in fresh]
    assert "FailedSOPSequence" not in answer

    refused, accepted = copy.deepcopy(fresh[0]), copy.deepcopy(fresh[0])
    refused.SOPInstanceUID = refused.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    refused.StudyInstanceUID = "1.2.not-a-uid"
    accepted.SOPInstanceUID = accepted.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    answer = client.store_instances([accepted, refused])
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [accepted.SOPInstanceUID]
    [failed] = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == refused.SOPInstanceUID
    assert failed.FailureReason == 0xC000


VRS = set("AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())


def _check_json_against(item: dict, ds, where: str, bulk: list) -> None:
    """``item`` (DICOM JSON) holds exactly the elements of ``ds``, each
    sequence inlined as a sequence, at every depth; BulkDataURIs collected."""
    expected = {f"{int(tag):08X}" for tag in ds.keys() if int(tag) >> 16 != 0x0002}
    assert set(item) - {"00020010"} == expected, where
    for key, value in item.items():
        assert value["vr"] in VRS, (where, key, value["vr"])
        if key == "00020010":
            continue
        elem = ds[int(key, 16)]
        if elem.VR == "SQ":
            assert value["vr"] == "SQ", (where, key, value)
            assert "BulkDataURI" not in value, (where, key)
            assert len(value.get("Value", [])) == len(elem.value), (where, key)
            for index, (sub, sub_ds) in enumerate(zip(value.get("Value", []), elem.value)):
                _check_json_against(sub, sub_ds, f"{where}/{key}/{index}", bulk)
        elif "BulkDataURI" in value:
            assert value["vr"] in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"), (where, key, value["vr"])
            bulk.append((f"{where}/{key}", value["BulkDataURI"], elem.value))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_metadata_inlines_every_sequence_and_every_bulk_data_uri_answers(stored, base_url, path):
    """PS3.18 F.2: a sequence is always inlined in DICOM JSON, at any depth;
    only binary values are bulk data, and every BulkDataURI handed out answers
    with the value. test-SR.dcm's ContentSequence (5 kB) was handed out as an
    OB BulkDataURI that answered 404, and OHIF could not open the SR."""
    ds = dcmread(path)
    url = f"{instance_url(base_url, path).rsplit('/instances/', 1)[0]}/metadata"
    session = session_for("viewer")
    response = session.get(url)
    assert response.status_code == 200, response.text
    [item] = [i for i in response.json() if i["00080018"]["Value"] == [ds.SOPInstanceUID]]
    bulk: list = []
    _check_json_against(item, ds, path.name, bulk)
    for where, uri, value in bulk:
        for accept in ("application/octet-stream", "*/*"):
            answer = session.get(uri, headers={"Accept": accept})
            assert answer.status_code == 200, (where, accept, uri, answer.text[:200])
            got = answer.content if accept == "application/octet-stream" else parts_of(answer)[0]
            if isinstance(value, bytes):
                assert got == value, (where, accept)


def test_sr_content_sequence_is_inlined(stored, base_url):
    path = next(p for p in VALID if p.name == "test-SR.dcm")
    ds = dcmread(path)
    [item] = session_for("viewer").get(f"{instance_url(base_url, path)}/metadata").json()
    content = item["0040A730"]
    assert content["vr"] == "SQ"
    assert len(content["Value"]) == len(ds.ContentSequence)
    texts = [c["0040A160"]["Value"][0] for c in content["Value"] if "0040A160" in c]
    assert texts == [c.TextValue for c in ds.ContentSequence if "TextValue" in c]


def _instance_with_all(base_url: str, name: str) -> tuple[dict, object]:
    path = next(p for p in VALID if p.name == name)
    ds = dcmread(path, stop_before_pixels=True)
    response = session_for("viewer").get(
        f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances",
        params={"SOPInstanceUID": ds.SOPInstanceUID, "includefield": "all"})
    assert response.status_code == 200, response.text
    [item] = response.json()
    return item, ds


def test_includefield_all_at_instance_level_returns_every_indexed_attribute(stored, base_url):
    """PS3.18 10.6.1.2.1: ``all`` is every available attribute of the level
    and above: instance, series, study and patient attributes, including
    those the index keeps outside its columns."""
    item, ds = _instance_with_all(base_url, "examples_overlay.dcm")
    assert item["00280102"] == {"vr": "US", "Value": [ds.HighBit]}  # instance, in the attribute JSON
    assert item["0008103E"] == {"vr": "LO", "Value": [ds.SeriesDescription]}  # series column
    assert item["00081030"] == {"vr": "LO", "Value": [ds.StudyDescription]}  # study column
    assert item["00100010"]["Value"] == [{"Alphabetic": str(ds.PatientName)}]  # patient
    assert item["00080080"]["Value"] == [ds.InstitutionName]
    assert item["00200032"]["Value"] == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    assert item["00280010"]["Value"] == [ds.Rows]
    assert not any(int(key[:4], 16) % 2 for key in item), "private attributes have no known VR here"
    assert "00880200" not in item  # sequences are not kept in the index
    # An ambiguous dictionary VR takes the image's pixel representation.
    signed, mr = _instance_with_all(base_url, "MR_small.dcm")
    assert mr.PixelRepresentation == 1
    assert signed["00280106"] == {"vr": "SS", "Value": [mr.SmallestImagePixelValue]}
    # Without "all", only the required attributes and those asked for.
    [plain] = session_for("viewer").get(f"{base_url}/dicom-web/instances",
                                        params={"SOPInstanceUID": ds.SOPInstanceUID}).json()
    assert "00280102" not in plain and "0008103E" not in plain
    assert plain["00080018"] == item["00080018"]


def test_includefield_all_at_series_and_study_levels(stored, base_url):
    ds = dcmread(next(p for p in VALID if p.name == "examples_overlay.dcm"), stop_before_pixels=True)
    session = session_for("viewer")
    [series] = session.get(f"{base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series",
                           params={"includefield": "all"}).json()
    assert series["0008103E"]["Value"] == [ds.SeriesDescription]
    assert series["00081030"]["Value"] == [ds.StudyDescription]  # the study's, above
    assert series["00100020"]["Value"] == [ds.PatientID]  # the patient's, above
    assert series["00080070"]["Value"] == [ds.Manufacturer]
    [study] = session.get(f"{base_url}/dicom-web/studies", params={"StudyInstanceUID": ds.StudyInstanceUID,
                                                                    "includefield": "all"}).json()
    assert study["00081030"]["Value"] == [ds.StudyDescription]
    assert study["00100010"]["Value"] == [{"Alphabetic": str(ds.PatientName)}]
    assert "0008103E" not in study  # a series attribute is below the study level


def test_includefield_all_with_dicomweb_client(stored, client):
    """dicomweb-client sends ``fields=["all"]`` as ``includefield=all``."""
    ds = dcmread(next(p for p in VALID if p.name == "examples_overlay.dcm"), stop_before_pixels=True)
    [item] = client.search_for_instances(ds.StudyInstanceUID, ds.SeriesInstanceUID, fields=["all"])
    found = Dataset.from_json(item)
    assert found.HighBit == ds.HighBit
    assert found.SeriesDescription == ds.SeriesDescription
    assert found.BitsStored == ds.BitsStored
    assert found.PatientName == ds.PatientName


def test_stow_boundary_length(stored, base_url):
    """Boundaries longer than RFC 2046's 70 characters are common (Orthanc
    sends 73); up to 256 are accepted, absurd ones refused with a clear 400."""
    good = next(p for p in VALID if p.name == "CT_small.dcm").read_bytes()
    session = session_for("editor")
    for boundary in ("a" * 73, "b" * 256):
        body, content_type = multipart([good], boundary)
        response = session.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, (len(boundary), response.text)
    body, content_type = multipart([good], "c" * 257)
    response = session.post(f"{base_url}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert "boundary" in response.json()["error"] and "256" in response.json()["error"]


def test_a_stow_refused_before_its_body_is_read_closes_the_connection(base_url):
    """415 (and 401, 403, 413) come before the body is read: the answer says Connection: close,
    so a client does not send its next request on a connection the server drops (reset)."""
    session = session_for("editor")
    url = f"{base_url}/dicom-web/studies"
    for _ in range(20):
        refused = session.post(url, data=b"x" * 1000, headers={"Content-Type": "application/json"})
        assert refused.status_code == 415 and refused.headers.get("Connection", "").lower() == "close"
        assert session.get(f"{base_url}/api/health").status_code == 200  # the next request gets through
