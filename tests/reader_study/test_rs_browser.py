"""The reader page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""
from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from rs_helpers import SMALL, free_port, start_server

from reader_study.build import build_study
from reader_study.store import add_reader

CHROMIUM = Path("/usr/bin/chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the 'test' extra is not installed
    expect = sync_playwright = None

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
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


def test_reader_scrolls_and_rates_in_chromium(browser, sources, tmp_path):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path / "study", seed=31, settings=SMALL)
    token = add_reader(study, "browser-reader")
    admin = add_reader(study, "browser-admin", admin=True)
    port = free_port()
    server = start_server(study, port)
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A CSP violation (inline script or style the policy forbids) shows only on the console.
        page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
        # Sign in through the form, as a reader would.
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#token", token)
        page.click("#login-btn")
        page.wait_for_selector("#img-a", state="visible")
        # The page's CSP forbids eval, so checks go through locators (Playwright's isolated world).
        expect(page.locator("#img-a")).to_have_js_property("naturalWidth", SMALL.n_pixels)
        n = SMALL.n_slices
        start = n // 2
        assert page.inner_text("#slice-label") == f"slice {start + 1} / {n}"
        assert page.inner_text("#progress").startswith("case 1 of 8")
        # Mouse wheel over the image scrolls forward, arrow keys move back.
        page.hover("#img-a")
        for _ in range(3):
            page.mouse.wheel(0, 120)
        expect(page.locator("#slice-label")).to_have_text(f"slice {start + 4} / {n}")
        page.keyboard.press("ArrowDown")
        assert page.inner_text("#slice-label") == f"slice {start + 3} / {n}"
        assert page.get_attribute("#img-a", "src").endswith(f"/axial/{start + 2}")
        item = page.get_attribute("#img-a", "src").split("/")[3]
        # Submit stays disabled until both answer and confidence are chosen.
        assert page.is_disabled("#submit")
        page.check("#answer-synthetic")
        assert page.is_disabled("#submit")
        page.check("input[name=confidence][value='4']")
        page.click("#submit")
        expect(page.locator("#progress")).to_contain_text("case 2 of 8")
        assert page.get_attribute("#img-a", "src").split("/")[3] != item
        # The admin page shows the reader's progress, and nothing else of theirs.
        admin_page = browser.new_page()
        admin_page.on("pageerror", lambda exc: errors.append(str(exc)))
        admin_page.goto(f"http://127.0.0.1:{port}/admin#token={admin}")
        row = admin_page.locator("#progress-table tbody tr").first
        expect(row.locator("td").nth(0)).to_have_text("browser-reader")
        expect(row.locator("td").nth(1)).to_have_text("1")
        expect(row.locator("td").nth(2)).to_have_text("8")
        assert "synthetic" not in admin_page.content()
        assert errors == []
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    with sqlite3.connect(study / "ratings.sqlite") as db:
        rows = db.execute("SELECT item_id, answer, confidence, client_seconds FROM ratings").fetchall()
    assert len(rows) == 1
    assert rows[0][:3] == (item, "synthetic", 4) and rows[0][3] > 0
