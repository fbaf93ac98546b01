"""The search's result out of the browser: CSV and Parquet equal what QIDO-RS answers for the same filters;
a filter on an attribute the index has no column for."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from tests.dashboard.browsing import STUDIES, open_logged_in, shot, start

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = start(tmp_path_factory.mktemp("results") / "home", users=("viewer",))
    yield served
    served.server.stop()


def values(items: list[dict], keyword_tag: str) -> list:
    """One attribute of QIDO-RS results (DICOM JSON), by tag."""
    out = []
    for item in items:
        value = item.get(keyword_tag, {}).get("Value", [None])[0]
        out.append(value.get("Alphabetic") if isinstance(value, dict) else value)
    return out


def download(page, which: str) -> Path:
    with page.expect_download(timeout=60_000) as event:
        page.locator(f".pd-download-{which}").get_by_role("button").click()
    return Path(event.value.path())


def rows(page):
    return page.locator(".tabulator-row")


def test_csv_and_parquet_of_every_page_equal_qido(browser, served, tmp_path):
    context, page = open_logged_in(browser, served, "viewer", "/?name=link")
    expect(rows(page)).to_have_count(25, timeout=30_000)  # one page of the 30 studies
    studies = pd.read_csv(download(page, "csv"), dtype=str, keep_default_na=False)
    qido = served.qido("studies", PatientName="*link*", includefield="NumberOfStudyRelatedInstances")
    assert len(studies) == len(qido) == STUDIES
    assert set(studies["StudyInstanceUID"]) == set(values(qido, "0020000D"))
    by_uid = {item["0020000D"]["Value"][0]: item for item in qido}
    for _, row in studies.iterrows():
        item = by_uid[row["StudyInstanceUID"]]
        assert row["PatientID"] == values([item], "00100020")[0]
        assert row["StudyDate"].replace("-", "") == values([item], "00080020")[0]
        assert int(row["NumberOfStudyRelatedInstances"]) == int(values([item], "00201208")[0])
    # The study with two series, in Parquet at the series level: numbers are numbers, dates dates.
    page.locator(".pd-results-level select").select_option("series")
    series = pd.read_parquet(download(page, "parquet"))
    qido_series = served.qido("series", PatientName="*link*")
    assert sorted(series["SeriesInstanceUID"]) == sorted(values(qido_series, "0020000E"))
    assert len(series) == STUDIES + 1
    assert str(series["SeriesNumber"].dtype) == "Int64" and str(series["StudyDate"].dtype).startswith("datetime64")
    assert sorted(series.loc[series["PatientID"] == "LNK00", "SeriesNumber"]) == [1, 2]
    shot(page, tmp_path, "results-out")
    context.close()


def test_a_filter_on_an_attribute_without_a_column(browser, served, tmp_path):
    context, page = open_logged_in(browser, served, "viewer")
    expect(rows(page)).to_have_count(25, timeout=30_000)
    keyword = page.locator(".pd-filters input[placeholder='e.g. SliceThickness']")
    keyword.fill("ConvolutionKernel")
    value = page.get_by_placeholder("e.g. <=1, B30*, 120")
    value.fill("B30f")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(rows(page)).to_have_count(STUDIES // 5, timeout=30_000)  # k = 0, 5, 10, ...
    page.wait_for_function("() => window.location.search.includes('where=')", timeout=30_000)
    assert parse_qs(urlsplit(page.url).query)["where"] == ["ConvolutionKernel=B30f"]
    ids = sorted(c.inner_text() for c in page.locator(".tabulator-cell[tabulator-field='Patient ID']").all())
    assert ids == [f"LNK{k:02d}" for k in range(0, STUDIES, 5)]
    # The same filter, by QIDO-RS, and the instances out as CSV (with the attribute filtered on).
    qido = served.qido("instances", ConvolutionKernel="B30f", includefield="ConvolutionKernel")
    page.locator(".pd-results-level select").select_option("instances")
    instances = pd.read_csv(download(page, "csv"), dtype=str, keep_default_na=False)
    assert sorted(instances["SOPInstanceUID"]) == sorted(values(qido, "00080018"))
    assert set(instances["ConvolutionKernel"]) == {"B30f"} and len(instances) == STUDIES // 5 + 1
    # A numeric comparison on another one, typed in the page; a bad keyword is refused with a reason.
    keyword.fill("SliceThickness")
    value.fill("<=1")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("text=3 studies, page 1 of 1")).to_be_visible(timeout=30_000)  # k % 5 == 0, odd
    keyword.fill("NotAKeyword")
    value.fill("1")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".pd-where-hint")).to_contain_text("not a DICOM keyword", timeout=30_000)
    shot(page, tmp_path, "attribute-filter")
    context.close()
