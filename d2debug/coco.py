"""COCO AP with pycocotools for detections produced by any pipeline.

Detections are given per image id as ``(boxes, scores, class_ids)`` with boxes ``Nx4`` float ``XYXY_ABS`` in
the frame of the original (displayed) image, and 0-based contiguous class ids; the COCO category ids are
taken from the annotation file in sorted order, as detectron2's ``load_coco_json`` maps them.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .errors import D2DebugError

__all__ = ["load_coco", "coco_ap", "encode_masks", "decode_masks", "IOU_TYPES"]


def load_coco(path: str | Path):
    """Load a COCO annotation file quietly. Raises ``ValueError`` naming the file when it is not COCO."""
    from pycocotools.coco import COCO

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable COCO json ({exc})") from None
    if not isinstance(data, dict) or not {"images", "categories"} <= set(data):
        raise ValueError(f"{path}: not a COCO annotation file (needs 'images' and 'categories')")
    data.setdefault("annotations", [])
    _check_schema(path, data)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# What pycocotools reads of each entry (a missing one fails deep inside it, or only after the model ran).
_REQUIRED = {
    "images": (("id", int),),
    "categories": (("id", int), ("name", str)),
    "annotations": (("image_id", int), ("category_id", int), ("bbox", list)),
}


def _check_schema(path: Path, data: dict) -> None:
    """Each of images, categories and annotations is a list of objects with the fields pycocotools reads;
    otherwise ``ValueError`` naming the file, the list and the first bad entry."""
    for key, need in _REQUIRED.items():
        entries = data[key]
        if not isinstance(entries, list):
            raise ValueError(f"{path}: '{key}' is a {type(entries).__name__}; expected a list")
        for i, e in enumerate(entries):
            bad = [f for f, kind in need if not isinstance(e, dict) or not isinstance(e.get(f), kind)
                   or isinstance(e.get(f), bool)]
            if bad:
                what = f"has no valid {', '.join(repr(b) for b in bad)}" if isinstance(e, dict) else "is not an object"
                raise ValueError(f"{path}: {key}[{i}] {what}")
            if key == "annotations" and len(e["bbox"]) != 4:
                raise ValueError(f"{path}: annotations[{i}] bbox has {len(e['bbox'])} numbers; expected 4 (x, y, w, h)")


def encode_masks(masks) -> list[dict]:
    """COCO RLEs of ``masks`` (``NxHxW`` bool, a numpy array or tensor), each ``{"size": [h, w], "counts": str}``:
    the JSON form of pycocotools (and of detectron2's ``instances_to_coco_json``)."""
    from pycocotools import mask as mask_util

    arr = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks, dtype=np.uint8)
    if arr.shape[0] == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(arr.transpose(1, 2, 0)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def decode_masks(rles: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """``NxHxW`` bool masks from COCO RLEs (``shape``: ``(H, W)``, used when there are none)."""
    from pycocotools import mask as mask_util

    if not rles:
        return np.zeros((0, *shape), bool)
    arr = mask_util.decode([{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles])
    return np.ascontiguousarray(arr.transpose(2, 0, 1).astype(bool))


IOU_TYPES = ("bbox", "segm", "keypoints")


def coco_ap(coco, detections: dict[int, tuple], iou_type: str = "bbox") -> dict[str, float]:
    """AP (0.50:0.95), AP50 and AP75, as fractions in 0..1, over the images in ``detections``.

    ``detections[image_id]`` is ``(boxes, scores, classes)``, plus for ``iou_type="segm"`` a fourth item: one
    COCO RLE per detection (``{"size": [h, w], "counts": str}`` in the original frame), and for
    ``"keypoints"`` a ``NxKx3`` float array of ``(x, y, score)``. Images of the annotation file that are not in
    ``detections`` are left out of the evaluation, so a partial run is scored on what it covered.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type {iou_type!r}: expected one of {', '.join(IOU_TYPES)}")
    results = _results(coco, detections, iou_type)
    if not detections:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, iou_type)
        ev.params.imgIds = sorted(int(i) for i in detections)
        if iou_type == "keypoints":
            # The OKS sigmas of COCO persons fit only 17 keypoints; other skeletons get detectron2's default
            # for a custom dataset without TEST.KEYPOINT_OKS_SIGMAS (uniform 0.05 of the object scale).
            k = len(results[0]["keypoints"]) // 3
            if k != 17:
                ev.params.kpt_oks_sigmas = np.full(k, 0.05)
        # AP, AP50 and AP75 are read at area "all" and the largest maxDets; COCOeval evaluates each area range
        # and maxDets on its own, so evaluating only those gives the same numbers at a fraction of the work.
        ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.params.maxDets = ev.params.maxDets[-1:]
        ev.evaluate()
        ev.accumulate()
    return {k: _average_precision(ev, thr) for k, thr in (("AP", None), ("AP50", 0.5), ("AP75", 0.75))}


def _average_precision(ev, iou_thr) -> float:
    """What ``COCOeval.summarize`` reports as AP at ``iou_thr`` (``None``: averaged over 0.50:0.95), area "all",
    the largest maxDets; 0 when undefined (no ground truth: pycocotools' -1)."""
    precision = ev.eval["precision"]  # T x R x K x A x M
    if iou_thr is not None:
        precision = precision[np.where(iou_thr == ev.params.iouThrs)[0]]
    values = precision[:, :, :, 0, -1]
    values = values[values > -1]
    return max(0.0, float(np.mean(values))) if values.size else 0.0


def _results(coco, detections: dict[int, tuple], iou_type: str) -> list[dict]:
    """The detections as pycocotools result entries (``bbox`` as XYWH; ``segmentation`` or ``keypoints``)."""
    cat_ids = sorted(coco.getCatIds())
    results = []
    for image_id, dets in detections.items():
        boxes, scores, classes = dets[:3]
        extra = dets[3] if len(dets) > 3 else None
        if iou_type != "bbox" and extra is None:
            raise ValueError(f"iou_type {iou_type!r} needs the detections' {'masks' if iou_type == 'segm' else iou_type}")
        bad = [int(c) for c in np.asarray(classes, int) if not 0 <= int(c) < len(cat_ids)]
        if bad:
            raise D2DebugError(
                f"the model predicts class id {bad[0]} but the annotations have {len(cat_ids)} categories: "
                "the model's NUM_CLASSES and the annotation file do not describe the same classes"
            )
        for i, (b, s, c) in enumerate(zip(np.asarray(boxes, float), np.asarray(scores, float),
                                          np.asarray(classes, int))):
            entry = {
                "image_id": int(image_id),
                "category_id": cat_ids[int(c)],
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "score": float(s),
            }
            if extra is not None and iou_type == "segm":
                entry["segmentation"] = extra[i]
            elif extra is not None and iou_type == "keypoints":
                entry["keypoints"] = [round(float(v), 2) for v in np.asarray(extra[i], np.float64).reshape(-1)]
            results.append(entry)
    return results
