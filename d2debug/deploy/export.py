"""Export a loaded model to TorchScript or ONNX through detectron2's own export code, as detectron2's
``tools/deploy/export_model.py`` does, and write its :class:`~d2debug.deploy.contract.Contract`.

Tracing wraps the model in ``detectron2.export.TracingAdapter`` (R-CNN models run
``model.inference(..., do_postprocess=False)``; one-stage detectors their ``forward``), then ``torch.jit.trace``
or ``torch.onnx.export`` (the TorchScript-based exporter, opset :data:`ONNX_OPSET`, height and width dynamic).
Scripting (TorchScript only) runs ``detectron2.export.scripting_with_instances``. The export is checked at once:
the artifact is loaded back and fed the reference input of ``image`` (and of a second size), and what it
agrees with the Python model is written into the contract.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..compare import compare
from ..compat import detectron2_version
from ..errors import D2DebugError, first_line
from ..model import LoadedModel
from ..run import RunResult, preprocess, reference_spec, run
from ..samples import DEFAULT_IMAGE
from ..version import __version__
from .artifact import DeployedModel, load_deployed
from .contract import CONTRACT_FILE, EMBEDDED_NAME, Contract, Format, Method
from .runner import run_deployed

__all__ = ["ExportReport", "export_model", "contract_for", "measure", "ONNX_OPSET", "ARTIFACT_NAMES"]

ONNX_OPSET = 17  # RoIAlign(aligned=True) exports exactly from opset 16 on
ARTIFACT_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
_NOT_EXPORTED = {"PanopticFPN": "its panoptic merge runs outside the graph",
                 "SemanticSegmentor": "it returns a per-pixel map, not detections"}
# The Instances fields a scripted R-CNN may carry (detectron2's export_model.py scripts the same set).
_SCRIPT_FIELDS = ("proposal_boxes", "objectness_logits", "pred_boxes", "scores", "pred_classes", "pred_masks",
                  "pred_keypoints", "pred_keypoint_heatmaps")


@dataclass
class ExportReport:
    """What ``export`` wrote and measured: the artifact and contract paths, the contract (with its
    ``agreement``), and the seconds the export and its check took."""

    artifact: Path
    contract_path: Path
    contract: Contract
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        return {"artifact": str(self.artifact), "contract": str(self.contract_path),
                "agreement": self.contract.agreement, "any_size": self.contract.any_size,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def _check_exportable(loaded: LoadedModel, fmt: str, method: str) -> None:
    why = _NOT_EXPORTED.get(loaded.arch.meta)
    if why:
        raise D2DebugError(f"{loaded.arch.name}: d2debug compares exported detectors, and a {loaded.arch.meta} "
                           f"export is not one ({why})")
    if method == "scripting" and (fmt != "torchscript" or loaded.arch.meta != "GeneralizedRCNN"):
        raise D2DebugError(f"--method scripting: detectron2 scripts R-CNN models to TorchScript only (not "
                           f"{loaded.arch.meta} to {fmt}); use --method tracing")


def _rcnn_inference(model, inputs):
    # The R-CNN graph without detector_postprocess: boxes stay in the input's frame (export_model.py's choice).
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def _adapter(model: torch.nn.Module, tensor: torch.Tensor, meta: str):
    from detectron2.export import TracingAdapter

    inference = _rcnn_inference if meta == "GeneralizedRCNN" else None
    return TracingAdapter(model, [{"image": tensor}], inference).eval()


def _output_names(schema: Any) -> tuple[str, ...]:
    """The flattened output names of ``[{"instances": Instances}]``: its fields (sorted, as detectron2 flattens
    them) and ``image_size``."""
    from detectron2.export.flatten import DictSchema, InstancesSchema, ListSchema

    if isinstance(schema, ListSchema) and len(schema.schemas) == 1 and isinstance(schema.schemas[0], DictSchema):
        inner = schema.schemas[0]
        if inner.keys == ["instances"] and isinstance(inner.schemas[0], InstancesSchema):
            return tuple(inner.schemas[0].keys) + ("image_size",)
    raise D2DebugError("the traced model does not return [{'instances': Instances}]: d2debug reads detector "
                       "exports only")


class _ScriptableAdapter(torch.nn.Module):
    """A scripted R-CNN's entry point: one image dict in, its Instances fields out (as in export_model.py)."""

    def __init__(self, model: Any) -> None:  # Any: a detectron2 meta-architecture (its inference is untyped)
        super().__init__()
        self.model = model

    def forward(self, inputs: tuple[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


def _onnx_export(adapter, tensor: torch.Tensor, path: Path, names: tuple[str, ...]) -> None:
    kw: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = False  # detectron2's graphs go through the TorchScript-based exporter
    torch.onnx.export(adapter, (tensor,), str(path), opset_version=ONNX_OPSET, input_names=["image"],
                      output_names=list(names), dynamic_axes={"image": {1: "height", 2: "width"}}, **kw)


def contract_for(loaded: LoadedModel, fmt: Format, method: Method = "tracing",
                 outputs: Optional[tuple[str, ...]] = None, traced_size: Optional[tuple[int, int]] = None) -> Contract:
    """The contract an export of ``loaded`` has by detectron2's export code. ``outputs``: the flattened output
    names (default: derived from a forward pass of the Python model through ``TracingAdapter``, which is also
    how an export made by detectron2's own ``export_model.py`` lays them out)."""
    if outputs is None:
        tensor, _ = preprocess(loaded.cfg, DEFAULT_IMAGE)
        with loaded.lock, torch.no_grad():
            adapter = _adapter(loaded.model_on("cpu"), tensor, loaded.arch.meta)
            adapter(tensor)
            outputs = _output_names(adapter.outputs_schema)
    cfg, arch = loaded.cfg, loaded.arch
    return Contract(
        format=fmt, method=method, architecture=arch.describe(), channel_order=cfg.INPUT.FORMAT,
        pixel_mean=tuple(float(v) for v in cfg.MODEL.PIXEL_MEAN), pixel_std=tuple(float(v) for v in cfg.MODEL.PIXEL_STD),
        min_size=int(cfg.INPUT.MIN_SIZE_TEST), max_size=int(cfg.INPUT.MAX_SIZE_TEST), outputs=outputs,
        class_names=tuple(loaded.class_names), size_divisibility=int(getattr(loaded.model, "size_divisibility", 0)
                                                                     or getattr(loaded.model.backbone, "size_divisibility", 0)),
        traced_size=traced_size, score_thresh=arch.score_thresh, nms_thresh=arch.nms_thresh,
        detections_per_image=int(cfg.TEST.DETECTIONS_PER_IMAGE),
        exported_with={"torch": torch.__version__, "detectron2": detectron2_version(), "d2debug": __version__},
        source="export" if traced_size is not None else "config",
    )


def _max_pair_diff(a: RunResult, b: RunResult, pairs) -> tuple[float, float]:
    if not pairs:
        return 0.0, 0.0
    i, j = (np.array(x) for x in zip(*pairs))
    return (float(np.abs(a.boxes[i] - b.boxes[j]).max()), float(np.abs(a.scores[i] - b.scores[j]).max()))


def measure(loaded: LoadedModel, deployed: DeployedModel, image: Union[str, Path]) -> tuple[dict, bool]:
    """The export's agreement with the Python model on ``image`` fed the reference input (F1, the largest box
    and score differences of matched pairs in pixels / score units, mask IoU), and whether it still agrees at a
    second input size (3/4 of the test size): ``(agreement dict, any_size)``."""
    spec = reference_spec(None, "cpu")
    out: dict[str, Any] = {"image": Path(image).name}
    any_size = True
    for label, s in (("reference", spec), ("other_size", spec.replace(resize_size=loaded.cfg.INPUT.MIN_SIZE_TEST * 3 // 4))):
        ref = run(loaded, image, s)
        dep = run_deployed(loaded, deployed, image, s)
        agr = compare(ref, dep)
        box, score = _max_pair_diff(ref, dep, agr.pairs)
        row = {"input_size": list(ref.input_size), "f1": round(agr.f1, 4), "detections": agr.n_reference,
               "max_box_diff_px": round(box, 5), "max_score_diff": round(score, 6),
               "mask_iou": None if agr.mask_iou is None else round(agr.mask_iou, 4)}
        if label == "reference":
            out.update(row)
        else:
            out["other_size"] = row
            # As good at another size as at the traced one (a graph with a baked size fails or drifts there).
            any_size = row["f1"] >= out["f1"] - 0.05
    return out, any_size


@contextlib.contextmanager
def _quiet_fds():
    """Silence file descriptors 1 and 2 for a block: the ONNX exporter's C++ side prints whole graphs there
    when an operator is not exportable (the error line says what failed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _trace(loaded: LoadedModel, fmt: Format, method: Method, path: Path, tensor: torch.Tensor) -> tuple[str, ...]:
    """Write the artifact; returns its output names."""
    from detectron2.export import scripting_with_instances
    from detectron2.structures import Boxes

    model = copy.deepcopy(loaded.model_on("cpu")).eval()  # export code flips train/eval: never the shared model
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: detectron2's asserts and shape checks, by design
        if method == "scripting":
            fields = {n: Boxes if n.endswith("boxes") else torch.Tensor for n in _SCRIPT_FIELDS}
            module = scripting_with_instances(_ScriptableAdapter(model).eval(), fields)
            names = tuple(sorted(module(({"image": tensor},))[0].keys()))
            torch.jit.save(module, str(path))
            return names
        adapter = _adapter(model, tensor, loaded.arch.meta)
        if fmt == "torchscript":
            traced = torch.jit.trace(adapter, (tensor,), check_trace=False)
            names = _output_names(adapter.outputs_schema)
            torch.jit.save(traced, str(path))
            return names
        adapter(tensor)  # fills outputs_schema
        names = _output_names(adapter.outputs_schema)
        _onnx_export(adapter, tensor, path, names)
        return names


def _embed(path: Path, fmt: str, text: str) -> None:
    """Put the contract inside the artifact: a TorchScript extra file, an ONNX metadata entry."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        torch.jit.save(module, str(path), _extra_files={EMBEDDED_NAME: text})
        return
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = EMBEDDED_NAME, text
    onnx.save(proto, str(path))


def export_model(loaded: LoadedModel, fmt: Format, out_dir: Union[str, Path], method: Method = "tracing",
                 image: Optional[Union[str, Path]] = None, force: bool = False) -> ExportReport:
    """Export ``loaded`` to ``out_dir/model.ts`` or ``out_dir/model.onnx`` with ``out_dir/contract.json``
    (also embedded in the artifact), traced on the reference input of ``image`` (default: a sample image),
    then measure the artifact against the Python model. Existing files are kept unless ``force``."""
    if fmt not in ARTIFACT_NAMES:
        raise D2DebugError(f"--format {fmt}: expected torchscript or onnx")
    _check_exportable(loaded, fmt, method)
    out = Path(out_dir)
    artifact, contract_path = out / ARTIFACT_NAMES[fmt], out / CONTRACT_FILE
    for p in (artifact, contract_path):
        if p.exists() and not force:
            raise D2DebugError(f"{p}: exists; choose another --out or pass --force to replace it")
        if p.exists() and p.is_file():
            p.unlink()  # --force: a stale contract beside a new artifact would be read as its own
    if out.exists() and not out.is_dir():
        raise D2DebugError(f"{out}: not a folder")
    image = image or DEFAULT_IMAGE
    tensor, _ = preprocess(loaded.cfg, image)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with loaded.lock, _quiet_fds():
            names = _trace(loaded, fmt, method, artifact, tensor)
    except D2DebugError:
        raise
    except Exception as exc:  # whatever the tracer, scripter or ONNX exporter raises for an unsupported graph
        artifact.unlink(missing_ok=True)
        raise D2DebugError(f"detectron2 cannot export this {loaded.arch.name} to {fmt} by {method} "
                           f"({first_line(exc)})") from None
    t1 = time.perf_counter()
    contract = contract_for(loaded, fmt, method, names, (int(tensor.shape[1]), int(tensor.shape[2])))
    agreement, any_size = measure(loaded, load_deployed(artifact, fallback=lambda: contract), image)
    contract = replace(contract, agreement=agreement, any_size=any_size)
    _embed(artifact, fmt, contract.to_json())
    contract_path.write_text(contract.to_json() + "\n", encoding="utf-8")
    return ExportReport(artifact, contract_path, contract, {"export": t1 - t0, "check": time.perf_counter() - t1})
