"""Registration: where the user's pixels sit relative to the image, before any colour is judged.

Real scripts move pixels in ways a resize rule does not explain: ``permute(2, 1, 0)`` instead of
``(2, 0, 1)`` (H and W exchanged), letterboxing or pad-to-size (constant borders, or borders made from the
image's own pixels: replicate, reflect, wrap), centre crops. Each is recognised
here and undone, so that the later steps (resampler, channel order, values) compare the right pixels: a crop
or a pad never turns into a channel or normalization finding.

Tensors are the user's image as ``3xHxW`` float32 (any value range); images ``HxWx3`` uint8 in
``cfg.INPUT.FORMAT`` order.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import torch

from ..findings import Finding, reference_resize_code
from ..stages import resize_image
from .fit import UNEXPLAINED, fit

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Geometry", "untranspose", "unpad", "pad_like", "PAD_MODES", "CropMatch", "find_crop"]

# A border row/column is constant when its spread is below this fraction of the tensor's value range.
FLAT = 1e-4
MIN_PAD = 2  # pixels of border (on at least one side) before it is called padding
MIN_CONTENT = 1 / 3  # of each side: a border leaves at least this much content (more is no padding but a picture)
# A side whose mirrored/replicated border has several possible widths (flat lines mirror anywhere) tries at most
# this many (the widest), each judged by how well the content left fits the image.
MAX_SIDE_OPTIONS = 8
WRAP_SPLITS = 3  # wrap: the splits (where the content starts) with the best correlation, confirmed by the fit
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


SIDES = ("top", "bottom", "left", "right")
PAD_MODES = ("constant", "edge", "symmetric", "reflect", "wrap")  # np.pad's names, as info["padding_mode"]
# Each mode in the words users write it: the cv2 border flag, np.pad mode and torch F.pad mode that make it.
PAD_MODE_WORDS = {
    "constant": "constant padding (cv2.BORDER_CONSTANT / np.pad mode='constant' / F.pad mode='constant')",
    "edge": "replicate padding (cv2.BORDER_REPLICATE / np.pad mode='edge' / F.pad mode='replicate')",
    "symmetric": "symmetric padding (cv2.BORDER_REFLECT / np.pad mode='symmetric'; the edge line repeated: cba|abc)",
    "reflect": "reflect padding (cv2.BORDER_REFLECT_101 / np.pad mode='reflect' / F.pad mode='reflect')",
    "wrap": "circular padding (cv2.BORDER_WRAP / np.pad mode='wrap' / F.pad mode='circular')",
}


def _min_content(n: int) -> int:
    """The fewest lines of content a border may leave of ``n`` (:data:`MIN_CONTENT`)."""
    return math.ceil(n * MIN_CONTENT)


def _side_lines(a: np.ndarray) -> dict[str, np.ndarray]:
    """The ``3xhxw`` array's lines seen from each side, outermost first: ``K x 3 x L`` views (line, channel,
    pixels), rows for top/bottom and columns for left/right."""
    return {"top": a.transpose(1, 0, 2), "bottom": a[:, ::-1, :].transpose(1, 0, 2),
            "left": a.transpose(2, 0, 1), "right": a[:, :, ::-1].transpose(2, 0, 1)}


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


def _mirror_amounts(lines: np.ndarray, mode: str, tol: float, limit: int) -> list[int]:
    """The widths ``p`` (1..``limit``) for which the first ``p`` of ``lines`` (``K x 3 x L``, outermost first)
    are made from the lines inside them by ``mode``: ``edge`` (all equal line ``p``), ``symmetric`` (line
    ``p-k`` is line ``p+k-1``: cba|abc) or ``reflect`` (line ``p-k`` is line ``p+k``: dcb|abcd). Ascending;
    ``edge`` gives only the widest (every narrower width holds too); the mirrors leave out borders of one
    repeated line (they mirror trivially and are edge borders)."""
    K = len(lines)
    if K < 3:
        return []
    step = 1 if mode in ("edge", "symmetric") else 2
    near = np.abs(lines[step:] - lines[:-step]).max(axis=(1, 2)) <= tol  # near[i]: line i == line i + step
    if mode == "edge":
        run = len(near) if near.all() else int(np.argmin(near))
        return [run] if 1 <= run <= limit else []
    same = np.abs(lines[1:] - lines[:-1]).max(axis=(1, 2)) <= tol if step == 2 else near
    repeated = len(same) if same.all() else int(np.argmin(same))  # lines 0..repeated are one line
    out = []
    for p in (int(i) + 1 for i in np.flatnonzero(near)):  # line p - 1 pairs with the first inner line
        if p <= repeated:
            continue  # a border of one repeated line mirrors trivially: that is an edge border
        k = np.arange(1, p + 1)
        inner = p + k - 1 if mode == "symmetric" else p + k
        if p <= limit and inner[-1] < K and np.abs(lines[p - k] - lines[inner]).max() <= tol:
            out.append(p)
    return out


def _wrap_totals(lines: np.ndarray, tol: float, limit: int) -> list[int]:
    """The border totals ``q`` (1..``limit``, both sides of the axis together) for which ``lines``
    (``K x 3 x L``) repeat with period ``K - q`` (a wrap / circular border). Ascending."""
    K = len(lines)
    first = np.abs(lines - lines[0]).max(axis=(1, 2)) <= tol  # first[T]: line T == line 0
    return [q for q in range(1, min(limit, K - 1) + 1)
            if first[K - q] and np.abs(lines[:q] - lines[K - q:]).max() <= tol]


class _Renders:
    """The decode (``HxWx3`` uint8) resized by the reference (PIL bilinear) to a content's size, to say whether
    the content left after removing a border is the image. A tensor the user never turned upright (a missing
    EXIF transpose) is the image flipped or turned, so the 8 flips/turns can be tried (only to confirm the
    chosen border: the search itself compares upright renders)."""

    def __init__(self, decoded: np.ndarray):
        self.decoded = decoded
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def at(self, h: int, w: int) -> np.ndarray:
        """The image at ``hxw`` (``hxwx3`` uint8), cached."""
        if (h, w) not in self._cache:
            self._cache[(h, w)] = resize_image(self.decoded, h, w, "bilinear", "pil")
        return self._cache[(h, w)]

    def residual(self, content: np.ndarray, turned: bool = False) -> float:
        """Grey levels RMS of ``content`` (``3xhxw``, any affine value map) against the image at ``hxw``: upright,
        or with ``turned`` the best of the 8 orientations."""
        h, w = content.shape[1:]
        U = content.reshape(3, -1).astype(np.float64)
        upright = self.at(h, w)
        r = fit(U, upright).residual
        if not turned or r <= UNEXPLAINED:
            return r
        swapped = self.at(w, h).transpose(1, 0, 2)
        for v in (upright[::-1], upright[:, ::-1], upright[::-1, ::-1],
                  swapped, swapped[::-1], swapped[:, ::-1], swapped[::-1, ::-1]):
            r = min(r, fit(U, np.ascontiguousarray(v)).residual)
        return r


def _content(a: np.ndarray, amounts: dict[str, int]) -> np.ndarray:
    """``a`` (``3xhxw``) without ``amounts`` pixels on each named side."""
    h, w = a.shape[1:]
    return a[:, amounts.get("top", 0):h - amounts.get("bottom", 0),
             amounts.get("left", 0):w - amounts.get("right", 0)]


def _looks_constant(lines: dict[str, np.ndarray], amounts: dict[str, int], tol: float) -> bool:
    """Whether every border in ``amounts`` is one flat colour: then it is a constant pad (judged as one, with
    the image's own flat borders in mind), whatever other mode would also make it."""
    return all(_flat_run(lines[s][:p], tol)[0] >= p for s, p in amounts.items() if p > 0)


def _mirror_padding(a: np.ndarray, lines: dict[str, np.ndarray], tol: float, renders: _Renders,
                    mode: str) -> Optional[tuple[float, dict[str, int]]]:
    """The best ``edge``/``symmetric``/``reflect`` border of ``a`` (``3xhxw``): its content's residual and the
    pixels per side; ``None`` when no side has a border of at least :data:`MIN_PAD` lines in that mode.

    A side with one width of at least :data:`MIN_PAD` keeps it (2+ mirrored lines do not happen by chance in a
    photograph, unless flat, which :func:`_looks_constant` sets apart); every other side (no width, a 1-line
    width, several widths) takes the width, or none, whose content fits the image best."""
    h, w = a.shape[1:]
    limit = {"top": h - _min_content(h), "left": w - _min_content(w)}
    limit.update(bottom=limit["top"], right=limit["left"])
    options = {s: _mirror_amounts(lines[s], mode, tol, limit[s])[-MAX_SIDE_OPTIONS:] for s in SIDES}
    if not any(p >= MIN_PAD for ps in options.values() for p in ps):
        return None

    def score(am: dict[str, int]) -> float:
        c = _content(a, am)
        if (c.shape[1] < _min_content(h) or c.shape[2] < _min_content(w) or max(am.values()) < MIN_PAD
                or _looks_constant(lines, am, tol)):
            return math.inf
        return renders.residual(c)

    best = {s: (ps[-1] if ps else 0) for s, ps in options.items()}
    best_r = score(best)
    for _ in range(2):  # coordinate descent over the undecided sides; a second pass settles interactions
        improved = False
        for s in SIDES:
            if len(options[s]) == 1 and options[s][0] >= MIN_PAD:
                continue
            for p in [0] + options[s]:
                cand = {**best, s: p}
                r = score(cand) if p != best[s] else math.inf
                if r < best_r:
                    best, best_r, improved = cand, r, True
        if not improved:
            break
    return (best_r, {s: p for s, p in best.items() if p > 0}) if math.isfinite(best_r) else None


def _wrap_padding(a: np.ndarray, lines: dict[str, np.ndarray], tol: float,
                  renders: _Renders) -> Optional[tuple[float, dict[str, int]]]:
    """The best wrap (circular) border of ``a`` (``3xhxw``): its content's residual and the pixels per side.

    A wrapped tensor repeats with the content's period, so the period gives each axis's total border but not
    where the content starts: every split is the same tensor. The split is the one whose content correlates
    best with the image (a circular cross-correlation of the grey levels; the :data:`WRAP_SPLITS` best are
    confirmed with the affine fit)."""
    h, w = a.shape[1:]
    qh = _wrap_totals(lines["top"], tol, h - _min_content(h))
    qw = _wrap_totals(lines["left"], tol, w - _min_content(w))
    if max(qh + qw, default=0) < MIN_PAD:
        return None
    # The smallest total is the content's own period; a longer one is the content repeating by chance.
    Qh, Qw = (qh[0] if qh else 0), (qw[0] if qw else 0)
    th, tw = h - Qh, w - Qw
    g = a[:, :th, :tw].mean(0).astype(np.float64)
    ref = renders.at(th, tw).astype(np.float64).mean(2)
    corr = np.fft.ifft2(np.fft.fft2(g - g.mean()) * np.conj(np.fft.fft2(ref - ref.mean()))).real[:Qh + 1, :Qw + 1]
    best: Optional[tuple[float, dict[str, int]]] = None
    for idx in np.argsort(corr, axis=None)[::-1][:WRAP_SPLITS]:
        top, left = (int(v) for v in np.unravel_index(idx, corr.shape))
        am = {"top": top, "bottom": Qh - top, "left": left, "right": Qw - left}
        if _looks_constant(lines, am, tol):
            continue
        r = renders.residual(a[:, top:top + th, left:left + tw])
        if best is None or r < best[0]:
            best = (r, {s: p for s, p in am.items() if p > 0})
    return best


def _where(amounts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n} px" for k, n in amounts.items())


def _padding_finding(cfg: CfgNode, h: int, w: int, info: dict, how: str) -> Finding:
    ch, cw = info["content_size"]
    return Finding(
        "padding", 0.95,
        f"the {h}x{w} input is a {ch}x{cw} image {how}: the padding is fed as image, and height/width then "
        "describe the padded frame, so boxes land shifted",
        "no padding: detectron2 pads inside the model (ImageList, size_divisibility) and scales outputs back; "
        + reference_resize_code(cfg),
    )


def unpad(t: torch.Tensor, decoded: np.ndarray, cfg: CfgNode) -> Geometry:
    """``padding`` when the tensor has borders the image does not have: a constant colour (a letterbox,
    pad-to-size or pad-to-divisible) or a border made from the image's own pixels (replicate, symmetric,
    reflect, wrap: ``cv2.copyMakeBorder``, ``np.pad``, ``F.pad``), on any sides, by any amounts.

    ``t``: the user's ``3xhxw`` float tensor (any per-channel affine map of the 0..255 pixels); ``decoded``: the
    image, ``HxWx3`` uint8. Returns the tensor without the border (``3xchxcw`` float32) and ``info`` =
    ``padding`` (``{side: pixels}``), ``padding_mode`` (one of :data:`PAD_MODES`), ``padding_fill`` (3 floats
    in the tensor's units; constant only), ``content_size`` (``[ch, cw]``); :func:`pad_like` puts it back.

    A constant border is one flat colour of at least :data:`MIN_PAD` lines that the image itself does not
    start with. Any other mode's border is accepted only when the content left without it fits the image far
    better (:data:`BETTER`, :data:`MAX_GOOD`) than the padded whole stretched, so an image that happens to be
    locally mirrored or has repeated rows is not called padded. One mode for all sides, as every padding call
    makes it; where several modes explain the border, the best-fitting content decides.
    """
    a = t.detach().cpu().numpy().astype(np.float32, copy=False)
    h, w = a.shape[1:]
    tol = FLAT * max(float(np.ptp(a)), 1e-6)
    lines = _side_lines(a)
    sides = {k: _flat_run(L, tol) for k, L in lines.items()}
    amounts = {k: n for k, (n, _) in sides.items() if n >= MIN_PAD}
    ch = h - amounts.get("top", 0) - amounts.get("bottom", 0)
    cw = w - amounts.get("left", 0) - amounts.get("right", 0)
    if amounts and ch >= _min_content(h) and cw >= _min_content(w) and not _image_has_flat_borders(decoded):
        fill = np.mean([sides[k][1] for k in amounts], axis=0)
        info = {"padding": amounts, "padding_mode": "constant", "padding_fill": [float(v) for v in fill],
                "content_size": [ch, cw]}
        return Geometry(torch.from_numpy(np.ascontiguousarray(_content(a, amounts))), _padding_finding(
            cfg, h, w, info,
            f"padded with a constant {[round(float(v), 4) for v in fill]} (in the input's units) on the "
            f"{_where(amounts)} (a letterbox or pad-to-size; {PAD_MODE_WORDS['constant']})"), info)
    renders = _Renders(decoded)
    found = []
    for order, mode in enumerate(PAD_MODES[1:]):
        got = (_wrap_padding(a, lines, tol, renders) if mode == "wrap"
               else _mirror_padding(a, lines, tol, renders, mode))
        if got is not None:
            found.append((got[0], order, mode, got[1]))
    if not found:
        return Geometry(t, None, {})
    r, _, mode, amounts = min(found)
    whole = renders.residual(a)
    if not (r < BETTER * whole and r < MAX_GOOD):  # perhaps the user's image is not upright: every orientation
        whole = renders.residual(a, turned=True)
        r, _, mode, amounts = min((renders.residual(_content(a, am), turned=True), k, m, am) for _, k, m, am in found)
    if not (r < BETTER * whole and r < MAX_GOOD):
        return Geometry(t, None, {"padding_rejected": {"mode": mode, "padding": amounts,
                                                       "content_residual": round(r, 3),
                                                       "padded_residual": round(whole, 3)}})
    content = _content(a, amounts)
    info = {"padding": amounts, "padding_mode": mode, "content_size": [int(content.shape[1]), int(content.shape[2])],
            "padding_residuals": {"content": round(r, 3), "padded": round(whole, 3)}}
    return Geometry(torch.from_numpy(np.ascontiguousarray(content)), _padding_finding(
        cfg, h, w, info,
        f"padded with {PAD_MODE_WORDS[mode]} on the {_where(amounts)}: the border is made of the image's own "
        f"pixels; without it the content fits the image with {r:.2f} grey levels RMS (the padded whole, "
        f"stretched: {whole:.2f})"), info)


def pad_like(t: torch.Tensor, info: dict) -> torch.Tensor:
    """``t`` (``3xhxw`` float) padded the way :func:`unpad` found the user's input padded: ``info["padding"]``
    (``{side: pixels}``), ``info["padding_mode"]`` (default ``constant``) and, for constant, the per-channel
    ``info["padding_fill"]`` (in ``t``'s units). Returns ``3x(h+top+bottom)x(w+left+right)`` float32 made
    with ``numpy.pad``."""
    amounts = info.get("padding") or {}
    mode = info.get("padding_mode", "constant")
    width = ((0, 0), (int(amounts.get("top", 0)), int(amounts.get("bottom", 0))),
             (int(amounts.get("left", 0)), int(amounts.get("right", 0))))
    a = t.detach().cpu().numpy().astype(np.float32, copy=False)
    if mode == "constant":
        fill = info.get("padding_fill") or [0.0, 0.0, 0.0]
        out = np.stack([np.pad(a[c], width[1:], mode="constant", constant_values=float(fill[c]))
                        for c in range(a.shape[0])])
    else:
        out = np.pad(a, width, mode=mode)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _image_has_flat_borders(img: np.ndarray) -> bool:
    """Whether the image itself starts with constant rows or columns (then they are not the user's padding)."""
    a = img.astype(np.float32).transpose(2, 0, 1)
    tol = 0.5
    return any(_flat_run(x, tol)[0] >= MIN_PAD for x in _side_lines(a).values())


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
