"""What a detectron2 model predicts and where its test thresholds live, per meta-architecture.

detectron2 ships these meta-architectures that take images and predict classes:

- ``GeneralizedRCNN`` (Faster/Mask/Keypoint/Cascade R-CNN, C4 or FPN): ``instances`` with boxes, and masks
  (``MASK_ON``) and keypoints (``KEYPOINT_ON``); thresholds on ``roi_heads.box_predictor`` (one per cascade
  stage), config keys ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` / ``NMS_THRESH_TEST``;
- ``RetinaNet`` and ``FCOS`` (one-stage ``DenseDetector``): ``instances`` with boxes; thresholds on the model
  itself (``MODEL.RETINANET.*``, or the LazyConfig's ``model.test_score_thresh``);
- ``PanopticFPN``: ``instances`` (boxes, masks), ``sem_seg`` (per-pixel logits of the stuff classes) and
  ``panoptic_seg``; thresholds of its ROI heads;
- ``SemanticSegmentor`` (Semantic FPN): ``sem_seg`` only; no thresholds.

``ProposalNetwork`` predicts class-less proposals and is refused in one line, as is any class not derived from
these (a user's own meta-architecture is accepted when it subclasses one of them).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional, cast

import torch

from .errors import D2DebugError

__all__ = ["Arch", "arch_of", "model_thresholds", "SUPPORTED"]

SUPPORTED = ("GeneralizedRCNN", "RetinaNet", "FCOS", "PanopticFPN", "SemanticSegmentor")


@dataclass(frozen=True)
class Arch:
    """The prediction contract of one built model.

    - ``meta``: the supported detectron2 class it is (or derives from); ``name``: its own class name.
    - ``outputs``: which of ``boxes``, ``masks``, ``keypoints``, ``sem_seg``, ``panoptic`` it predicts.
    - ``score_thresh`` / ``nms_thresh``: the test thresholds the model was built with (``None``: it has none);
      ``score_key`` / ``nms_key``: the config key that sets each (yacs ``MODEL...`` or LazyConfig ``model...``).
    - ``num_classes``: thing classes of its instances; ``num_stuff``: classes of its ``sem_seg`` map (0: none).
    """

    meta: str
    name: str
    outputs: tuple[str, ...]
    score_thresh: Optional[float]
    nms_thresh: Optional[float]
    score_key: Optional[str]
    nms_key: Optional[str]
    num_classes: int
    num_stuff: int

    @property
    def instances(self) -> bool:
        """Whether it predicts detections (boxes), so box agreement and box AP apply."""
        return "boxes" in self.outputs

    def describe(self) -> str:
        """E.g. ``GeneralizedRCNN (boxes, masks)`` or ``MyRCNN (a GeneralizedRCNN: boxes)``."""
        what = ", ".join(self.outputs)
        return f"{self.name} ({what})" if self.name == self.meta else f"{self.name} (a {self.meta}: {what})"


def _meta_of(model: torch.nn.Module) -> str:
    from detectron2.modeling.meta_arch import GeneralizedRCNN, PanopticFPN, ProposalNetwork, SemanticSegmentor
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector
    from detectron2.modeling.meta_arch.fcos import FCOS

    for cls in (PanopticFPN, GeneralizedRCNN, SemanticSegmentor, FCOS):
        if isinstance(model, cls):
            return cls.__name__
    if isinstance(model, DenseDetector):  # RetinaNet, or a user's one-stage detector on the same base
        return "RetinaNet"
    name = type(model).__name__
    if isinstance(model, ProposalNetwork):
        raise D2DebugError(f"{name} predicts class-less proposals (no classes to compare); d2debug supports "
                           f"the meta-architectures that predict classes: {', '.join(SUPPORTED)}")
    raise D2DebugError(f"{name} is not one of detectron2's meta-architectures ({', '.join(SUPPORTED)}) nor derived "
                       "from one, so d2debug does not know what it predicts")


def _predictors(model: torch.nn.Module) -> list:
    """The modules holding ``test_score_thresh``/``test_nms_thresh``: the ROI box predictor(s) of an R-CNN
    (a cascade has one per stage), the model itself for a dense detector, none for a semantic segmentor."""
    heads = getattr(model, "roi_heads", None)
    if isinstance(heads, torch.nn.Module):
        pred = heads.box_predictor
        return list(pred) if isinstance(pred, torch.nn.ModuleList) else [pred]
    return [model] if hasattr(model, "test_score_thresh") else []


def arch_of(model: torch.nn.Module, lazy: bool = False) -> Arch:
    """The :class:`Arch` of a built detectron2 model (its thresholds read from the built modules, so a yacs and
    a LazyConfig model are described alike). ``lazy``: name LazyConfig keys instead of yacs ones. Raises
    :class:`D2DebugError` in one line for a model d2debug cannot compare."""
    meta = _meta_of(model)
    preds = _predictors(model)
    score = float(preds[0].test_score_thresh) if preds else None
    nms = float(preds[0].test_nms_thresh) if preds else None
    outputs: tuple[str, ...] = ()
    keys: tuple[Optional[str], Optional[str]]
    num_classes = num_stuff = 0
    if meta in ("GeneralizedRCNN", "PanopticFPN"):
        heads: Any = model.roi_heads  # detectron2's modules are untyped
        outputs = ("boxes",) + (("masks",) if getattr(heads, "mask_on", False) else ()) + (
            ("keypoints",) if getattr(heads, "keypoint_on", False) else ())
        num_classes = int(heads.num_classes)
        keys = ("model.roi_heads.box_predictor.test_score_thresh", "model.roi_heads.box_predictor.test_nms_thresh") \
            if lazy else ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "MODEL.ROI_HEADS.NMS_THRESH_TEST")
    elif meta in ("RetinaNet", "FCOS"):
        outputs, num_classes = ("boxes",), int(cast(Any, model).num_classes)
        keys = ("model.test_score_thresh", "model.test_nms_thresh") if lazy or meta == "FCOS" else (
            "MODEL.RETINANET.SCORE_THRESH_TEST", "MODEL.RETINANET.NMS_THRESH_TEST")
    else:
        keys = (None, None)
    if meta in ("PanopticFPN", "SemanticSegmentor"):
        outputs += ("sem_seg",) + (("panoptic",) if meta == "PanopticFPN" else ())
        num_stuff = int(getattr(getattr(model.sem_seg_head, "predictor", None), "out_channels", 0))
    return Arch(meta, type(model).__name__, outputs, score, nms, keys[0], keys[1], num_classes, num_stuff)


@contextlib.contextmanager
def model_thresholds(model: torch.nn.Module, score: Optional[float], nms: Optional[float]):
    """Temporarily set the model's test score / NMS thresholds (``None``: leave as built), restored afterwards
    even on error. A threshold on a model without one (a semantic segmentor) is one line saying so."""
    preds = _predictors(model)
    if not preds and (score is not None or nms is not None):
        raise D2DebugError(f"{type(model).__name__} has no test score/NMS thresholds (it predicts a per-pixel "
                           "class map, not detections); leave score_thresh and nms_thresh at cfg")
    saved = [(p.test_score_thresh, p.test_nms_thresh) for p in preds]
    try:
        for p in preds:
            if score is not None:
                p.test_score_thresh = score
            if nms is not None:
                p.test_nms_thresh = nms
        yield
    finally:
        for p, (s, n) in zip(preds, saved):
            p.test_score_thresh, p.test_nms_thresh = s, n
