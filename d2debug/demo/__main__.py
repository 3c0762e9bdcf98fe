"""``python -m d2debug.demo``: regenerate the demo's sample split, or retrain the demo model from scratch.

    python -m d2debug.demo samples --out sample_data
    python -m d2debug.demo train --out build/demo_box --boxes-only            # stage 1: Faster R-CNN, 3000 iters
    python -m d2debug.demo train --out build/demo_mask --init build/demo_box/model.pth \
        --iters 1200 --lr 0.01 --warmup 100 --install                          # stage 2: Mask R-CNN from it
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..samples import SAMPLE_DIR
from .data import write_sample_split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m d2debug.demo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("samples", help="write the validation split (images + COCO annotations.json)")
    s.add_argument("--out", type=Path, default=SAMPLE_DIR)
    t = sub.add_parser("train", help="generate training data, train with DefaultTrainer on CPU, evaluate")
    t.add_argument("--out", type=Path, required=True, help="training run directory")
    t.add_argument("--iters", type=int, default=3000)
    t.add_argument("--train-images", type=int, default=1500)
    t.add_argument("--val", type=Path, default=SAMPLE_DIR, help="validation split (annotations.json + images/)")
    t.add_argument("--boxes-only", action="store_true", help="a Faster R-CNN (no mask head)")
    t.add_argument("--init", type=Path, help="start from these weights (.pth) instead of from scratch")
    t.add_argument("--lr", type=float, default=0.02, help="SOLVER.BASE_LR")
    t.add_argument("--warmup", type=int, default=300, help="SOLVER.WARMUP_ITERS")
    t.add_argument("--install", action="store_true", help="copy model, config and classes into sample_data/")
    a = p.parse_args(argv)
    if a.cmd == "samples":
        print(write_sample_split(a.out))
        return 0
    from .train import install_into, train

    if not (a.val / "annotations.json").is_file():
        print(f"error: {a.val}: no annotations.json (write one with 'python -m d2debug.demo samples --out {a.val}')",
              file=sys.stderr)
        return 2
    metrics = train(a.out, iters=a.iters, train_images=a.train_images, val_dir=a.val, masks=not a.boxes_only,
                    init=a.init, base_lr=a.lr, warmup=a.warmup)
    print(json.dumps(metrics, indent=1))
    if a.install:
        install_into(a.out, SAMPLE_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
