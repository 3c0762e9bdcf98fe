"""Values: the channel order and the value mapping between the user's tensor and the reference render.

After the geometry and resampler are fixed, each user channel is an affine map of one reference channel.
The permutation names the channel order; the slopes and offsets name the value range and any normalization,
by comparison with the mappings people actually write (ToTensor, T.Normalize with ImageNet statistics,
``x / 127.5 - 1``, the model's own PIXEL_MEAN/STD applied outside).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..findings import Finding, feed_code
from ..stages import IMAGENET_MEAN, IMAGENET_STD
from ..text import fmt
from .fit import Fit

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["named_mappings", "value_findings", "channel_finding"]

# A named mapping is accepted when its error is within this factor of the free fit's residual, or this many
# grey levels above it (decoder noise or blur must not turn into a made-up normalization).
NAMED_RATIO = 1.25
NAMED_SLACK = 0.3
# Slopes this close to 1 with no named mapping: a colour change (re-encoding, conversion), not a normalization.
COLOUR_CHANGE_SLOPE = 0.25
# Slopes this close to 1 with an offset beyond this (grey levels): a mean subtracted, not divided (Caffe-style).
MEAN_ONLY_SLOPE = 0.03
MEAN_ONLY_OFFSET = 3.0
# A std-only division divides every channel alike (up to this relative spread of the slopes) and leaves 0 at 0
# (offsets below this, in the input's own units).
STD_ONLY_SPREAD = 0.5
STD_ONLY_OFFSET = 0.05


def channel_finding(best: Fit, fmt_order: str, quality: float) -> Optional[Finding]:
    """``channel_order`` when the best fit reorders the channels (``best.perm`` is not the identity)."""
    if best.perm == (0, 1, 2):
        return None
    src = "".join(fmt_order[p] for p in best.perm)
    return Finding(
        "channel_order", float(np.clip((1 - best.residual / max(best.identity, 1e-9)) * quality, 0.5, 0.99)),
        f"the tensor's channels are {src} but the model (INPUT.FORMAT={fmt_order}) wants {fmt_order}: residual "
        f"{best.residual:.2f} grey levels with the channels reordered vs {best.identity:.2f} as they stand",
        (f"DefaultPredictor takes the BGR array of cv2.imread / read_image(path, 'BGR') and flips it itself; "
         f"calling the model directly, feed {fmt_order}: image = read_image(path, format='{fmt_order}')  "
         "# or image[:, :, ::-1]"),
    )


def named_mappings(cfg: CfgNode) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Known value mappings ``user = a * reference + b`` per tensor channel (reference in 0..255)."""
    M = np.array([float(v) for v in cfg.MODEL.PIXEL_MEAN])
    S = np.array([float(v) for v in cfg.MODEL.PIXEL_STD])
    m, s = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    one = np.ones(3)
    # The model's own values first: with PIXEL_MEAN = PIXEL_STD = 127.5, "x / 127.5 - 1" IS double normalization.
    return [
        ("identity", one, 0 * one),
        ("value_range_0_1", one / 255, 0 * one),
        ("double_normalization", 1 / S, -M / S),
        ("ImageNet mean/std (torchvision T.Normalize), RGB order", 1 / (255 * s), -m / s),
        ("ImageNet mean/std in BGR order", 1 / (255 * s[::-1]), -m[::-1] / s[::-1]),
        ("mean = std = 0.5 (x / 127.5 - 1)", 2 * one / 255, -one),
    ]


def value_findings(U: np.ndarray, Rp: np.ndarray, a: np.ndarray, b: np.ndarray, r_free: float, cfg: CfgNode,
                    quality: float) -> tuple[list[Finding], dict]:
    """Name the value mapping between the user tensor ``U`` and the (channel-matched) reference render ``Rp``
    (both ``3xN``; ``Rp`` in 0..255). Each known mapping is scored by its RMS error in grey levels; the best
    is accepted when it explains the pixels about as well as the free per-channel affine fit ``(a, b)`` with
    residual ``r_free`` (so noise from a decoder or blur does not turn into a made-up normalization).
    Otherwise the free fit's estimated mean/std are reported."""
    model_mean = np.array([float(v) for v in cfg.MODEL.PIXEL_MEAN])
    model_std = np.array([float(v) for v in cfg.MODEL.PIXEL_STD])
    errors = {}
    for name, ah, bh in named_mappings(cfg):
        errors[name] = float(np.sqrt(np.mean(((U - bh[:, None]) / ah[:, None] - Rp) ** 2)))
    best = min(errors, key=lambda k: errors[k])  # ties keep the earlier (the model's own values first)
    info: dict[str, object] = {"value_mapping_errors": {k: round(v, 4) for k, v in errors.items()}}
    fix_feed = feed_code(cfg)
    with np.errstate(divide="ignore", invalid="ignore"):
        std01 = 1.0 / (255.0 * a)
        mean01 = -b * std01
    est = (f"estimated mean {fmt(mean01, 3)} / std {fmt(std01, 3)} in 0..1 units ({fmt(mean01 * 255, 1)} / "
           f"{fmt(std01 * 255, 2)} in 0..255)")
    named_ok = errors[best] <= max(NAMED_RATIO * r_free, r_free + NAMED_SLACK)
    info["value_mapping"] = best if named_ok else "fitted"
    if named_ok and best == "identity":
        return [], info
    ev_err = f"error {errors[best]:.3g} grey levels vs {errors['identity']:.3g} for 0..255 as is"
    if named_ok and best == "value_range_0_1":
        return [Finding(
            "value_range_0_1", 0.99 * quality,
            f"values are the reference / 255 (slopes {fmt(a, 5)}, offsets {fmt(b, 4)}; {ev_err}): a 0..1 tensor "
            "(ToTensor() or / 255); after the model's own normalization the backbone sees a nearly constant image",
            "drop ToTensor() / the division by 255: " + fix_feed,
        )], info
    if named_ok and best == "double_normalization":
        return [Finding(
            "double_normalization", 0.97 * quality,
            f"the tensor is already normalized with the model's own PIXEL_MEAN {fmt(model_mean, 2)} / PIXEL_STD "
            f"{fmt(model_std, 2)} ({est}; {ev_err}); GeneralizedRCNN.preprocess_image normalizes again",
            "remove your (x - mean) / std (T.Normalize): " + fix_feed,
        )], info
    if named_ok:
        return [Finding(
            "external_normalization", 0.97 * quality,
            f"{best} applied outside the model: {est}; {ev_err}; the model then applies PIXEL_MEAN "
            f"{fmt(model_mean, 2)} / PIXEL_STD {fmt(model_std, 2)} on top",
            "remove T.Normalize(...) and ToTensor(): " + fix_feed,
        )], info
    if np.all(np.abs(a - 1) < MEAN_ONLY_SLOPE) and np.max(np.abs(b)) > MEAN_ONLY_OFFSET:
        return [Finding(
            "external_normalization", 0.95 * quality,
            f"a mean subtracted outside the model but not divided (Caffe-style x - mean): slopes {fmt(a, 3)}, "
            f"offsets {fmt(b, 2)}, i.e. mean {fmt(-b, 2)} in 0..255 units; the model then subtracts PIXEL_MEAN "
            f"{fmt(model_mean, 2)} again",
            "remove the mean subtraction: " + fix_feed,
        )], info
    if np.all(np.abs(b) < STD_ONLY_OFFSET) and np.all(a > 0) and np.all(np.abs(a - 1) > COLOUR_CHANGE_SLOPE) \
            and np.ptp(a) < STD_ONLY_SPREAD * np.mean(a):
        return [Finding(
            "external_normalization", 0.9 * quality,
            f"values divided by a std outside the model but no mean subtracted: slopes {fmt(a, 4)} (std "
            f"{fmt(1 / a, 2)} in 0..255 units), offsets {fmt(b, 2)}; the model then divides by PIXEL_STD "
            f"{fmt(model_std, 2)} again",
            "remove the division: " + fix_feed,
        )], info
    if np.all(np.abs(a - 1) < COLOUR_CHANGE_SLOPE):
        # Still 0..255 with a mild per-channel gain/offset: a colour change (re-encoding, colour conversion),
        # not a normalization. Say so without inventing a stage.
        info["value_note"] = (f"values stay in 0..255 but with a per-channel gain {fmt(a, 3)} and offset {fmt(b, 1)} "
                              "(a colour change such as JPEG re-encoding or a colour conversion, not a normalization)")
        return [], info
    if np.all(a > 0):
        return [Finding(
            "external_normalization", 0.9 * quality,
            f"a custom normalization applied outside the model: {est} (fit residual {r_free:.3g} grey levels; the "
            f"closest known mapping, {best}, leaves {errors[best]:.3g}); the model then applies PIXEL_MEAN "
            f"{fmt(model_mean, 2)} / PIXEL_STD {fmt(model_std, 2)} on top",
            "remove T.Normalize(...) / the scaling: " + fix_feed,
        )], info
    return [Finding(
        "external_normalization", 0.6 * quality,
        f"an unexpected value mapping: user = a * reference + b with a = {fmt(a, 5)}, b = {fmt(b, 3)} "
        "(a negative slope inverts the image)",
        fix_feed,
    )], info
