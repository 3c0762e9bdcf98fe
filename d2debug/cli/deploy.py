"""``export``: a model to TorchScript or ONNX through detectron2's export code, with its input contract; and
the ``--deployed`` arguments ``compare`` and ``audit`` share."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_model_args, load_from_args

__all__ = ["register", "cmd_export", "add_deployed_args", "deployed_from_args"]


def cmd_export(a: argparse.Namespace) -> int:
    from ..deploy import export_model

    loaded = load_from_args(a)
    report = export_model(loaded, a.format, a.out, a.method, a.image, a.force)
    if a.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    c, agr = report.contract, report.contract.agreement
    print(f"artifact   {report.artifact} ({c.format}, {c.method}; {report.seconds['export']:.1f} s)")
    print(f"contract   {report.contract_path} (also inside the artifact)")
    for what, value in c.describe()[1:]:
        print(f"{what:10s} {value}")
    for label, row in (("agrees", agr), ("at a 2nd size", agr["other_size"])):
        print(f"{label:10s} {agr['image']} at {row['input_size'][1]}x{row['input_size'][0]} (WxH): F1 {row['f1']:.3f}, "
              f"boxes within {row['max_box_diff_px']:.2g} px, scores within {row['max_score_diff']:.2g}"
              + (f", mask IoU {row['mask_iou']:.3f}" if row["mask_iou"] is not None else ""))
    return 0


def add_deployed_args(p: argparse.ArgumentParser, own_preprocess: bool = True) -> None:
    g = p.add_argument_group("deployed model")
    g.add_argument("--deployed", type=Path, metavar="ARTIFACT",
                   help="an exported model (.ts/.pt TorchScript or .onnx) to run instead of the variant's Python "
                        "model; --set then describes your deployment's preprocessing")
    g.add_argument("--contract", type=Path,
                   help="its contract.json (default: the one inside the artifact or beside it, else derived from "
                        "the config as detectron2's export_model.py lays an export out)")
    if not own_preprocess:
        return
    g.add_argument("--preprocess", metavar="FILE.py:FUNCTION",
                   help="your deployment's own preprocessing: called with the image path, it returns the tensor "
                        "your code feeds the artifact (--set original_size=omit: your code does not rescale the "
                        "outputs). Needs --trust-code")
    g.add_argument("--trust-code", action="store_true", help="allow --preprocess to import and run your file")


def deployed_from_args(a: argparse.Namespace, loaded):
    """The artifact ``--deployed`` names, with its contract (``None`` without ``--deployed``)."""
    from ..deploy import artifact_format, check_same_model, contract_for, load_deployed
    from ..errors import D2DebugError

    if a.deployed is None:
        if a.contract is not None:
            raise D2DebugError("--contract needs --deployed (the artifact it describes)")
        return None
    fmt = artifact_format(a.deployed)
    deployed = load_deployed(a.deployed, a.contract, fallback=lambda: contract_for(loaded, fmt))
    check_same_model(loaded, deployed)
    return deployed


def register(sub) -> None:
    e = sub.add_parser("export", help="export the model to TorchScript or ONNX (detectron2's export code) with "
                                      "its input contract, and measure the artifact against the Python model")
    add_model_args(e)
    e.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    e.add_argument("--method", default="tracing", choices=["tracing", "scripting"],
                   help="tracing (default; TorchScript and ONNX) or scripting (TorchScript, R-CNN models)")
    e.add_argument("--out", type=Path, required=True, help="folder for model.ts|model.onnx and contract.json")
    e.add_argument("--image", type=Path, help="the image to trace with and check on (default: a sample image)")
    e.add_argument("--force", action="store_true", help="replace model.*/contract.json already in --out")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export)
