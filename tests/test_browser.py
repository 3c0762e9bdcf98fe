"""End to end in a real browser: ``streamlit run app.py`` on a free localhost port, driven by Debian's headless
Chromium through Playwright. Changes the channel-order toggle on a stage page and waits for the numbers to move.

Set ``D2DEBUG_SCREENSHOT=docs/screenshot_stage_page.png`` to also write the README's screenshot.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from d2debug.tools.bench_browser import model_answer, pick_file
from d2debug.tools.serve import CHROMIUM, CHROMIUM_ARGS, streamlit_server
from d2debug.ui.nav import SECTIONS, STAGE_PAGES

ROOT = Path(__file__).resolve().parent.parent
# Model runs on a shared CPU can take seconds each; expect() waits up to this long (it returns as soon as met).
WAIT_MS = 240_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                                                     "(apt-get install chromium; scripts/ensure_chromium.sh)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("streamlit") / "server.log") as (url, _proc):
        yield url


@pytest.fixture
def page():
    """A fresh page in Debian's headless Chromium, closed after the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1500, "height": 1250})
        finally:
            browser.close()


def test_toggle_channel_order_in_a_real_browser(server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{server}/channel-order")
    expect(page.get_by_role("heading", name="1. Channel order")).to_be_visible(timeout=WAIT_MS)
    f1 = page.get_by_test_id("stMetric").filter(has_text="Agreement F1").get_by_test_id("stMetricValue")
    expect(f1).to_have_text("1.000", timeout=WAIT_MS)

    # An image with red and blue discs, chosen in the sidebar like a user would.
    box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
    box.click()
    page.keyboard.type("val_006")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Image val_006.jpg")).to_be_visible(timeout=WAIT_MS)
    expect(f1).to_have_text("1.000", timeout=WAIT_MS)

    page.get_by_text("BGR (swapped)").click()
    expect(page.get_by_text("channel_order=swapped").first).to_be_visible(timeout=WAIT_MS)
    expect(f1).not_to_have_text("1.000", timeout=WAIT_MS)
    value = float(f1.inner_text())
    assert 0.0 <= value < 1.0
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=WAIT_MS)

    # The image chosen in the sidebar and the toggle made in the stage panel (a fragment) survive a round trip
    # through another page.
    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_text("Resize policy and interpolation").click()
    expect(page.get_by_role("heading", name="2. Resize policy and interpolation")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Image val_006.jpg")).to_be_visible(timeout=WAIT_MS)
    nav.get_by_text("Channel order").click()
    expect(page.get_by_role("heading", name="1. Channel order")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("channel_order=swapped").first).to_be_visible(timeout=WAIT_MS)
    expect(f1).to_have_text(f"{value:.3f}", timeout=WAIT_MS)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=WAIT_MS)

    shot = tmp_path / "stage_page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("D2DEBUG_SCREENSHOT")
    if target:
        page.screenshot(path=str(ROOT / target))


def test_uploaded_model_and_image_survive_a_page_switch(server, page):
    """Uploads cannot be driven from AppTest: upload the demo config + weights and an EXIF-rotated photo, toggle
    the decoder, switch pages, and check both uploads are still in use."""
    from playwright.sync_api import expect

    page.goto(f"{server}/decoding")
    expect(page.get_by_role("heading", name="4. Decoding and EXIF")).to_be_visible(timeout=WAIT_MS)
    bar = page.get_by_test_id("stSidebar")
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Upload").click()
    files = bar.locator("input[type=file]")
    expect(files).to_have_count(2, timeout=WAIT_MS)
    uploaders = bar.get_by_test_id("stFileUploader")
    for uploader, name in ((uploaders.nth(0), "demo_config.yaml"), (uploaders.nth(1), "demo_model.pth")):
        pick_file(page, uploader, ROOT / "sample_data" / name, WAIT_MS, model_answer(page, name))
    expect(bar.get_by_text("uploaded demo_model.pth")).to_be_visible(timeout=WAIT_MS)

    bar.get_by_test_id("stRadio").nth(1).get_by_text("Upload").click()
    expect(files).to_have_count(3, timeout=WAIT_MS)
    files.nth(2).set_input_files(str(ROOT / "sample_data/images/val_044_exif6.jpg"))
    expect(page.get_by_text("Image val_044_exif6.jpg")).to_be_visible(timeout=WAIT_MS)
    page.get_by_text("PIL Image.open (no EXIF)").click()
    expect(page.get_by_text("EXIF orientation 6 IGNORED").first).to_be_visible(timeout=WAIT_MS)

    page.get_by_test_id("stSidebarNav").get_by_text("Channel order").click()
    expect(page.get_by_role("heading", name="1. Channel order")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Image val_044_exif6.jpg")).to_be_visible(timeout=WAIT_MS)
    expect(bar.get_by_text("uploaded demo_model.pth")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_menu_reads_like_a_product_and_a_sensitivity_link_opens_its_pitfall(server, page):
    """The home page's menu has titled sections and no script names; the sensitivity table's link for a pitfall
    opens its stage page with that pitfall already set."""
    from playwright.sync_api import expect

    page.goto(server)
    nav = page.get_by_test_id("stSidebarNav")
    for text in ("Start", "One stage at a time", "Tools", "Home", "Channel order", "Pipeline doctor",
                 "Dataset audit", "Config diff"):
        expect(nav.get_by_text(text, exact=True)).to_be_visible(timeout=WAIT_MS)
    assert "app" not in [t.strip() for t in nav.all_inner_texts()[0].splitlines()]

    # The menu is exactly nav.SECTIONS: its titles in its order, under its section headers, at its addresses.
    # Streamlit's folder-based menu would list the page files by their stems; none of them may show.
    pages = [p for section in SECTIONS.values() for p in section]
    links = nav.get_by_test_id("stSidebarNavLink")
    expect(links).to_have_count(len(pages), timeout=WAIT_MS)
    texts = [t.strip() for t in links.all_inner_texts()]
    assert texts == [p.title for p in pages]
    assert [t.strip() for t in nav.get_by_test_id("stNavSectionHeader").all_inner_texts()] == list(SECTIONS)
    assert [urlparse(h).path.strip("/") for h in links.evaluate_all("els => els.map(e => e.href)")] == [
        p.url_path for p in pages]
    stems = {f.stem for f in (ROOT / "app_pages").glob("*.py")}
    assert {"channel_order", "config_diff"} <= stems  # the check below looks at the real file names
    assert not stems & set(texts), stems & set(texts)

    link = page.locator("a[href*='pitfall=channel_swap']")
    expect(link).to_have_count(1, timeout=WAIT_MS)
    link.click()
    expect(page.get_by_role("heading", name="1. Channel order")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Opened with the pitfall")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("channel_order=swapped").first).to_be_visible(timeout=WAIT_MS)
    f1 = page.get_by_test_id("stMetric").filter(has_text="Agreement F1").get_by_test_id("stMetricValue")
    expect(f1).not_to_have_text("1.000", timeout=WAIT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)


@pytest.mark.parametrize("stage", ["channel_order", "resize"])
def test_a_stage_page_opened_first_on_a_fresh_server_is_that_page_under_the_menu(tmp_path, page, stage):
    """A bookmarked page address as the very first request a new server gets. A ``pages/`` folder beside app.py
    makes Streamlit run that first script run through its old folder-based menu (``_mpa_v1``): an address that is
    not a file stem (``channel-order``) shows "Page not found", one that is (``resize``) runs the file without
    app.py and its menu. The page files live in ``app_pages/`` so neither happens."""
    from playwright.sync_api import expect

    info = STAGE_PAGES[stage]
    with streamlit_server(tmp_path / "server.log") as (url, _proc):
        page.goto(f"{url}/{info.url_path}")
        heading = page.get_by_role("heading", name=f"{list(STAGE_PAGES).index(stage) + 1}. {info.title}")
        expect(heading).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=WAIT_MS)
        expect(page.get_by_text("Page not found")).to_have_count(0)
        links = page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")
        expect(links).to_have_count(sum(len(pages) for pages in SECTIONS.values()), timeout=WAIT_MS)
        assert [t.strip() for t in links.all_inner_texts()] == [p.title for ps in SECTIONS.values() for p in ps]


def _inotify_watches(pid: int) -> int:
    """How many inotify watches the process ``pid`` holds (Linux: one ``inotify wd:`` line per watch in the
    fdinfo of its inotify descriptors)."""
    n = 0
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            n += sum(line.startswith("inotify wd:") for line in fd.read_text().splitlines())
        except OSError:  # a descriptor closed meanwhile
            pass
    return n


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="counts inotify watches through Linux's /proc")
def test_a_session_leaves_the_server_watching_no_files(tmp_path, page):
    """Streamlit's default file watcher watches the folder the app runs in recursively, the virtual environments
    with it (thousands of folders); with watchdog 7, a busy tree overflows the inotify queue and each overflow
    re-walks the whole tree in the server process. The shipped config turns the watcher off: once a page has run,
    the server holds no watch at all."""
    from playwright.sync_api import expect

    with streamlit_server(tmp_path / "server.log") as (url, proc):
        page.goto(f"{url}/{STAGE_PAGES['channel_order'].url_path}")
        f1 = page.get_by_test_id("stMetric").filter(has_text="Agreement F1").get_by_test_id("stMetricValue")
        expect(f1).to_have_text("1.000", timeout=WAIT_MS)
        assert _inotify_watches(proc.pid) == 0
