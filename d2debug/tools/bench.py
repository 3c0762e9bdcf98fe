"""Speed and memory benchmark: what d2debug costs on top of the model's own forward pass. This module times
rows 1-4 and runs the whole benchmark; row 5 (memory, in a real browser) is :mod:`.bench_browser`, the rows and
their tables are :mod:`.bench_report`, the long-run rows (6, 7) :mod:`.bench_long`.

Every timed figure is a ratio inside ONE run, on the same images and device (absolute times on a shared
machine are noise). Rows, per model and device:

1. ``DefaultPredictor(cfg)(read_image(path, "BGR"))``: the floor (detectron2's own class, sharing the loaded
   model's weights; decoding included because a user has to decode too).
2. The reference pipeline through d2debug, ``run(loaded, path, reference_spec())``, vs (1). Target <= 1.05.
3. One stage-page toggle with the reference cached: exactly what a stage page calls (``session.run_variant``
   and ``session.compare_variant``: variant run, agreement, histograms, drawings) plus the pictures it encodes
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

import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..audit import load_dataset, run_audit
from ..errors import D2DebugError
from ..files import list_images
from ..model import LoadedModel, load_model
from ..pitfalls import REFERENCE, STANDARD_PITFALLS
from ..run import reference_spec, run
from ..samples import SAMPLE_IMAGES
from ..session import compare_variant, prepare_reference, run_variant
from .bench_browser import bench_memory
from .bench_report import BenchResult, Row
from .seeded import seeded_model

__all__ = [
    "TOGGLES",
    "TARGETS",
    "CLOCKS",
    "Stopwatch",
    "shared_default_predictor",
    "user_sized_model",
    "toggle",
    "bench_model",
    "default_images",
    "run_bench",
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


def shared_default_predictor(loaded: LoadedModel):
    """A detectron2 ``DefaultPredictor`` on ``loaded.model`` (its weights shared, not loaded again): call it with
    a BGR ``HxWx3`` uint8 array (``read_image(path, "BGR")``) as ``DefaultPredictor`` is called."""
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


# The clocks a run can time with: wall time (what a user waits for) or this process's CPU time (all threads;
# with one torch thread it is robust to other processes competing for the CPU).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass(frozen=True)
class Stopwatch:
    """How one benchmark run times its work: ``now`` reads its clock (seconds from an arbitrary origin, one of
    :data:`CLOCKS`), and on a ``cuda`` ``device`` the queued kernels are waited for before each reading of
    :meth:`timed`, so the GPU's work is inside the interval."""

    device: str
    now: Callable[[], float] = time.perf_counter

    @classmethod
    def named(cls, clock: str, device: str) -> "Stopwatch":
        """The stopwatch of ``--clock`` ``clock`` (``wall`` or ``cpu``) on ``device``."""
        if clock not in CLOCKS:
            raise D2DebugError(f"--clock {clock!r}: expected one of {', '.join(CLOCKS)}")
        return cls(str(device), CLOCKS[clock])

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], object]) -> float:
        """Seconds ``fn()`` took, with the device's queued work finished on both sides."""
        self.sync()
        t = self.now()
        fn()
        self.sync()
        return self.now() - t


def toggle(loaded: LoadedModel, image: Path, spec, reference,
           clock: Callable[[], float] = time.perf_counter) -> tuple[object, dict]:
    """One stage-page toggle with ``reference`` (a ``session.ReferenceView``) cached: what the page computes
    (the session's own variant run and comparison) and encodes. The downloads are deferred (made only when
    clicked), so they are not part of a toggle. Returns the ``ComparisonView`` and the seconds of each part,
    read from ``clock``."""
    t0 = clock()
    var = run_variant(loaded, image, spec, reference.result)
    t1 = clock()
    view = compare_variant(loaded, image, spec, reference, variant_result=var)
    t2 = clock()
    for which in (REFERENCE, "variant", "overlay"):
        view.jpeg(which)  # the bytes the page's st.image shows
    t3 = clock()
    return view, {"variant_run": t1 - t0, "compare_stats_drawing": t2 - t1, "encoding": t3 - t2}


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _toggle_round(loaded: LoadedModel, images: Sequence[Path], toggle_specs, refviews: dict, r: int,
                  watch: Stopwatch) -> tuple[list[float], list[dict]]:
    """One toggle per image, the page rotating over images and repeats (``r``): every page is timed while the
    round costs one forward pass per image, like row 1. Returns the seconds and the parts of each toggle."""
    per, parts = [], []
    for i, p in enumerate(images):
        _page, spec = toggle_specs[(i + r) % len(toggle_specs)]
        watch.sync()
        t = watch.now()
        _view, part = toggle(loaded, p, spec, refviews[p], watch.now)
        watch.sync()
        per.append(watch.now() - t)
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
    clock: str = "wall",
) -> tuple[list[Row], dict]:
    """Rows 1-4 for one loaded model on its device. ``target_kind`` 0: demo-model targets, 1: user-sized.
    ``clock``: a name of :data:`CLOCKS`."""
    from detectron2.data.detection_utils import read_image

    images = [Path(p) for p in images]
    device = str(loaded.device)
    watch = Stopwatch.named(clock, device)
    ref_spec = reference_spec(loaded.cfg, device)
    predictor = shared_default_predictor(loaded)
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
        toggle(loaded, images[0], toggle_specs[0][1], refviews[images[0]], watch.now)  # warm-up (Visualizer fonts etc.)
    for r in range(repeats):
        log(f"{name} on {device}: repeat {r + 1}/{repeats}")
        # Alternate the order so a slow phase of the machine does not always hit the same side.
        if r % 2 == 0:
            tp = watch.timed(predict_all)
            tr = watch.timed(reference_all) if "reference" in rows else None
        else:
            tr = watch.timed(reference_all) if "reference" in rows else None
            tp = watch.timed(predict_all)
        pred_t.append(tp / n)
        if tr is not None:
            ref_t.append(tr / n)
            ref_ratio.append(tr / tp)
        if "toggle" in rows:
            per, got = _toggle_round(loaded, images, toggle_specs, refviews, r, watch)
            parts += got
            tp2 = watch.timed(predict_all) / n
            mean_toggle = sum(per) / len(per)
            toggle_t.append(mean_toggle)
            toggle_ratio.append(mean_toggle / ((tp / n + tp2) / 2))
    out = _timing_rows(name, device, rows, target_kind, pred_t, (ref_t, ref_ratio), (toggle_t, toggle_ratio, parts),
                       details)
    if "audit" in rows:
        audit_rows, audit_details = _bench_audit(loaded, name, images[:audit_limit], audit_repeats or repeats, annotations,
                                                 pitfalls, predictor, ref_spec, target_kind, log, watch)
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


def _bench_audit(loaded, name, images, repeats, annotations, pitfalls, predictor, ref_spec, target_kind, log,
                 watch: Stopwatch):
    """Rows 4 and 4b (see the module's docstring), timed by ``watch``."""
    from detectron2.data.detection_utils import read_image

    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    device = str(loaded.device)
    k = len(pitfalls) + 1
    n = len(images)
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-") as tmp_name:
        tmp = Path(tmp_name)
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
            marks: dict[str, float] = {}

            def progress(done, total, _item, marks=marks):
                if done == total:
                    marks["images_done"] = watch.now()

            order = (0, 1, 2) if r % 2 == 0 else (2, 1, 0)
            got = {}
            for which in order:
                if which == 0:
                    got["loop"] = watch.timed(loop)
                elif which == 1:
                    watch.sync()
                    t0 = watch.now()
                    run_audit(loaded, dataset, tmp / f"audit{r}", pitfalls, restart=True, progress=progress,
                              write_report=True)
                    watch.sync()
                    got["audit"] = watch.now() - t0
                    phase.append({"images": marks.get("images_done", t0) - t0,
                                  "summary_and_report": watch.now() - marks.get("images_done", t0)})
                else:
                    got["bare"] = watch.timed(bare)
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
    saved_threads = torch.get_num_threads()
    try:
        return _run_bench(models, images, repeats, rows, audit_repeats, annotations, pitfalls, log, clock, threads,
                          audit_limit)
    finally:
        torch.set_num_threads(saved_threads)  # the caller's process keeps its own settings


def _run_bench(models, images, repeats, rows, audit_repeats, annotations, pitfalls, log, clock, threads, audit_limit):
    if repeats < 1:
        raise D2DebugError(f"--repeats {repeats}: must be at least 1")
    if clock not in CLOCKS:
        raise D2DebugError(f"--clock {clock!r}: expected one of {', '.join(CLOCKS)}")
    if threads is not None:
        if threads < 1:
            raise D2DebugError(f"--threads {threads}: must be at least 1")
        torch.set_num_threads(threads)
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
                                           pitfalls, kind, log, audit_limit, clock)
                result.rows += got
                result.details.update(details)
                del loaded
    if "memory" in rows:
        got, details = bench_memory(log)
        result.rows += got
        result.details.update(details)
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return result
