"""Run one pipeline on one image and feed the model by the Detectron2 contract.

``model.eval()``, ``torch.no_grad()``, ``model([{"image": 3xHxW float32, "height": H, "width": W}])``: the
model normalizes inside (``preprocess_image``), and ``height``/``width`` (the ORIGINAL size) make it return
boxes in the original frame. What the backbone sees is captured from the model itself with a forward
pre-hook on ``model.backbone``, not re-implemented.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
import torch

from .arch import model_thresholds
from .coco import encode_masks
from .errors import D2DebugError, first_line
from .model import LoadedModel
from .stages import (
    Decoded,
    Order,
    PipelineSpec,
    decode,
    model_norm_values,
    model_order,
    resize,
    to_input_tensor,
    to_model_order,
)

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["RunResult", "RawOutput", "ForwardCache", "run", "run_prepared", "run_batch", "run_tensor", "prepare",
           "preprocess", "reference_spec", "Frame", "result_from_outputs"]

Frame = Literal["original", "resized"]


def reference_spec(cfg: Optional[CfgNode] = None, device: Optional[str] = None) -> PipelineSpec:
    """The pipeline ``DefaultPredictor`` runs for ``cfg``: decode with ``read_image(path, "BGR")``, flip to
    ``cfg.INPUT.FORMAT``, ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` with PIL bilinear, float32 0..255,
    the model's own PIXEL_MEAN/STD, original size passed, cfg thresholds, fp32, on ``cfg.MODEL.DEVICE``.

    Every stage value is relative to ``cfg`` ("cfg" values); what the spec takes from ``cfg`` itself is the
    device, as ``DefaultPredictor`` does (``load_model`` records the device it chose there). ``device``
    (``cpu``/``cuda``) overrides it; with neither (``cfg=None``): ``cuda`` when a GPU is available, else ``cpu``.
    """
    if device is None and cfg is not None:
        device = str(cfg.MODEL.DEVICE)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return PipelineSpec(device="cuda" if str(device).startswith("cuda") else "cpu")


@dataclass
class RunResult:
    """What one pipeline produced for one image.

    - ``image``: the decoded ``HxWx3`` uint8 image in channel order ``image_order`` (``0x0x3`` for a tensor run,
      whose ``image_order`` is then ``fed_order``).
    - ``input_tensor``: ``3xHxW`` float32 on CPU, what was fed as ``"image"`` (channel order ``fed_order``,
      ``cfg.INPUT.FORMAT`` or the other one for ``channel_order="swapped"``).
    - ``backbone_input``: ``3xHxW`` float32 on CPU, ``(x - PIXEL_MEAN) / PIXEL_STD`` as the backbone sees it,
      cropped to the image (no padding).
    - ``boxes``: ``Nx4`` float32 ``XYXY_ABS`` in ``frame`` (``original``: the decoded image's frame;
      ``resized``: the model input's frame, what you get when height/width are omitted); ``scores`` ``N``
      float32; ``classes`` ``N`` int64 (0-based).
    - ``original_size`` / ``input_size``: ``(h, w)`` of the decoded image and of the model input.
    - ``timings``: seconds per step (decode and preprocess when :func:`run` did them, forward).
    - ``notes``: what the decode converted (see :class:`~d2debug.stages.Decoded`).
    - ``decoded``: the :class:`~d2debug.stages.Decoded` image the run started from (``None`` for a tensor run).
    - What else the model predicts, in ``frame`` like the boxes (``None`` when it does not): ``masks`` ``NxHxW``
      bool (pasted by detectron2's ``detector_postprocess``, one per detection); ``keypoints`` ``NxKx3``
      float32 ``(x, y, score)``; ``sem_seg`` ``HxW`` int64 class ids (argmax of the ``sem_seg`` logits; names in
      ``stuff_names``); ``panoptic`` ``(HxW int64 segment ids, segments_info list)`` of a PanopticFPN.
    """

    spec: PipelineSpec
    device: str
    image: np.ndarray
    image_order: Order
    fed_order: Order
    input_tensor: torch.Tensor
    backbone_input: torch.Tensor
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: list[str]
    frame: Frame
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    timings: dict[str, float]
    notes: tuple[str, ...]
    decoded: Optional[Decoded] = field(repr=False)  # the decode this run used (None: a tensor run)
    raw: Optional["RawOutput"] = field(default=None, repr=False)  # the forward pass before post-processing
    masks: Optional[np.ndarray] = field(default=None, repr=False)
    keypoints: Optional[np.ndarray] = field(default=None, repr=False)
    sem_seg: Optional[np.ndarray] = field(default=None, repr=False)
    panoptic: Optional[tuple] = field(default=None, repr=False)
    stuff_names: tuple[str, ...] = ()

    def detections(self) -> list[dict]:
        """JSON-ready detections: ``{box: [x0, y0, x1, y1], score, class_id, class_name}``, plus ``mask`` (COCO
        RLE ``{"size": [h, w], "counts": str}``) and ``keypoints`` (``[[x, y, score], ...]``) when predicted."""
        rles = encode_masks(self.masks) if self.masks is not None else None
        out = []
        for k, (b, s, c) in enumerate(zip(self.boxes, self.scores, self.classes)):
            d = {
                "box": [round(float(v), 2) for v in b],
                "score": round(float(s), 4),
                "class_id": int(c),
                "class_name": self.class_names[int(c)] if 0 <= int(c) < len(self.class_names) else str(int(c)),
            }
            if rles is not None:
                d["mask"] = rles[k]
            if self.keypoints is not None:
                d["keypoints"] = [[round(float(v), 2) for v in p] for p in self.keypoints[k]]
            out.append(d)
        return out

    def segmentation(self) -> Optional[dict]:
        """JSON-ready per-pixel outputs: ``sem_seg`` as COCO RLEs per class id present, and the panoptic
        ``segments_info``; ``None`` for a model without them."""
        if self.sem_seg is None:
            return None
        ids = [int(i) for i in np.unique(self.sem_seg)]
        names = self.stuff_names
        seg = {"size": list(self.sem_seg.shape), "classes": [
            {"class_id": i, "class_name": names[i] if 0 <= i < len(names) else str(i),
             "mask": encode_masks((self.sem_seg == i)[None])[0]} for i in ids]}
        if self.panoptic is not None:
            seg["panoptic_segments"] = [{k: (v if isinstance(v, (bool, str)) else float(v) if isinstance(v, float)
                                             else int(v)) for k, v in info.items()} for info in self.panoptic[1]]
        return seg

    def rgb_image(self) -> np.ndarray:
        """The decoded image as ``HxWx3`` uint8 RGB, for display."""
        return self.image if self.image_order == "RGB" else np.ascontiguousarray(self.image[:, :, ::-1])

    def summary(self) -> dict:
        return {
            "device": self.device,
            "input_shape": list(self.input_tensor.shape),
            "input_dtype": str(self.input_tensor.dtype).replace("torch.", ""),
            "original_size": list(self.original_size),
            "frame": self.frame,
            "fed_order": self.fed_order,
            "detections": self.detections(),
            **({"segmentation": self.segmentation()} if self.sem_seg is not None else {}),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }


@contextlib.contextmanager
def _model_settings(model: Any, mean, std, score: Optional[float], nms: Optional[float]):
    """Temporarily set PIXEL_MEAN/STD and the test thresholds on the model (restored afterwards, even on
    error); the thresholds live where the architecture keeps them (:func:`~d2debug.arch.model_thresholds`)."""
    saved = (model.pixel_mean, model.pixel_std)
    dev = saved[0].device
    try:
        if mean is not None:
            model.pixel_mean = torch.tensor(mean, dtype=torch.float32, device=dev).view(-1, 1, 1)
            model.pixel_std = torch.tensor(std, dtype=torch.float32, device=dev).view(-1, 1, 1)
        with model_thresholds(model, score, nms):
            yield
    finally:
        model.pixel_mean, model.pixel_std = saved


def prepare(cfg: CfgNode, dec: Decoded, spec: PipelineSpec) -> tuple[torch.Tensor, tuple[int, int]]:
    """The host-side stages after decoding, chained: channel order, resize, value range / external
    normalization (one function of :mod:`~d2debug.stages` each).

    ``dec``: the decoded image (from ``spec.decoder``). Returns the ``3xHxW`` float32 model input (channel order
    :func:`~d2debug.stages.model_order` of ``cfg.INPUT.FORMAT`` and ``spec.channel_order``) and the original
    ``(h, w)``.
    """
    img = to_model_order(dec.image, dec.order, cfg.INPUT.FORMAT, spec.channel_order)
    resized = resize(img, spec, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    return to_input_tensor(resized, spec.value_range, spec.external_norm), (int(img.shape[0]), int(img.shape[1]))


def preprocess(cfg: CfgNode, image: str | Path | Decoded,
               spec: Optional[PipelineSpec] = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """The model input ``spec`` (default: the reference) produces for one image, without the forward pass:
    ``(3xHxW float32 tensor, original (h, w))``."""
    spec = spec or PipelineSpec()
    dec = image if isinstance(image, Decoded) else decode(image, spec.decoder)
    return prepare(cfg, dec, spec)


class ForwardCache:
    """The forward passes already made on ONE image: a pipeline whose model input equals an earlier one's
    (``torch.equal``) with the same model-side settings gets that result instead of an identical second forward
    pass (the model is deterministic in eval mode); one that differs only in passing height/width gets the same
    forward pass post-processed for its frame. The dataset audit keeps one per image: several pitfalls feed
    exactly the reference's input (ignoring EXIF on a photo without an orientation, omitting height/width)."""

    def __init__(self) -> None:
        self._entries: list[tuple[torch.Tensor, tuple, RunResult]] = []
        self.hits = 0

    @staticmethod
    def key(spec: PipelineSpec) -> tuple:
        """What besides the input decides the forward pass: the model-side fields of ``spec``."""
        return (spec.model_norm, spec.score_thresh, spec.nms_thresh, spec.precision, spec.device)

    def get(self, tensor: torch.Tensor, key: tuple) -> Optional[RunResult]:
        for t, k, result in self._entries:
            if k == key and t.shape == tensor.shape and torch.equal(t, tensor):
                self.hits += 1
                return result
        return None

    def put(self, tensor: torch.Tensor, key: tuple, result: RunResult) -> None:
        self._entries.append((tensor, key, result))


def run(loaded: LoadedModel, image: str | Path | Decoded, spec: PipelineSpec,
        cache: Optional[ForwardCache] = None) -> RunResult:
    """Run ``spec`` on one image file (or an already :class:`Decoded` image, which must come from
    ``spec.decoder``) and return a :class:`RunResult`. ``cache``: the :class:`ForwardCache` of this image, to
    reuse an identical forward pass. Raises :class:`D2DebugError` for bad input."""
    t0 = time.perf_counter()
    dec = image if isinstance(image, Decoded) else decode(image, spec.decoder)
    t1 = time.perf_counter()
    tensor, size = prepare(loaded.cfg, dec, spec)
    host = {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}
    return run_prepared(loaded, tensor, size, spec, cache, decoded=dec, host_timings=host)


def run_prepared(loaded: LoadedModel, tensor: torch.Tensor, original: tuple[int, int], spec: PipelineSpec,
                 cache: Optional[ForwardCache] = None, decoded: Optional[Decoded] = None,
                 host_timings: Optional[dict[str, float]] = None) -> RunResult:
    """The model part of :func:`run`: feed ``tensor`` (``3xHxW`` float32, what :func:`prepare` made of an
    image whose original size is ``original`` ``(h, w)``), reusing a forward pass ``cache`` already holds for
    an equal input. ``decoded``: the image ``tensor`` was prepared from (the result's ``image``; without it the
    image is empty); ``host_timings``: the seconds the host-side steps took, put before ``forward``."""
    key = ForwardCache.key(spec)
    known = cache.get(tensor, key) if cache is not None else None
    if known is not None and known.spec.original_size == spec.original_size and known.original_size == original:
        # The same forward pass and frame: only what this pipeline did on the host differs.
        return dataclasses.replace(known, spec=spec, **_host_fields(loaded, spec, decoded, host_timings, 0.0))
    raw = known.raw if known is not None else None
    result = run_tensor(loaded, tensor, spec, original_size=original, raw=raw, decoded=decoded,
                        host_timings=host_timings)
    if cache is not None and raw is None:
        cache.put(tensor, key, result)
    return result


def run_batch(loaded: LoadedModel, items: list[tuple[torch.Tensor, tuple[int, int], PipelineSpec]],
              cache: Optional[ForwardCache] = None) -> list[RunResult]:
    """Several prepared inputs of ONE shape whose specs share the model-side settings (``ForwardCache.key``),
    through ONE batched forward pass: ``items`` are ``(3xHxW float32 tensor, original (h, w), spec)``. Each
    spec's own ``original_size`` still decides its output frame. On a GPU a batch is faster than its forward
    passes one by one; its numbers may differ from them in the last float bits (other kernels), which is why
    the reference itself never goes through here."""
    if len({tuple(t.shape) for t, _, _ in items}) > 1 or len({ForwardCache.key(s) for _, _, s in items}) > 1:
        raise ValueError("run_batch: every item must have the same shape and model-side settings")
    t0 = time.perf_counter()
    forwards = _forward(loaded, [(t, s, o) for t, o, s in items])
    seconds = (time.perf_counter() - t0) / len(items)
    results = []
    for (tensor, original, spec), forward in zip(items, forwards):
        result = _result(loaded, tensor, spec, original, forward, _host_fields(loaded, spec, None, None, seconds))
        if cache is not None:
            cache.put(tensor, ForwardCache.key(spec), result)
        results.append(result)
    return results


@dataclass(frozen=True)
class RawOutput:
    """What one forward pass gave before detectron2's ``detector_postprocess``: the detections in the model
    input's frame (``Instances``, a private copy) and what the backbone saw. From it the output for either
    frame (height/width passed or not) is one ``detector_postprocess`` away, exactly as the model computes it."""

    instances: object
    backbone_input: torch.Tensor


def _copy_instances(inst):
    """A copy of an ``Instances`` whose tensors are cloned: ``detector_postprocess`` scales boxes in place."""
    from detectron2.structures import Instances

    return Instances(inst.image_size, **{k: v.clone() if hasattr(v, "clone") else copy.deepcopy(v)
                                         for k, v in inst.get_fields().items()})


def run_tensor(
    loaded: LoadedModel,
    tensor: torch.Tensor,
    spec: PipelineSpec,
    original_size: Optional[tuple[int, int]] = None,
    raw: Optional[RawOutput] = None,
    decoded: Optional[Decoded] = None,
    host_timings: Optional[dict[str, float]] = None,
) -> RunResult:
    """Feed a ``3xHxW`` float32 tensor to the model with the model-side settings of ``spec`` (model_norm,
    thresholds, precision, device, original_size). ``original_size`` is ``(h, w)`` passed as height/width
    when ``spec.original_size == "pass"``; when ``None`` the tensor's own size is used. ``raw``: the
    :class:`RawOutput` of a forward pass of this same tensor with the same model-side settings (the frame
    aside): only the post-processing runs. ``decoded`` / ``host_timings``: as for :func:`run_prepared`."""
    from detectron2.modeling.postprocessing import detector_postprocess

    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3 or tensor.shape[0] != 3:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise D2DebugError(f"model input must be a 3xHxW tensor, got {shape}")
    in_h, in_w = int(tensor.shape[1]), int(tensor.shape[2])
    orig = original_size or (in_h, in_w)
    t0 = time.perf_counter()
    if raw is not None:
        # What GeneralizedRCNN's own post-processing does: the original size when passed, else the input's.
        out_h, out_w = (int(orig[0]), int(orig[1])) if spec.original_size == "pass" else (in_h, in_w)
        outputs = {"instances": detector_postprocess(_copy_instances(raw.instances), out_h, out_w)}
        backbone = raw.backbone_input
    else:
        ((outputs, backbone, raw),) = _forward(loaded, [(tensor, spec, orig)])
    host = _host_fields(loaded, spec, decoded, host_timings, time.perf_counter() - t0)
    return _result(loaded, tensor, spec, orig, (outputs, backbone, raw), host)


def _host_fields(loaded: LoadedModel, spec: PipelineSpec, decoded: Optional[Decoded],
                 host_timings: Optional[dict[str, float]], forward_seconds: float) -> dict:
    """The :class:`RunResult` fields that say what happened before the forward pass: the decoded image (empty
    without one), its order, the order fed to the model, the decode's notes and the timings."""
    fed = model_order(loaded.cfg.INPUT.FORMAT, spec.channel_order)
    return {
        "image": decoded.image if decoded is not None else np.zeros((0, 0, 3), np.uint8),
        "image_order": decoded.order if decoded is not None else fed,
        "fed_order": fed,
        "notes": decoded.notes if decoded is not None else (),
        "decoded": decoded,
        "timings": {**(host_timings or {}), "forward": forward_seconds},
    }


def _result(loaded: LoadedModel, tensor: torch.Tensor, spec: PipelineSpec, orig: tuple[int, int],
            forward: tuple[dict, torch.Tensor, Optional[RawOutput]], host: dict) -> RunResult:
    """The :class:`RunResult` of one forward pass (``(outputs, backbone input, raw)``) for the input ``tensor``;
    ``host``: :func:`_host_fields`."""
    outputs, backbone, raw = forward
    in_h, in_w = int(tensor.shape[1]), int(tensor.shape[2])
    return RunResult(
        spec=spec,
        device=_device_name(spec.device),
        input_tensor=tensor.detach().cpu(),
        backbone_input=backbone,
        class_names=list(loaded.class_names),
        stuff_names=tuple(loaded.stuff_names),
        frame="original" if spec.original_size == "pass" else "resized",
        original_size=(int(orig[0]), int(orig[1])),
        input_size=(in_h, in_w),
        scale=(in_w / orig[1], in_h / orig[0]),
        raw=raw,
        **host,
        **_predictions(outputs),
    )


def result_from_outputs(loaded: LoadedModel, tensor: torch.Tensor, spec: PipelineSpec, original: tuple[int, int],
                        outputs: dict, backbone_input: torch.Tensor, decoded: Optional[Decoded] = None,
                        host_timings: Optional[dict[str, float]] = None, forward_seconds: float = 0.0) -> RunResult:
    """A :class:`RunResult` for outputs some other runner made of ``tensor`` (an exported model): ``outputs``
    is the model's output dict (``{"instances": Instances}`` in the frame ``spec.original_size`` says),
    ``backbone_input`` the ``3xHxW`` float32 tensor its normalization gives."""
    host = _host_fields(loaded, spec, decoded, host_timings, forward_seconds)
    return _result(loaded, tensor, spec, original, (outputs, backbone_input, None), host)


def _device_name(device: str) -> str:
    """``cpu``, or the GPU ``cuda`` means in this process (``cuda:LOCAL_RANK`` under torchrun)."""
    return f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"


def _predictions(outputs: dict) -> dict:
    """The numpy form of one image's model outputs (see :class:`RunResult`): boxes/scores/classes (empty for a
    semantic segmentor), and masks, keypoints, sem_seg and panoptic when the model predicts them."""
    pred: dict = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                  "classes": np.zeros(0, np.int64)}
    inst = outputs.get("instances")
    if inst is not None:
        inst = inst.to("cpu")
        pred.update(boxes=inst.pred_boxes.tensor.float().numpy(), scores=inst.scores.float().numpy(),
                    classes=inst.pred_classes.numpy().astype(np.int64))
        if inst.has("pred_masks"):
            pred["masks"] = inst.pred_masks.numpy().astype(bool).reshape(len(inst), *inst.image_size)
        if inst.has("pred_keypoints"):
            pred["keypoints"] = inst.pred_keypoints.float().numpy()
    if "sem_seg" in outputs:
        pred["sem_seg"] = outputs["sem_seg"].argmax(dim=0).cpu().numpy().astype(np.int64)
    if "panoptic_seg" in outputs:
        seg, info = outputs["panoptic_seg"]
        pred["panoptic"] = (seg.cpu().numpy().astype(np.int64), [dict(i) for i in info])
    return pred


def _forward(loaded: LoadedModel, items: list[tuple[torch.Tensor, PipelineSpec, tuple[int, int]]]) -> list[tuple]:
    """One forward pass by the Detectron2 contract over ``items`` (``(3xHxW float32 input, spec, original
    (h, w))``; one item is what ``DefaultPredictor`` does, several are one batch whose specs share the
    model-side settings, which the first one's give). Per item: ``(outputs dict, backbone input 3xHxW float32
    CPU, RawOutput or None)``. The backbone input is taken by a pre-hook on ``model.backbone``; the detections
    before post-processing by a hook on ``model.roi_heads`` (R-CNN models, fp32 only; a PanopticFPN combines
    its outputs after that, so it gets none)."""
    from detectron2.modeling.meta_arch import PanopticFPN

    spec = items[0][1]
    inputs: list[dict[str, Any]] = []
    for tensor, item_spec, orig in items:
        inputs.append({"image": tensor})
        if item_spec.original_size == "pass":
            inputs[-1].update(height=int(orig[0]), width=int(orig[1]))
    mean, std = model_norm_values(spec.model_norm, loaded.cfg)
    # A detectron2 meta-architecture: untyped (torch types its submodules as Tensor | Module).
    model: Any = loaded.model_on(spec.device)
    captured: dict[str, Any] = {}

    def grab(_module, args):
        captured["x"] = args[0]

    def grab_heads(_module, _args, output):
        captured["instances"] = [_copy_instances(i) for i in output[0]]

    handles = [model.backbone.register_forward_pre_hook(grab)]
    if (spec.precision == "fp32" and isinstance(getattr(model, "roi_heads", None), torch.nn.Module)
            and not isinstance(model, PanopticFPN)):
        handles.append(model.roi_heads.register_forward_hook(grab_heads))
    with loaded.lock, torch.no_grad(), _model_settings(
        model, mean if spec.model_norm != "cfg" else None, std, spec.score_thresh, spec.nms_thresh
    ):
        try:
            if spec.precision == "fp16":
                dev_type = "cuda" if spec.device == "cuda" else "cpu"
                try:
                    with torch.autocast(device_type=dev_type, dtype=torch.float16):
                        outs = model(inputs)
                except RuntimeError as exc:
                    raise D2DebugError(
                        f"precision=fp16 is not supported by this model on {dev_type} ({first_line(exc)})"
                    ) from None
            else:
                outs = model(inputs)
        finally:
            for h in handles:
                h.remove()
    results = []
    for i, (tensor, _spec, _orig) in enumerate(items):
        in_h, in_w = int(tensor.shape[1]), int(tensor.shape[2])
        backbone = captured["x"][i, :, :in_h, :in_w].detach().float().cpu()
        raw = RawOutput(captured["instances"][i], backbone) if "instances" in captured else None
        results.append((outs[i], backbone, raw))
    return results
