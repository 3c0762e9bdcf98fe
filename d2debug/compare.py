"""Agreement between two sets of detections (reference vs variant).

Matching is greedy by IoU (detectron2's ``pairwise_iou``), highest first, class-agnostic, at IoU >= 0.5.
A matched pair with the same class is a *match*; with different classes a *class flip*. Reference boxes left
over are *missed*, variant boxes left over are *extra*. Agreement F1 = 2 * matches / (n_ref + n_var): 1.0
exactly when the variant reproduces every reference detection's box (IoU >= 0.5) and class, and nothing more.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

__all__ = ["Agreement", "compare", "compare_boxes"]


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

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("pairs", "missed_idx", "extra_idx", "flip_pairs"):
            d.pop(k)
        d["mean_iou"] = round(d["mean_iou"], 4)
        d["mean_score_change"] = round(d["mean_score_change"], 4)
        d["f1"] = round(d["f1"], 4)
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
    )


def compare(reference, variant, iou_thresh: float = 0.5) -> Agreement:
    """Agreement of two :class:`~d2debug.run.RunResult` (boxes compared as each pipeline returned them)."""
    return compare_boxes(
        reference.boxes, reference.scores, reference.classes,
        variant.boxes, variant.scores, variant.classes,
        iou_thresh,
    )
