"""``python -m d2debug bench``: what d2debug costs on top of the model's forward pass, as ratios in one run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import D2DebugError
from .common import add_model_args, load_from_args

__all__ = ["register", "cmd_bench"]

ROWS = ("predictor", "reference", "toggle", "audit", "memory", "views", "audit_memory", "ranks", "sessions")
# views (1,000 page views), audit_memory (1,200 images), ranks and sessions (two servers, three browsers) run when
# asked for
DEFAULT_ROWS = ROWS[:5]
# demo, the R50-FPN Faster R-CNN, and every other architecture detectron2 ships, each at its stock size
MODELS = ("demo", "r50", "mask_rcnn_fpn", "mask_rcnn_c4", "cascade_mask_rcnn", "keypoint_rcnn", "retinanet",
          "panoptic_fpn", "semantic_fpn")


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark: DefaultPredictor vs d2debug's reference, a stage-page toggle, the audit, peak memory",
        description=(
            "Times, in one run on the same images: (1) DefaultPredictor, (2) the reference through d2debug, "
            "(3) one stage-page toggle with the reference cached, (4) the audit vs K x N DefaultPredictor calls, "
            "and (5) the dashboard's peak memory, on the demo model and a user-sized R50-FPN (800/1333, seeded "
            "random weights), and prints the ratios. With --config/--weights, your model instead."
        ),
    )
    add_model_args(p)
    p.add_argument("--images", type=Path, help="directory of images (default: sample images from sample_data)")
    p.add_argument("--limit", type=int, default=6, help="use this many images (default: 6)")
    p.add_argument("--annotations", type=Path,
                   help="COCO json for the audit's AP (default: sample_data's, when the sample images are used)")
    p.add_argument("--repeats", type=int, default=5, help="repeats per row; medians are reported (default: 5)")
    p.add_argument("--audit-repeats", type=int, help="repeats of the audit row (default: --repeats)")
    p.add_argument("--audit-limit", type=int, help="the audit row uses the first N of the images (default: all)")
    p.add_argument("--variants", nargs="+", metavar="NAME",
                   help="audit pitfalls (default: the standard set; see `audit --help`)")
    p.add_argument("--models", default="demo,r50",
                   help=f"without --config: which of {','.join(MODELS)} to run (default: demo,r50); all but demo "
                        "are stock model-zoo sizes with seeded random weights")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                   help=f"rows to run, of {','.join(ROWS)} (default: {','.join(DEFAULT_ROWS)}); audit_memory: peak "
                        "RSS of audits of 100 and 1,000 images; ranks: --nproc 2 vs one process; views: the dashboard's memory "
                        "over 1,000 images; sessions: a stage-page toggle with --sessions people on one server vs alone")
    p.add_argument("--sessions", type=int, default=3, metavar="N",
                   help="the sessions row: how many people use the dashboard at once (default: 3)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default; what a user waits for) or this process's CPU time (with --threads 1, "
                        "robust to other processes competing for the CPU)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.set_defaults(func=cmd_bench)


def _split(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise D2DebugError(f"--{what} {text!r}: expected a comma-separated subset of {','.join(allowed)}")
    return items


def cmd_bench(a: argparse.Namespace) -> int:
    import tempfile

    from ..files import list_images
    from ..pitfalls import parse_variants
    from ..samples import SAMPLE_ANNOTATIONS
    from ..tools.bench import default_images, run_bench, user_sized_model
    from ..tools.bench_report import to_markdown, to_text

    rows = _split(a.rows, ROWS, "rows")
    if a.repeats < 1:
        raise D2DebugError(f"--repeats {a.repeats}: must be at least 1")
    if a.limit is not None and a.limit < 1:
        raise D2DebugError(f"--limit {a.limit}: must be at least 1")
    if a.audit_limit is not None and a.audit_limit < 1:
        raise D2DebugError(f"--audit-limit {a.audit_limit}: must be at least 1")
    if a.audit_repeats is not None and a.audit_repeats < 1:
        raise D2DebugError(f"--audit-repeats {a.audit_repeats}: must be at least 1")
    if a.sessions < 2:
        raise D2DebugError(f"--sessions {a.sessions}: must be at least 2 (people at once)")
    pitfalls = parse_variants(a.variants)
    if a.images is None:
        images = default_images(a.limit)
        annotations = a.annotations or SAMPLE_ANNOTATIONS
    else:
        images = list_images(a.images)[: a.limit]
        annotations = a.annotations
    models: list[tuple] = []  # (label, a loader or a seeded architecture's name, kind[, own loader])
    if a.config is not None:
        models.append((a.config.name, lambda device: load_from_args(_with_device(a, device)), 1))
    else:
        if a.weights is not None:
            raise D2DebugError("--weights needs --config (the training run's config.yaml)")
        chosen = _split(a.models, MODELS, "models")
        if "demo" in chosen:
            models.append(("demo", lambda device: load_from_args(_with_device(a, device)), 0))
        # Seeded random weights: no annotations to score them against, agreement only.
        for name in chosen:
            if name != "demo":
                arch = "faster_rcnn_fpn" if name == "r50" else name
                models.append(("R50-FPN 800/1333" if name == "r50" else f"{name} (stock size)", arch, 1, None))

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="d2debug-bench-r50-") as tmp:
        loaders = []
        for name, load, kind, *own in models:
            if isinstance(load, str):
                def load(device, _tmp=Path(tmp), _arch=load):
                    model = user_sized_model(_tmp, architecture=_arch)
                    return model if device == "cpu" else _to(model, device)
            loaders.append((name, load, kind, *own))
        res = run_bench(loaders, images, a.repeats, [r for r in rows if r in DEFAULT_ROWS], a.audit_repeats,
                        annotations, pitfalls, log, a.clock, a.threads, a.audit_limit)
    if {"views", "audit_memory", "ranks"} & set(rows):
        from ..tools.bench_long import bench_audit_memory, bench_dashboard_images, bench_ranks

        for name, run_rows in (("views", lambda: bench_dashboard_images(log)),
                               ("audit_memory", lambda: bench_audit_memory(log, threads=a.threads)),
                               ("ranks", lambda: bench_ranks(log))):
            if name in rows:
                got, details = run_rows()
                res.rows += got
                res.details.update(details)
    if "sessions" in rows:
        from ..tools.bench_sessions import bench_sessions

        got, details = bench_sessions(log, n=a.sessions)
        res.rows += got
        res.details.update(details)
    if a.json:
        print(json.dumps(res.to_dict(), indent=1))
    elif a.markdown:
        print(to_markdown(res), end="")
    else:
        print(to_text(res), end="")
    return 0


def _with_device(a: argparse.Namespace, device: str) -> argparse.Namespace:
    b = argparse.Namespace(**vars(a))
    b.device = device
    return b


def _to(loaded, device: str):
    """The same model on ``device`` (``cuda``): a copy, with the device recorded."""
    import dataclasses

    want = "cuda:0" if device == "cuda" else device
    return dataclasses.replace(loaded, model=loaded.model_on(want), device=want)
