"""The dashboard's layout at 1366x768 and 1920x1080: screenshots kept, main parts neither clipped nor overlapping;
the small fixes (no-peers hint, delete confirmation apart, messages that push nothing down)."""

from __future__ import annotations

import pytest

from tests.dashboard.browsing import first_study, open_logged_in, shot, start
from tests.helpers import free_port, run_cli

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

pytestmark = pytest.mark.browser
SIZES = [(1366, 768), (1920, 1080)]
#: The studies tab's main parts, by selector.
STUDIES_PARTS = {"header": ".pd-header", "tabs": ".bk-header", "filters": ".pd-filters", "table": ".pd-studies",
                 "results out": ".pd-results-out"}
STUDY_PARTS = {"header": ".pd-header", "title": ".pd-study-title", "actions": ".pd-study-actions",
               "series list": ".pd-series-list", "viewer": ".pd-viewer", "delete": ".pd-delete-zone",
               "message": ".pd-message-slot", "link": ".pd-link"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = start(tmp_path_factory.mktemp("layout") / "home", users=("admin",))
    yield served
    served.server.stop()


def boxes(page, parts: dict[str, str]) -> dict[str, dict]:
    """The bounding box of the first visible element of each part."""
    out = {}
    for name, selector in parts.items():
        locator = page.locator(selector).first
        expect(locator).to_be_visible(timeout=30_000)
        out[name] = locator.bounding_box()
    return out


def all_boxes(page, selector: str) -> list[dict]:
    """Bounding boxes of every visible element matching ``selector`` (at least one)."""
    found = [b for b in (e.bounding_box() for e in page.locator(selector).all()) if b and b["width"]]
    assert found, selector
    return found


def overlap(a: dict, b: dict) -> float:
    """Area shared by two boxes (pixels)."""
    width = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    height = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(width, 0) * max(height, 0)


def assert_laid_out(found: dict[str, dict], viewport: tuple[int, int], apart: list[tuple[str, str]]) -> None:
    """Every part inside the viewport's width (nothing clipped at the sides), the pairs ``apart`` not overlapping."""
    for name, box in found.items():
        assert box["width"] > 0 and box["height"] > 0, name
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport[0] + 0.5, f"{name} clipped: {box}"
    for first, second in apart:
        assert overlap(found[first], found[second]) < 1, f"{first} overlaps {second}: {found[first]} {found[second]}"


def test_an_empty_send_list_says_how_to_register_a_peer(browser, served, tmp_path):
    context, page = open_logged_in(browser, served, "admin", f"/study/{first_study(served)}")
    hint = page.locator(".pd-no-peers")
    expect(hint).to_contain_text("No peers to send to yet", timeout=30_000)
    expect(hint).to_contain_text(f"pacsdash modalities add NAME --aet AET --host HOST --port N --home {served.home}")
    expect(hint.get_by_role("link", name="admin page (/admin)")).to_have_attribute("href", "/admin")
    assert page.get_by_role("button", name="Send", exact=True).count() == 0
    shot(page, tmp_path, "no-peers-hint")
    context.close()


@pytest.mark.parametrize("viewport", SIZES, ids=lambda v: f"{v[0]}x{v[1]}")
def test_the_studies_and_study_tabs_fit(browser, served, tmp_path, viewport):
    if not [m for m in run_cli("modalities", "list", "--home", str(served.home)).stdout.split() if m == "nowhere"]:
        added = run_cli("modalities", "add", "nowhere", "--aet", "NOWHERE", "--host", "127.0.0.1", "--port",
                        str(free_port()), "--home", str(served.home))  # nothing listens there
        assert added.returncode == 0, added.stderr
    context, page = open_logged_in(browser, served, "admin", viewport=viewport)
    expect(page.locator(".tabulator-row").first).to_be_visible(timeout=30_000)
    found = boxes(page, STUDIES_PARTS)
    assert_laid_out(found, viewport, [("header", "tabs"), ("tabs", "filters"), ("tabs", "table"),
                                      ("filters", "table"), ("filters", "results out"), ("table", "results out")])
    assert found["table"]["y"] + found["table"]["height"] <= viewport[1]  # the table's end on screen
    for box in all_boxes(page, ".pd-filters input, .pd-filters select"):  # no box under the table
        assert box["x"] >= 0 and box["x"] + box["width"] <= found["table"]["x"] - 5, box  # whole, with a gap
    for box in all_boxes(page, ".pd-results-out button, .pd-results-out select"):
        assert box["x"] + box["width"] <= viewport[0], box
    shot(page, tmp_path, f"studies-{viewport[0]}x{viewport[1]}")

    page.goto(f"{served.url}/study/{first_study(served)}")
    expect(page.locator(".pd-study-title")).to_contain_text("LINK STUDY 00", timeout=30_000)
    found = boxes(page, STUDY_PARTS)
    assert_laid_out(found, viewport, [("title", "actions"), ("title", "link"), ("actions", "series list"),
                                      ("actions", "viewer"), ("series list", "viewer"), ("message", "delete")])
    # The delete confirmation is apart from the other actions and above its button, which waits for it.
    delete = page.get_by_role("button", name="Delete study")
    expect(delete).to_be_disabled()
    confirm, button = page.locator(".pd-delete-zone input[type=checkbox]").bounding_box(), delete.bounding_box()
    assert confirm["y"] + confirm["height"] <= button["y"]
    assert found["delete"]["x"] - (found["message"]["x"] + found["message"]["width"]) >= 10
    # A message takes the room left in the actions row: the viewer and its attributes stay where they were.
    attributes = page.get_by_role("button", name="Attributes")
    before = attributes.bounding_box()
    assert before["y"] + before["height"] <= viewport[1], "the attributes are below the screen"
    page.locator(".pd-study-actions select").select_option("nowhere")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".pd-message")).to_contain_text("Could not send to nowhere", timeout=60_000)
    assert attributes.bounding_box() == before
    assert_laid_out(boxes(page, STUDY_PARTS), viewport, [("message", "delete"), ("actions", "viewer")])
    shot(page, tmp_path, f"study-{viewport[0]}x{viewport[1]}")
    context.close()
