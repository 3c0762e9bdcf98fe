"""Registration: where the user's pixels sit relative to the image, before any colour is judged.

Real scripts move pixels in ways a resize rule does not explain: ``permute(2, 1, 0)`` instead of
``(2, 0, 1)`` (H and W exchanged), letterboxing or pad-to-size (constant borders), centre crops. Each is
recognised here and undone, so that the later steps (resampler, channel order, values) compare the right
pixels: a crop or a pad never turns into a channel or normalization finding.

Tensors are the user's image as ``3xHxW`` float32 (any value range); images ``HxWx3`` uint8 in
``cfg.INPUT.FORMAT`` order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import torch

from ..findings import Finding, reference_resize_code
from ..stages import resize_image
from .fit import fit

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Geometry", "untranspose", "unpad", "CropMatch", "find_crop"]

# A border row/column is constant when its spread is below this fraction of the tensor's value range.
FLAT = 1e-4
MIN_PAD = 2  # pixels of constant border before it is called padding
# A registration replaces the plain explanation when its residual is at most this fraction of the plain one's.
BETTER = 0.5
MAX_GOOD = 12.0  # grey levels RMS: a registration must also explain the pixels this well
ASPECT_TOL = 0.02  # relative: aspect ratios closer than this are the same shape


class Geometry(NamedTuple):
    """The user's tensor with a geometric step undone (``tensor``, ``3xhxw``), and the finding naming it."""

    tensor: torch.Tensor
    finding: Optional[Finding]
    info: dict


def _aspect_close(a: float, b: float) -> bool:
    return abs(np.log(a / b)) < ASPECT_TOL


def untranspose(t: torch.Tensor, decoded: np.ndarray, rotated: bool = False) -> Geometry:
    """``transposed_hw`` when the tensor's H and W are exchanged (``permute(2, 1, 0)`` of an HxWxC image):
    its aspect ratio is the image's inverted and the transposed tensor fits the image far better. ``rotated``:
    the file's EXIF orientation turns it by 90 degrees (its pixels as stored are the exchanged shape; the
    orientation step tells those apart)."""
    h, w = int(t.shape[1]), int(t.shape[2])
    H, W = decoded.shape[:2]
    if rotated or h == w or not _aspect_close(w / h, H / W) or _aspect_close(w / h, W / H):
        return Geometry(t, None, {})
    plain = fit(t.numpy().reshape(3, -1).astype(np.float64), resize_image(decoded, h, w, "bilinear", "pil")).residual
    tt = t.transpose(1, 2).contiguous()
    swapped = fit(tt.numpy().reshape(3, -1).astype(np.float64), resize_image(decoded, w, h, "bilinear", "pil")).residual
    info = {"transposed_residuals": {"as_given": round(plain, 3), "transposed": round(swapped, 3)}}
    if not (swapped < BETTER * plain and swapped < MAX_GOOD):
        return Geometry(t, None, info)
    return Geometry(tt, Finding(
        "transposed_hw", 0.97,
        f"H and W are exchanged: the input is {h}x{w} (HxW) for a {H}x{W} image, and transposed back it fits the "
        f"image with {swapped:.2f} grey levels RMS (as given, stretched: {plain:.2f}); a permute(2, 1, 0) or "
        "transpose(2, 1, 0) where the HxWxC image needs (2, 0, 1)",
        "torch.as_tensor(image.astype('float32').transpose(2, 0, 1))  # HxWxC -> CxHxW: (2, 0, 1), not (2, 1, 0)",
    ), info)


def _flat_run(lines: np.ndarray, tol: float) -> tuple[int, np.ndarray]:
    """How many leading ``lines`` (``K x 3 x L``: line, channel, pixels) are one constant colour, and the colour
    they are compared with (the first pixel's, ``3``; meaningless when the count is 0)."""
    fill = lines[0, :, 0]
    n = 0
    for line in lines:
        if np.ptp(line, axis=1).max() > tol or np.abs(line[:, 0] - fill).max() > tol:
            break
        n += 1
    return n, fill


def unpad(t: torch.Tensor, decoded: np.ndarray, cfg: CfgNode) -> Geometry:
    """``padding`` when the tensor has constant borders (a letterbox, pad-to-size or pad-to-divisible) that the
    image itself does not have: the sides, amounts and fill colour, and the tensor without them."""
    a = t.numpy()
    tol = FLAT * max(float(np.ptp(a)), 1e-6)
    sides = {
        "top": _flat_run(a.transpose(1, 0, 2), tol),
        "bottom": _flat_run(a[:, ::-1, :].transpose(1, 0, 2), tol),
        "left": _flat_run(a.transpose(2, 0, 1), tol),
        "right": _flat_run(a[:, :, ::-1].transpose(2, 0, 1), tol),
    }
    amounts = {k: n for k, (n, _) in sides.items() if n >= MIN_PAD}
    h, w = int(t.shape[1]), int(t.shape[2])
    ch = h - amounts.get("top", 0) - amounts.get("bottom", 0)
    cw = w - amounts.get("left", 0) - amounts.get("right", 0)
    if not amounts or ch < h / 3 or cw < w / 3 or _image_has_flat_borders(decoded):
        return Geometry(t, None, {})
    fills = [sides[k][1] for k in amounts]
    fill = np.mean(fills, axis=0)
    top, left = amounts.get("top", 0), amounts.get("left", 0)
    content = t[:, top:top + ch, left:left + cw].contiguous()
    where = ", ".join(f"{k} {n} px" for k, n in amounts.items())
    return Geometry(content, Finding(
        "padding", 0.95,
        f"the {h}x{w} input is a {ch}x{cw} image padded with a constant {[round(float(v), 4) for v in fill]} "
        f"(in the input's units) on the {where} (a letterbox or pad-to-size): the padding is fed as image, and "
        "height/width then describe the padded frame, so boxes land shifted",
        "no padding: detectron2 pads inside the model (ImageList, size_divisibility) and scales outputs back; "
        + reference_resize_code(cfg),
    ), {"padding": amounts, "padding_fill": [float(v) for v in fill], "content_size": [ch, cw]})


def _image_has_flat_borders(img: np.ndarray) -> bool:
    """Whether the image itself starts with constant rows or columns (then they are not the user's padding)."""
    a = img.astype(np.float32).transpose(2, 0, 1)
    tol = 0.5
    return any(_flat_run(x, tol)[0] >= MIN_PAD for x in (a.transpose(1, 0, 2), a[:, ::-1, :].transpose(1, 0, 2),
                                                      a.transpose(2, 0, 1), a[:, :, ::-1].transpose(2, 0, 1)))


class CropMatch(NamedTuple):
    """A centre crop that explains the user's pixels: the render (``hxwx3``), the resize it was cut from, the
    finding, and whether that resize differs from the reference's (then ``size_finding`` says so)."""

    image: np.ndarray
    finding: Finding
    size_finding: Optional[Finding]
    info: dict


def _centre_crops(base: np.ndarray, h: int, w: int, scale: float):
    """The centre ``h x w`` crops of ``base`` resized by ``scale`` (PIL bilinear), both offset roundings."""
    H, W = base.shape[:2]
    rh, rw = max(h, int(round(H * scale))), max(w, int(round(W * scale)))
    big = resize_image(base, rh, rw, "bilinear", "pil")
    seen = set()
    for top, left in (((rh - h) // 2, (rw - w) // 2), (int(round((rh - h) / 2.0)), int(round((rw - w) / 2.0)))):
        if (top, left) not in seen:
            seen.add((top, left))
            yield (rh, rw, top, left), big[top:top + h, left:left + w]


def find_crop(U: np.ndarray, size: tuple[int, int], base: np.ndarray, cfg: CfgNode) -> Optional[CropMatch]:
    """``crop`` when the user's ``size`` has another shape than the image and a centre crop of the image,
    resized (aspect kept) by some scale, explains ``U`` (``3xN``) far better than stretching the whole image."""
    from detectron2.data import transforms as T

    h, w = size
    H, W = base.shape[:2]
    if _aspect_close(w / h, W / H):
        return None
    stretched = fit(U, resize_image(base, h, w, "bilinear", "pil")).residual
    f_min = max(h / H, w / W)
    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    ref_h, ref_w = T.ResizeShortestEdge.get_output_shape(H, W, mn, mx) if mn > 0 else (H, W)
    f_ref = ref_h / H
    coarse = [f_min * (1 + 0.02 * k) for k in range(40)] + ([f_ref] if f_ref >= f_min else [])
    best: Optional[tuple[float, float, tuple[int, int, int, int], np.ndarray]] = None
    for f in coarse:
        for geom, img in _centre_crops(base, h, w, f):
            r = fit(U, img).residual
            if best is None or r < best[0]:
                best = (r, f, geom, img)
    if best is None:
        return None
    coarse_best = best[1]
    for f in (coarse_best * (1 + 0.002 * k) for k in range(-10, 11)):
        for geom, img in _centre_crops(base, h, w, f):
            r = fit(U, img).residual
            if r < best[0]:
                best = (r, f, geom, img)
    r, f, (rh, rw, top, left), img = best
    info = {"crop_residuals": {"stretched": round(stretched, 3), "centre_crop": round(r, 3)},
            "crop": {"resized_to": [rh, rw], "box_xyxy": [left, top, left + w, top + h]}}
    if not (r < BETTER * stretched and r < MAX_GOOD):
        return None
    finding = Finding(
        "crop", 0.95,
        f"the {h}x{w} input is the centre crop (x {left}..{left + w}, y {top}..{top + h}) of the image resized to "
        f"{rh}x{rw}: {r:.2f} grey levels RMS, vs {stretched:.2f} for the whole image stretched to {h}x{w}; the "
        "model never sees the cut-off parts and boxes come back in the crop's frame",
        "no crop (CenterCrop / a [top:bottom, left:right] slice): feed the whole image; " + reference_resize_code(cfg),
    )
    size_finding = None
    if abs(rh - ref_h) > 1 and abs(rw - ref_w) > 1:
        size_finding = Finding(
            "resize_size", 0.9,
            f"the crop was cut from the image resized to {rh}x{rw}; ResizeShortestEdge({mn}, {mx}) gives "
            f"{ref_h}x{ref_w} (HxW) for the {H}x{W} image",
            reference_resize_code(cfg),
        )
    return CropMatch(img, finding, size_finding, info)
