"""``python -m d2debug``: the command line. Every subcommand has ``--json`` for machines.

Expected failures (a missing file, a bad ``--set``, an unreadable image, a bad config) print ONE line on stderr
naming the bad value and exit 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .errors import D2DebugError

__all__ = ["main", "build_parser", "load_from_args", "add_model_args"]

DEFAULT_IMAGE = Path(__file__).resolve().parent.parent / "sample_data" / "images" / "val_000.jpg"


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (default: the shipped demo model)")
    g.add_argument("--config", type=Path, help="the training run's dumped config.yaml")
    g.add_argument("--weights", type=Path, help="checkpoint (.pth/.pt/.safetensors; .pkl needs --trust-checkpoint)")
    g.add_argument("--classes", help="class names: a COCO annotation json, or comma-separated names")
    g.add_argument("--device", choices=["cpu", "cuda"], help="reference device (default: cuda when available)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow pickle checkpoints (.pkl, or .pth needing full unpickling): they can run code")
    g.add_argument("--allow-key-mismatch", action="store_true",
                   help="load even if checkpoint keys do not match the model (random layers remain)")


def load_from_args(a: argparse.Namespace):
    """Load the model named by the common model arguments (the demo model when ``--config`` is absent)."""
    from .model import load_demo_model, load_model

    if a.config is None:
        if a.weights is not None:
            raise D2DebugError("--weights needs --config (the training run's config.yaml)")
        return load_demo_model(device=a.device)
    classes = None
    if a.classes:
        classes = a.classes if a.classes.endswith(".json") else [c.strip() for c in a.classes.split(",")]
    return load_model(
        a.config,
        a.weights,
        device=a.device,
        class_names=classes,
        allow_key_mismatch=a.allow_key_mismatch,
        trust_checkpoint=a.trust_checkpoint,
    )


def variant_from_sets(reference, sets: list[str]):
    spec = reference
    for s in sets or []:
        spec = spec.with_assignment(s)
    return spec


# ---------------------------------------------------------------------------------------------------------------


def cmd_env(a: argparse.Namespace) -> int:
    from .envinfo import environment

    info = environment()
    if a.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:24s} {v}")
    return 0 if info.get("detectron2_ops") is True else 1


def cmd_compare(a: argparse.Namespace) -> int:
    from .compare import compare
    from .run import reference_spec, run
    from .stats import tensor_stats

    image = a.image or DEFAULT_IMAGE
    ref_spec = reference_spec(None, a.device)
    var_spec = variant_from_sets(ref_spec, a.set)  # bad --set values fail before the model loads
    loaded = load_from_args(a)
    ref = run(loaded, image, ref_spec)
    var = run(loaded, image, var_spec)
    agr = compare(ref, var)
    order = list(loaded.cfg.INPUT.FORMAT)
    s_in = tensor_stats(ref.input_tensor, var.input_tensor, order)
    s_bb = tensor_stats(ref.backbone_input, var.backbone_input, order)
    if a.json:
        out = {
            "image": str(image),
            "model": loaded.describe(),
            "variant_spec": var_spec.to_dict(),
            "changed": {k: {"reference": r, "variant": v} for k, (r, v) in ref_spec.differences(var_spec).items()},
            "reference": ref.summary(),
            "variant": var.summary(),
            "agreement": agr.to_dict(),
            "stats": {
                "model_input": {"reference": s_in[0].to_dict(), "variant": s_in[1].to_dict()},
                "backbone_input": {"reference": s_bb[0].to_dict(), "variant": s_bb[1].to_dict()},
            },
        }
        print(json.dumps(out, indent=1))
        return 0
    changed = ", ".join(f"{k}: {r} -> {v}" for k, (r, v) in ref_spec.differences(var_spec).items()) or "nothing"
    print(f"image      {image}")
    print(f"model      {loaded.describe()['architecture']}, FORMAT {loaded.cfg.INPUT.FORMAT}, reference on {ref.device}")
    print(f"variant    {changed}")
    for name, r in (("reference", ref), ("variant", var)):
        dets = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in r.detections()) or "none"
        print(f"{name:10s} input {tuple(r.input_tensor.shape)} frame={r.frame}: {len(r.boxes)} detections ({dets})")
    d = agr.to_dict()
    print(
        f"agreement  F1 {d['f1']:.3f}  matched {d['matched']}  missed {d['missed']}  extra {d['extra']}  "
        f"class flips {d['class_flips']}  mean IoU {d['mean_iou']:.3f}"
    )
    for label, (sr, sv) in (("model input", s_in), ("backbone", s_bb)):
        ref_means = " ".join(f"{c.mean:8.2f}" for c in sr.channels)
        var_means = " ".join(f"{c.mean:8.2f}" for c in sv.channels)
        print(f"{label:11s} mean/channel ({''.join(order)}) reference {ref_means} | variant {var_means}")
    for n in ref.notes + var.notes:
        print(f"note       {n}")
    return 0


# Further subcommands live in their own modules, each with ``register(subparsers)`` that adds its parser and
# sets ``func`` (a callable taking the parsed args and returning the exit code).
SUBCOMMAND_MODULES = ("d2debug.cli_doctor", "d2debug.cli_audit", "d2debug.cli_configdiff", "d2debug.cli_bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m d2debug",
        description="Find where your Detectron2 inference preprocessing differs from the reference pipeline.",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("env", help="python, torch, detectron2 (compiled ops?), CUDA and devices")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_env)

    c = sub.add_parser("compare", help="run the reference and one variant on one image, and compare")
    add_model_args(c)
    c.add_argument("--image", type=Path, help=f"image file (default: {DEFAULT_IMAGE.name} from sample_data)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one stage of the variant; repeatable (e.g. channel_order=swapped)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)
    import importlib

    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    import warnings

    # detectron2's anchor code calls torch.meshgrid without indexing=; the warning is noise for users.
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.func(a)
    except D2DebugError as exc:
        if a.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; nothing left to say.
        sys.stderr.close()
        return 0
