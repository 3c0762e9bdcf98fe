"""Row 5 of the benchmark: the dashboard's peak resident memory, measured on a real ``streamlit run app.py``
driven by headless Chromium, each figure against a plain Python process running ``DefaultPredictor`` on the same
image (the floor)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import D2DebugError
from ..memory import peak_rss_mb
from ..samples import SAMPLE_IMAGES
from .bench_report import Row
from .serve import CHROMIUM, CHROMIUM_ARGS, ROOT, streamlit_server

__all__ = ["make_large_image", "bench_memory", "settle"]


def make_large_image(path: Path, width: int = 4000, height: int = 3000, seed: int = 12) -> Path:
    """Write a ``width x height`` JPEG (12 megapixels by default) of a demo-style scene."""
    from PIL import Image

    from ..demo.data import random_scene, render_scene

    rgb = render_scene(random_scene(seed, width, height, halftone=False))
    Image.fromarray(rgb).save(path, quality=92)
    return path


_PREDICTOR_RSS = r"""
import sys, json, warnings
warnings.filterwarnings("ignore")
from d2debug.model import load_demo_model
from d2debug.memory import peak_rss_mb
from d2debug.tools.bench import shared_default_predictor
from detectron2.data.detection_utils import read_image
import os
loaded = load_demo_model(device="cpu")
shared_default_predictor(loaded)(read_image(sys.argv[1], format="BGR"))
print(json.dumps({"peak_mb": peak_rss_mb(os.getpid())}))
"""


def _predictor_peak_mb(image: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _PREDICTOR_RSS, str(image)], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise D2DebugError(f"the DefaultPredictor memory probe failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def bench_memory(log: Callable[[str], None] = lambda s: None, wait_s: float = 600.0) -> tuple[list[Row], dict]:
    """Row 5: start ``streamlit run app.py``, render the channel-order page in headless Chromium on the demo
    model (sample image ``val_000.jpg``, then a generated 12-megapixel image picked through the sidebar's
    folder option, then one toggle on it) and read the server's ``VmHWM`` after each step. Each is compared
    with a Python process that only runs ``DefaultPredictor`` on the same image."""
    if not CHROMIUM.exists():
        raise D2DebugError(f"{CHROMIUM}: not installed; the memory row drives a real browser (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        raise D2DebugError("the memory row needs the playwright package (pip install -r requirements.txt)") from None

    wait_ms = int(wait_s * 1000)
    rows: list[Row] = []
    details: dict = {}
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-mem-") as tmp:
        folder = Path(tmp) / "large"
        folder.mkdir()
        big = make_large_image(folder / "large_12mp.jpg")
        sample = SAMPLE_IMAGES / "val_000.jpg"
        log("memory: DefaultPredictor processes (floor)")
        floor_sample = _predictor_peak_mb(sample)
        floor_big = _predictor_peak_mb(big)
        with streamlit_server(Path(tmp) / "streamlit.log") as (url, proc):
            idle = peak_rss_mb(proc.pid)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1500, "height": 1250})
                    log("memory: channel-order page on a sample image")
                    page.goto(f"{url}/channel-order")
                    f1 = page.get_by_test_id("stMetric").filter(has_text="Agreement F1").get_by_test_id(
                        "stMetricValue")
                    expect(f1).to_have_text("1.000", timeout=wait_ms)
                    settle(page, wait_ms)
                    after_sample = peak_rss_mb(proc.pid)

                    log("memory: the same page on a 12-megapixel image")
                    bar = page.get_by_test_id("stSidebar")
                    bar.get_by_test_id("stRadio").nth(1).get_by_text("Folder on this workstation").click()
                    field_ = bar.get_by_test_id("stTextInput").locator("input").last
                    expect(field_).to_be_visible(timeout=wait_ms)
                    field_.fill(str(folder))
                    field_.press("Enter")
                    expect(page.get_by_text(f"Image {big.name}")).to_be_visible(timeout=wait_ms)
                    expect(f1).to_have_text("1.000", timeout=wait_ms)
                    settle(page, wait_ms)
                    after_big = peak_rss_mb(proc.pid)

                    log("memory: one toggle on the 12-megapixel image")
                    page.get_by_text("BGR (swapped)").click()
                    expect(page.get_by_text("channel_order=swapped").first).to_be_visible(timeout=wait_ms)
                    settle(page, wait_ms)
                    after_toggle = peak_rss_mb(proc.pid)
                    if page.get_by_test_id("stException").count():
                        raise D2DebugError("the dashboard showed an exception during the memory run")
                finally:
                    browser.close()
    details["memory_mb"] = {
        "dashboard_idle": round(idle, 1), "dashboard_after_sample_page": round(after_sample, 1),
        "dashboard_after_12mp_page": round(after_big, 1), "dashboard_after_12mp_toggle": round(after_toggle, 1),
        "defaultpredictor_process_sample": round(floor_sample, 1),
        "defaultpredictor_process_12mp": round(floor_big, 1),
    }
    rows.append(Row("demo", "cpu", "5", "peak RSS of `streamlit run app.py`: stage page, sample image", after_sample,
                    "MB", after_sample / floor_sample, "DefaultPredictor process", None,
                    f"idle server {idle:.0f} MB; DefaultPredictor process {floor_sample:.0f} MB"))
    rows.append(Row("demo", "cpu", "5b", "peak RSS after the same page and one toggle on a 12-megapixel image",
                    after_toggle, "MB", after_toggle / floor_big, "DefaultPredictor process", None,
                    f"after the page {after_big:.0f} MB; DefaultPredictor process on it {floor_big:.0f} MB"))
    return rows, details


def settle(page, wait_ms: int) -> None:
    """Wait until the app stopped running, nothing of the previous run is still shown in place of this one's
    (Streamlit marks such elements ``data-stale``; its running indicator shows only after a moment), no element
    is a placeholder while its code loads (``stSkeleton``: metrics and pictures, the first time a browser shows
    them) and every picture has loaded. Call it once the page shows something of the run waited for."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=wait_ms)
    expect(page.locator("[data-testid=stElementContainer][data-stale=true]")).to_have_count(0, timeout=wait_ms)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=wait_ms)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=wait_ms)


def model_answer(page, name: str):
    """The sidebar's answer to a model file ``name`` picked in its uploader: an error that names it (a config
    without weights, a refused file) or the model line of the loaded model (``uploaded NAME``); never its chip."""
    bar = page.get_by_test_id("stSidebar")
    return (bar.get_by_test_id("stAlertContentError").filter(has_text=f"{name}:")
            .or_(bar.get_by_test_id("stCaptionContainer").filter(has_text=f"uploaded {name}")))


def pick_file(page, uploader, path: Path, wait_ms: int, answer) -> None:
    """Choose ``path`` in ``uploader`` (a locator of one Streamlit ``stFileUploader``) as a person does, and wait
    until the upload is done (its chip names the file, no spinner), the page has answered it (``answer``: a
    locator of what only the run this upload started draws, e.g. the sidebar's line naming the file) and that
    run has settled.

    A person picks the next file once the page has answered the last one; so must a script. Streamlit drops
    the reply to an uploader's request for its upload address when a run of the same session starts between
    the reply and its sending (a run's start clears the session's outgoing queue of all but its lifecycle
    messages), and the browser then waits for it for ever: no chip, no upload. A file picked right after
    another one, before that one's run has started, meets exactly that start."""
    from playwright.sync_api import expect

    uploader.locator("input[type=file]").set_input_files(str(path))
    expect(uploader.get_by_test_id("stFileChipName")).to_have_text(path.name, timeout=wait_ms)
    expect(uploader.get_by_test_id("stFileChipIconSpinner")).to_have_count(0, timeout=wait_ms)
    expect(answer.first).to_be_visible(timeout=wait_ms)
    settle(page, wait_ms)
