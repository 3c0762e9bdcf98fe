"""The correct deployment code for an exported model: a runnable Python snippet that feeds the artifact exactly
what its :class:`~d2debug.deploy.contract.Contract` says and maps its outputs back to ``Instances`` in the
original image, as ``DefaultPredictor`` would have returned them."""
from __future__ import annotations

from typing import Optional

from ..text import fmt
from .contract import Contract
from .export import ARTIFACT_NAMES

__all__ = ["deployment_code", "deployment_lines"]

# PipelineSpec field -> text that marks the snippet's lines doing that stage.
_RESIZE = ("ResizeShortestEdge(", "apply_image(")
_VALUES = ("x.transpose(", "No /255", "PIXEL_STD", "(x - mean)")
_FIELD_MARKERS: dict[str, tuple[str, ...]] = {
    "decoder": ("read_image(path",), "channel_order": ("img = ",), "resize": _RESIZE, "resize_size": _RESIZE,
    "interpolation": _RESIZE, "resize_backend": _RESIZE, "value_range": _VALUES, "external_norm": _VALUES,
    "original_size": ("detector_postprocess(inst",),
}


def _load(c: Contract, artifact: str) -> tuple[str, str]:
    """(imports, the line that opens the artifact) for the contract's runtime."""
    if c.format == "onnx":
        return ("import onnxruntime as ort\n",
                f'session = ort.InferenceSession("{artifact}", providers=["CPUExecutionProvider"])\n')
    return "", f'model = torch.jit.load("{artifact}", map_location="cpu")   # saved in eval mode\n'


def _run(c: Contract) -> str:
    """The lines that feed ``x`` (3xHxW float32 numpy) and leave the outputs by name in ``fields``."""
    if c.format == "onnx":
        return (f'    outs = session.run(None, {{"{c.input_name}": x}})\n'
                "    fields = {n: torch.from_numpy(o) for n, o in zip(OUTPUTS, outs)}\n")
    if c.method == "scripting":
        return ("    with torch.no_grad():   # a scripted R-CNN takes a tuple of image dicts, returns fields by name\n"
                f'        fields = model(({{"{c.input_name}": torch.from_numpy(x)}},))[0]\n')
    return ("    with torch.no_grad():\n"
            "        outs = model(torch.from_numpy(x))\n"
            "    fields = dict(zip(OUTPUTS, outs))\n")


def _normalize(c: Contract) -> str:
    """The normalization line: none when the graph normalizes (doing it twice is the classic deployment bug)."""
    if c.normalizes:
        return (f"    # No /255 and no mean/std here: the graph subtracts PIXEL_MEAN {fmt(c.pixel_mean)} and divides by\n"
                f"    # PIXEL_STD {fmt(c.pixel_std)} ({c.channel_order}, 0..255 units) itself.\n")
    return (f"    mean = np.array({fmt(c.pixel_mean)}, dtype=np.float32).reshape(3, 1, 1)   # {c.channel_order}, 0..255\n"
            f"    std = np.array({fmt(c.pixel_std)}, dtype=np.float32).reshape(3, 1, 1)\n"
            "    x = (x - mean) / std   # this graph does not normalize: the deployment must\n")


def _size_note(c: Contract) -> str:
    if c.any_size is False and c.traced_size:
        return (f"    # This graph was traced at {c.traced_size[0]}x{c.traced_size[1]} (HxW) and disagreed with the model "
                "at another size:\n    # feed only images that resize to that size, or export by scripting.\n")
    return ""


def deployment_code(contract: Contract, artifact: Optional[str] = None) -> str:
    """A runnable Python snippet for ``contract``'s artifact (``artifact``: its path in the snippet, default
    ``model.ts``/``model.onnx``): decode BGR with detectron2's ``read_image``, flip to the contract's channel
    order, ``ResizeShortestEdge(min_size, max_size)`` (PIL bilinear), a 3xHxW float32 array 0..255 (normalized
    only when the graph does not normalize), run it (onnxruntime or ``torch.jit``), then rescale boxes by
    original/fed size and paste the 28x28 masks into the image with ``detector_postprocess``."""
    c = contract
    artifact = artifact or ARTIFACT_NAMES[c.format]
    imports, load = _load(c, artifact)
    flip = ("np.ascontiguousarray(bgr[:, :, ::-1])   # BGR -> RGB, the contract's channel order"
            if c.channel_order == "RGB" else "bgr   # BGR is the contract's channel order")
    lo, hi = c.min_size, c.max_size
    return f'''"""{artifact}: {c.format} ({c.method}) of {c.architecture}, run as its contract says."""
import sys

import numpy as np
import torch
import detectron2.data.transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
{imports}
{load}OUTPUTS = {tuple(c.outputs)!r}   # the graph's outputs, in this order
# Test thresholds baked into the graph: score {c.score_thresh}, NMS {c.nms_thresh}.


def predict(path: str) -> Instances:
    """One image file -> Instances in the original image's frame (what DefaultPredictor returns)."""
    bgr = read_image(path, format="BGR")   # HxWx3 uint8 BGR, EXIF orientation applied (cv2.imread: BGR, no EXIF)
    img = {flip}
    h, w = img.shape[:2]
    aug = T.ResizeShortestEdge([{lo}, {lo}], {hi})   # outside the graph: PIL bilinear, short side {lo}, long <= {hi}
    x = aug.get_transform(img).apply_image(img)
    x = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)   # 3xHxW float32, 0..255, one image
{_normalize(c)}{_size_note(c)}{_run(c)}    fed_h, fed_w = x.shape[1:]
    inst = Instances((fed_h, fed_w))   # the outputs are in the frame of the tensor fed
    for name, value in fields.items():
        if name != "image_size":
            inst.set(name, Boxes(value) if name.endswith("boxes") else value)
    # Boxes (and keypoints) scaled by (w / fed_w, h / fed_h); 28x28 masks pasted into the HxW image.
    return detector_postprocess(inst, h, w)


if __name__ == "__main__":
    print(predict(sys.argv[1]))
'''


def deployment_lines(code: str, field: str) -> str:
    """The lines of ``code`` (a :func:`deployment_code` snippet) doing the stage that owns the
    :class:`~d2debug.stages.PipelineSpec` ``field``, stripped, one per line; ``""`` for a field no host line does
    (the graph's)."""
    marks = _FIELD_MARKERS.get(field, ())
    return "\n".join(line.strip() for line in code.splitlines() if any(m in line for m in marks))
