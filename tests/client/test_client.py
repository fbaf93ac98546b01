"""pacsdash.client against pacsdash and against Debian's Orthanc with its
DICOMweb plugin, both holding the same files: the valid samples plus two
generated CT series with real geometry.

Each server gets the same questions; the answers are checked against what
pydicom reads from the original files (and, for volumes, against dcm2niix's
own conversion of them), not against the other server. Orthanc may refuse a
few odd samples: then only the files it accepted are compared for it.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import pacsdash.client.client as client_module
from pacsdash.client import Client, ClientError, Volume, connect
from tests.conftest import require_tool
from tests.factories import PREFIX, make_instance
from tests.helpers import VALID, OrthancProcess, ServerProcess, have_orthanc, run_cli

USER, PASSWORD = "reader", "reader-password-42"
SLICES, ROWS, COLUMNS = 10, 48, 64
#: Order the slices are written (and so stored) in: not by position, not by InstanceNumber.
STORED_ORDER = [3, 7, 0, 9, 1, 5, 2, 8, 4, 6]
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
TILTED = [1.0, 0.0, 0.0, 0.0, 0.9396926, -0.3420201]  # 20 degrees about x


@dataclass(frozen=True)
class Generated:
    """One generated CT series."""

    name: str
    orientation: list[float]
    thickness: float
    kernel: str
    study_date: str
    pixel_spacing: list[float]
    slope: float
    intercept: float
    signed: bool


SERIES = {
    "thin": Generated("thin", AXIAL, 0.625, "B30f", "20210304", [0.8, 0.7], 2.0, -1024.0, False),
    "tilted": Generated("tilted", TILTED, 2.5, "B70f", "20190607", [0.6, 0.9], 0.5, -10.0, True),
}


def write_series(spec: Generated, folder: Path, seed: int) -> list[Path]:
    """Ten 64x48 slices along the normal, InstanceNumber decreasing with
    position, written out of order."""
    study, series, frame = generate_uid(PREFIX), generate_uid(PREFIX), generate_uid(PREFIX)
    rng = np.random.default_rng(seed)
    normal = np.cross(spec.orientation[:3], spec.orientation[3:])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in STORED_ORDER:
        position = (np.array([-40.0, -30.0, 10.0]) + normal * spec.thickness * k).round(4).tolist()
        if spec.signed:
            pixels = rng.integers(-1000, 2000, (ROWS, COLUMNS), dtype=np.int16)
        else:
            pixels = rng.integers(0, 3000, (ROWS, COLUMNS), dtype=np.uint16)
        raw = make_instance(
            PatientID=f"GEN-{spec.name}", PatientName="Volume^Vera", StudyInstanceUID=study,
            SeriesInstanceUID=series, FrameOfReferenceUID=frame, StudyDate=spec.study_date, StudyTime="101500",
            SeriesNumber=3, InstanceNumber=SLICES - k, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
            Rows=ROWS, Columns=COLUMNS, PixelSpacing=spec.pixel_spacing, SliceThickness=spec.thickness,
            ConvolutionKernel=spec.kernel, ImageOrientationPatient=spec.orientation, ImagePositionPatient=position,
            RescaleSlope=spec.slope, RescaleIntercept=spec.intercept, PixelRepresentation=int(spec.signed),
            PixelData=pixels.tobytes(),
        )
        path = folder / f"{spec.name}-{k:02d}.dcm"
        path.write_bytes(raw)
        paths.append(path)
    return paths


@dataclass
class Corpus:
    samples: list[Path]
    generated: dict[str, list[Path]]
    headers: dict[Path, Dataset] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return self.samples + [p for paths in self.generated.values() for p in paths]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    folder = tmp_path_factory.mktemp("client-corpus")
    generated = {name: write_series(spec, folder / name, seed) for seed, (name, spec) in enumerate(SERIES.items())}
    corpus = Corpus(list(VALID), generated)
    corpus.headers = {p: dcmread(p, stop_before_pixels=True) for p in corpus.files}
    return corpus


@dataclass
class Server:
    """A running server, the files it holds, and how to reach it."""

    name: str
    url: str
    files: list[Path]
    credentials: dict[str, str]
    token: str | None = None

    def client(self, **overrides) -> Client:
        return connect(self.url, **{**self.credentials, **overrides})


@pytest.fixture(scope="module")
def pacsdash_server(tmp_path_factory, corpus):
    home = tmp_path_factory.mktemp("client-pacsdash") / "home"
    result = run_cli("users", "add", USER, "--role", "viewer", "--password-stdin", "--home", str(home),
                     input=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    result = run_cli("import", "--home", str(home), *map(str, corpus.files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"imported {len(corpus.files)} new" in result.stdout, result.stdout
    server = ServerProcess.start(home)
    token = json.loads((home / "run" / "server.json").read_text())["token"]
    yield Server("pacsdash", f"http://127.0.0.1:{server.http_port}/dicom-web", corpus.files,
                 {"user": USER, "password": PASSWORD}, token)
    server.stop()


@pytest.fixture(scope="module")
def orthanc_server(tmp_path_factory, corpus):
    require_tool(have_orthanc(), "Debian's orthanc and orthanc-dicomweb are not installed; .ci/run installs them")
    orthanc = OrthancProcess.start(tmp_path_factory.mktemp("client-orthanc"))
    accepted, refused = [], []
    for path in corpus.files:
        try:
            orthanc.upload(path)
            accepted.append(path)
        except (urllib.error.HTTPError, AssertionError):
            refused.append(path.name)
    # Odd samples Orthanc refuses are left out of its comparisons; the
    # generated series must get in.
    assert not any(p.name in refused for paths in corpus.generated.values() for p in paths), refused
    assert len(refused) <= 5, refused
    yield Server("orthanc", f"http://127.0.0.1:{orthanc.http_port}/dicom-web", accepted, {})
    orthanc.stop()


@pytest.fixture(params=["pacsdash", "orthanc"])
def server(request) -> Server:
    return request.getfixturevalue(f"{request.param}_server")


# -- what the files say -------------------------------------------------------------


def uids(corpus: Corpus, files: list[Path], keyword: str) -> set[str]:
    return {str(corpus.headers[p][keyword].value) for p in files}


def series_files(corpus: Corpus, name: str) -> list[Path]:
    return corpus.generated[name]


def first(corpus: Corpus, name: str) -> Dataset:
    return corpus.headers[series_files(corpus, name)[0]]


def sample(name: str) -> Path:
    return next(p for p in VALID if p.name == name)


# -- studies, series, instances ------------------------------------------------------


def test_both_servers_return_the_same_studies_series_and_instances(corpus, pacsdash_server, orthanc_server):
    answers = {}
    for server in (pacsdash_server, orthanc_server):
        client = server.client()
        answers[server.name] = {
            "StudyInstanceUID": set(client.studies()["StudyInstanceUID"]),
            "SeriesInstanceUID": set(client.series()["SeriesInstanceUID"]),
            "SOPInstanceUID": set(client.instances()["SOPInstanceUID"]),
        }
        for keyword, found in answers[server.name].items():
            assert found == uids(corpus, server.files, keyword), (server.name, keyword)
    # Compared on the files both hold (Orthanc may have refused a few).
    both = [p for p in orthanc_server.files if p in pacsdash_server.files]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        shared = uids(corpus, both, keyword)
        assert answers["pacsdash"][keyword] & shared == answers["orthanc"][keyword] & shared
    assert len(answers["pacsdash"]["SOPInstanceUID"]) == len(corpus.files)


def test_one_series_instances_and_a_filter(corpus, server):
    client = server.client()
    ds = first(corpus, "tilted")
    frame = client.instances(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert set(frame["SOPInstanceUID"]) == uids(corpus, series_files(corpus, "tilted"), "SOPInstanceUID")
    assert sorted(frame["InstanceNumber"]) == list(range(1, SLICES + 1))
    series = client.series(ds.StudyInstanceUID)
    assert list(series["SeriesInstanceUID"]) == [ds.SeriesInstanceUID]
    found = client.studies(PatientID="GEN-tilted")
    assert list(found["StudyInstanceUID"]) == [ds.StudyInstanceUID]
    nobody = client.studies(PatientID="NOBODY-HERE")
    assert len(nobody) == 0 and "StudyInstanceUID" in nobody
    none = client.cohort("series", Modality="CT", **{"00180050": "<0.1"})
    assert len(none) == 0 and {"SeriesInstanceUID", "SliceThickness"} <= set(none.columns)


def test_dataframes_are_typed_by_vr(corpus, server):
    client = server.client()
    studies = client.studies()
    assert pd.api.types.is_datetime64_any_dtype(studies["StudyDate"])
    assert pd.api.types.is_numeric_dtype(studies["NumberOfStudyRelatedInstances"])
    assert pd.api.types.is_numeric_dtype(studies["NumberOfStudyRelatedSeries"])
    thin = first(corpus, "thin")
    row = studies.set_index("StudyInstanceUID").loc[thin.StudyInstanceUID]
    assert row["StudyDate"] == pd.Timestamp("2021-03-04")
    assert row["PatientName"] == "Volume, Vera"
    assert row["NumberOfStudyRelatedInstances"] == SLICES
    ct = dcmread(sample("CT_small.dcm"), stop_before_pixels=True)
    row = studies.set_index("StudyInstanceUID").loc[ct.StudyInstanceUID]
    assert row["PatientName"] == "CompressedSamples, CT1"
    assert row["StudyDate"] == pd.Timestamp("2004-01-19")

    series = client.series(thin.StudyInstanceUID)
    assert pd.api.types.is_numeric_dtype(series["SeriesNumber"]) and list(series["SeriesNumber"]) == [3]
    assert pd.api.types.is_numeric_dtype(series["NumberOfSeriesRelatedInstances"])
    instances = client.instances(thin.StudyInstanceUID, thin.SeriesInstanceUID)
    for column in ("InstanceNumber", "Rows", "Columns"):
        assert pd.api.types.is_numeric_dtype(instances[column]), column
    assert set(instances["Rows"]) == {ROWS} and set(instances["Columns"]) == {COLUMNS}


def test_paging_brings_every_result(corpus, server, monkeypatch):
    client = server.client()
    unpaged = {level: getattr(client, level)() for level in ("studies", "series", "instances")}
    pages: list[tuple[int, int]] = []
    search = DICOMwebClient.search_for_instances

    def counted(self, *args, **kwargs):
        pages.append((kwargs.get("limit"), kwargs.get("offset")))
        return search(self, *args, **kwargs)

    monkeypatch.setattr(client_module, "PAGE", 3)
    monkeypatch.setattr(DICOMwebClient, "search_for_instances", counted)
    for level, key in (("studies", "StudyInstanceUID"), ("series", "SeriesInstanceUID"),
                       ("instances", "SOPInstanceUID")):
        paged = getattr(client, level)()
        assert len(paged) == len(unpaged[level]), level
        assert not paged[key].duplicated().any(), level
        assert set(paged[key]) == set(unpaged[level][key]), level
    count = len(server.files)
    # Every page, then one more request whose empty answer ends it (a short page may only be a server's cap).
    assert pages == [(3, offset) for offset in range(0, count, 3)] + [(3, count)]
    ds = first(corpus, "thin")
    assert len(client.instances(ds.StudyInstanceUID, ds.SeriesInstanceUID)) == SLICES


# -- volumes -------------------------------------------------------------------------


def slices_by_position(paths: list[Path]) -> list[Dataset]:
    """The slices as pydicom reads them, sorted along the normal."""
    slices = [dcmread(p) for p in paths]
    orientation = np.array(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(slices, key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))


def modality_values(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.mark.parametrize("name", list(SERIES))
def test_volume_equals_the_slices_read_with_pydicom(corpus, server, name):
    spec = SERIES[name]
    slices = slices_by_position(series_files(corpus, name))
    ds = slices[0]
    volume = server.client().volume(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert isinstance(volume, Volume)
    assert volume.shape == (SLICES, ROWS, COLUMNS)
    assert [h.SOPInstanceUID for h in volume.headers] == [s.SOPInstanceUID for s in slices]
    # Sorted by position, which is the reverse of InstanceNumber and unlike the stored order.
    assert [int(h.InstanceNumber) for h in volume.headers] == list(range(SLICES, 0, -1))
    expected = np.stack([modality_values(s) for s in slices])
    assert np.array_equal(volume.array.astype(np.float64), expected)
    assert volume.spacing == pytest.approx((spec.thickness, spec.pixel_spacing[0], spec.pixel_spacing[1]), rel=1e-4)

    # World coordinates of each slice's corner voxels are where the files put them.
    row_dir = np.array(spec.orientation[:3])
    col_dir = np.array(spec.orientation[3:])
    dy, dx = spec.pixel_spacing
    for k, s in enumerate(slices):
        position = np.array(s.ImagePositionPatient, dtype=float)
        for i, j in ((0, 0), (COLUMNS - 1, 0), (0, ROWS - 1), (COLUMNS - 1, ROWS - 1)):
            ras = volume.affine @ np.array([i, j, k, 1.0])
            lps = ras[:3] * np.array([-1.0, -1.0, 1.0])
            assert np.allclose(lps, position + i * dx * row_dir + j * dy * col_dir, atol=1e-3), (k, i, j)
    assert np.allclose(volume.affine[3], [0, 0, 0, 1])

    stored = server.client().volume(ds.StudyInstanceUID, ds.SeriesInstanceUID, rescale=False)
    assert np.array_equal(stored.array, np.stack([s.pixel_array for s in slices]))
    assert stored.array.dtype == (np.int16 if spec.signed else np.uint16)


def test_volume_is_fetched_in_as_few_requests_as_the_server_allows(corpus, server, monkeypatch):
    """pacsdash: the series' metadata and its Series Pixel Data, two requests. Orthanc offers no Pixel Data
    resource: tried once, then the metadata and one frames request a slice. The same volume either way."""
    sent: list[str] = []
    original = client_module.QuerySession.send

    def recording(self, request, **kwargs):
        sent.append(request.url.split("?")[0].rsplit("/", 2)[-2:][0] if "/frames/" in request.url
                    else request.url.split("?")[0].rsplit("/", 1)[-1])
        return original(self, request, **kwargs)

    monkeypatch.setattr(client_module.QuerySession, "send", recording)
    client = server.client()
    ds = first(corpus, "thin")
    expected = np.stack([modality_values(s) for s in slices_by_position(series_files(corpus, "thin"))])
    for attempt in range(2):
        sent.clear()
        volume = client.volume(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert np.array_equal(volume.array.astype(np.float64), expected)
        if server.name == "pacsdash":
            assert sorted(sent) == ["metadata", "pixeldata"], sent
            assert client.series_pixel_data is True
        else:
            tried = ["pixeldata"] if attempt == 0 else []
            assert sorted(sent) == sorted(["metadata", *tried, *["frames"] * SLICES]), sent
            assert client.series_pixel_data is False


def test_volume_headers_are_whole_pydicom_headers(corpus, server):
    spec = SERIES["tilted"]
    slices = slices_by_position(series_files(corpus, "tilted"))
    volume = server.client().volume(slices[0].StudyInstanceUID, slices[0].SeriesInstanceUID)
    assert len(volume.headers) == SLICES
    for header, original in zip(volume.headers, slices):
        assert isinstance(header, Dataset)
        assert header.SOPInstanceUID == original.SOPInstanceUID
        assert header.ConvolutionKernel == spec.kernel and str(header.PatientName) == "Volume^Vera"
        assert header.StudyDate == spec.study_date and float(header.SliceThickness) == spec.thickness
        assert [float(v) for v in header.ImagePositionPatient] == pytest.approx(
            [float(v) for v in original.ImagePositionPatient])
    assert volume.headers[1:3] == [volume.headers[1], volume.headers[2]]
    assert volume.headers[0] is volume.headers[0]  # built once


@pytest.fixture(scope="module")
def dcm2niix_images(corpus, tmp_path_factory):
    """dcm2niix's own conversion of each generated series' files."""
    import nibabel
    from dcm2niix import bin as dcm2niix

    images = {}
    for name, paths in corpus.generated.items():
        out = tmp_path_factory.mktemp(f"dcm2niix-{name}")
        (out / "in").mkdir()
        for path in paths:
            (out / "in" / path.name).write_bytes(path.read_bytes())
        subprocess.run([dcm2niix, "-z", "n", "-f", "ref", "-o", str(out), str(out / "in")],
                       check=True, capture_output=True, timeout=120)
        images[name] = nibabel.load(out / "ref.nii")
    return images


@pytest.mark.parametrize("name", list(SERIES))
def test_volume_as_nifti_matches_dcm2niix(corpus, server, dcm2niix_images, name):
    import nibabel

    ds = first(corpus, name)
    volume = server.client().volume(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    ours = nibabel.as_closest_canonical(nibabel.Nifti1Image(volume.array.transpose(2, 1, 0), volume.affine))
    theirs = nibabel.as_closest_canonical(dcm2niix_images[name])
    assert ours.shape == theirs.shape == (COLUMNS, ROWS, SLICES)
    assert np.array_equal(np.asarray(ours.get_fdata()), np.asarray(theirs.get_fdata()))
    assert np.allclose(ours.affine, theirs.affine, atol=1e-3), (ours.affine, theirs.affine)


# -- frames --------------------------------------------------------------------------

#: (sample, frame number, what Orthanc may do): "exact"; a tolerance for
#: lossy JPEG, which Orthanc's decoder (DCMTK's IJG) rounds differently
#: from pydicom's (libjpeg); or "may refuse" where Debian's Orthanc cannot
#: transcode (JPEG 2000; YBR_FULL_422 to octet-stream).
FRAMES = [
    ("CT_small.dcm", 1, "exact"),                       # 16-bit signed, explicit VR LE
    ("MR_small_bigendian.uidfix.dcm", 1, "exact"),      # big endian, served little endian
    ("MR_small_RLE.uidfix.dcm", 1, "exact"),            # RLE
    ("MR_small_jpeg_ls_lossless.uidfix.dcm", 1, "exact"),
    ("MR_small_jp2klossless.uidfix.dcm", 1, "may refuse"),
    ("JPGExtended.dcm", 1, 3),                          # 12-bit lossy JPEG
    ("SC_rgb_dcmtk_+eb+cr.dcm", 1, 3),                  # RGB, JPEG baseline
    ("SC_rgb_jpeg_dcmtk.dcm", 1, 3),                    # YBR_FULL JPEG baseline, decoded to RGB
    ("SC_rgb_jpeg_gdcm.dcm", 1, "exact"),               # RGB, lossless JPEG
    ("examples_rgb_color.dcm", 1, "exact"),             # RGB, uncompressed
    ("ExplVR_BigEnd.dcm", 1, "exact"),                  # RGB, planar configuration 1, big endian
    ("examples_palette.dcm", 1, "exact"),               # PALETTE COLOR: the indices
    ("SC_rgb_rle_2frame.uidfix.dcm", 2, "exact"),       # second frame
    ("SC_rgb_rle_16bit.uidfix.dcm", 1, "exact"),        # 16 bits a sample
    ("SC_ybr_full_422_uncompressed.dcm", 1, "may refuse"),
    ("rtdose.dcm", 15, "exact"),                        # 32-bit, last of 15 frames
    ("liver_1frame.dcm", 1, "exact"),                   # 1-bit segmentation
]


@pytest.mark.parametrize(("name", "number", "orthanc"), FRAMES, ids=[f[0] for f in FRAMES])
def test_frame_is_what_pydicom_reads(server, name, number, orthanc):
    path = sample(name)
    if path not in server.files:
        pytest.skip(f"{server.name} refused {name}")
    ds = dcmread(path)
    expected = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        expected = expected[number - 1]
    client = server.client()
    try:
        got = client.frame(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, number)
    except ClientError as exc:
        if server.name == "orthanc" and orthanc == "may refuse":
            assert exc.status is not None and exc.status >= 400
            assert f"/instances/{ds.SOPInstanceUID}/frames/{number}" in str(exc)
            return
        raise
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype.newbyteorder("=")  # native order, whatever the file's
    if server.name == "orthanc" and isinstance(orthanc, int):
        assert np.abs(got.astype(np.int64) - expected.astype(np.int64)).max() <= orthanc
    else:
        assert np.array_equal(got, expected)


def test_frame_rescaled_gives_modality_values(corpus, server):
    client = server.client()
    for path in (series_files(corpus, "thin")[0], series_files(corpus, "tilted")[0], sample("CT_small.dcm")):
        ds = dcmread(path)
        got = client.frame(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, rescale=True)
        assert got.dtype == np.float32
        assert np.array_equal(got.astype(np.float64), modality_values(ds)), path.name


def test_dataset_and_metadata(corpus, server):
    client = server.client()
    path = series_files(corpus, "thin")[0]
    original = dcmread(path)
    got = client.dataset(original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID)
    assert got.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(got.pixel_array, original.pixel_array)
    headers = client.metadata(original.StudyInstanceUID, original.SeriesInstanceUID)
    assert {h.SOPInstanceUID for h in headers} == uids(corpus, series_files(corpus, "thin"), "SOPInstanceUID")
    assert {str(h.ConvolutionKernel) for h in headers} == {"B30f"}


# -- cohorts -------------------------------------------------------------------------


def expected_series(corpus: Corpus, files: list[Path], keep) -> set[str]:
    """Series any of whose files meets ``keep`` (a plain predicate on the header)."""
    return {str(corpus.headers[p].SeriesInstanceUID) for p in files if keep(corpus.headers[p])}


def thickness(ds: Dataset) -> float | None:
    return float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None


def ct(ds: Dataset) -> bool:
    return ds.get("Modality") == "CT"


COHORTS = [
    ({"Modality": "CT", "SliceThickness": "<=1", "ConvolutionKernel": "B30f"},
     lambda ds: ct(ds) and (thickness(ds) or 99) <= 1 and ds.get("ConvolutionKernel") == "B30f"),
    ({"Modality": "CT", "SliceThickness": ">1", "ConvolutionKernel": "B70f"},
     lambda ds: ct(ds) and (thickness(ds) or 0) > 1 and ds.get("ConvolutionKernel") == "B70f"),
    ({"SliceThickness": "<1"}, lambda ds: (thickness(ds) or 99) < 1),
    ({"Modality": "CT", "SliceThickness": "<=0.625"}, lambda ds: ct(ds) and (thickness(ds) or 99) <= 0.625),
    ({"Modality": "CT", "SliceThickness": "<0.625"}, lambda ds: ct(ds) and (thickness(ds) or 99) < 0.625),
    ({"Modality": "CT", "SliceThickness": ">=2.5"}, lambda ds: ct(ds) and (thickness(ds) or 0) >= 2.5),
    ({"Modality": "CT", "SliceThickness": "!=5"}, lambda ds: ct(ds) and thickness(ds) not in (None, 5.0)),
    ({"Modality": "CT", "ConvolutionKernel": "B*"},
     lambda ds: ct(ds) and str(ds.get("ConvolutionKernel", "")).startswith("B")),
]


@pytest.mark.parametrize(("conditions", "keep"), COHORTS,
                         ids=[",".join(f"{k}{v}" for k, v in c.items()) for c, _ in COHORTS])
def test_series_cohort(corpus, server, conditions, keep, monkeypatch):
    client = server.client()
    sent: list[dict] = []
    search = Client._search

    def spy(self, level, filters, *args, **kwargs):
        sent.append(dict(filters))
        return search(self, level, filters, *args, **kwargs)

    monkeypatch.setattr(Client, "_search", spy)
    if server.name == "pacsdash":
        monkeypatch.setattr(Client, "_filter_here", lambda *a: pytest.fail("pacsdash evaluates every condition"))
    found = client.cohort("series", **conditions)
    assert set(found["SeriesInstanceUID"]) == expected_series(corpus, server.files, keep)
    assert not found["SeriesInstanceUID"].duplicated().any()
    here = [item.split("=", 1)[0] for item in found.attrs["filtered_here"]]
    if server.name == "pacsdash":
        assert client.extensions == {"numeric-comparison"}
        assert here == [] and client.last_note == ""
        assert sent == [conditions]
    else:
        assert client.extensions == set()
        # Modality is matched by every QIDO-RS server; the rest is checked here.
        assert here == [k for k in conditions if k != "Modality"]
        assert sent == [{k: v for k, v in conditions.items() if k == "Modality"}]
        assert client.url in client.last_note
        assert all(k in client.last_note for k in here)


def test_the_first_cohort_is_exactly_the_thin_b30f_series(corpus, server):
    """The issue's example, spelled out."""
    client = server.client()
    found = client.cohort("series", Modality="CT", SliceThickness="<=1", ConvolutionKernel="B30f")
    assert list(found["SeriesInstanceUID"]) == [first(corpus, "thin").SeriesInstanceUID]
    assert found["SliceThickness"].tolist() == [0.625]
    assert found["ConvolutionKernel"].tolist() == ["B30f"]
    if server.name == "pacsdash":
        assert found.attrs["filtered_here"] == []
    else:
        assert found.attrs["filtered_here"] == ["SliceThickness=<=1", "ConvolutionKernel=B30f"]
        assert "SliceThickness" in client.last_note and "ConvolutionKernel" in client.last_note
    client.cohort("series", Modality="CT")
    assert client.last_note == ""  # a later cohort the server evaluates whole says nothing


def studies_by_date(corpus: Corpus, files: list[Path], low: str, high: str) -> set[str]:
    """Studies dated within [low, high]; a study without a date is in no
    range; ACR-NEMA's 1997.04.24 (ExplVR_BigEnd.dcm) is 19970424."""
    found = set()
    for p in files:
        date = str(corpus.headers[p].get("StudyDate", "") or "").replace(".", "")
        if len(date) == 8 and date.isdigit() and (not low or date >= low) and (not high or date <= high):
            found.add(str(corpus.headers[p].StudyInstanceUID))
    return found


@pytest.mark.parametrize(("low", "high"), [("20190101", "20211231"), ("", "20040120"), ("20210304", "")])
def test_study_cohort_with_a_date_range(corpus, server, low, high):
    client = server.client()
    found = client.cohort("study", StudyDate=f"{low}-{high}")
    expected = studies_by_date(corpus, server.files, low, high)
    assert expected
    assert set(found["StudyInstanceUID"]) == expected
    assert pd.api.types.is_datetime64_any_dtype(found["StudyDate"])
    assert found["StudyDate"].notna().all()
    if server.name == "pacsdash":
        assert found.attrs["filtered_here"] == [] and client.last_note == ""
    else:
        # A range every server is asked to match; what it answers outside the
        # range (Orthanc: studies without a date for "-20040120") is left
        # out here, and said.
        answered = {r["0020000D"]["Value"][0] for r in client._search("study", {"StudyDate": f"{low}-{high}"})}
        assert answered >= expected
        if answered == expected:
            assert found.attrs["filtered_here"] == [] and client.last_note == ""
        else:
            assert found.attrs["filtered_here"] == [f"StudyDate={low}-{high}"]
            assert "StudyDate" in client.last_note and client.url in client.last_note


def test_study_cohort_on_an_instance_attribute(corpus, server):
    client = server.client()
    found = client.cohort("study", StudyDate="20190101-20211231", SliceThickness=">1")
    in_range = studies_by_date(corpus, server.files, "20190101", "20211231")
    thick = {str(corpus.headers[p].StudyInstanceUID) for p in server.files if (thickness(corpus.headers[p]) or 0) > 1}
    assert first(corpus, "tilted").StudyInstanceUID in in_range & thick
    assert first(corpus, "thin").StudyInstanceUID in in_range - thick
    assert set(found["StudyInstanceUID"]) == in_range & thick
    expected = [] if server.name == "pacsdash" else ["SliceThickness=>1"]
    assert found.attrs["filtered_here"] == expected


# -- errors --------------------------------------------------------------------------


def test_a_wrong_password_is_a_401_naming_the_url(pacsdash_server):
    client = pacsdash_server.client(password="not-the-password")
    for call in (client.studies, lambda: client.cohort("series", SliceThickness="<=1")):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.status == 401
        assert f"{pacsdash_server.url}/studies" in str(caught.value)
        assert caught.value.url.startswith(f"{pacsdash_server.url}/studies")


def test_a_bearer_token(pacsdash_server):
    good = pacsdash_server.client(user=None, password=None, token=pacsdash_server.token)
    assert len(good.studies()) > 0
    with pytest.raises(ClientError) as caught:
        pacsdash_server.client(user=None, password=None, token="not-the-token").studies()
    assert caught.value.status == 401


def test_an_unknown_instance_is_a_404(corpus, server):
    client = server.client()
    ds = first(corpus, "thin")
    unknown = "1.2.826.0.1.3680043.10.1474.9.404"
    for call in (lambda: client.dataset(ds.StudyInstanceUID, ds.SeriesInstanceUID, unknown),
                 lambda: client.frame(ds.StudyInstanceUID, ds.SeriesInstanceUID, unknown),
                 lambda: client.metadata(ds.StudyInstanceUID, unknown),
                 lambda: client.volume(ds.StudyInstanceUID, unknown)):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.status == 404
        assert unknown in str(caught.value) and server.url in str(caught.value)
