"""The reader page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright), at 1024x640 and
1920x1080: layout, practice feedback, window/level, zoom, slices, marker, sign-in links and the answers in SQLite."""
from __future__ import annotations

import io
import json
import shutil
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rs_helpers import free_port, start_server

from reader_study.build import build_study
from reader_study.render import RenderSettings
from reader_study.store import add_reader

CHROMIUM = Path("/usr/bin/chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the 'test' extra is not installed
    expect = sync_playwright = None

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# Large enough in plane (96 px) for the marker and the scale bar to show; small enough to build in a second.
SETTINGS = RenderSettings(fov_mm=48.0, depth_mm=24.0, pixel_mm=0.5, slice_mm=2.0, views=("axial", "coronal"))
SMALL_SCREEN, LARGE_SCREEN = {"width": 1024, "height": 640}, {"width": 1920, "height": 1080}
ANSWER_CONTROLS = ("#answers", "#confidence", "#comment", "#submit")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium); `make browser` installs Debian's package")
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                     args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _serve(study: Path):
    port = free_port()
    return start_server(study, port), f"http://127.0.0.1:{port}"


def _stop(server) -> None:
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)


def _with_practice(study: Path, count: int) -> list[dict]:
    """Turn the study's first ``count`` items into practice items, as `build --practice` writes them."""
    data = json.loads((study / "study.json").read_text())
    key = json.loads((study / "key" / "answer_key.json").read_text())
    for item in data["items"][:count]:
        item["practice"], item["truth"] = True, key["items"][item["id"]]["kind"]
    (study / "study.json").write_text(json.dumps(data))
    return data["items"][:count]


def _new_page(browser, viewport, errors: list):
    page = browser.new_page(viewport=viewport)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A CSP violation (inline script or style the policy forbids) shows only on the console; so do 404s. The
    # 401 of asking who is signed in before anyone is, is expected.
    page.on("console", lambda msg: msg.type == "error" and "status of 401" not in msg.text and errors.append(msg.text))
    return page


def _coloured_pixels(png: bytes) -> int:
    """Pixels that are not grey: the image and every label are grey, only the lesion marker has colour."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 80).sum())


def _assert_answer_controls_visible(page, viewport) -> None:
    """No scrolling needed to answer: every answer control lies wholly inside the window."""
    for selector in ANSWER_CONTROLS:
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
        assert box["x"] + box["width"] <= viewport["width"] and box["y"] + box["height"] <= viewport["height"], \
            (selector, box, viewport)


def _current_item(page, url: str) -> dict:
    # The browser's own cookie: the case the page shows is the reader's next unrated one.
    return page.request.get(f"{url}/api/next").json()["item"]


def _drawn(page, canvas: str) -> int:
    page.wait_for_selector(f"{canvas}[data-drawn]")
    return int(page.get_attribute(canvas, "data-drawn"))


def _rows(study: Path, table: str, reader: str) -> list[dict]:
    with sqlite3.connect(study / "ratings.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT t.* FROM {table} t JOIN readers USING (reader_id) "
                                            "WHERE name = ? ORDER BY created", (reader,))]


@pytest.fixture(scope="module")
def single_study(sources, tmp_path_factory):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path_factory.mktemp("browser") / "study", seed=31, settings=SETTINGS)
    practice = _with_practice(study, 2)
    return study, practice


def test_practice_window_zoom_marker_and_answers_at_1024(browser, single_study, tmp_path):
    study, practice = single_study
    token = add_reader(study, "small-screen")
    server, url = _serve(study)
    errors: list[str] = []
    try:
        page = _new_page(browser, SMALL_SCREEN, errors)
        page.goto(f"{url}/#token={token}")
        # Practice first, with feedback: one right answer, one wrong one.
        expect(page.locator("#practice-badge")).to_be_visible()
        expect(page.locator("#progress")).to_have_text("practice 1 of 2")
        _assert_answer_controls_visible(page, SMALL_SCREEN)
        truth = practice[0]["truth"]
        page.keyboard.press("S" if truth == "synthetic" else "R")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        expect(page.locator("#feedback-text")).to_contain_text(f"Correct. This lesion is {truth}.")
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("practice 2 of 2")
        truth = practice[1]["truth"]
        page.keyboard.press("R" if truth == "synthetic" else "S")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        expect(page.locator("#feedback-text")).to_contain_text(f"Incorrect. This lesion is {truth}.")
        expect(page.locator("#feedback-text")).to_contain_text("last practice case")
        page.click("#feedback-next")
        expect(page.locator("#progress")).to_have_text("case 1 of 6 (0 rated)")
        expect(page.locator("#practice-badge")).to_be_hidden()

        # The stack opens on the lesion's central slice, with the marker drawn in colour.
        item = _current_item(page, url)
        axial = "#view-a-axial"
        lesion = item["lesion_slice"]["a"]["axial"]
        assert _drawn(page, axial) == lesion
        assert page.get_attribute(axial, "data-marker") == "box"
        assert _coloured_pixels(page.locator(axial).screenshot()) > 20
        page.keyboard.press("m")  # the reader may hide it
        assert page.get_attribute(axial, "data-marker") == "none"
        assert _coloured_pixels(page.locator(axial).screenshot()) == 0
        page.keyboard.press("m")
        _assert_answer_controls_visible(page, SMALL_SCREEN)
        page.screenshot(path=str(tmp_path / "reader_1024.png"))

        # Slices: wheel and arrow keys, clamped to the stack.
        n = SETTINGS.n_slices
        box = page.locator(axial).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 120)
        page.mouse.wheel(0, 120)
        expect(page.locator(axial)).to_have_attribute("data-drawn", str(min(lesion + 2, n - 1)))
        page.keyboard.press("ArrowDown")
        expect(page.locator(axial)).to_have_attribute("data-drawn", str(max(min(lesion + 2, n - 1) - 1, 0)))
        visited = len({lesion, min(lesion + 1, n - 1), min(lesion + 2, n - 1), max(min(lesion + 2, n - 1) - 1, 0)})

        # Window: the liver preset, then a drag (right = wider, down = higher level); zoom with Ctrl+wheel.
        viewer = page.locator("#viewer")
        expect(viewer).to_have_attribute("data-window-width", "400")
        page.keyboard.press("w")
        expect(viewer).to_have_attribute("data-window-width", "150")
        expect(viewer).to_have_attribute("data-window-level", "90")
        page.mouse.move(box["x"] + 40, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 80, box["y"] + 60, steps=4)
        page.mouse.up()
        width = float(viewer.get_attribute("data-window-width"))
        level = float(viewer.get_attribute("data-window-level"))
        assert width > 150 and level > 90
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.keyboard.down("Control")
        page.mouse.wheel(0, -200)
        page.keyboard.up("Control")
        expect(viewer).not_to_have_attribute("data-zoom", "1")  # wheel events may land after mouse.wheel returns
        zoom = float(viewer.get_attribute("data-zoom"))
        assert zoom > 1.2
        # Right-drag pans without touching the window.
        page.mouse.down(button="right")
        page.mouse.move(box["x"] + box["width"] / 2 + 30, box["y"] + box["height"] / 2, steps=3)
        page.mouse.up(button="right")
        assert float(viewer.get_attribute("data-window-width")) == width

        # Answer by keyboard, comment, submit with Ctrl+Enter from the comment box.
        assert page.is_disabled("#submit")
        page.keyboard.press("s")
        assert page.is_disabled("#submit")
        page.keyboard.press("4")
        page.fill("#comment", "  rim looks too smooth  ")
        page.focus("#comment")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#progress")).to_have_text("case 2 of 6 (1 rated)")

        # "Not visible" needs no confidence and stores none.
        second = _current_item(page, url)
        page.wait_for_selector(f"{axial}[data-drawn]")
        page.keyboard.press("n")
        expect(page.locator("#confidence")).to_have_js_property("disabled", True)
        assert page.is_enabled("#submit")
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("case 3 of 6 (2 rated)")
        assert errors == []
    finally:
        _stop(server)
    scored = _rows(study, "ratings", "small-screen")
    assert [(r["item_id"], r["answer"], r["confidence"]) for r in scored] == [
        (item["item_id"], "synthetic", 4), (second["item_id"], "not_visible", None)]
    first = scored[0]
    assert first["comment"] == "rim looks too smooth"
    assert (first["window_width"], first["window_level"]) == (width, level)
    assert first["zoom"] == pytest.approx(zoom) and first["slices_visited"] == visited
    assert first["client_seconds"] > 0
    # The second case was left at the study's window, fitted, on its opening slice.
    assert (scored[1]["window_width"], scored[1]["window_level"], scored[1]["zoom"], scored[1]["slices_visited"]) \
        == (400.0, 40.0, 1.0, 1)
    assert [(r["item_id"], r["confidence"]) for r in _rows(study, "practice_ratings", "small-screen")] == [
        (practice[0]["id"], 3), (practice[1]["id"], 2)]


def test_layout_at_1920_and_sign_in_link_in_an_open_tab(browser, single_study, tmp_path):
    study, _ = single_study
    first, second = add_reader(study, "large-1"), add_reader(study, "large-2")
    admin = add_reader(study, "browser-admin", admin=True)
    server, url = _serve(study)
    errors: list[str] = []
    try:
        page = _new_page(browser, LARGE_SCREEN, errors)
        loads = []
        page.on("load", lambda _: loads.append(1))
        page.goto(f"{url}/#token={first}")
        expect(page.locator("#reader-name")).to_have_text("large-1")
        _drawn(page, "#view-a-axial")
        assert page.url == f"{url}/"  # the token left the address bar
        _assert_answer_controls_visible(page, LARGE_SCREEN)
        expect(page.locator("#help")).to_have_attribute("open", "")  # room for the shortcuts
        # The axial view uses the height; the reformat sits beside it.
        axial, coronal = page.locator("#view-a-axial").bounding_box(), page.locator("#view-a-coronal").bounding_box()
        assert axial["height"] > 900 and coronal["x"] >= axial["x"] + axial["width"]
        page.screenshot(path=str(tmp_path / "reader_1920.png"))
        # A second sign-in link opened in the same tab signs in without a reload.
        page.goto(f"{url}/#token={second}")
        expect(page.locator("#reader-name")).to_have_text("large-2")
        assert len(loads) == 1 and page.url == f"{url}/"
        expect(page.locator("#progress")).to_have_text("practice 1 of 2")
        # The admin page shows the readers' progress, and nothing else of theirs.
        admin_page = _new_page(browser, LARGE_SCREEN, errors)
        admin_page.goto(f"{url}/admin#token={admin}")
        expect(admin_page.locator("#progress-table")).to_contain_text("large-1")
        assert "synthetic" not in admin_page.content()
        assert errors == []
    finally:
        _stop(server)


def test_2afc_without_marker_at_1024(browser, sources, tmp_path):
    real, synthetic = sources
    settings = RenderSettings(fov_mm=48.0, depth_mm=24.0, pixel_mm=0.5, slice_mm=2.0, marker="off")
    study = build_study(real, synthetic, tmp_path / "pairs", design="2afc", seed=32, settings=settings)
    token = add_reader(study, "pair-reader")
    server, url = _serve(study)
    errors: list[str] = []
    try:
        page = _new_page(browser, SMALL_SCREEN, errors)
        page.goto(f"{url}/")
        page.fill("#token", token)  # the sign-in form, as a reader without a link would
        page.click("#login-btn")
        expect(page.locator("#reader-name")).to_have_text("pair-reader")  # signed in: the cookie is set
        item = _current_item(page, url)
        for panel in "ab":
            canvas = f"#view-{panel}-axial"
            assert _drawn(page, canvas) == item["lesion_slice"][panel]["axial"]
            assert page.get_attribute(canvas, "data-marker") == "none"
            assert _coloured_pixels(page.locator(canvas).screenshot()) == 0
        assert "marker" not in item and page.is_disabled("#toggle-marker")
        _assert_answer_controls_visible(page, SMALL_SCREEN)
        # Both stacks move together.
        page.keyboard.press("ArrowUp")
        for panel in "ab":
            expected = min(item["lesion_slice"][panel]["axial"] + 1, settings.n_slices - 1)
            expect(page.locator(f"#view-{panel}-axial")).to_have_attribute("data-drawn", str(expected))
        page.screenshot(path=str(tmp_path / "pairs_1024.png"))
        page.keyboard.press("b")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("case 2 of 4 (1 rated)")
        assert errors == []
    finally:
        _stop(server)
    rows = _rows(study, "ratings", "pair-reader")
    assert [(r["item_id"], r["answer"], r["confidence"], r["window_width"], r["zoom"]) for r in rows] == [
        (item["item_id"], "b", 2, 400.0, 1.0)]
    assert rows[0]["slices_visited"] == len({(p, item["lesion_slice"][p]["axial"]) for p in "ab"} | {
        (p, min(item["lesion_slice"][p]["axial"] + 1, settings.n_slices - 1)) for p in "ab"})
