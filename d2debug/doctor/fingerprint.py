"""Pipeline fingerprint: the reference pipeline's stage values and model-input statistics, recorded at training time.

A fingerprint is a small JSON file written next to the checkpoint (``python -m d2debug fingerprint``). At
deployment, ``python -m d2debug doctor --fingerprint fp.json`` checks the deployed input against it even when the
training config is lost: the recorded stage values rebuild the reference pipeline (:func:`cfg_from_fingerprint`),
the deployment config is compared with them (:func:`check_config`), and the recorded per-channel statistics of
the model input flag value range, normalization, channel order and size differences from a tensor alone
(:func:`check_statistics`).

Statistics are of the model input (``3xHxW`` float32, 0..255, ``INPUT.FORMAT`` order), what the reference
pipeline feeds the model; no forward pass is needed to compute them.
"""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import D2DebugError, first_line
from ..files import list_images, sha256_file
from ..findings import Finding, FindingId, feed_code
from ..run import preprocess
from ..stages import IMAGENET_MEAN, IMAGENET_STD
from ..version import __version__
from .geometry import explain_size

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = [
    "FINGERPRINT_VERSION",
    "make_fingerprint",
    "save_fingerprint",
    "load_fingerprint",
    "cfg_from_fingerprint",
    "check_config",
    "check_statistics",
]

FINGERPRINT_VERSION = 1


def _image_list(images: Union[str, Path, Sequence[Union[str, Path]], None]) -> list[Path]:
    if images is None:
        return []
    if isinstance(images, (str, Path)):
        p = Path(images).expanduser()
        if not p.exists():
            raise D2DebugError(f"{p}: no such file or directory")
        return list_images(p, "directory") if p.is_dir() else [p]
    return [Path(q) for q in images]


def make_fingerprint(model_or_cfg, images=None, max_images: int = 200) -> dict:
    """Record the reference pipeline of ``model_or_cfg`` (a LoadedModel or CfgNode) and, when ``images`` (a
    directory, a file or a list of files) are given, per-channel statistics of its model input on them."""
    cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
    fmt = cfg.INPUT.FORMAT
    stages = {
        "decoder": "detectron2.data.detection_utils.read_image(path, 'BGR'), EXIF orientation applied",
        "input_format": fmt,
        "resize": "ResizeShortestEdge",
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "interpolation": "bilinear",
        "resize_backend": "pil (detectron2 ResizeTransform on uint8)",
        "value_range": "0..255",
        "dtype": "float32",
        "layout": "list[dict(image=3xHxW, height=original H, width=original W)]",
        "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
        "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
        "score_thresh_test": float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST),
        "nms_thresh_test": float(cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST),
        "detections_per_image": int(cfg.TEST.DETECTIONS_PER_IMAGE),
        "num_classes": int(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        "meta_architecture": str(cfg.MODEL.META_ARCHITECTURE),
    }
    arch = getattr(model_or_cfg, "arch", None)
    if arch is not None:  # a built model: its own thresholds and classes, wherever its architecture keeps them
        stages.update(meta_architecture=arch.name, outputs=list(arch.outputs),
                      num_classes=arch.num_classes if arch.instances else arch.num_stuff)
        if arch.score_key is not None:
            stages.update(score_thresh_test=arch.score_thresh, nms_thresh_test=arch.nms_thresh,
                          threshold_keys=[arch.score_key, arch.nms_key])
        else:
            for key in ("score_thresh_test", "nms_thresh_test"):
                stages.pop(key)
    source: dict = {"d2debug": __version__}
    for key in ("config_path", "weights_path"):
        p = getattr(model_or_cfg, key, None)
        if p is not None:
            source[key.replace("_path", "")] = str(p)
    wp = getattr(model_or_cfg, "weights_path", None)
    if wp is not None and Path(wp).is_file():
        source["weights_sha256"] = sha256_file(wp)
    class_names = getattr(model_or_cfg, "class_names", None)
    if class_names is not None:
        stages["class_names"] = list(class_names)
    fp = {
        "d2debug_fingerprint": FINGERPRINT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "stages": stages,
    }
    files = _image_list(images)[:max_images]
    if files:
        fp["input_stats"] = _input_stats(cfg, files)
    return fp


def _input_stats(cfg: CfgNode, files: list[Path]) -> dict:
    means, stds, rows, samples = [], [], [], []
    input_sizes: list[tuple[int, int]] = []
    rng = np.random.default_rng(0)
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    n = 0
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    edges = np.linspace(0, 256, 33)
    counts = np.zeros((3, 32), np.int64)
    for f in files:
        t, (H, W) = preprocess(cfg, f)
        a = t.numpy().reshape(3, -1).astype(np.float64)
        means.append(a.mean(1))
        stds.append(a.std(1))
        s1 += a.sum(1)
        s2 += (a * a).sum(1)
        n += a.shape[1]
        lo, hi = np.minimum(lo, a.min(1)), np.maximum(hi, a.max(1))
        for c in range(3):
            counts[c] += np.histogram(a[c], bins=edges)[0]
        samples.append(a[:, rng.integers(0, a.shape[1], size=min(2000, a.shape[1]))])
        input_sizes.append((int(t.shape[1]), int(t.shape[2])))
        rows.append({"file": f.name, "original_size": [H, W], "input_size": list(input_sizes[-1]),
                     "mean": [round(float(v), 3) for v in a.mean(1)], "std": [round(float(v), 3) for v in a.std(1)]})
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    sample = np.concatenate(samples, axis=1)
    M = np.array([float(v) for v in cfg.MODEL.PIXEL_MEAN])
    S = np.array([float(v) for v in cfg.MODEL.PIXEL_STD])
    r = lambda v, nd=3: [round(float(x), nd) for x in v]  # noqa: E731
    return {
        "images": len(files),
        "channels": list(cfg.INPUT.FORMAT),
        "mean": r(mean),
        "std": r(std),
        "min": r(lo),
        "max": r(hi),
        "p01": r(np.percentile(sample, 1, axis=1)),
        "p99": r(np.percentile(sample, 99, axis=1)),
        "image_mean_spread": r(np.std(np.array(means), axis=0)),
        "image_std_mean": r(np.mean(np.array(stds), axis=0)),
        "image_std_spread": r(np.std(np.array(stds), axis=0)),
        "backbone_input": {"mean": r((mean - M) / S, 4), "std": r(std / S, 4)},
        "histogram": {"edges": r(edges, 1), "counts": counts.tolist()},
        "sizes": {
            "short_side": [min(min(s) for s in input_sizes), max(min(s) for s in input_sizes)],
            "long_side": [min(max(s) for s in input_sizes), max(max(s) for s in input_sizes)],
        },
        "per_image": rows,
    }


def save_fingerprint(fp: dict, path: Union[str, Path]) -> Path:
    path = Path(path).expanduser()
    if path.parent and not path.parent.exists():
        raise D2DebugError(f"{path.parent}: output directory does not exist")
    path.write_text(json.dumps(fp, indent=1))
    return path


_REQUIRED = ("input_format", "min_size_test", "max_size_test", "pixel_mean", "pixel_std")


def load_fingerprint(source: Union[str, Path, dict]) -> dict:
    """Read and validate a fingerprint (a JSON file or an already-parsed dict). One-line errors name the problem."""
    if isinstance(source, dict):
        fp, label = source, "fingerprint"
    else:
        path = Path(source).expanduser()
        label = str(path)
        if not path.is_file():
            raise D2DebugError(f"{path}: fingerprint file not found")
        try:
            fp = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise D2DebugError(f"{path}: not a JSON fingerprint ({first_line(exc)})") from None
    if not isinstance(fp, dict) or fp.get("d2debug_fingerprint") != FINGERPRINT_VERSION:
        raise D2DebugError(f"{label}: not a d2debug fingerprint (version {FINGERPRINT_VERSION})")
    st = fp.get("stages")
    if not isinstance(st, dict) or any(k not in st for k in _REQUIRED):
        raise D2DebugError(f"{label}: fingerprint 'stages' lacks one of {', '.join(_REQUIRED)}")
    if st["input_format"] not in ("BGR", "RGB"):
        raise D2DebugError(f"{label}: input_format={st['input_format']!r}; expected BGR or RGB")
    for k in ("pixel_mean", "pixel_std"):
        if not _numbers(st[k], 3):
            raise D2DebugError(f"{label}: {k}={st[k]!r}; expected three numbers")
    if any(x <= 0 for x in st["pixel_std"]):
        raise D2DebugError(f"{label}: pixel_std={st['pixel_std']!r}; every std must be positive")
    for k in ("min_size_test", "max_size_test", "detections_per_image", "num_classes"):
        if k in st and not (isinstance(st[k], int) and not isinstance(st[k], bool) and st[k] >= 0):
            raise D2DebugError(f"{label}: {k}={st[k]!r}; expected a whole number >= 0")
    for k in ("score_thresh_test", "nms_thresh_test"):
        if k in st and not (_numbers([st[k]], 1) and 0 <= st[k] <= 1):
            raise D2DebugError(f"{label}: {k}={st[k]!r}; expected a number between 0 and 1")
    _check_input_stats(fp.get("input_stats"), label)
    return fp


def _numbers(v, n: int) -> bool:
    """``v`` is a list of ``n`` finite numbers (bools are not numbers here)."""
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def _check_input_stats(stats, label: str) -> None:
    """The recorded statistics, when present, hold what :func:`check_statistics` reads."""
    if stats is None:
        return
    if not isinstance(stats, dict):
        raise D2DebugError(f"{label}: input_stats is a {type(stats).__name__}; expected a mapping")
    for k in ("mean", "std", "image_mean_spread"):
        if not _numbers(stats.get(k), 3):
            raise D2DebugError(f"{label}: input_stats.{k}={stats.get(k)!r}; expected three numbers")
    if any(x <= 0 for x in stats["std"]):
        raise D2DebugError(f"{label}: input_stats.std={stats['std']!r}; every std must be positive")
    images = stats.get("images")
    if not (isinstance(images, int) and not isinstance(images, bool) and images >= 1):
        raise D2DebugError(f"{label}: input_stats.images={images!r}; expected the number of images (>= 1)")


def cfg_from_fingerprint(fp: dict):
    """A detectron2 config carrying the fingerprint's preprocessing values (enough to build the reference
    pipeline without the training config). Frozen."""
    from ..compat import get_cfg

    st = fp["stages"]
    cfg = get_cfg()
    cfg.INPUT.FORMAT = st["input_format"]
    cfg.INPUT.MIN_SIZE_TEST = int(st["min_size_test"])
    cfg.INPUT.MAX_SIZE_TEST = int(st["max_size_test"])
    cfg.MODEL.PIXEL_MEAN = [float(v) for v in st["pixel_mean"]]
    cfg.MODEL.PIXEL_STD = [float(v) for v in st["pixel_std"]]
    if "score_thresh_test" in st:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(st["score_thresh_test"])
    if "nms_thresh_test" in st:
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = float(st["nms_thresh_test"])
    cfg.freeze()
    return cfg


def check_config(fp: dict, cfg: CfgNode) -> list[Finding]:
    """Findings for where a deployment config's preprocessing differs from the recorded training values."""
    st = fp["stages"]
    out = []
    mean = [float(v) for v in cfg.MODEL.PIXEL_MEAN]
    std = [float(v) for v in cfg.MODEL.PIXEL_STD]
    if not (np.allclose(mean, st["pixel_mean"], atol=1e-3) and np.allclose(std, st["pixel_std"], atol=1e-3)):
        out.append(Finding(
            "pixel_mean_std", 0.99,
            f"the deployment config has PIXEL_MEAN {mean} / PIXEL_STD {std}; the fingerprint recorded training with "
            f"{st['pixel_mean']} / {st['pixel_std']}",
            f"cfg.MODEL.PIXEL_MEAN = {st['pixel_mean']}; cfg.MODEL.PIXEL_STD = {st['pixel_std']}  "
            "# or deploy with the training run's dumped config.yaml",
        ))
    if cfg.INPUT.FORMAT != st["input_format"]:
        out.append(Finding(
            "channel_order", 0.95,
            f"the deployment config has INPUT.FORMAT={cfg.INPUT.FORMAT}; training used {st['input_format']}: "
            "DefaultPredictor would feed the channels reversed",
            f"cfg.INPUT.FORMAT = '{st['input_format']}'",
        ))
    if (int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)) != (st["min_size_test"], st["max_size_test"]):
        out.append(Finding(
            "resize_size", 0.95,
            f"the deployment config resizes with MIN/MAX_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST}/{cfg.INPUT.MAX_SIZE_TEST}; "
            f"training evaluated with {st['min_size_test']}/{st['max_size_test']}",
            f"cfg.INPUT.MIN_SIZE_TEST = {st['min_size_test']}; cfg.INPUT.MAX_SIZE_TEST = {st['max_size_test']}",
        ))
    return out


def check_statistics(fp: dict, tensor: torch.Tensor, original_size: Optional[tuple[int, int]] = None) -> list[Finding]:
    """Findings from statistics alone: a ``3xHxW`` model input (any value range) against the recorded
    per-channel statistics and size rule. ``original_size``: the ``(height, width)`` a dict passed, which
    pins the expected size. Weaker than the Doctor's pixel analysis (one image vs a dataset average), so
    value confidences are moderate; size facts are exact."""
    st = fp["stages"]
    cfg = cfg_from_fingerprint(fp)
    out = []
    h, w = int(tensor.shape[1]), int(tensor.shape[2])
    mn, mx = st["min_size_test"], st["max_size_test"]
    if original_size is not None and all(original_size):
        f = explain_size(h, w, int(original_size[0]), int(original_size[1]), cfg)
        if f is not None:
            out.append(f)
    elif mn > 0 and min(h, w) != mn and max(h, w) != mx:
        out.append(Finding(
            "resize_size", 0.9,
            f"input {h}x{w}: under ResizeShortestEdge({mn}, {mx}) the short side is {mn} or the long side is {mx}; "
            "neither holds",
            f"aug = T.ResizeShortestEdge([{mn}, {mn}], {mx}); image = aug.get_transform(image).apply_image(image)",
        ))
    stats = fp.get("input_stats")
    if not stats:
        return out
    mu = np.array(stats["mean"])
    sigma = np.array(stats["std"])
    tau = np.maximum(np.array(stats["image_mean_spread"]), 8.0)
    a = tensor.detach().float().reshape(3, -1).numpy().astype(np.float64)
    u, v = a.mean(1), a.std(1)
    M = np.array(st["pixel_mean"], dtype=np.float64)
    S = np.array(st["pixel_std"], dtype=np.float64)
    inet_m, inet_s = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    # (id, per-channel slope, offset) mapping 0..255 reference values to the user's values; one id may have
    # several mappings (ImageNet statistics in either channel order, Normalize(0.5)).
    hyps: list[tuple[FindingId, np.ndarray, np.ndarray]] = [
        ("match", np.ones(3), np.zeros(3)),
        ("value_range_0_1", np.full(3, 1 / 255), np.zeros(3)),
        ("double_normalization", 1 / S, -M / S),
        ("external_normalization", 1 / (255 * inet_s), -inet_m / inet_s),
        ("external_normalization", 1 / (255 * inet_s[::-1]), -inet_m[::-1] / inet_s[::-1]),
        ("external_normalization", np.full(3, 2 / 255), np.full(3, -1.0)),
    ]
    # Reversed channels are only told apart when the recorded first and last channel means differ by far
    # more than images vary (a dataset of grey-ish scenes carries no channel-order signal).
    perms: list[tuple[int, ...]] = [(0, 1, 2)]
    if abs(mu[0] - mu[2]) > 3 * max(tau[0], tau[2]) and stats["images"] >= 8:
        perms.append((2, 1, 0))
    scored: list[tuple[float, FindingId, tuple[int, ...]]] = []
    for name, sl, off in hyps:
        for perm in perms:
            x = (u - off) / sl
            s = v / sl
            d = float(np.sum(((x - mu[list(perm)]) / tau) ** 2) + np.sum((np.log(np.maximum(s, 1e-9) / sigma) / 0.7) ** 2))
            scored.append((d, name, perm))
    scored.sort()
    d_best, best, perm = scored[0]
    d_match = min(d for d, n, p in scored if n == "match" and p == (0, 1, 2))
    if best != "match" and d_match - d_best > 6:
        conf = float(np.clip(1 - math.exp(-(d_match - d_best) / 20), 0.5, 0.85))
        out.append(Finding(
            best, conf,
            f"channel means {[round(float(x), 3) for x in u]} / stds {[round(float(x), 3) for x in v]} fit "
            f"'{best}' applied to the recorded training inputs (means {stats['mean']}, stds {stats['std']}) far "
            f"better than the recorded pipeline itself (distance {d_best:.1f} vs {d_match:.1f})",
            feed_code(cfg),
        ))
    d_perm_same = min(d for d, n, p in scored if n == best and p == (0, 1, 2))
    if perm != (0, 1, 2) and d_perm_same - d_best > 6:
        out.append(Finding(
            "channel_order", float(np.clip(1 - math.exp(-(d_perm_same - d_best) / 20), 0.5, 0.8)),
            f"channel means {[round(float(x), 3) for x in u]} fit the recorded {st['input_format']} means reversed "
            f"(distance {d_best:.1f} vs {d_perm_same:.1f} as they stand)",
            f"feed {st['input_format']} order (read_image(path, format='{st['input_format']}'))",
        ))
    return out
