"""Training vs deployment config: the keys that differ, what changes at inference first, each explained.

Both files are merged onto detectron2's ``get_cfg()`` (``config.load_cfg``), so a key left out of one file
counts with its default value, exactly as detectron2 would use it. Groups, in order:

1. ``preprocessing``: ``INPUT.*`` and ``MODEL.PIXEL_MEAN/STD`` (what the image becomes before the backbone);
2. ``thresholds``: test-time score/NMS thresholds and limits;
3. ``model identity``: number of classes, weights, device;
4. ``architecture``: how the network is built (the checkpoint must fit it);
5. ``test-time augmentation``;
6. ``training only``: solver, data loader, losses, training augmentation: no effect at inference.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from .config import load_cfg
from .serving import PathCheck
from .stages import D2_DEFAULT_PIXEL_MEAN, D2_DEFAULT_PIXEL_STD
from .text import fmt

__all__ = ["ConfigDifference", "ConfigDiff", "diff_configs", "diff_cfg_nodes", "explain", "GROUPS", "DEFAULTS_LABEL"]

GROUPS = ("preprocessing", "thresholds", "model identity", "architecture", "test-time augmentation",
          "training only")

_ABSENT = "<absent>"


@dataclass(frozen=True)
class ConfigDifference:
    """One differing key: values as in the merged configs, its group, and one line on its effect."""

    key: str
    train: object
    deploy: object
    group: str
    affects_inference: bool
    effect: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConfigDiff:
    train_path: Optional[str]
    deploy_path: Optional[str]
    differences: tuple[ConfigDifference, ...]
    n_keys: int

    @property
    def inference_differences(self) -> tuple[ConfigDifference, ...]:
        return tuple(d for d in self.differences if d.affects_inference)

    def to_dict(self) -> dict:
        return {
            "train": self.train_path,
            "deploy": self.deploy_path,
            "keys_compared": self.n_keys,
            "n_differences": len(self.differences),
            "n_inference_differences": len(self.inference_differences),
            "differences": [d.to_dict() for d in self.differences],
        }

    def text(self) -> str:
        """Human-readable report: one block per group, each key with its values and its effect."""
        lines = [f"train   {self.train_path}", f"deploy  {self.deploy_path}"]
        if not self.differences:
            lines.append(f"no differences in {self.n_keys} keys (both merged onto detectron2's defaults)")
            return "\n".join(lines)
        lines.append(f"{len(self.differences)} of {self.n_keys} keys differ; "
                     f"{len(self.inference_differences)} change what the model does at inference")
        for group in GROUPS:
            items = [d for d in self.differences if d.group == group]
            if not items:
                continue
            lines.append("")
            lines.append(group + (" (no effect at inference)" if group == "training only" else ""))
            for d in items:
                lines.append(f"  {d.key}: {fmt(d.train)} -> {fmt(d.deploy)}")
                if group != "training only":
                    lines.append(f"      {d.effect}")
        return "\n".join(lines)


def _flatten(node, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = _plain(v)
    return out


def _plain(v):
    # YAML gives lists where get_cfg() has tuples: compare them as the same thing.
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------------------------
# Explanations


def _same_len_num(a, b) -> bool:
    return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
            and all(isinstance(x, (int, float)) for x in a + b))


def _name_mean(v) -> str:
    if _close(v, D2_DEFAULT_PIXEL_MEAN):
        return f"{fmt(v)} (the model-zoo default: ImageNet mean, BGR order)"
    if _close(v, D2_DEFAULT_PIXEL_MEAN[::-1]):
        return f"{fmt(v)} (ImageNet mean, RGB order)"
    return fmt(v)


def _close(a, b, tol=1e-3) -> bool:
    return isinstance(a, list) and len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))


def _format(a, b) -> str:
    if a in ("BGR", "RGB") and b in ("BGR", "RGB"):
        return (f"INPUT.FORMAT {a} -> {b}: the deployed model is fed channels in the other order: red and blue "
                "swap (DefaultPredictor flips the image to INPUT.FORMAT, the weights learned the other order)")
    return f"INPUT.FORMAT {a} -> {b}: the image is converted to another colour format before the model"


def _mean(a, b) -> str:
    if _same_len_num(a, b):
        if _close(a[::-1], b) and not _close(a, b):
            return ("the same means in the other channel order (RGB vs BGR): the first and last channels are "
                    f"shifted by {abs(a[0] - b[0]):.1f} grey levels before the backbone")
        shift = max(abs(float(x) - float(y)) for x, y in zip(a, b))
        return (f"the model subtracts {_name_mean(b)} instead of {_name_mean(a)}: inputs shifted by up to "
                f"{shift:.1f} grey levels before the backbone")
    return f"the model subtracts a different PIXEL_MEAN ({fmt(a)} -> {fmt(b)})"


def _std(a, b) -> str:
    if _same_len_num(a, b) and all(float(x) > 0 for x in b):
        ratios = [float(x) / float(y) for x, y in zip(a, b)]
        r = (f"{ratios[0]:.3g}x" if max(ratios) - min(ratios) < 1e-6
             else "(" + ", ".join(f"{x:.3g}" for x in ratios) + ")x per channel")
        zoo = " (the model-zoo default)" if _close(b, D2_DEFAULT_PIXEL_STD) else ""
        return f"the model divides by {fmt(b)}{zoo} instead of {fmt(a)}: the backbone sees values {r} as large"
    return f"the model divides by a different PIXEL_STD ({fmt(a)} -> {fmt(b)})"


def _min_size_test(a, b) -> str:
    if b == 0:
        return "0 disables the test-time resize: images are fed at their own size, objects at the wrong scale"
    if a == 0:
        return f"images are resized to a short side of {b} px where the training eval fed them unresized"
    return (f"the short side is resized to {b} px instead of {a}: objects appear {b / a:.2f}x the size they "
            "had in the training evaluation")


def _max_size_test(a, b) -> str:
    return (f"the long side is capped at {b} px instead of {a}: elongated images are "
            f"{'shrunk more' if b < a else 'shrunk less'} than in the training evaluation")


def _score(a, b) -> str:
    more = "fewer" if b > a else "more"
    return (f"detections scoring below {b} are dropped instead of below {a}: {more} low-confidence boxes "
            f"({'recall and AP drop' if b > a else 'more false positives shown'})")


def _nms(a, b) -> str:
    what = "more duplicate boxes survive" if b > a else "nearby objects of one class suppress each other more"
    return f"same-class boxes overlapping above IoU {b} are suppressed instead of {a}: {what}"


def _dets(a, b) -> str:
    return f"at most {b} detections per image instead of {a}" + (": crowded images lose detections" if b < a else "")


def _num_classes(a, b) -> str:
    return (f"the deployed model has {b} classes instead of {a}: the checkpoint's class head does not fit "
            f"({a + 1} vs {b + 1} logits), or class ids mean other things")


def _weights(a, b) -> str:
    if a and b and Path(str(a)).name == Path(str(b)).name:
        return f"the same file name in another place ({a} -> {b}): make sure it is the same checkpoint"
    return f"another checkpoint is loaded ({a or 'none'} -> {b or 'none'})"


def _device(a, b) -> str:
    return (f"runs on {b} instead of {a}: small numeric differences (CPU vs GPU kernels, TF32 on recent GPUs), "
            "rarely a changed detection")


_SPECIFIC: dict[str, tuple[str, Callable]] = {
    "INPUT.FORMAT": ("preprocessing", _format),
    "MODEL.PIXEL_MEAN": ("preprocessing", _mean),
    "MODEL.PIXEL_STD": ("preprocessing", _std),
    "INPUT.MIN_SIZE_TEST": ("preprocessing", _min_size_test),
    "INPUT.MAX_SIZE_TEST": ("preprocessing", _max_size_test),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": ("thresholds", _score),
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": ("thresholds", _nms),
    "TEST.DETECTIONS_PER_IMAGE": ("thresholds", _dets),
    "MODEL.RETINANET.SCORE_THRESH_TEST": ("thresholds", lambda a, b: "RetinaNet: " + _score(a, b)),
    "MODEL.RETINANET.NMS_THRESH_TEST": ("thresholds", lambda a, b: "RetinaNet: " + _nms(a, b)),
    "MODEL.RETINANET.TOPK_CANDIDATES_TEST": (
        "thresholds", lambda a, b: f"RetinaNet keeps the top {b} candidates per level instead of {a}"),
    "MODEL.RPN.PRE_NMS_TOPK_TEST": (
        "thresholds", lambda a, b: f"the RPN keeps {b} proposals per level before NMS instead of {a}: "
                                   "second-stage recall and speed change"),
    "MODEL.RPN.POST_NMS_TOPK_TEST": (
        "thresholds", lambda a, b: f"the RPN hands {b} proposals to the box head instead of {a}: "
                                   f"{'fewer objects can be found' if b < a else 'slower, sometimes more found'}"),
    "MODEL.RPN.NMS_THRESH": ("thresholds", lambda a, b: f"proposal NMS at IoU {b} instead of {a}: other proposals reach the box head"),
    "MODEL.ROI_HEADS.NUM_CLASSES": ("model identity", _num_classes),
    "MODEL.RETINANET.NUM_CLASSES": ("model identity", lambda a, b: "RetinaNet: " + _num_classes(a, b)),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": (
        "model identity", lambda a, b: f"semantic segmentation head with {b} classes instead of {a}"),
    "MODEL.WEIGHTS": ("model identity", _weights),
    "MODEL.DEVICE": ("model identity", _device),
    "MODEL.MASK_ON": ("architecture", lambda a, b: f"instance masks are {'predicted' if b else 'not predicted'}"
                                                   f" in deployment ({a} -> {b})"),
    "MODEL.KEYPOINT_ON": ("architecture", lambda a, b: f"keypoints are {'predicted' if b else 'not predicted'}"
                                                       f" in deployment ({a} -> {b})"),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (
        "architecture", lambda a, b: "box deltas are decoded with other weights: boxes land in the wrong place"),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (
        "architecture", lambda a, b: "class-agnostic vs per-class box regression: the box head's shape changes"),
}

# Substrings of keys that only matter while training (losses, sampling, solver, training augmentation).
_TRAINING_MARKERS = ("LOSS", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION", "IOU_THRESHOLDS", "IOU_LABELS",
                     "PROPOSAL_APPEND_GT", "_TRAIN", "FREEZE_AT", "SMOOTH_L1", "FOCAL_LOSS",
                     "TRAIN_ON_PRED_BOXES", "BOUNDARY_THRESH", "PRECOMPUTED_PROPOSAL_TOPK_TRAIN")
_TRAINING_PREFIXES = ("SOLVER.", "DATALOADER.", "DATASETS.TRAIN", "DATASETS.PROPOSAL_FILES_TRAIN", "OUTPUT_DIR",
                      "SEED", "VIS_PERIOD", "VERSION", "GLOBAL.", "TEST.EVAL_PERIOD", "TEST.EXPECTED_RESULTS",
                      "TEST.PRECISE_BN.", "INPUT.CROP.", "INPUT.RANDOM_FLIP", "INPUT.MIN_SIZE_TRAIN",
                      "INPUT.MAX_SIZE_TRAIN", "INPUT.MASK_FORMAT", "MODEL.BACKBONE.FREEZE_AT")

# Keys with a fixed place in the report (most consequential first); others follow alphabetically.
_ORDER = list(_SPECIFIC)


def explain(key: str, train, deploy) -> tuple[str, bool, str]:
    """``(group, affects_inference, one-line effect)`` of ``key`` changing from ``train`` to ``deploy``."""
    if key in _SPECIFIC:
        group, fn = _SPECIFIC[key]
        try:
            text = fn(train, deploy)
        except (TypeError, ValueError, ZeroDivisionError):
            text = f"{key} differs at inference"
        return group, True, text
    if key.startswith(_TRAINING_PREFIXES) or any(m in key for m in _TRAINING_MARKERS):
        return "training only", False, "training only: no effect at inference"
    if key.startswith("TEST.AUG."):
        if key == "TEST.AUG.ENABLED":
            return ("test-time augmentation", True,
                    f"test-time augmentation (multi-scale + flip) is {'on' if deploy else 'off'} in deployment: "
                    "other detections, several times slower")
        return ("test-time augmentation", True,
                "test-time augmentation setting: matters only when TEST.AUG.ENABLED is on")
    if key == "DATASETS.TEST":
        return ("model identity", True,
                "another evaluation dataset name: class names read from its metadata may differ")
    if key == "CUDNN_BENCHMARK":
        return "architecture", True, "cuDNN autotuning: speed only on GPU, tiny numeric drift"
    if key.startswith("INPUT."):
        return "preprocessing", True, "an input setting: check whether your inference code applies it"
    if key.startswith("MODEL."):
        return "architecture", True, _architecture(key)
    return "training only", False, "not used by detectron2's inference path"


def _architecture(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    if "ANCHOR_GENERATOR" in key:
        return "anchors differ: boxes are regressed from other priors, so detections shift or vanish"
    if last == "NORM":
        return ("normalization layer type: BN and FrozenBN compute the same at inference; GN or SyncBN need "
                "other tensors than the checkpoint has")
    if any(m in last for m in ("CHANNELS", "DIM", "WIDTH_PER_GROUP", "DEPTH", "NUM_FC", "NUM_CONV", "NUM_GROUPS")):
        return "layer sizes differ: the checkpoint's tensors do not fit this network (d2debug refuses to load it)"
    if last in ("NAME", "META_ARCHITECTURE", "IN_FEATURES", "OUT_FEATURES", "HEAD_NAME"):
        return "another component or other feature maps: the network computes something else than it was trained as"
    if "POOLER" in key:
        return "RoI pooling differs: box features are sampled differently from training"
    return "the network is built differently from training: detections can change"


def diff_cfg_nodes(train_cfg, deploy_cfg, train_path: Optional[str] = None,
                   deploy_path: Optional[str] = None) -> ConfigDiff:
    """The differences of two merged ``CfgNode``s (see :func:`diff_configs`)."""
    a, b = _flatten(train_cfg), _flatten(deploy_cfg)
    keys = sorted(set(a) | set(b))
    diffs = []
    for k in keys:
        va, vb = a.get(k, _ABSENT), b.get(k, _ABSENT)
        if va == vb:
            continue
        group, affects, text = explain(k, va, vb)
        diffs.append(ConfigDifference(k, va, vb, group, affects, text))
    rank = {k: i for i, k in enumerate(_ORDER)}
    diffs.sort(key=lambda d: (GROUPS.index(d.group), not d.affects_inference, rank.get(d.key, len(rank)), d.key))
    return ConfigDiff(train_path, deploy_path, tuple(diffs), len(keys))


DEFAULTS_LABEL = "detectron2 defaults (get_cfg())"


def _load(path: str | Path | None, path_check: Optional[PathCheck] = None):
    if path is None:
        from .compat import get_cfg

        return get_cfg(), DEFAULTS_LABEL
    return load_cfg(path, (), path_check), str(path)


def diff_configs(train: str | Path | None, deploy: str | Path | None,
                 path_check: Optional[PathCheck] = None) -> ConfigDiff:
    """Merge both YAML files onto ``get_cfg()`` and list the keys that differ, inference-relevant first.

    ``None`` stands for detectron2's bare defaults (what a deployment gets when it builds ``get_cfg()`` and only
    sets the weights). Raises :class:`~d2debug.errors.D2DebugError` naming the file that cannot be read or merged.
    """
    train_cfg, train_label = _load(train, path_check)
    deploy_cfg, deploy_label = _load(deploy, path_check)
    return diff_cfg_nodes(train_cfg, deploy_cfg, train_label, deploy_label)
