"""``env`` and ``compare``: what this machine runs, and the reference vs one variant on one image."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..compat import OPS_LESS_BUILD
from ..errors import D2DebugError
from .common import DEFAULT_IMAGE, add_model_args, load_from_args, variant_from_sets
from .deploy import add_deployed_args, deployed_from_args

__all__ = ["register", "cmd_env", "cmd_compare"]


def cmd_env(a: argparse.Namespace) -> int:
    from ..envinfo import environment

    info = environment()
    if a.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:24s} {v}")
    # 1 when detectron2 does not import or its compiled ops fail to load (a broken build); a build made without
    # them runs every architecture d2debug tests, and the line says what it lacks.
    return 0 if info.get("detectron2_ops") in (True, OPS_LESS_BUILD) else 1


def cmd_compare(a: argparse.Namespace) -> int:
    from ..compare import compare
    from ..run import reference_spec, run
    from ..session import comparison_record, outputs_text
    from ..stats import tensor_stats

    image = a.image or DEFAULT_IMAGE
    ref_spec = reference_spec(None, a.device)
    var_spec = variant_from_sets(ref_spec, a.set)  # bad --set values fail before the model loads
    if a.deployed is not None:
        from ..deploy import check_deployment_spec

        check_deployment_spec(var_spec)  # a baked field fails before anything loads
    elif a.preprocess is not None:
        raise D2DebugError("--preprocess needs --deployed (the exported model your function feeds)")
    loaded = load_from_args(a)
    deployed = deployed_from_args(a, loaded)
    ref = run(loaded, image, ref_spec)
    gap = None
    if deployed is not None:
        from ..deploy import compare_deployed

        gap = compare_deployed(loaded, deployed, image, var_spec, ref, _user_input(a, image, ref))
        var = gap.view.variant
    else:
        var = run(loaded, image, var_spec)
    agr = compare(ref, var)
    order = list(loaded.cfg.INPUT.FORMAT)
    s_in = tensor_stats(ref.input_tensor, var.input_tensor, order)
    s_bb = tensor_stats(ref.backbone_input, var.backbone_input, order)
    if a.json:
        out = comparison_record(str(image), loaded.describe(), ref, var, agr, s_in, s_bb)
        if deployed is not None and gap is not None:
            out["deployed"] = _deployed_record(loaded, deployed, gap)
        print(json.dumps(out, indent=1))
        return 0
    changed = ", ".join(f"{k}: {r} -> {v}" for k, (r, v) in ref_spec.differences(var_spec).items()) or "nothing"
    print(f"image      {image}")
    print(f"model      {loaded.describe()['architecture']}, FORMAT {loaded.cfg.INPUT.FORMAT}, reference on {ref.device}")
    if deployed is not None and gap is not None:
        _print_deployed(loaded, deployed, gap)
        if a.preprocess is not None:
            print(f"next       python -m d2debug doctor --image {image} --preprocess {a.preprocess} --contract "
                  f"{a.deployed} --trust-code   (names the line of your function that differs)")
    print(f"variant    {changed}" if deployed is None else f"deployment {changed} (the contract's pipeline otherwise)")
    for name, r in (("reference", ref), ("variant" if deployed is None else "deployed", var)):
        dets = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in r.detections()) or "none"
        print(f"{name:10s} input {tuple(r.input_tensor.shape)} frame={r.frame}: {outputs_text(r)} ({dets})")
    d = agr.to_dict()
    more = "".join(f"  {label} {d[k]:.3f}" for k, label in (("mask_iou", "mask IoU"), ("keypoint_distance",
                   "keypoint distance"), ("sem_seg_miou", "semantic mIoU")) if d[k] is not None)
    if agr.map_only:
        print(f"agreement  semantic mIoU {d['sem_seg_miou']:.3f}")  # a semantic segmentor: no detections
    else:
        print(f"agreement  F1 {d['f1']:.3f}  matched {d['matched']}  missed {d['missed']}  extra {d['extra']}  "
              f"class flips {d['class_flips']}  mean IoU {d['mean_iou']:.3f}{more}")
    for label, (sr, sv) in (("model input", s_in), ("backbone", s_bb)):
        ref_means = " ".join(f"{c.mean:8.2f}" for c in sr.channels)
        var_means = " ".join(f"{c.mean:8.2f}" for c in sv.channels)
        print(f"{label:11s} mean/channel ({''.join(order)}) reference {ref_means} | variant {var_means}")
    for n in ref.notes + var.notes:
        print(f"note       {n}")
    return 0


def _user_input(a: argparse.Namespace, image, ref):
    """What ``--preprocess FILE.py:FUNCTION`` made of ``image``: ``(3xHxW float32 tensor, original (h, w))``,
    or ``None`` without it. Refused in one line without ``--trust-code``."""
    if a.preprocess is None:
        return None
    from ..doctor import call_preprocess

    ui = call_preprocess(a.preprocess, image, a.trust_code)
    return ui.tensor, ui.original_size or ref.original_size


def _deployed_record(loaded, deployed, gap) -> dict:
    """``compare --json``'s ``deployed`` key: the artifact, its contract and the gap split."""
    from dataclasses import asdict

    from ..deploy import contract_differences

    return {"artifact": str(deployed.path), "runtime": deployed.runtime, "contract_source": deployed.contract_source,
            "contract": asdict(deployed.contract), "contract_differences": contract_differences(loaded, deployed),
            "gap": gap.gap_rows()}


def _print_deployed(loaded, deployed, gap) -> None:
    from ..deploy import contract_differences

    print(f"deployed   {deployed.path} ({deployed.runtime}; contract {deployed.contract_source})")
    for line in contract_differences(loaded, deployed):
        print(f"warning    {line} (exported with another config: the export's part of the gap measures it)")
    for row in gap.gap_rows():
        print(f"gap        {row['part']:54s} F1 {row['f1']:.3f}  missed {row['missed']}  extra {row['extra']}  "
              f"flips {row['class_flips']}  mean IoU {row['mean_iou']:.3f}")
    print(f"verdict    {gap.verdict()}")


def register(sub) -> None:
    e = sub.add_parser("env", help="python, torch, detectron2 (compiled ops?), CUDA and devices")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_env)

    c = sub.add_parser("compare", help="run the reference and one variant on one image, and compare")
    add_model_args(c)
    c.add_argument("--image", type=Path, help=f"image file (default: {DEFAULT_IMAGE.name} from sample_data)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one stage of the variant; repeatable (e.g. channel_order=swapped)")
    add_deployed_args(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)
