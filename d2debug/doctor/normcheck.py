"""Model-side normalization: do the config's PIXEL_MEAN/STD fit the weights?

The first convolution's BatchNorm keeps the statistics of its input seen in training. Applying the stem
convolution to the reference image normalized by each candidate PIXEL_MEAN/STD and comparing the output with
those statistics says which normalization the weights were trained with, from one image and no forward pass.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ..findings import Finding
from ..stages import D2_DEFAULT_PIXEL_MEAN, D2_DEFAULT_PIXEL_STD, IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["norm_check", "norm_candidates", "first_normed_conv", "pixel_mean_std_finding"]

# |log activation scale| of the config's own normalization above which it does not fit the weights ...
OWN_SCORE_MAX = 1.5
# ... and by how much a candidate must fit better to be named instead.
BETTER_BY = 1.0


def first_normed_conv(model: torch.nn.Module):
    """The first conv taking 3 channels with a BatchNorm-like ``norm`` holding running statistics, or None."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3:
            norm = getattr(m, "norm", None)
            if norm is not None and getattr(norm, "running_mean", None) is not None:
                return m
            return None
    return None


def norm_candidates(cfg: CfgNode) -> list[tuple[str, tuple, tuple]]:
    fmt = cfg.INPUT.FORMAT
    inet_mean = tuple(v * 255 for v in IMAGENET_MEAN)
    inet_std = tuple(v * 255 for v in IMAGENET_STD)
    rgb_default = tuple(reversed(D2_DEFAULT_PIXEL_MEAN))

    def order(rgb):  # values given in RGB order -> cfg.INPUT.FORMAT order
        return tuple(rgb) if fmt == "RGB" else tuple(reversed(rgb))

    return [
        ("the config's", tuple(float(v) for v in cfg.MODEL.PIXEL_MEAN), tuple(float(v) for v in cfg.MODEL.PIXEL_STD)),
        ("detectron2's default (model zoo, BGR, std 1)", order(rgb_default), D2_DEFAULT_PIXEL_STD),
        ("detectron2's default means in the wrong channel order", order(tuple(reversed(rgb_default))), D2_DEFAULT_PIXEL_STD),
        ("mean = std = 127.5 (x / 127.5 - 1)", (127.5,) * 3, (127.5,) * 3),
        ("ImageNet mean/std in 0..255 units", order(inet_mean), order(inet_std)),
        ("ImageNet mean/std in the wrong channel order", order(tuple(reversed(inet_mean))), order(tuple(reversed(inet_std)))),
        ("none (mean 0, std 1)", (0.0,) * 3, (1.0,) * 3),
        ("0..1 scaling only (mean 0, std 255)", (0.0,) * 3, (255.0,) * 3),
    ]


def norm_check(model: torch.nn.Module, cfg: CfgNode, reference: torch.Tensor) -> Optional[dict]:
    """Which PIXEL_MEAN/STD the weights were trained with, read from the first layer's BatchNorm statistics.

    ``reference``: the reference model input, ``3xHxW`` float32 0..255 in ``cfg.INPUT.FORMAT`` order. For each
    candidate normalization the stem convolution is applied and its per-channel output compared with the
    trained ``running_mean``/``running_var``: ``score`` = |log(RMS of (y - running_mean) / sqrt(running_var))|,
    ~0 when the input is normalized as in training (one image varies: < ~1), ~log(127.5) = 4.8 when the std is
    off by 127.5. Returns ``None`` when the weights carry no such statistics (random init, frozen folded BN).
    """
    conv = first_normed_conv(model)
    if conv is None:
        return None
    norm = conv.norm
    rm = norm.running_mean.detach().float().cpu()
    rv = norm.running_var.detach().float().cpu()
    # Untrained BN (0/1) or Caffe2-folded FrozenBN (0/1 with the affine folded in) says nothing.
    if torch.allclose(rm, torch.zeros_like(rm), atol=1e-6) and torch.allclose(rv, torch.ones_like(rv), atol=1e-6):
        return None
    weight = conv.weight.detach().float().cpu()
    bias = conv.bias.detach().float().cpu() if conv.bias is not None else None
    x = reference.float()[None]

    def conv1(t, c):  # the stem convolution restricted to input channel c (it is linear in its input)
        return torch.nn.functional.conv2d(t, weight[:, c:c + 1], None, conv.stride, conv.padding, conv.dilation)[0]

    with torch.no_grad():
        per_channel = [conv1(x[:, c:c + 1], c) for c in range(3)]
        ones = torch.ones_like(x[:, :1])
        per_const = [conv1(ones, c) for c in range(3)]  # zero padding makes the constant term vary at borders
    results = []
    for label, mean, std in norm_candidates(cfg):
        # conv((x - m) / s) = sum_c conv(x_c) / s_c - sum_c (m_c / s_c) conv(1_c)
        y = sum(per_channel[c] / std[c] - per_const[c] * (mean[c] / std[c]) for c in range(3))
        if bias is not None:
            y = y + bias[:, None, None]
        z2 = ((y - rm[:, None, None]) ** 2).mean(dim=(1, 2)) / rv.clamp_min(1e-8)
        score = abs(0.5 * float(torch.log(z2.clamp_min(1e-12)).median()))
        results.append({"label": label, "mean": [round(v, 3) for v in mean], "std": [round(v, 3) for v in std],
                        "score": round(score, 3)})
    return {"layer_channels": int(rm.numel()), "candidates": results}


def pixel_mean_std_finding(nc: Optional[dict], cfg: CfgNode) -> Optional[Finding]:
    """``pixel_mean_std`` when the weights' statistics (:func:`norm_check`'s result ``nc``) fit another
    candidate clearly better than the config's own PIXEL_MEAN/STD; ``None`` otherwise."""
    if nc is None:
        return None
    cands = nc["candidates"]
    own, best = cands[0], min(cands, key=lambda c: c["score"])
    if not (own["score"] > OWN_SCORE_MAX and own["score"] - best["score"] > BETTER_BY):
        return None
    return Finding(
        "pixel_mean_std", float(np.clip(0.5 + 0.1 * (own["score"] - best["score"]), 0.5, 0.9)),
        f"the weights' first BatchNorm statistics fit PIXEL_MEAN {best['mean']} / PIXEL_STD {best['std']} "
        f"({best['label']}; activation scale off by x{math.exp(best['score']):.2f}), not the config's "
        f"{own['mean']} / {own['std']} (off by x{math.exp(own['score']):.1f})",
        f"deploy with the training run's dumped config.yaml, or set cfg.MODEL.PIXEL_MEAN = {best['mean']}; "
        f"cfg.MODEL.PIXEL_STD = {best['std']}  # 0..255 units, {cfg.INPUT.FORMAT} order",
    )
