"""The resampler: re-render the decoded image at the user's size with every candidate resize kernel; the right
one reproduces the user's pixels (up to the value map), so the smallest residual names it."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional, cast

import numpy as np

from ..findings import Finding, reference_resize_code
from ..stages import Backend, Interpolation, resize_image
from .fit import EXACT, Fit, fit

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["RESAMPLERS", "NO_RESIZE", "Resampling", "render_at", "resampler_code", "choose_resampler", "weak_resampler_finding"]

# (backend, interpolation) candidates, the reference first. Lanczos has no torch version.
RESAMPLERS: tuple[tuple[Backend, Interpolation], ...] = (
    ("pil", "bilinear"), ("pil", "nearest"), ("pil", "bicubic"), ("pil", "area"), ("pil", "lanczos"),
    ("cv2", "nearest"), ("cv2", "bilinear"), ("cv2", "bicubic"), ("cv2", "area"), ("cv2", "lanczos"),
    ("torch", "nearest"), ("torch", "bilinear"), ("torch", "bicubic"), ("torch", "area"),
    ("torch_antialias", "bilinear"), ("torch_antialias", "bicubic"),
)
NO_RESIZE = ("none", "none")
_CODE = {
    "pil": "PIL Image.resize(..., Image.{})",
    "cv2": "cv2.resize(..., interpolation=cv2.INTER_{})",
    "torch": "F.interpolate(..., mode='{}')",
    "torch_antialias": "F.interpolate(..., mode='{}', antialias=True)",
}
_PIL_NAMES = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "BOX", "lanczos": "LANCZOS"}
_CV2_NAMES = {"nearest": "NEAREST", "bilinear": "LINEAR", "bicubic": "CUBIC", "area": "AREA", "lanczos": "LANCZOS4"}

# Another resampler is named when it beats the reference's residual by this many grey levels and ratio ...
MIN_GAIN = 0.25
MAX_RATIO = 0.67
# ... or reproduces the tensor exactly where the reference is not exact (by this factor of EXACT).
REFERENCE_NOT_EXACT = 2.0


class Resampling(NamedTuple):
    """The resampler that explains the user's pixels: ``key`` ``(backend, interpolation)`` (``NO_RESIZE`` when
    the sizes agree), its :class:`Fit`, its render ``HxWx3``, every candidate's residual, and the finding."""

    key: tuple[str, str]
    fit: Fit
    image: np.ndarray
    residuals: dict
    finding: Optional[Finding]


def render_at(img: np.ndarray, size: tuple[int, int], key: tuple[str, str]) -> np.ndarray:
    """``img`` (``HxWx3`` uint8) at ``size`` ``(h, w)`` with the resampler ``key`` (``(backend, interpolation)``;
    :data:`NO_RESIZE` or the same size: as it is, or PIL bilinear when only the size differs)."""
    if tuple(size) == img.shape[:2]:
        return img
    if key == NO_RESIZE:
        return resize_image(img, *size, "bilinear", "pil")
    return resize_image(img, *size, cast(Interpolation, key[1]), cast(Backend, key[0]))


def resampler_code(backend: str, interpolation: str) -> str:
    """The call a user's script makes for this resampler, e.g. ``cv2.resize(..., interpolation=cv2.INTER_AREA)``."""
    names = _PIL_NAMES if backend == "pil" else _CV2_NAMES if backend == "cv2" else {k: k for k in _PIL_NAMES}
    return _CODE[backend].format(names[interpolation])


def choose_resampler(U: np.ndarray, size: tuple[int, int], base: np.ndarray, cfg: CfgNode) -> Resampling:
    """Fit ``U`` (``3xN``) against ``base`` (the decode the user used, ``HxWx3``) rendered at ``size`` by the
    reference resampler, and by every other one when the reference does not reproduce it exactly."""
    h, w = size
    renders: dict[tuple[str, str], np.ndarray]
    if (h, w) == base.shape[:2]:
        renders = {NO_RESIZE: base}
    else:
        renders = {RESAMPLERS[0]: resize_image(base, h, w, RESAMPLERS[0][1], RESAMPLERS[0][0])}
    fits = {key: fit(U, img) for key, img in renders.items()}
    ref_key = next(iter(fits))
    if ref_key != NO_RESIZE and fits[ref_key].residual > EXACT:
        for kernel in RESAMPLERS[1:]:
            renders[kernel] = resize_image(base, h, w, kernel[1], kernel[0])
            fits[kernel] = fit(U, renders[kernel])
    residuals = {f"{k[0]}/{k[1]}": round(float(f.residual), 4) for k, f in fits.items()}
    best_key = min(fits, key=lambda k: fits[k].residual)
    ref, best = fits[ref_key], fits[best_key]
    exact_only = best.residual < EXACT and ref.residual > REFERENCE_NOT_EXACT * EXACT
    clearly_better = ref.residual - best.residual > MIN_GAIN and best.residual < MAX_RATIO * ref.residual
    if best_key == ref_key or not (clearly_better or exact_only):
        return Resampling(ref_key, ref, renders[ref_key], residuals, None)
    be, it = best_key
    runner = sorted((f.residual, f"{k[0]}/{k[1]}") for k, f in fits.items() if k != best_key)[0]
    small = (f"; a small difference: {ref.residual:.2f} grey levels RMS, about uint8 rounding"
             if ref.residual < 1.0 else "")
    finding = Finding(
        "resize_interpolation",
        float(np.clip(1 - best.residual / ref.residual, 0.5, 0.97) * min(1.0, 0.5 + ref.residual)),
        f"the pixels are best explained by {be} {it} ({resampler_code(be, it)}): residual {best.residual:.3f} grey "
        f"levels vs {ref.residual:.3f} for the reference PIL bilinear (next best {runner[1]} {runner[0]:.3f}){small}",
        "resize the uint8 HxWx3 image with detectron2's transform (PIL bilinear, antialiased when "
        "downscaling), not cv2.resize / F.interpolate: " + reference_resize_code(cfg),
    )
    return Resampling(best_key, best, renders[best_key], residuals, finding)


# When no candidate reproduces the pixels, one that is closer than the reference by this ratio, on a residual
# of at least this many grey levels, still says the resampler is not the reference's.
WEAK_RATIO = 0.9
WEAK_MIN_RESIDUAL = 0.5


def weak_resampler_finding(rs: Resampling, size: tuple[int, int], decoded: tuple[int, ...],
                           cfg: CfgNode) -> Optional[Finding]:
    """``resize_interpolation`` (low confidence) when the image was resized, no kernel of the table reproduces
    it, but some kernel fits better than the reference's PIL bilinear: another resampler (a blur then a float
    resize, a library's own kernel) made the pixels."""
    ref_name = "pil/bilinear"
    res = rs.residuals
    if tuple(size) == tuple(decoded) or ref_name not in res or res[ref_name] < WEAK_MIN_RESIDUAL:
        return None
    name, r = min(((k, v) for k, v in res.items() if k != ref_name), key=lambda kv: kv[1])
    if not r < WEAK_RATIO * res[ref_name]:
        return None
    return Finding(
        "resize_interpolation", 0.6,
        f"the pixels were resized by a resampler that is not PIL bilinear and not in the Doctor's table: the closest "
        f"is {name} ({r:.2f} grey levels RMS vs {res[ref_name]:.2f} for the reference), none reproduces them (a "
        "blur before a float resize, skimage.transform.resize, a library's own kernel)",
        "resize the uint8 HxWx3 image with detectron2's transform (PIL bilinear, antialiased when downscaling): "
        + reference_resize_code(cfg),
    )
