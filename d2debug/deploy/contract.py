"""The input/output contract of an exported model: what the deployment code must feed it and how to read its
outputs. Written by ``python -m d2debug export`` beside the artifact (``contract.json``) and inside it (a
TorchScript extra file / ONNX metadata entry), read back by ``compare --deployed``, the audit, the dashboard's
Deployed model page and the Doctor.

An exported detectron2 model (``TracingAdapter`` over ``model.inference(..., do_postprocess=False)``, what
detectron2's ``tools/deploy/export_model.py`` does) keeps the model's normalization, padding, heads and NMS,
and drops everything ``DefaultPredictor`` does around the model: decoding, the channel flip, the resize, and
the final ``detector_postprocess`` (boxes come back in the frame of the tensor fed, masks as 28x28 per box).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from ..errors import D2DebugError, first_line

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Contract", "CONTRACT_FILE", "EMBEDDED_NAME", "contract_from_json", "read_contract_file",
           "config_differences",
           "cfg_with_contract"]

CONTRACT_FILE = "contract.json"  # beside the artifact
EMBEDDED_NAME = "d2debug_contract.json"  # TorchScript extra file / ONNX metadata key
VERSION = 1

Format = Literal["torchscript", "onnx"]
Method = Literal["tracing", "scripting"]


@dataclass(frozen=True)
class Contract:
    """What an exported model takes and returns.

    Input (one image, no batch axis): ``input_name`` a ``3xHxW`` ``float32`` tensor, values ``0..255`` (not
    normalized), channels in ``channel_order`` (the config's ``INPUT.FORMAT``), resized OUTSIDE the graph by
    ``ResizeShortestEdge(min_size, max_size)`` with PIL bilinear as ``DefaultPredictor`` does. ``normalizes``:
    the graph subtracts ``pixel_mean`` and divides by ``pixel_std`` (same channel order, 0..255 units) itself,
    so the deployment must NOT normalize. ``traced_size`` ``(h, w)`` is the input the graph was traced with;
    ``any_size`` says whether, fed another size at export time, it still agreed with the Python model.

    Outputs: the flattened ``Instances`` fields in ``outputs`` order (``pred_boxes`` ``Nx4`` float32 XYXY,
    ``pred_classes`` ``N`` int64, ``scores`` ``N`` float32, ``pred_masks`` ``Nx1x28x28`` float32 per box,
    ``pred_keypoints`` ``NxKx3``, ``image_size`` ``(h, w)`` of the input), boxes in the frame of the tensor fed
    (``output_frame == "input"``): multiply by original/fed size (``detector_postprocess``) to draw them on
    the original image. The test thresholds are baked in. ``agreement``: what the export measured against the
    Python model on ``agreement["image"]`` fed the reference input.
    """

    format: Format
    method: Method
    architecture: str
    channel_order: Literal["BGR", "RGB"]
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]
    min_size: int
    max_size: int
    outputs: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    input_name: str = "image"
    input_shape: tuple = (3, "height", "width")
    input_dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 255.0)
    normalizes: bool = True
    resize: str = "ResizeShortestEdge outside the graph, PIL bilinear on uint8"
    size_divisibility: int = 0
    traced_size: Optional[tuple[int, int]] = None
    any_size: Optional[bool] = None
    output_frame: Literal["input"] = "input"
    score_thresh: Optional[float] = None
    nms_thresh: Optional[float] = None
    detections_per_image: Optional[int] = None
    exported_with: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    source: str = "export"  # "export": written by d2debug; "config": derived from the model's config
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def describe(self) -> list[tuple[str, str]]:
        """The contract as (what, value) rows for a table."""
        size = "any size (measured)" if self.any_size else (
            f"{self.traced_size[0]}x{self.traced_size[1]} (HxW) only" if self.traced_size and self.any_size is False
            else "the traced size; other sizes not measured")
        return [
            ("artifact", f"{self.format} ({self.method}) of {self.architecture}"),
            ("input", f"'{self.input_name}' 3xHxW {self.input_dtype}, {self.value_range[0]:g}..{self.value_range[1]:g},"
                      f" {self.channel_order}, one image"),
            ("size", f"{size}; resize outside: shortest edge {self.min_size}, max {self.max_size}"),
            ("normalization", f"inside the graph: (x - {list(self.pixel_mean)}) / {list(self.pixel_std)}"
             if self.normalizes else "outside the graph: the deployment must normalize"),
            ("outputs", ", ".join(self.outputs) + "; boxes in the frame of the tensor fed"),
            ("thresholds", f"score {self.score_thresh}, NMS {self.nms_thresh} (baked in)"),
        ]


_REQUIRED = ("format", "method", "architecture", "channel_order", "pixel_mean", "pixel_std", "min_size",
             "max_size", "outputs")
_TUPLES = ("pixel_mean", "pixel_std", "outputs", "class_names", "input_shape", "value_range", "traced_size")


def contract_from_json(text: Union[str, bytes], source: str) -> Contract:
    """Parse a contract (text, or the bytes of an uploaded file); ``source`` names where it came from in the
    one-line error."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise D2DebugError(f"{source}: not a d2debug contract ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise D2DebugError(f"{source}: not a d2debug contract (expected a JSON object)")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise D2DebugError(f"{source}: not a d2debug contract (missing {', '.join(missing)})")
    known = {f.name for f in fields(Contract)}
    kw: dict[str, Any] = {k: (tuple(v) if k in _TUPLES and isinstance(v, list) else v) for k, v in data.items() if k in known}
    if kw["format"] not in ("torchscript", "onnx") or kw["channel_order"] not in ("BGR", "RGB"):
        raise D2DebugError(f"{source}: bad contract (format {kw['format']!r}, channel_order {kw['channel_order']!r})")
    if not (isinstance(kw["outputs"], tuple) and kw["outputs"] and all(isinstance(o, str) for o in kw["outputs"])):
        raise D2DebugError(f"{source}: bad contract (outputs must be a list of field names)")
    try:
        kw["pixel_mean"] = tuple(float(v) for v in kw["pixel_mean"])
        kw["pixel_std"] = tuple(float(v) for v in kw["pixel_std"])
        kw["min_size"], kw["max_size"] = int(kw["min_size"]), int(kw["max_size"])
    except (TypeError, ValueError):
        raise D2DebugError(f"{source}: bad contract (pixel_mean/pixel_std/min_size/max_size must be numbers)") from None
    return Contract(**kw)


def read_contract_file(path: Path) -> Contract:
    """A ``contract.json`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read the contract ({first_line(exc)})") from None
    return contract_from_json(text, str(path))


def cfg_with_contract(cfg: CfgNode, contract: Contract) -> CfgNode:
    """A copy of ``cfg`` with what the contract fixes for the deployment: ``INPUT.FORMAT`` (channel order),
    ``INPUT.MIN/MAX_SIZE_TEST`` (the resize outside the graph) and ``MODEL.PIXEL_MEAN/STD`` (what the graph
    normalizes with). The contract wins: it is what the artifact was exported with."""
    out = cfg.clone()
    out.defrost()
    out.INPUT.FORMAT, out.INPUT.MIN_SIZE_TEST, out.INPUT.MAX_SIZE_TEST = (contract.channel_order, contract.min_size,
                                                                          contract.max_size)
    out.MODEL.PIXEL_MEAN, out.MODEL.PIXEL_STD = list(contract.pixel_mean), list(contract.pixel_std)
    return out


def config_differences(contract: Contract, cfg: CfgNode) -> list[tuple[str, object, object]]:
    """Where the contract's input settings differ from ``cfg``'s (a yacs ``CfgNode``): ``(config key, the
    contract's value, the config's value)``; empty when the artifact was exported with this config."""
    pairs = (("INPUT.FORMAT", contract.channel_order, cfg.INPUT.FORMAT),
             ("MODEL.PIXEL_MEAN", [round(v, 4) for v in contract.pixel_mean],
              [round(float(v), 4) for v in cfg.MODEL.PIXEL_MEAN]),
             ("MODEL.PIXEL_STD", [round(v, 4) for v in contract.pixel_std],
              [round(float(v), 4) for v in cfg.MODEL.PIXEL_STD]),
             ("INPUT.MIN_SIZE_TEST", contract.min_size, int(cfg.INPUT.MIN_SIZE_TEST)),
             ("INPUT.MAX_SIZE_TEST", contract.max_size, int(cfg.INPUT.MAX_SIZE_TEST)))
    return [(key, c, g) for key, c, g in pairs if c != g]
