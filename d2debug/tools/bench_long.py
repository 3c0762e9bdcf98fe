"""Benchmark rows for long runs: audits of many images and sharded audits, each in a fresh process (a real
``python -m d2debug audit``, or an audit in a Python process of its own) on copies of the sample images,
measured in one run:

6. Peak resident memory (``VmHWM``) of an audit of 1,000 images vs one of 100 (every pitfall, demo model,
   no report): flat memory means a ratio near 1. 6b: the same 100 images with the heap never trimmed
   (``malloc_trim``), and 6c what trimming costs in CPU time per image (trimmed when grown, as shipped, and
   after every image; CPU time, page faults included, so that other processes on the machine do not count).
5c. Resident memory of a real ``streamlit run app.py`` after a stage page showed 1,000 images one after another
   (the sidebar's Next button through a folder of copies of the sample images) vs after 100, when its caches
   are full.
7. Time per image of ``--nproc 2`` (two ranks under torch's launcher, one intra-op thread each) vs one
   process using every core, from the images' finish times (start-up excluded; the wall time of each command
   is in the note): under 1 means the two ranks are faster. 7b: one process with one DataLoader worker
   preparing ahead vs none.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..audit import read_results, results_files
from ..errors import D2DebugError
from ..files import list_images
from ..memory import peak_rss_mb, rss_mb
from ..samples import SAMPLE_IMAGES
from .bench_browser import settle
from .bench_report import Row
from .serve import CHROMIUM, CHROMIUM_ARGS, ROOT, streamlit_server

__all__ = ["copies", "bench_audit_memory", "bench_ranks", "bench_dashboard_images"]

_AUDIT_PROBE = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import d2debug.audit.runner as runner
from d2debug.audit import load_dataset, run_audit
from d2debug.memory import peak_rss_mb, rss_mb
from d2debug.model import load_demo_model

from d2debug.memory import release_heap

images, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "kept":
    runner.trim_if_grown = lambda: False  # the audit as it was: freed heap pages stay resident
elif mode == "every":
    runner.trim_if_grown = release_heap  # a trim after every image, however little it returns
loaded = load_demo_model(device="cpu")
dataset = load_dataset(images)
marks, start = [], {}

def progress(done, total, item):
    start.setdefault("t", (time.perf_counter(), time.process_time()))  # the first call, before the first image
    if item is not None and done % max(1, total // 10) == 0:
        marks.append([done, round(rss_mb())])

run_audit(loaded, dataset, out, progress=progress, write_report=False)
n = len(dataset.images)
print(json.dumps({"peak_mb": peak_rss_mb(), "seconds_per_image": (time.perf_counter() - start["t"][0]) / n,
                  "cpu_seconds_per_image": (time.process_time() - start["t"][1]) / n, "rss_mb": marks}))
"""


def copies(folder: Path, n: int) -> Path:
    """``folder`` holding ``n`` images: the sample images over and over (hard links where possible)."""
    src = list_images(SAMPLE_IMAGES)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        s = src[i % len(src)]
        target = folder / f"{i:05d}{s.suffix}"
        if not target.exists():
            try:
                os.link(s, target)
            except OSError:
                target.write_bytes(s.read_bytes())
    return folder


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads)}


def _probe(images: Path, out: Path, mode: str, threads: int) -> dict:
    """One audit in a fresh process; ``mode``: ``grown`` (as shipped), ``every`` (trim after every image) or
    ``kept`` (never trim)."""
    proc = subprocess.run([sys.executable, "-c", _AUDIT_PROBE, str(images), str(out), mode],
                          cwd=ROOT, capture_output=True, text=True, env=_env(threads), timeout=6 * 3600)
    if proc.returncode != 0:
        raise D2DebugError(f"the audit memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_audit_memory(log: Callable[[str], None] = lambda s: None, small: int = 100, large: int = 1000,
                       threads: Optional[int] = None) -> tuple[list[Row], dict]:
    """Rows 6-6c: peak RSS of audits of ``large`` vs ``small`` images, and of ``small`` with the heap never
    trimmed and trimmed after every image, each in its own process on ``threads`` intra-op threads (default:
    every core)."""
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-audit-mem-") as tmp_name:
        tmp = Path(tmp_name)
        got = {}
        for name, n, mode in (("small", small, "grown"), ("large", large, "grown"), ("small_kept", small, "kept"),
                              ("small_every", small, "every")):
            log(f"audit memory: {n} images, heap {mode}")
            got[name] = _probe(copies(tmp / f"images{n}", n), tmp / f"out-{name}", mode, threads)
    s, lg, kept, every = got["small"], got["large"], got["small_kept"], got["small_every"]

    def ms(run: dict) -> str:
        return f"{run['cpu_seconds_per_image'] * 1000:.0f} ms/image"

    rows = [
        Row("demo", "cpu", "6", f"audit peak RSS: {large} images vs {small} (every pitfall)", lg["peak_mb"], "MB",
            lg["peak_mb"] / s["peak_mb"], f"{small} images", None,
            f"{small} images: {s['peak_mb']:.0f} MB; resident MB after each tenth of the images: {lg['rss_mb']}"),
        Row("demo", "cpu", "6b", f"audit peak RSS, {small} images, heap never trimmed", kept["peak_mb"], "MB",
            kept["peak_mb"] / s["peak_mb"], "trimmed when grown", None,
            f"resident MB, never trimmed: {kept['rss_mb']}; trimmed when grown: {s['rss_mb']}"),
        Row("demo", "cpu", "6c", "audit CPU time per image (page faults included), heap trimmed when grown vs never",
            s["cpu_seconds_per_image"], "s/image", s["cpu_seconds_per_image"] / kept["cpu_seconds_per_image"],
            "never trimmed", None,
            f"never {ms(kept)}; after every image {ms(every)} (peak {every['peak_mb']:.0f} MB, resident "
            f"{every['rss_mb'][-1][1]} MB at the end); {large} images {ms(lg)}"),
    ]
    return rows, {"audit_memory": got}


def _audit(images: Path, out: Path, threads: int, extra: list[str]) -> dict:
    """One ``python -m d2debug audit`` over ``images``: its wall time and its images' steady throughput."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "d2debug", "audit", "--images", str(images), "--out", str(out),
                           "--no-progress", *extra], cwd=ROOT, capture_output=True, text=True, env=_env(threads),
                          timeout=6 * 3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise D2DebugError(f"the audit in the ranks row failed: {proc.stderr.strip().splitlines()[-1:]}")
    stamps = sorted(_dt.datetime.fromisoformat(r["finished_at"]).timestamp()
                    for p in results_files(out) for r in read_results(p).records)
    span = stamps[-1] - stamps[0]
    return {"wall_s": wall, "images": len(stamps), "images_per_s": (len(stamps) - 1) / span if span > 0 else None}


def bench_ranks(log: Callable[[str], None] = lambda s: None, n: int = 48) -> tuple[list[Row], dict]:
    """Rows 7-7b: ``--nproc 2`` vs one process on every core, and one DataLoader worker vs none, over ``n``
    images with every pitfall (demo model)."""
    cores = os.cpu_count() or 1
    runs = (("one_process", cores, ["--workers", "0"]), ("two_ranks", 1, ["--nproc", "2", "--workers", "0"]),
            ("one_process_worker", cores, ["--workers", "1"]))
    got = {}
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-ranks-") as tmp:
        images = copies(Path(tmp) / "images", n)
        for name, threads, extra in runs:
            log(f"ranks: {name} ({' '.join(extra)}, {threads} thread(s) per process)")
            got[name] = _audit(images, Path(tmp) / name, threads, extra)
    one, two, worker = got["one_process"], got["two_ranks"], got["one_process_worker"]
    rows = [
        Row("demo", "cpu", "7", f"audit throughput, --nproc 2 (gloo, 1 thread each) vs 1 process on {cores} cores",
            1 / two["images_per_s"], "s/image", one["images_per_s"] / two["images_per_s"], "1 process", None,
            f"images/s: 2 ranks {two['images_per_s']:.2f}, 1 process {one['images_per_s']:.2f}; wall incl. start-up "
            f"{two['wall_s']:.0f} s vs {one['wall_s']:.0f} s for {n} images"),
        Row("demo", "cpu", "7b", "audit throughput, 1 process, 1 DataLoader worker vs none", 1 / worker["images_per_s"],
            "s/image", one["images_per_s"] / worker["images_per_s"], "no worker", None,
            f"images/s: {worker['images_per_s']:.2f} vs {one['images_per_s']:.2f}"),
    ]
    return rows, {"ranks": got}


def bench_dashboard_images(log: Callable[[str], None] = lambda s: None, views: int = 1000,
                           marks_at: Sequence[int] = (100, 500, 1000), wait_s: float = 600.0,
                           ) -> tuple[list[Row], dict]:
    """Row 5c: a real server's resident memory after ``views`` images viewed one after another on the
    channel-order page (headless Chromium pressing the sidebar's Next button through a folder of ``views``
    copies of the sample images, each a file of its own, so that every view is a cache miss), read after each
    of ``marks_at`` and every 50 images; the ratio is the last mark over the first (flat: near 1). Also the
    seconds per image of the first and the last hundred views."""
    if not CHROMIUM.exists():
        raise D2DebugError(f"{CHROMIUM}: not installed; the dashboard row drives a real browser")
    from playwright.sync_api import expect, sync_playwright

    wait_ms = int(wait_s * 1000)
    marks: list[list[float]] = []
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-views-") as tmp, \
            streamlit_server(Path(tmp) / "streamlit.log") as (url, proc), sync_playwright() as pw:
        folder = copies(Path(tmp) / "images", views)
        names = [p.name for p in list_images(folder)]
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1250})
            page.goto(f"{url}/channel-order")
            bar = page.get_by_test_id("stSidebar")
            source = bar.get_by_text("Folder on this workstation")
            expect(source).to_be_visible(timeout=wait_ms)
            source.click()
            typed = bar.get_by_placeholder("/path/to/images")
            typed.fill(str(folder))
            typed.press("Enter")
            nxt = bar.get_by_role("button", name="Next ▶")
            t0 = time.perf_counter()
            for view in range(1, views + 1):
                expect(page.get_by_text(f"Image {names[view - 1]}")).to_be_visible(timeout=wait_ms)
                settle(page, wait_ms)
                stamps.append(time.perf_counter() - t0)
                if view in marks_at or view % 50 == 0 or view == 1:
                    marks.append([view, round(rss_mb(proc.pid)), round(stamps[-1], 1)])
                    log(f"dashboard: {view} images viewed, {marks[-1][1]} MB resident")
                if view < views:
                    nxt.click()
            peak = peak_rss_mb(proc.pid)
            if page.get_by_test_id("stException").count():
                raise D2DebugError("the dashboard showed an exception during the image views")
        finally:
            browser.close()
    at = {m[0]: m[1] for m in marks}
    first, last = marks_at[0], marks_at[-1]
    span = min(100, views // 2) or 1
    per_first = stamps[span - 1] / span
    per_last = (stamps[-1] - stamps[-span - 1]) / span if len(stamps) > span else per_first
    rows = [Row("demo", "cpu", "5c", f"dashboard resident memory after {last} images on a stage page vs after {first}",
                at[last], "MB", at[last] / at[first], f"after {first}", None,
                f"MB after {', '.join(f'{v}: {at[v]:.0f}' for v in marks_at)}; peak {peak:.0f} MB; s/image: first "
                f"{span} {per_first:.2f}, last {span} {per_last:.2f}; [images, MB, s]: {marks}")]
    return rows, {"dashboard_views": {"marks": marks, "peak_mb": round(peak, 1), "mb_at": at,
                                      "seconds_per_image_first": per_first, "seconds_per_image_last": per_last}}
