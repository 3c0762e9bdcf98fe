"""CLI: ``doctor``, ``fingerprint`` and ``doctor-suite`` subcommands.

    python -m d2debug doctor [--config C --weights W] --image I --input FILE [--json] [--fingerprint fp.json]
                             [--contract contract.json|model.ts|model.onnx]
    python -m d2debug fingerprint [--config C --weights W] [--images DIR] --out fp.json
    python -m d2debug doctor-suite [--per-case N | --handwritten | --wild]

``doctor`` exits 0 when the input matches the reference, 1 when it has findings, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import D2DebugError
from ..files import list_images
from ..samples import SAMPLE_IMAGES
from .common import add_model_args, load_from_args

if TYPE_CHECKING:
    from ..doctor import Diagnosis, StatisticsCheck

__all__ = ["register", "cmd_doctor", "cmd_fingerprint", "cmd_doctor_suite"]


def cmd_doctor(a: argparse.Namespace) -> int:
    from ..deploy import read_contract
    from ..doctor import call_preprocess, check_input_statistics, diagnose, load_fingerprint, load_user_input
    from ..doctor.inputs import preprocess_function

    fp = load_fingerprint(a.fingerprint) if a.fingerprint else None
    if a.image is None and fp is None:
        raise D2DebugError("--image is required (it may be left out only with --fingerprint: statistics-only check)")
    if a.contract is not None and a.image is None:
        raise D2DebugError("--contract needs --image (the image your deployment code preprocessed)")
    contract = read_contract(a.contract)[0] if a.contract is not None else None  # a bad contract fails first
    if (a.input is None) == (a.preprocess is None):
        raise D2DebugError("give either --input (your saved model input) or --preprocess FILE.py:FUNCTION")
    if a.image is not None and not Path(a.image).is_file():
        raise D2DebugError(f"{a.image}: image file not found")
    if a.preprocess is not None:
        if a.image is None:
            raise D2DebugError("--preprocess needs --image (the image your function is called on)")
        function = preprocess_function(a.preprocess, a.trust_code)  # refused in one line without --trust-code
        ui = call_preprocess(a.preprocess, a.image, a.trust_code, function)
    else:
        function = None
        ui = load_user_input(a.input)  # bad input files fail before any model loads
    # With a fingerprint and no --config, the fingerprint IS the reference: no model needed.
    loaded = load_from_args(a) if (a.config is not None or fp is None) else None
    result: Diagnosis | StatisticsCheck
    if a.image is not None:
        result = diagnose(loaded, a.image, ui, fingerprint=fp, contract=contract, preprocess=function)
    else:
        assert fp is not None  # checked above: without --image a fingerprint is required
        result = check_input_statistics(ui, fp, loaded.cfg if loaded is not None else None, str(a.fingerprint))
    print(json.dumps(result.to_dict(), indent=1) if a.json else result.report())
    return 0 if result.is_match else 1


def cmd_fingerprint(a: argparse.Namespace) -> int:
    from ..doctor import make_fingerprint, save_fingerprint

    images = a.images if a.images is not None else (SAMPLE_IMAGES if a.config is None else None)
    if images is not None and not Path(images).exists():
        raise D2DebugError(f"{images}: no such file or directory")
    out = Path(a.out)
    if not out.parent.exists():
        raise D2DebugError(f"{out.parent}: output directory does not exist")
    loaded = load_from_args(a)
    fp = make_fingerprint(loaded, images, max_images=a.max_images)
    save_fingerprint(fp, out)
    st = fp["stages"]
    stats = fp.get("input_stats")
    if a.json:
        print(json.dumps({k: v for k, v in fp.items() if k != "input_stats"} | (
            {"input_stats": {k: v for k, v in stats.items() if k not in ("per_image", "histogram")}} if stats else {}),
            indent=1))
        return 0
    print(f"wrote       {out}")
    print(f"stages      FORMAT {st['input_format']}, ResizeShortestEdge({st['min_size_test']}, {st['max_size_test']}) "
          f"PIL bilinear, float32 0..255, PIXEL_MEAN {st['pixel_mean']} / PIXEL_STD {st['pixel_std']}, "
          f"score {st['score_thresh_test']}, nms {st['nms_thresh_test']}")
    if stats:
        print(f"statistics  {stats['images']} images; model input mean {stats['mean']} std {stats['std']} "
              f"({''.join(stats['channels'])}); short side {stats['sizes']['short_side']}, long side "
              f"{stats['sizes']['long_side']}")
    else:
        print("statistics  none (pass --images DIR to record the model input's per-channel statistics)")
    return 0


def cmd_doctor_suite(a: argparse.Namespace) -> int:
    from ..evaluation.suite import confusion_table, run_handwritten, run_suite, run_wild

    images = list_images(Path(a.images) if a.images else SAMPLE_IMAGES, "directory")

    def progress(i, n, r):
        mark = "ok " if r.top_right else "BAD"
        print(f"[{i:3d}/{n}] {mark} {r.case} on {r.image}: top {r.top}", file=sys.stderr, flush=True)

    written = "--handwritten" if a.handwritten else "--wild" if a.wild else None
    if written:
        if a.config is not None or a.images is not None:
            raise D2DebugError(f"{written} runs on the demo model and its sample images (the cases are written for "
                               "them); leave out --config and --images")
        runner = run_handwritten if a.handwritten else run_wild
        results = runner(load_from_args(a), SAMPLE_IMAGES, progress=progress)
    else:
        loaded = load_from_args(a)
        with tempfile.TemporaryDirectory() as td:
            results = run_suite(loaded, images, per_case=a.per_case, tmpdir=Path(td), progress=progress)
    print(confusion_table(results))
    n = len(results)
    top = sum(r.top_right for r in results)
    refs_ok = all(r.top == "match" for r in results if not r.truth)
    return 0 if top >= 0.95 * n and refs_ok and not any(r.blamed for r in results if written) else 1


def register(sub) -> None:
    d = sub.add_parser(
        "doctor", help="say which preprocessing stage(s) of YOUR model input differ from the reference",
        description="Compare what your code feeds the model for one image with the reference pipeline "
                    "(DefaultPredictor) and say which stages differ, with evidence and the fix. Exit status: 0 the "
                    "input matches, 1 findings (or a difference no stage explains), 2 bad input.")
    add_model_args(d)
    d.add_argument("--image", type=Path, help="the image file your code preprocessed (may be left out with "
                                              "--fingerprint: a statistics-only check)")
    d.add_argument("--input", type=Path,
                   help="what your code feeds the model, saved with torch.save or numpy.save: a dict "
                        "{'image', 'height', 'width'}, a list of them, or a CxHxW / 1xCxHxW tensor or array")
    d.add_argument("--preprocess", metavar="FILE.py:FUNCTION",
                   help="instead of --input: your own function, called with the image path; it returns what your "
                        "code feeds the model (a tensor, an array or a detectron2 input dict). Needs --trust-code")
    d.add_argument("--trust-code", action="store_true",
                   help="allow --preprocess to import and run your file (it is code)")
    d.add_argument("--fingerprint", type=Path,
                   help="a pipeline fingerprint recorded at training time (the reference when --config is absent)")
    d.add_argument("--contract", type=Path, metavar="PATH",
                   help="your input is what your deployment feeds an exported model: its contract.json, or the "
                        ".ts/.pt/.onnx artifact (its embedded contract, else the contract.json beside it); the "
                        "findings are then relative to the contract (traced_size, graph_double_normalization, "
                        "the rescale_boxes reminder)")
    d.add_argument("--json", action="store_true",
                   help='print {"findings": [{"id", "confidence", "evidence", "fix", "recovers", "costs_alone"}]}')
    d.set_defaults(func=cmd_doctor)

    f = sub.add_parser("fingerprint", help="record the reference pipeline's stage values and input statistics")
    add_model_args(f)
    f.add_argument("--images", type=Path, help="a directory (or one image) to record statistics on "
                                               "(default with the demo model: sample_data/images)")
    f.add_argument("--max-images", type=int, default=200, help="use at most this many images (default 200)")
    f.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_fingerprint)

    s = sub.add_parser("doctor-suite", help="the Doctor's accuracy suite: generated pipelines, confusion table")
    add_model_args(s)
    s.add_argument("--images", type=Path, help="directory of images (default: sample_data/images)")
    s.add_argument("--per-case", type=int, default=2, help="images per generated pipeline (default 2)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--handwritten", action="store_true",
                       help="the hand-written suite instead: pipelines written like real scripts (torchvision, "
                            "cv2.dnn, letterbox, pad, crop, uploads...), independent of the Doctor's stage functions")
    which.add_argument("--wild", action="store_true",
                       help="the suite of pipelines from the wild instead: crops anywhere, padding in every border "
                            "mode, decoders that scale or skip EXIF, training size rules, tensor layouts and dtypes, "
                            "transforms with no finding id, code from public issues")
    s.set_defaults(func=cmd_doctor_suite)
