"""Speed and memory benchmark: what d2debug costs on top of the model's own forward pass.

Every timed figure is a ratio inside ONE run, on the same images and device (absolute times on a shared
machine are noise). Rows, per model and device:

1. ``DefaultPredictor(cfg)(read_image(path, "BGR"))``: the floor (detectron2's own class, sharing the loaded
   model's weights; decoding included because a user has to decode too).
2. The reference pipeline through d2debug, ``run(loaded, path, reference_spec())``, vs (1). Target <= 1.05.
3. One stage-page toggle with the reference cached: exactly what a stage page calls
   (``session.compare_variant``: variant run, agreement, histograms, drawings) plus the pictures it encodes
   (JPEG bytes, the reference's encoded once), per toggle vs one (1); the downloads are made only when clicked.
   Target <= 1.5 on the demo model, <= 1.1 on a user-sized one.
4. The audit (``audit.run_audit``, K pipelines x N images, results file and report included) vs K x N
   ``DefaultPredictor`` calls in a loop. Target <= 1.1. Also given: the audit vs the bare forward passes of
   exactly the inputs the audit feeds (its floor; pitfalls such as ``no_resize`` feed larger inputs than
   DefaultPredictor does, so the literal loop is not the same amount of model work).
5. Peak resident memory (``VmHWM``) of a real ``streamlit run app.py`` process after a stage page rendered the
   demo model on a sample image, and after it rendered a generated 12-megapixel image, each vs a plain Python
   process running ``DefaultPredictor`` on the same image.

Times are medians over repeats; ratios are medians of the per-repeat ratios (the two sides of a ratio are
measured alternately in the same repeat, so slow phases of the machine hit both).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..audit import load_dataset, run_audit
from ..errors import D2DebugError
from ..files import list_images
from ..memory import peak_rss_mb
from ..model import LoadedModel, load_model
from ..pitfalls import REFERENCE, STANDARD_PITFALLS
from ..run import reference_spec, run
from ..samples import SAMPLE_IMAGES
from ..session import compare_variant, prepare_reference
from .seeded import seeded_model
from .serve import CHROMIUM, CHROMIUM_ARGS, ROOT, streamlit_server

__all__ = [
    "Row",
    "BenchResult",
    "TOGGLES",
    "TARGETS",
    "SharedModelPredictor",
    "user_sized_model",
    "toggle",
    "bench_model",
    "bench_memory",
    "settle",
    "make_large_image",
    "run_bench",
    "to_text",
    "to_markdown",
]

# One toggle per stage page, each the page's first non-reference choice that keeps the reference input size,
# so a toggle's forward pass costs what the reference's does: (page, spec changes).
TOGGLES: tuple[tuple[str, dict], ...] = (
    ("channel_order", {"channel_order": "swapped"}),
    ("resize", {"interpolation": "nearest"}),
    ("normalization", {"value_range": "0_1"}),
    ("decoding", {"decoder": "pil"}),
    ("output", {"original_size": "omit"}),
)

# Row -> (target ratio on the demo model, on a user-sized model).
TARGETS = {
    "reference": (1.05, 1.05),
    "toggle": (1.5, 1.1),
    "audit": (1.1, 1.1),
}


@dataclass
class Row:
    """One line of the table. ``value`` is seconds (per image, per toggle, per audit) or MB (``unit``);
    ``ratio`` is against ``versus``; ``target`` is the ratio to stay at or under (``None``: no target)."""

    model: str
    device: str
    row: str
    label: str
    value: float
    unit: str
    ratio: Optional[float]
    versus: str
    target: Optional[float] = None
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target

    def to_dict(self) -> dict:
        d = asdict(self)
        d["met"] = self.met
        return d


@dataclass
class BenchResult:
    rows: list[Row]
    environment: dict
    images: list[str]
    repeats: int
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        """The inverse of :meth:`to_dict` (to print a saved ``--json`` result as a table)."""
        rows = [Row(**{k: v for k, v in r.items() if k != "met"}) for r in d["rows"]]
        return cls(rows, d["environment"], d["images"], d["repeats"], d.get("details", {}), d.get("notes", []))

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "images": self.images,
            "repeats": self.repeats,
            "rows": [r.to_dict() for r in self.rows],
            "details": self.details,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------------------------
# Models


def _predictor_class():
    from detectron2.data import transforms as T
    from detectron2.engine import DefaultPredictor

    class _Shared(DefaultPredictor):
        """detectron2's ``DefaultPredictor`` (its own ``__call__``) on an already loaded model: the same
        attributes its ``__init__`` sets, without building and loading a second copy of the weights."""

        def __init__(self, loaded: LoadedModel):  # noqa: D401 - mirrors DefaultPredictor.__init__
            cfg = loaded.cfg
            self.cfg = cfg.clone()
            self.model = loaded.model
            self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
            self.input_format = cfg.INPUT.FORMAT

    return _Shared


def SharedModelPredictor(loaded: LoadedModel):
    """A ``DefaultPredictor`` using ``loaded.model``: call it with a BGR ``HxWx3`` uint8 array."""
    return _predictor_class()(loaded)


def user_sized_model(workdir: Path, seed: int = 0, architecture: str = "faster_rcnn_fpn") -> LoadedModel:
    """A stock model-zoo model at its own widths and test sizes (800/1333), weights from
    ``torch.manual_seed(seed)`` saved to ``workdir`` (:func:`~d2debug.tools.seeded.seeded_model`): a
    user-sized model without a download (weights do not change the time). ``architecture``: one of
    :data:`~d2debug.tools.seeded.ARCHITECTURES` (default: the R50-FPN Faster R-CNN)."""
    config, weights = seeded_model(architecture, workdir, seed, user_sized=True)
    return load_model(config, weights, device="cpu")


# ---------------------------------------------------------------------------------------------------------------
# What is timed


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def toggle(loaded: LoadedModel, image: Path, spec, reference) -> tuple[object, dict]:
    """One stage-page toggle with ``reference`` (a ``session.ReferenceView``) cached: what the page computes and
    encodes. The downloads are deferred (made only when clicked), so they are not part of a toggle. Returns the
    ``ComparisonView`` and the seconds of each part."""
    t0 = _clock()
    # compare_variant's own run: the variant on the reference's decode when the decoder is the same.
    same = spec.decoder == reference.result.spec.decoder
    var = run(loaded, reference.result.decoded if same else image, spec)
    t1 = _clock()
    view = compare_variant(loaded, image, spec, reference, variant_result=var)
    t2 = _clock()
    for which in (REFERENCE, "variant", "overlay"):
        view.jpeg(which)  # the bytes the page's st.image shows
    t3 = _clock()
    return view, {"variant_run": t1 - t0, "compare_stats_drawing": t2 - t1, "encoding": t3 - t2}


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# The clock of every timing: wall time (what a user waits for) or this process's CPU time (all threads; with
# one torch thread it is robust to other processes competing for the CPU). Set by run_bench.
_clock: Callable[[], float] = time.perf_counter
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    t = _clock()
    fn()
    _sync(device)
    return _clock() - t


def _toggle_round(loaded: LoadedModel, images: Sequence[Path], toggle_specs, refviews: dict,
                  r: int) -> tuple[list[float], list[dict]]:
    """One toggle per image, the page rotating over images and repeats (``r``): every page is timed while the
    round costs one forward pass per image, like row 1. Returns the seconds and the parts of each toggle."""
    device = str(loaded.device)
    per, parts = [], []
    for i, p in enumerate(images):
        _page, spec = toggle_specs[(i + r) % len(toggle_specs)]
        _sync(device)
        t = _clock()
        _view, part = toggle(loaded, p, spec, refviews[p])
        _sync(device)
        per.append(_clock() - t)
        parts.append(part)
    return per, parts


def _timing_rows(name: str, device: str, rows: Sequence[str], target_kind: int, pred_t: list,
                 reference: tuple[list, list], toggles: tuple[list, list, list], details: dict) -> list[Row]:
    """Rows 1-3 from the per-repeat timings (``reference``: times and ratios; ``toggles``: times, ratios and
    parts); the toggle breakdown goes into ``details``."""
    (ref_t, ref_ratio), (toggle_t, toggle_ratio, parts) = reference, toggles
    out = [Row(name, device, "1", "DefaultPredictor(cfg)(read_image(path)): one forward pass", _median(pred_t),
               "s/image", 1.0, "row 1", None, "the floor: detectron2's own predictor, decoding included")]
    if "reference" in rows:
        out.append(Row(name, device, "2", "reference through d2debug: run(reference_spec)", _median(ref_t),
                       "s/image", _median(ref_ratio), "row 1", TARGETS["reference"][target_kind],
                       "decode + stages + forward + backbone capture"))
    if "toggle" in rows:
        keys = parts[0].keys() if parts else ()
        breakdown = {k: _median([p[k] for p in parts]) for k in keys}
        details[f"{name}/{device}/toggle_breakdown_s"] = {k: round(v, 5) for k, v in breakdown.items()}
        note = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in breakdown.items())
        out.append(Row(name, device, "3", "stage-page toggle, reference cached (pages " + ", ".join(
            page for page, _ in TOGGLES) + " in turn)", _median(toggle_t), "s/toggle", _median(toggle_ratio), "row 1",
            TARGETS["toggle"][target_kind], "median parts: " + note))
    return out


def bench_model(
    loaded: LoadedModel,
    name: str,
    images: Sequence[Path],
    repeats: int,
    rows: Sequence[str] = ("predictor", "reference", "toggle", "audit"),
    audit_repeats: Optional[int] = None,
    annotations: Optional[Path] = None,
    pitfalls=None,
    target_kind: int = 0,
    log: Callable[[str], None] = lambda s: None,
    audit_limit: Optional[int] = None,
) -> tuple[list[Row], dict]:
    """Rows 1-4 for one loaded model on its device. ``target_kind`` 0: demo-model targets, 1: user-sized."""
    from detectron2.data.detection_utils import read_image

    images = [Path(p) for p in images]
    device = str(loaded.device)
    ref_spec = reference_spec(loaded.cfg, device)
    predictor = SharedModelPredictor(loaded)
    n = len(images)

    def predict_all():
        for p in images:
            predictor(read_image(str(p), format="BGR"))

    def reference_all():
        for p in images:
            run(loaded, p, ref_spec)

    # Warm-up: first calls allocate and JIT-select kernels.
    predictor(read_image(str(images[0]), format="BGR"))
    run(loaded, images[0], ref_spec)

    details: dict = {}
    pred_t, ref_t, ref_ratio = [], [], []
    toggle_t, toggle_ratio, parts = [], [], []
    refviews = {}
    toggle_specs = [(page, ref_spec.replace(**changes)) for page, changes in TOGGLES]
    if "toggle" in rows:
        refviews = {p: prepare_reference(loaded, p, ref_spec) for p in images}
        toggle(loaded, images[0], toggle_specs[0][1], refviews[images[0]])  # warm-up (Visualizer fonts etc.)
    for r in range(repeats):
        log(f"{name} on {device}: repeat {r + 1}/{repeats}")
        # Alternate the order so a slow phase of the machine does not always hit the same side.
        if r % 2 == 0:
            tp = _timed(predict_all, device)
            tr = _timed(reference_all, device) if "reference" in rows else None
        else:
            tr = _timed(reference_all, device) if "reference" in rows else None
            tp = _timed(predict_all, device)
        pred_t.append(tp / n)
        if tr is not None:
            ref_t.append(tr / n)
            ref_ratio.append(tr / tp)
        if "toggle" in rows:
            per, got = _toggle_round(loaded, images, toggle_specs, refviews, r)
            parts += got
            tp2 = _timed(predict_all, device) / n
            mean_toggle = sum(per) / len(per)
            toggle_t.append(mean_toggle)
            toggle_ratio.append(mean_toggle / ((tp / n + tp2) / 2))
    out = _timing_rows(name, device, rows, target_kind, pred_t, (ref_t, ref_ratio), (toggle_t, toggle_ratio, parts),
                       details)
    if "audit" in rows:
        audit_rows, audit_details = _bench_audit(loaded, name, images[:audit_limit], audit_repeats or repeats, annotations,
                                                 pitfalls, predictor, ref_spec, target_kind, log)
        out += audit_rows
        details.update(audit_details)
    return out, details


def _fed_inputs(loaded: LoadedModel, images: Sequence[Path], specs) -> list[tuple]:
    """The inputs an audit with ``specs`` feeds the model, ``(tensor, original size, pass height/width)``:
    the floor the audit's forward passes cannot go under (computed before timing)."""
    fed = []
    for p in images:
        for spec in specs:
            try:
                res = run(loaded, p, spec)
            except D2DebugError:
                continue  # the audit records the error and skips this variant too
            fed.append((res.input_tensor, res.original_size, spec.original_size == "pass"))
    return fed


def _bench_audit(loaded, name, images, repeats, annotations, pitfalls, predictor, ref_spec, target_kind, log):
    from detectron2.data.detection_utils import read_image

    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    device = str(loaded.device)
    k = len(pitfalls) + 1
    n = len(images)
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-") as tmp:
        tmp = Path(tmp)
        # The audit takes a directory: link the chosen images into one.
        img_dir = tmp / "images"
        img_dir.mkdir()
        for p in images:
            os.symlink(p.resolve(), img_dir / p.name)
        dataset = load_dataset(img_dir, annotations)
        fed = _fed_inputs(loaded, images, [ref_spec] + [p.spec(ref_spec) for p in pitfalls])

        def loop():
            for p in images:
                img = read_image(str(p), format="BGR")
                for _ in range(k):
                    predictor(img)

        def bare():
            model = loaded.model_on(ref_spec.device)
            with torch.no_grad():
                for t, (h, w), pass_size in fed:
                    x = {"image": t.to(model.device)}
                    if pass_size:
                        x.update(height=h, width=w)
                    model([x])

        audit_t, loop_t, bare_t, ratio_loop, ratio_bare, phase = [], [], [], [], [], []
        for r in range(repeats):
            log(f"{name} on {device}: audit repeat {r + 1}/{repeats} ({k} pipelines x {n} images)")
            marks = {}

            def progress(done, total, _item, marks=marks):
                if done == total:
                    marks["images_done"] = _clock()

            order = (0, 1, 2) if r % 2 == 0 else (2, 1, 0)
            got = {}
            for which in order:
                if which == 0:
                    got["loop"] = _timed(loop, device)
                elif which == 1:
                    _sync(device)
                    t0 = _clock()
                    run_audit(loaded, dataset, tmp / f"audit{r}", pitfalls, restart=True, progress=progress,
                              write_report=True)
                    _sync(device)
                    got["audit"] = _clock() - t0
                    phase.append({"images": marks.get("images_done", t0) - t0,
                                  "summary_and_report": _clock() - marks.get("images_done", t0)})
                else:
                    got["bare"] = _timed(bare, device)
            audit_t.append(got["audit"])
            loop_t.append(got["loop"])
            bare_t.append(got["bare"])
            ratio_loop.append(got["audit"] / got["loop"])
            ratio_bare.append(got["audit"] / got["bare"])
    ph = {key: round(_median([p[key] for p in phase]), 4) for key in ("images", "summary_and_report")}
    details = {
        f"{name}/{device}/audit": {
            "pipelines": [REFERENCE] + [p.name for p in pitfalls],
            "images": n,
            "audit_s": round(_median(audit_t), 4),
            "defaultpredictor_loop_s": round(_median(loop_t), 4),
            "bare_forward_of_fed_inputs_s": round(_median(bare_t), 4),
            "audit_phases_s": ph,
        }
    }
    rows = [
        Row(name, device, "4", f"audit: {k} pipelines x {n} images vs {k}x{n} DefaultPredictor calls",
            _median(audit_t), "s/audit", _median(ratio_loop), "DefaultPredictor loop", TARGETS["audit"][target_kind],
            f"images {ph['images']:.2f} s, summary (COCO AP) + report {ph['summary_and_report']:.2f} s"),
        Row(name, device, "4b", "audit vs the bare forward passes of the inputs it feeds", _median(audit_t),
            "s/audit", _median(ratio_bare), "bare forwards", None,
            f"bare forwards {_median(bare_t):.2f} s (no_resize and fixed_square feed other sizes than row 1)"),
    ]
    return rows, details


# ---------------------------------------------------------------------------------------------------------------
# Memory


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
from d2debug.tools.bench import SharedModelPredictor
from detectron2.data.detection_utils import read_image
import os
loaded = load_demo_model(device="cpu")
SharedModelPredictor(loaded)(read_image(sys.argv[1], format="BGR"))
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
    """Wait until the app stopped running and every picture has loaded."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=wait_ms)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=wait_ms)


# ---------------------------------------------------------------------------------------------------------------
# The whole run


def _environment() -> dict:
    import detectron2

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def default_images(limit: int) -> list[Path]:
    """``limit`` sample images spread over the sorted list (small and large ones)."""
    files = list_images(SAMPLE_IMAGES)
    if limit >= len(files):
        return files
    step = len(files) / limit
    return [files[int(i * step)] for i in range(limit)]


def run_bench(
    models: Sequence[tuple[str, Callable[[Optional[str]], LoadedModel], int]],
    images: Sequence[Path],
    repeats: int = 5,
    rows: Sequence[str] = ("predictor", "reference", "toggle", "audit", "memory"),
    audit_repeats: Optional[int] = None,
    annotations: Optional[Path] = None,
    pitfalls=None,
    log: Callable[[str], None] = lambda s: None,
    clock: str = "wall",
    threads: Optional[int] = None,
    audit_limit: Optional[int] = None,
) -> BenchResult:
    """Every row for each ``(name, load(device) -> LoadedModel, target_kind)`` on the CPU, and on ``cuda:0``
    when a GPU is available; then the memory row (demo model) when asked. ``clock``: ``wall`` or ``cpu`` (this
    process's CPU time); ``threads``: torch intra-op threads (default: torch's own choice); ``audit_limit``: the
    audit row uses the first N images (it runs every pitfall on each, the most expensive row)."""
    global _clock
    saved = (_clock, torch.get_num_threads())
    try:
        return _run_bench(models, images, repeats, rows, audit_repeats, annotations, pitfalls, log, clock, threads,
                          audit_limit)
    finally:
        _clock = saved[0]  # the caller's process keeps its own settings
        torch.set_num_threads(saved[1])


def _run_bench(models, images, repeats, rows, audit_repeats, annotations, pitfalls, log, clock, threads, audit_limit):
    global _clock
    if repeats < 1:
        raise D2DebugError(f"--repeats {repeats}: must be at least 1")
    if clock not in CLOCKS:
        raise D2DebugError(f"--clock {clock!r}: expected one of {', '.join(CLOCKS)}")
    if threads is not None:
        if threads < 1:
            raise D2DebugError(f"--threads {threads}: must be at least 1")
        torch.set_num_threads(threads)
    _clock = CLOCKS[clock]
    env = _environment()
    env["clock"] = clock
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    notes = []
    if not torch.cuda.is_available():
        notes.append("no CUDA GPU on this machine: the GPU rows are skipped")
    result = BenchResult([], env, [str(p) for p in images], repeats, {}, notes)
    timed = [r for r in rows if r != "memory"]
    if timed:
        for name, load, kind, *own in models:
            # A model's own annotations (4th item) when given: COCO AP needs the model's classes.
            anns = own[0] if own else annotations
            for device in devices:
                log(f"loading {name} on {device}")
                loaded = load(device)
                got, details = bench_model(loaded, name, images, repeats, timed, audit_repeats, anns,
                                           pitfalls, kind, log, audit_limit)
                result.rows += got
                result.details.update(details)
                del loaded
    if "memory" in rows:
        got, details = bench_memory(log)
        result.rows += got
        result.details.update(details)
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return result


# ---------------------------------------------------------------------------------------------------------------
# Output


def _value(r: Row) -> str:
    if r.unit == "MB":
        return f"{r.value:.0f} MB"
    return f"{r.value * 1000:.0f} ms" if r.value < 10 else f"{r.value:.1f} s"


def _met(r: Row) -> str:
    return "" if r.met is None else ("yes" if r.met else "NO")


def _cells(r: Row) -> list[str]:
    ratio = "n/a" if r.ratio is None else f"{r.ratio:.2f}x"
    target = "" if r.target is None else f"<= {r.target:g}"
    return [r.model, r.device, r.row, r.label, f"{_value(r)} ({r.unit.split('/')[-1]})" if r.unit != "MB" else _value(r),
            f"{ratio} {r.versus}", target, _met(r)]


_HEAD = ["model", "device", "row", "what", "median", "ratio", "target", "met"]


def to_text(res: BenchResult) -> str:
    cells = [_HEAD] + [_cells(r) for r in res.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEAD))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(_HEAD))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    env = res.environment
    head = (f"d2debug bench: {len(res.images)} images, medians of {res.repeats} repeats, {env.get('clock', 'wall')} "
            f"clock, torch {env['torch']} with {env['torch_threads']} threads on {env['cpu_count']} CPUs, load average "
            f"{env['load_average_at_start']}")
    notes = [f"note: {n}" for n in res.notes] + [f"row {r.row} ({r.model}): {r.note}" for r in res.rows if r.note]
    return "\n".join([head, ""] + lines + [""] + notes) + "\n"


def to_markdown(res: BenchResult) -> str:
    out = ["| " + " | ".join(_HEAD) + " |", "|" + "|".join(["---"] * 4 + ["---:", "---:", "---:", "---"]) + "|"]
    for r in res.rows:
        c = _cells(r)
        c[3] = c[3].replace("|", "\\|")
        out.append("| " + " | ".join(c) + " |")
    env = res.environment
    foot = [
        "",
        f"{len(res.images)} images ({', '.join(Path(p).name for p in res.images)}), medians of {res.repeats} "
        f"repeats, {env.get('clock', 'wall')} clock; torch {env['torch']}, detectron2 {env['detectron2']}, "
        f"{env['torch_threads']} torch threads on "
        f"{env['cpu_count']} CPUs; load average {env['load_average_at_start']} at the start, "
        f"{env.get('load_average_at_end')} at the end; {env['started']}.",
    ]
    foot += [f"- {n}" for n in res.notes]
    foot += [f"- row {r.row} ({r.model}, {r.device}): {r.note}" for r in res.rows if r.note]
    return "\n".join(out + foot) + "\n"
