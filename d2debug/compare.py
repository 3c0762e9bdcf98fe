"""Agreement between two sets of detections (reference vs variant).

Matching is greedy by IoU (detectron2's ``pairwise_iou``), highest first, class-agnostic, at IoU >= 0.5.
A matched pair with the same class is a *match*; with different classes a *class flip*. Reference boxes left
over are *missed*, variant boxes left over are *extra*. Agreement F1 = 2 * matches / (n_ref + n_var): 1.0
exactly when the variant reproduces every reference detection's box (IoU >= 0.5) and class, and nothing more.

Beyond boxes, each output the model predicts adds a number (``None`` where it does not apply):
``mask_iou``, the mean mask IoU of the box-matched pairs; ``keypoint_distance``, the mean pixel distance
between the matched pairs' keypoints; ``sem_seg_miou``, the mean over classes present in either map of the
IoU of the reference's and the variant's per-pixel class maps. Masks, keypoints and maps are compared as each
pipeline returned them, like the boxes: a variant in another frame disagrees. ``score`` is what the tools
rank by: ``f1``, or ``sem_seg_miou`` for a model that predicts no detections.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

__all__ = ["Agreement", "compare", "compare_boxes", "at_coordinates", "mask_iou", "keypoint_distance", "sem_seg_miou"]


@dataclass(frozen=True)
class Agreement:
    """Counts and quality of agreement; ``pairs`` are ``(ref_index, var_index)`` of box-matched detections."""

    n_reference: int
    n_variant: int
    matched: int
    missed: int
    extra: int
    class_flips: int
    mean_iou: float
    mean_score_change: float
    f1: float
    pairs: tuple[tuple[int, int], ...] = field(default=())
    missed_idx: tuple[int, ...] = field(default=())
    extra_idx: tuple[int, ...] = field(default=())
    flip_pairs: tuple[tuple[int, int], ...] = field(default=())
    mask_iou: Optional[float] = None
    keypoint_distance: Optional[float] = None
    sem_seg_miou: Optional[float] = None
    score: float = 1.0
    map_only: bool = False  # a semantic segmentor: no detections, the class map is all there is to compare

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("pairs", "missed_idx", "extra_idx", "flip_pairs", "map_only"):
            d.pop(k)
        for k in ("mean_iou", "mean_score_change", "f1", "mask_iou", "keypoint_distance", "sem_seg_miou", "score"):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        return d


def compare_boxes(
    ref_boxes: np.ndarray,
    ref_scores: np.ndarray,
    ref_classes: np.ndarray,
    var_boxes: np.ndarray,
    var_scores: np.ndarray,
    var_classes: np.ndarray,
    iou_thresh: float = 0.5,
) -> Agreement:
    """Match ``Nx4`` and ``Mx4`` float ``XYXY_ABS`` boxes in the same frame; see the module docstring."""
    from detectron2.structures import Boxes, pairwise_iou

    n, m = len(ref_boxes), len(var_boxes)
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    if n and m:
        iou = pairwise_iou(
            Boxes(torch.as_tensor(np.asarray(ref_boxes, np.float32))),
            Boxes(torch.as_tensor(np.asarray(var_boxes, np.float32))),
        ).numpy()
        order = np.argsort(-iou, axis=None, kind="stable")
        used_r, used_v = np.zeros(n, bool), np.zeros(m, bool)
        for flat in order:
            i, j = divmod(int(flat), m)
            if iou[i, j] < iou_thresh:
                break
            if used_r[i] or used_v[j]:
                continue
            used_r[i] = used_v[j] = True
            pairs.append((i, j))
            ious.append(float(iou[i, j]))
    matched_r = {i for i, _ in pairs}
    matched_v = {j for _, j in pairs}
    flips = [(i, j) for i, j in pairs if int(ref_classes[i]) != int(var_classes[j])]
    same = len(pairs) - len(flips)
    score_changes = [float(var_scores[j]) - float(ref_scores[i]) for i, j in pairs]
    f1 = 1.0 if n + m == 0 else 2.0 * same / (n + m)
    return Agreement(
        n_reference=n,
        n_variant=m,
        matched=same,
        missed=n - len(pairs),
        extra=m - len(pairs),
        class_flips=len(flips),
        mean_iou=float(np.mean(ious)) if ious else (1.0 if n + m == 0 else 0.0),
        mean_score_change=float(np.mean(score_changes)) if score_changes else 0.0,
        f1=f1,
        pairs=tuple(pairs),
        missed_idx=tuple(i for i in range(n) if i not in matched_r),
        extra_idx=tuple(j for j in range(m) if j not in matched_v),
        flip_pairs=tuple(flips),
        score=f1,
    )


def at_coordinates(a: np.ndarray, shape: tuple[int, ...], fill) -> np.ndarray:
    """``a`` (``...xHxW``) cropped or padded with ``fill`` to ``shape`` (``(H', W')``): each pixel stays at its
    coordinates, so an output returned in another frame is read as it was returned."""
    out = np.full(a.shape[:-2] + tuple(shape), fill, a.dtype)
    h, w = min(a.shape[-2], shape[0]), min(a.shape[-1], shape[1])
    out[..., :h, :w] = a[..., :h, :w]
    return out


def mask_iou(ref_masks: np.ndarray, var_masks: np.ndarray, pairs) -> Optional[float]:
    """Mean IoU of the pairs' masks (``NxHxW`` / ``MxH'xW'`` bool, each as its pipeline returned it: the
    variant's are read at the reference's pixel coordinates); ``None`` without pairs. Two empty masks agree."""
    if not pairs:
        return None
    shape = ref_masks.shape[-2:]
    ious = []
    for i, j in pairs:
        a, b = ref_masks[i], at_coordinates(var_masks[j], shape, False)
        union = np.count_nonzero(a | b)
        ious.append(1.0 if union == 0 else float(np.count_nonzero(a & b)) / union)
    return float(np.mean(ious))


def keypoint_distance(ref_kp: np.ndarray, var_kp: np.ndarray, pairs) -> Optional[float]:
    """Mean Euclidean distance in pixels between the pairs' keypoints (``NxKx3`` ``(x, y, score)``); ``None``
    without pairs."""
    if not pairs:
        return None
    d = [np.linalg.norm(ref_kp[i, :, :2] - var_kp[j, :, :2], axis=1).mean() for i, j in pairs]
    return float(np.mean(d))


def sem_seg_miou(ref: np.ndarray, var: np.ndarray) -> float:
    """Mean IoU over the classes present in either ``HxW`` int class map (the variant's read at the reference's
    coordinates; where it has no pixel it disagrees)."""
    v = at_coordinates(var, ref.shape, -1)
    classes = np.union1d(np.unique(ref), np.unique(v[v >= 0]))
    ious = []
    for c in classes:
        a, b = ref == c, v == c
        union = np.count_nonzero(a | b)
        ious.append(float(np.count_nonzero(a & b)) / union if union else 1.0)
    return float(np.mean(ious)) if ious else 1.0


def compare(reference, variant, iou_thresh: float = 0.5) -> Agreement:
    """Agreement of two :class:`~d2debug.run.RunResult` (everything compared as each pipeline returned it)."""
    a = compare_boxes(
        reference.boxes, reference.scores, reference.classes,
        variant.boxes, variant.scores, variant.classes,
        iou_thresh,
    )
    extra: dict = {}
    if getattr(reference, "masks", None) is not None and getattr(variant, "masks", None) is not None:
        extra["mask_iou"] = mask_iou(reference.masks, variant.masks, a.pairs)
    if getattr(reference, "keypoints", None) is not None and getattr(variant, "keypoints", None) is not None:
        extra["keypoint_distance"] = keypoint_distance(reference.keypoints, variant.keypoints, a.pairs)
    if getattr(reference, "sem_seg", None) is not None and getattr(variant, "sem_seg", None) is not None:
        extra["sem_seg_miou"] = sem_seg_miou(reference.sem_seg, variant.sem_seg)
        if a.n_reference + a.n_variant == 0 and getattr(reference, "panoptic", None) is None:
            extra.update(score=extra["sem_seg_miou"], map_only=True)  # a semantic segmentor: the map is all
    return dataclasses.replace(a, **extra) if extra else a
