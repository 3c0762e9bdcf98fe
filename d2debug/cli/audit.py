"""``python -m d2debug audit``: the reference and every single-stage pitfall over a dataset."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from ..pitfalls import STANDARD_PITFALLS
from .common import add_model_args, load_from_args

__all__ = ["register", "cmd_audit"]

DEFAULT_OUT = Path("d2debug_audit")


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="run the reference and every preprocessing pitfall over a dataset; AP, agreement, HTML report",
        description=(
            "Runs the reference pipeline (exactly DefaultPredictor) and each pitfall variant on every image; "
            "measures agreement with the reference and, with COCO annotations, AP per variant (pycocotools). "
            "Results are appended per image to OUT/results.jsonl: rerun the same command to resume an "
            "interrupted audit. Writes OUT/summary.json, OUT/pitfalls.md and OUT/report.html."
        ),
    )
    add_model_args(p)
    p.add_argument("--images", type=Path, required=True,
                   help="a directory of images, or a COCO json (its images; also the annotations)")
    p.add_argument("--annotations", type=Path, help="COCO json with ground truth, for AP")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: ./{DEFAULT_OUT})")
    p.add_argument(
        "--variants", nargs="+", metavar="NAME",
        help="pitfalls to run (default: all): " + ", ".join(x.name for x in STANDARD_PITFALLS)
        + "; or a custom NAME:KEY=VALUE+KEY=VALUE",
    )
    p.add_argument("--limit", type=int, help="audit only the first N images")
    p.add_argument("--restart", action="store_true",
                   help="set an existing results file with other settings aside and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout")
    p.set_defaults(func=cmd_audit)


def _on_sigterm(_signum, _frame):
    # Finished images are already on disk; stop like Ctrl-C so the user gets the resume hint.
    raise KeyboardInterrupt


def cmd_audit(a: argparse.Namespace) -> int:
    from ..audit import load_dataset, parse_variants, pitfalls_markdown, run_audit

    pitfalls = parse_variants(a.variants)  # bad names fail before the model loads
    dataset = load_dataset(a.images, a.annotations, a.limit)
    loaded = load_from_args(a)
    bar = None
    state = {"done": 0, "total": len(dataset.images)}

    def progress(done, total, item):
        nonlocal bar
        state["done"] = done
        if a.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done, unit="img", file=sys.stderr, dynamic_ncols=True,
                       desc=f"audit ({1 + len(pitfalls)} pipelines/img)")
        else:
            bar.update(done - bar.n)
            if item is not None:
                bar.set_postfix_str(item.key[-32:], refresh=False)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        audit = run_audit(loaded, dataset, a.out, pitfalls, restart=a.restart, progress=progress)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"interrupted: {state['done']} of {state['total']} images are saved in "
              f"{Path(a.out) / 'results.jsonl'}; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    if audit.set_aside:
        print(f"previous results set aside as {audit.set_aside}", file=sys.stderr)
    if audit.dropped_tail:
        print("dropped a torn last line from an interrupted run (that image is computed again)", file=sys.stderr)
    if a.json:
        print(json.dumps(audit.summary, indent=1))
        return 0
    print(f"resumed {audit.resumed} image(s), computed {audit.computed}")
    print(pitfalls_markdown(audit.summary))
    for k in ("summary", "markdown", "report", "results"):
        print(f"{k:9s} {audit.outputs[k]}")
    return 0
