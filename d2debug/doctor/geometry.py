"""Geometry: which orientation the user decoded, which size rule made their size, whether the size they pass
as height/width is the original one.

Sizes are ``(h, w)`` (rows, columns). The reference size rule is detectron2's own
``ResizeShortestEdge.get_output_shape``, not a re-derivation.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from ..findings import Finding, reference_resize_code
from ..stages import Order, decode, resize_image, to_model_order
from .fit import fit
from .inputs import UserInput

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Orientation", "orientation_tag", "choose_orientation", "explain_size", "original_size_finding"]

# The as-stored decode explains the pixels when its residual is below this fraction of the reference's.
AS_STORED_RATIO = 0.5


class Orientation(NamedTuple):
    """``chosen``: ``exif_applied`` (the reference) or ``as_stored``; ``image``: that decode, ``HxWx3`` uint8
    in ``cfg.INPUT.FORMAT`` order; ``residuals``: each candidate's fit residual (only with an EXIF tag)."""

    chosen: str
    image: np.ndarray
    residuals: dict
    finding: Optional[Finding]


def orientation_tag(path: Path) -> Optional[int]:
    """The file's EXIF orientation when it rotates or flips (2..8), else ``None``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            v = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - decode() reports unreadable files with a clear message
        return None
    return v if isinstance(v, int) and 2 <= v <= 8 else None


def choose_orientation(U: np.ndarray, size: tuple[int, int], path: Path, reference_image: np.ndarray,
                       fmt: Order) -> Orientation:
    """Render the reference decode (EXIF applied) and, when the file has an EXIF rotation, the pixels as
    stored, each at the user's ``size`` (PIL bilinear); the one that fits ``U`` (``3xN``) better is what the
    user decoded."""
    tag = orientation_tag(path)
    if tag is None:
        return Orientation("exif_applied", reference_image, {}, None)
    raw = decode(path, "pil")
    stored = np.ascontiguousarray(to_model_order(raw.image, raw.order, fmt, "cfg"))
    h, w = size
    scores = {}
    for name, img in (("exif_applied", reference_image), ("as_stored", stored)):
        rendered = img if img.shape[:2] == (h, w) else resize_image(img, h, w, "bilinear", "pil")
        scores[name] = fit(U, rendered).residual
    residuals = {k: round(v, 3) for k, v in scores.items()}
    r_ref, r_raw = scores["exif_applied"], scores["as_stored"]
    if not r_raw < AS_STORED_RATIO * r_ref:
        return Orientation("exif_applied", reference_image, residuals, None)
    H, W = reference_image.shape[:2]
    finding = Finding(
        "exif_orientation", float(np.clip(1 - r_raw / max(r_ref, 1e-9), 0.5, 0.99)),
        f"the file's EXIF orientation is {tag} but the pixels were used as stored "
        f"({stored.shape[0]}x{stored.shape[1]} instead of {H}x{W}): residual {r_raw:.2f} "
        f"grey levels against the unrotated decode vs {r_ref:.2f} against the reference decode",
        "image = detectron2.data.detection_utils.read_image(path, format='BGR')  # applies EXIF; or "
        "PIL.ImageOps.exif_transpose(Image.open(path)), or cv2.imread(path)",
    )
    return Orientation("as_stored", stored, residuals, finding)


def explain_size(h: int, w: int, H: int, W: int, cfg: CfgNode) -> Optional[Finding]:
    """Compare the user's size ``h x w`` with detectron2's rule for an ``H x W`` decoded image."""
    from detectron2.data import transforms as T

    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    ref = T.ResizeShortestEdge.get_output_shape(H, W, mn, mx) if mn > 0 else (H, W)
    if (h, w) == tuple(ref):
        return None
    fix = reference_resize_code(cfg)
    ref_txt = f"ResizeShortestEdge({mn}, {mx}) gives {ref[0]}x{ref[1]} (HxW) for the {H}x{W} image"
    if (h, w) == (H, W):
        return Finding("resize_size", 0.98, f"not resized: the input is {h}x{w}, the decoded image's own size; {ref_txt}", fix)
    sy, sx = h / H, w / W
    if abs(sy - sx) > 1.0 / H + 1.0 / W + 1e-9:
        shape = "a fixed square" if h == w else "a fixed size"
        return Finding(
            "resize_aspect", 0.98,
            f"aspect ratio changed: the input is {h}x{w} (w/h {w / h:.3f}), {shape}; the image is {H}x{W} "
            f"(w/h {W / H:.3f}): stretched x{sx / sy:.3f} horizontally; {ref_txt}",
            "keep the aspect ratio (no cv2.resize(image, (S, S))): " + fix,
        )
    short, long_ = min(h, w), max(h, w)
    s0 = mn / min(H, W)
    trunc = (int(H * s0), int(W * s0))
    unclamped = T.ResizeShortestEdge.get_output_shape(H, W, mn, 10 ** 9)
    if (h, w) in (trunc, tuple(unclamped)) and long_ > mx:
        how = "" if (h, w) == tuple(unclamped) else " (and int() truncation)"
        ev = f"no MAX_SIZE clamp{how}: short side {short} = MIN_SIZE_TEST but the long side {long_} > MAX_SIZE_TEST={mx}; {ref_txt}"
    elif (h, w) == trunc:
        ev = f"rounding: {h}x{w} is int() truncation of the scaled size; detectron2 rounds with int(x + 0.5); {ref_txt}"
    else:
        ev = f"scaled x{sy:.3f} to {h}x{w} (short side {short}, long side {long_}); the reference scales x{ref[0] / H:.3f}; {ref_txt}"
        for mn2, mx2, why in ((800, 1333, "detectron2's default INPUT.MIN/MAX_SIZE_TEST: a base config instead of the training config?"),):
            if tuple(T.ResizeShortestEdge.get_output_shape(H, W, mn2, mx2)) == (h, w):
                ev += f"; matches ResizeShortestEdge({mn2}, {mx2}), {why}"
        if long_ == mx and short > ref[0 if H <= W else 1]:
            ev += f"; long side clamped to MAX_SIZE_TEST={mx} with a larger short side than MIN_SIZE_TEST={mn}"
    return Finding("resize_size", 0.98, ev, fix)


def original_size_finding(ui: UserInput, original: tuple[int, int], decoded: tuple[int, ...],
                          orientation: str) -> Optional[Finding]:
    """``missing_original_size`` when a dict passes height/width that are not the original image's size
    (``original``: the reference decode's ``(H, W)``; ``decoded``: the size of the decode the user used).
    Absent keys are a container finding; passing the as-stored size of an unrotated decode is consistent."""
    if ui.height is None or ui.width is None or (ui.height, ui.width) == original:
        return None
    if orientation == "as_stored" and (ui.height, ui.width) == decoded:
        return None
    H, W = original
    h, w = int(ui.tensor.shape[1]), int(ui.tensor.shape[2])
    what = " (the resized size)" if (ui.height, ui.width) == (h, w) else ""
    return Finding(
        "missing_original_size", 0.95,
        f"height/width = {ui.height}/{ui.width}{what} but the image is {H}x{W}: boxes are rescaled to the wrong frame",
        f"{{'image': tensor, 'height': {H}, 'width': {W}}}  # the ORIGINAL size",
    )
