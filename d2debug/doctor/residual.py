"""What is left: a difference from the reference that no stage of the vocabulary names.

Real scripts apply transforms the Doctor has no stage for: a gamma or contrast curve, histogram equalization,
CLAHE, a blur or a sharpening, a white balance. Such a difference is never a ``match`` and never pinned on a
stage that is right: it is an ``unexplained`` finding with the residual it leaves, described by the closest
family that reproduces it:

- a value curve: each channel a monotone function of the reference (gamma, contrast curve, equalization),
  seen when a per-value lookup table explains the pixels far better than the best affine map;
- a spatial filter: a Gaussian blur or an unsharp mask of the render that explains the pixels;
- a colour change: a per-channel gain/offset that stays in 0..255 (white balance, brightness/contrast);
- otherwise a local change (CLAHE, a denoiser, an overlay): the residual alone.

``U`` is the user's tensor as ``3xN`` float64 (any value range); renders are ``HxWx3`` uint8 in
``cfg.INPUT.FORMAT`` order; residuals are RMS grey levels (0..255 units of the reference image).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from ..findings import Finding, feed_code
from ..text import fmt
from .fit import Fit, fit
from .values import named_mappings

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["UNEXPLAINED_RMS", "RESAMPLER_SIGMA", "COLOUR_RMS", "Curve", "value_curve", "Spatial", "spatial_filter",
           "colour_change", "unexplained_finding", "describe_curve", "describe_spatial", "describe_colour"]

# Grey levels RMS left after the best explanation above which a transform of its own differs (decoders and
# float rounding stay well below; a light gamma or blur is several grey levels).
UNEXPLAINED_RMS = 1.0
# A lookup table (a curve) names the remainder when it leaves at most this fraction of the affine residual.
CURVE_GAIN = 0.5
# Reference values with fewer pixels than this do not enter the curve's description.
CURVE_MIN_COUNT = 20
# A curve goes down by more than CURVE_STEP grey levels between neighbouring values at most this often.
CURVE_STEP = 2.0
CURVE_NON_MONOTONE = 0.1
# A named value range is read off a curve's ends (1st/99th percentiles) when they land within this many grey
# levels of the reference's (an equalization or contrast curve stretches them towards 0..255) and far closer
# than any other named range's.
CURVE_END_TOL = 64.0
CURVE_END_RATIO = 0.5
# A blur or sharpening names the remainder when it leaves at most this fraction of it.
SPATIAL_GAIN = 0.5
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
SHARPEN = ((1.0, 0.5), (1.0, 1.0), (2.0, 0.5), (2.0, 1.0))  # (sigma, amount) of an unsharp mask
# Below this sigma (output pixels) a blur is within what resize kernels differ by: a resampler, not a filter.
RESAMPLER_SIGMA = 0.75
# A per-channel gain/offset moves the pixels by more than this many grey levels RMS: a colour change.
COLOUR_RMS = 1.0


class Curve(NamedTuple):
    """A value curve: the residual it leaves (grey levels), how far it moves the pixels from the reference
    (``moved``: RMS grey levels with the named value range undone; the affine residual when none is named), the
    named value range read off its ends (``name``,
    ``slope``, ``offset`` per user channel, or ``None`` when none fits), the curve in reference units per
    channel (``lut``: reference value 0..255 -> value, NaN where no pixel has it) and its gamma estimate."""

    residual: float
    moved: float
    name: Optional[str]
    slope: np.ndarray
    offset: np.ndarray
    lut: np.ndarray
    gamma: float


def _luts(U: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the mean user value for each reference value 0..255 (``3x256``, NaN where absent) and the
    pixel counts. ``R`` holds integers 0..255 (a uint8 render)."""
    idx = np.clip(np.rint(R), 0, 255).astype(np.int64)
    sums = np.stack([np.bincount(idx[c], weights=U[c], minlength=256) for c in range(3)])
    counts = np.stack([np.bincount(idx[c], minlength=256) for c in range(3)]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, counts


def value_curve(U: np.ndarray, Rp: np.ndarray, best: Fit, cfg: CfgNode) -> Optional[Curve]:
    """A monotone value curve between ``Rp`` (the render, channels matched, ``3xN`` 0..255) and ``U`` when a
    lookup table explains the pixels far better than the affine fit ``best``; ``None`` otherwise."""
    lut, counts = _luts(U, Rp)
    idx = np.clip(np.rint(Rp), 0, 255).astype(np.int64)
    pred = np.stack([lut[c][idx[c]] for c in range(3)])
    slope = np.where(np.abs(best.slope) > 1e-12, best.slope, 1.0)
    to_grey = np.abs(slope)[:, None]
    r_curve = float(np.sqrt(np.mean(((U - pred) / to_grey) ** 2)))
    r_affine = float(best.residual)
    if not (r_affine > UNEXPLAINED_RMS and r_curve < CURVE_GAIN * r_affine):
        return None
    # A transform of values is monotone: a lookup table that goes up and down only fits an image of few colours.
    ok = counts >= CURVE_MIN_COUNT
    for c in range(3):
        v = lut[c][ok[c]] * np.sign(best.slope[c] or 1.0)
        if v.size > 2 and np.mean(np.diff(v) < -CURVE_STEP * abs(best.slope[c])) > CURVE_NON_MONOTONE:
            return None
    # The value range the curve lands in: the user's values mapped back by each named mapping, their darkest and
    # brightest percentiles against the reference's (a curve bends the values in between, not the range).
    ref_ends = np.percentile(Rp, (1, 99))
    scored = []
    for name, a, b in named_mappings(cfg):
        ends = np.percentile((U - b[:, None]) / a[:, None], (1, 99))
        scored.append((float(np.mean(np.abs(ends - ref_ends))), name, a, b))
    scored.sort(key=lambda s: s[0])
    err, name, a, b = scored[0]
    named: Optional[str] = name if err < CURVE_END_TOL and err < CURVE_END_RATIO * scored[1][0] else None
    if named is None:
        a, b = best.slope, best.offset
    grey = (lut - b[:, None]) / a[:, None]  # the curve in 0..255 units
    moved = float(np.sqrt(np.mean(((U - b[:, None]) / a[:, None] - Rp) ** 2))) if named is not None else r_affine
    x = np.arange(256, dtype=np.float64)
    sel = ok & (x[None] > 8) & (x[None] < 247) & (grey > 1) & np.isfinite(grey)
    with np.errstate(divide="ignore", invalid="ignore"):
        lx, ly = np.log(np.broadcast_to(x / 255, grey.shape)[sel]), np.log(grey[sel] / 255)
    gamma = float(np.sum(lx * ly) / np.sum(lx * lx)) if sel.sum() > 10 else float("nan")
    return Curve(r_curve, moved, named, np.asarray(a, float), np.asarray(b, float), grey, gamma)


class Spatial(NamedTuple):
    """A blur or sharpening of the render that explains the pixels: its kind, parameters, its render
    (``HxWx3`` float32) and fit."""

    kind: str  # "blur" or "sharpen"
    sigma: float
    amount: float
    image: np.ndarray
    fit: Fit


def spatial_filter(U: np.ndarray, render: np.ndarray, residual: float) -> Optional[Spatial]:
    """A Gaussian blur or an unsharp mask of ``render`` (what explained the pixels best) that leaves at most
    :data:`SPATIAL_GAIN` of ``residual``; ``None`` when none does."""
    import cv2

    if residual <= UNEXPLAINED_RMS:
        return None
    base = render.astype(np.float32)
    best: Optional[Spatial] = None
    blurred = {s: cv2.GaussianBlur(base, (0, 0), s, borderType=cv2.BORDER_REFLECT_101) for s in BLUR_SIGMAS}
    trials = [("blur", s, 1.0, img) for s, img in blurred.items()]
    trials += [("sharpen", s, k, base + k * (base - blurred[s])) for s, k in SHARPEN]
    for kind, s, k, img in trials:
        f = fit(U, img)
        if best is None or f.residual < best.fit.residual:
            best = Spatial(kind, s, k, img, f)
    if best is None or not best.fit.residual < SPATIAL_GAIN * residual:
        return None
    return best


def colour_change(a: np.ndarray, b: np.ndarray, Rp: np.ndarray) -> float:
    """How far a per-channel gain/offset ``(a, b)`` (the user's values in 0..255 units) moves the pixels of
    ``Rp`` (``3xN``), RMS grey levels."""
    return float(np.sqrt(np.mean(((a[:, None] - 1) * Rp + b[:, None]) ** 2)))


def unexplained_finding(residual: Optional[float], what: str, cfg: CfgNode, quality: float = 1.0) -> Finding:
    """The ``unexplained`` finding: ``residual`` grey levels RMS that no stage explains (``None``: not
    comparable pixel for pixel), and ``what`` the closest description says it is."""
    how_much = "the input differs" if residual is None else f"{residual:.2f} grey levels RMS differ"
    return Finding(
        "unexplained", float(np.clip(0.9 * quality, 0.5, 0.9)),
        f"{how_much} from the reference after every stage the Doctor checks: {what}; no preprocessing stage of "
        "the reference does this",
        "remove the transform from inference, or apply the same transform in training (a custom DatasetMapper "
        "augmentation) so the model saw it; then: " + feed_code(cfg),
    )


def describe_curve(c: Curve) -> str:
    g = c.gamma
    shape = ("" if not np.isfinite(g) else
             f", like a gamma of {g:.2f} ({'brightens' if g < 1 else 'darkens'} the mid-tones)" if abs(g - 1) > 0.05
             else ", with the mid-tones kept (a contrast or equalization curve)")
    return (f"a value curve (gamma, contrast curve or histogram equalization): a per-value lookup table "
            f"reproduces the pixels to {c.residual:.2f} grey levels RMS, no linear map does{shape}")


def describe_spatial(s: Spatial, residual: float) -> str:
    what = (f"a blur: the render blurred with a Gaussian of sigma {s.sigma:g} px" if s.kind == "blur" else
            f"a sharpening: an unsharp mask (sigma {s.sigma:g} px, amount {s.amount:g}) of the render")
    return f"{what} leaves {s.fit.residual:.2f} grey levels where the render as is leaves {residual:.2f}"


def describe_colour(a: np.ndarray, b: np.ndarray, moved: float) -> str:
    return (f"a colour change that keeps 0..255: per-channel gain {fmt(a, 3)} and offset {fmt(b, 1)} move the "
            f"pixels by {moved:.1f} grey levels RMS (a white balance, brightness/contrast, a colour conversion)")

