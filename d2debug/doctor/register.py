"""Registration: where the user's pixels sit relative to the image, before any colour is judged.

Real scripts move pixels in ways a resize rule does not explain: ``permute(2, 1, 0)`` instead of
``(2, 0, 1)`` (H and W exchanged), letterboxing or pad-to-size (constant borders, or borders made from the
image's own pixels: replicate, reflect, wrap), crops anywhere in the image at any scale. Each is recognised
here and undone, so that the later steps (resampler, channel order, values) compare the right pixels: a crop
or a pad never turns into a channel or normalization finding.

Tensors are the user's image as ``3xHxW`` float32 (any value range); images ``HxWx3`` uint8 in
``cfg.INPUT.FORMAT`` order.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import cv2
import numpy as np
import torch

from ..findings import Finding, reference_resize_code
from ..stages import resize_image
from .fit import UNEXPLAINED, fit
from .resample import RESAMPLERS, render_at, resampler_code

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


def _line_gaps(a: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each side of ``a`` (``3xhxw``), outermost line first: the largest difference between line ``i`` and
    line ``i+1``, and between line ``i`` and line ``i+2`` (float32 vectors; computed once for every mode)."""
    r1 = np.abs(a[:, 1:] - a[:, :-1]).max(axis=(0, 2))
    r2 = np.abs(a[:, 2:] - a[:, :-2]).max(axis=(0, 2))
    c1 = np.abs(a[:, :, 1:] - a[:, :, :-1]).max(axis=(0, 1))
    c2 = np.abs(a[:, :, 2:] - a[:, :, :-2]).max(axis=(0, 1))
    return {"top": (r1, r2), "bottom": (r1[::-1], r2[::-1]), "left": (c1, c2), "right": (c1[::-1], c2[::-1])}


def _mirror_amounts(lines: np.ndarray, gaps: tuple[np.ndarray, np.ndarray], mode: str, tol: float,
                    limit: int) -> list[int]:
    """The widths ``p`` (1..``limit``) for which the first ``p`` of ``lines`` (``K x 3 x L``, outermost first;
    ``gaps`` from :func:`_line_gaps`) are made from the lines inside them by ``mode``: ``edge`` (all equal
    line ``p``), ``symmetric`` (line ``p-k`` is line ``p+k-1``: cba|abc) or ``reflect`` (line ``p-k`` is line
    ``p+k``: dcb|abcd). Ascending; ``edge`` gives only the widest (every narrower width holds too); the
    mirrors leave out borders of one repeated line (they mirror trivially and are edge borders)."""
    K = len(lines)
    if K < 3:
        return []
    same = gaps[0] <= tol  # same[i]: line i == line i + 1
    repeated = len(same) if same.all() else int(np.argmin(same))  # lines 0..repeated are one line
    if mode == "edge":
        return [repeated] if 1 <= repeated <= limit else []
    near = same if mode == "symmetric" else gaps[1] <= tol  # the innermost pair of a width p: lines p-1, p(+1)
    out = []
    for p in (int(i) + 1 for i in np.flatnonzero(near[:limit])):
        if p <= repeated:
            continue  # a border of one repeated line mirrors trivially: that is an edge border
        if 2 * p - (mode == "symmetric") < K and _mirrored(lines, p, 1 if mode == "symmetric" else 0, tol):
            out.append(p)
    return out


def _mirrored(lines: np.ndarray, p: int, shift: int, tol: float) -> bool:
    """Whether line ``p-k`` equals line ``p+k-shift`` for k = 1..p (``lines``: ``K x 3 x L``), compared in
    blocks of growing size so that a width that does not mirror is rejected after a few lines."""
    done, upto = 0, 4
    while done < p:
        k = np.arange(done + 1, min(p, upto) + 1)
        if np.abs(lines[p - k] - lines[p + k - shift]).max() > tol:
            return False
        done, upto = k[-1], upto * 4
    return True


def _wrap_totals(lines: np.ndarray, tol: float, limit: int) -> list[int]:
    """The border totals ``q`` (1..``limit``, both sides of the axis together) for which ``lines``
    (``K x 3 x L``) repeat with period ``K - q`` (a wrap / circular border). Ascending."""
    K = len(lines)
    limit = min(limit, K - 1)
    tail = np.abs(lines[K - limit:] - lines[0]).max(axis=(1, 2)) <= tol  # tail[j]: line K - limit + j == line 0
    return [q for q in range(1, limit + 1)
            if tail[limit - q] and np.abs(lines[:q] - lines[K - q:]).max() <= tol]


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


def _mirror_padding(a: np.ndarray, lines: dict[str, np.ndarray], gaps: dict[str, tuple[np.ndarray, np.ndarray]],
                    tol: float, renders: _Renders, mode: str) -> Optional[tuple[float, dict[str, int]]]:
    """The best ``edge``/``symmetric``/``reflect`` border of ``a`` (``3xhxw``): its content's residual and the
    pixels per side; ``None`` when no side has a border of at least :data:`MIN_PAD` lines in that mode.

    A side with one width of at least :data:`MIN_PAD` keeps it (2+ mirrored lines do not happen by chance in a
    photograph, unless flat, which :func:`_looks_constant` sets apart); every other side (no width, a 1-line
    width, several widths) takes the width, or none, whose content fits the image best."""
    h, w = a.shape[1:]
    limit = {"top": h - _min_content(h), "left": w - _min_content(w)}
    limit.update(bottom=limit["top"], right=limit["left"])
    options = {s: _mirror_amounts(lines[s], gaps[s], mode, tol, limit[s])[-MAX_SIDE_OPTIONS:] for s in SIDES}
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
    gaps = _line_gaps(a)
    found = []
    for order, mode in enumerate(PAD_MODES[1:]):
        got = (_wrap_padding(a, lines, tol, renders) if mode == "wrap"
               else _mirror_padding(a, lines, gaps, tol, renders, mode))
        if got is not None:
            found.append((got[0], order, mode, got[1]))
    if not found:
        return Geometry(t, None, {})
    r, _, mode, amounts = min(found)
    whole = renders.residual(a)
    if r >= MAX_GOOD and whole > UNEXPLAINED:  # neither fits upright: perhaps the image is not upright
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


# Crops. The search is OpenCV's normalized cross-correlation (TM_CCOEFF_NORMED: blind to a per-channel affine
# value map with positive slope, so /255 or Normalize do not matter) of the tensor's grey levels against the
# image's over scales, coarse then fine; the affine fit then confirms the best boxes at +-1 px.
COARSE_SIDE = 64  # px: the coarse scale search shrinks the tensor so its short side is about this
COARSE_STEP = 1.015  # scale ratio between coarse steps: a 1.5% scale error still correlates at COARSE_SIDE px
MAX_ZOOM = 4.0  # the crop box spans at least 1/MAX_ZOOM of the image along its tighter axis
COARSE_KEEP = 3  # scales (local maxima of the correlation) refined at full resolution, those within
COARSE_MARGIN = 0.1  # of the best correlation (a far weaker peak is another part of the picture that looks alike)
FINE_SPAN = 0.025  # relative: the full-resolution search covers the coarse scale +- this
FINE_KEEP = 3  # boxes (size, position) confirmed with the affine fit
# A crop is searched for only when the whole image stretched to the user's size leaves more than this (grey
# levels RMS): a resampler or a JPEG re-encoding leaves a few, a crop tens. Keeps correct inputs fast.
CROP_SEARCH_FROM = 4.0
MIN_CUT = 2  # px: a box must leave out at least this much of the frame along one axis to be a crop
# A box whose render leaves more than this (grey levels RMS) is not exact: its neighbouring frame sizes are
# tried, then the crop cut before the resize (it sits at a fractional position of any resized frame).
NOT_EXACT = 0.5
# Resamplers other than the reference's, best first at the box, whose neighbouring frame sizes are also tried
# (the box's frame came from the reference resampler's fit, and may be a pixel off for another's).
KERNELS_REFINED = 3
RELOCATE = 8  # px: how far another resampler's frame may move the box (aliasing shifts the correlation peak)
BOX_STEPS = 12  # px moves of the before-resize box's descent (it starts within a few px of the box)


class CropMatch(NamedTuple):
    """A crop that explains the user's pixels: the render (``hxwx3``, uint8; float32 after a torch resize),
    the finding, a ``resize_size`` finding when no correct resize gives the user's size, and ``info``
    (``crop_residuals`` and ``crop``: ``resized_to`` ``[rh, rw]``, ``box_xyxy`` ``[x0, y0, x1, y1]`` in that
    frame, ``where``, ``scale``, ``cut`` (``after_resize`` or ``before_resize``), ``box_in_image_xyxy`` in the
    image's pixels and ``resampler``, ``backend/interpolation`` of the resize the crop was cut from)."""

    image: np.ndarray
    finding: Finding
    size_finding: Optional[Finding]
    info: dict


def _grey(img: np.ndarray) -> np.ndarray:
    """``HxWx3`` (any dtype) -> ``HxW`` float32 channel mean."""
    return np.ascontiguousarray(img.astype(np.float32).mean(2))


def _shrink(g: np.ndarray, h: int, w: int) -> np.ndarray:
    """``g`` (``HxW`` float32) at ``hxw``: area averaging down (no aliasing), bilinear up."""
    small = h * w < g.shape[0] * g.shape[1]
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA if small else cv2.INTER_LINEAR)


def _coarse(tg: np.ndarray, G: np.ndarray, f_min: float, f_ref: float) -> list[tuple[float, float, float, float]]:
    """The best scales (at most :data:`COARSE_KEEP`) for the template ``tg`` (``hxw`` grey) in ``G`` (``HxW``
    grey): ``(correlation, scale, x, y)`` with the box's top-left in the frame resized by ``scale`` (pixels)."""
    h, w = tg.shape
    H, W = G.shape
    d = max(1.0, min(h, w) / COARSE_SIDE)
    th, tw = max(4, round(h / d)), max(4, round(w / d))
    t_small = _shrink(tg, th, tw)
    steps = int(math.log(MAX_ZOOM) / math.log(COARSE_STEP)) + 1
    scales = sorted({f_min * COARSE_STEP ** k for k in range(steps)} | ({f_ref} if f_ref >= f_min else set()))
    top = min(1.0, scales[-1] / d)  # every coarse frame is at most this fraction of the image: shrink once
    G_small = _shrink(G, max(th, round(H * top)), max(tw, round(W * top)))
    rows = []
    for f in scales:
        ih, iw = max(th, round(H * f / d)), max(tw, round(W * f / d))
        res = cv2.matchTemplate(_shrink(G_small, ih, iw), t_small, cv2.TM_CCOEFF_NORMED)
        _, val, _, (x, y) = cv2.minMaxLoc(res)
        rows.append((float(val), f, x * (W * f) / iw, y * (H * f) / ih))
    vals = [r[0] for r in rows]
    peaks = [r for i, r in enumerate(rows) if vals[i] >= max(vals[max(0, i - 2):i + 3])]  # maxima over +-2 steps
    peaks = sorted(peaks, reverse=True)[:COARSE_KEEP]
    return [p for p in peaks if p[0] >= peaks[0][0] - COARSE_MARGIN]


def _fine(tg: np.ndarray, G: np.ndarray, f: float, x: float, y: float) -> list[tuple[float, int, int, int, int]]:
    """Full-resolution correlation of ``tg`` (``hxw`` grey) in ``G`` (``HxW`` grey) resized to frames
    ``rh x rw`` (aspect kept up to rounding) within :data:`FINE_SPAN` of scale ``f``, near the coarse box
    ``(x, y)``: a hill climb over ``rh`` (steps halving to 1 px). Every frame tried, as
    ``(correlation, rh, rw, x0, y0)``."""
    h, w = tg.shape
    H, W = G.shape
    lo, hi = max(h, math.floor(H * f * (1 - FINE_SPAN))), math.ceil(H * f * (1 + FINE_SPAN))
    tried: dict[int, tuple[float, int, int, int, int]] = {}
    out = []

    def at(rh: int) -> tuple[float, int, int, int, int]:
        if rh not in tried:
            best = (-math.inf, rh, 0, 0, 0)
            for rw in sorted({math.floor(W * rh / H), math.ceil(W * rh / H)}):
                if rw < w:
                    continue
                s = rh / (H * f)
                m = int(FINE_SPAN * max(rh, rw)) + 8  # how far off the coarse box can be at this size
                x0, y0 = min(max(0, round(x * s) - m), rw - w), min(max(0, round(y * s) - m), rh - h)
                x1, y1 = min(rw, x0 + w + 2 * m), min(rh, y0 + h + 2 * m)
                res = cv2.matchTemplate(_shrink(G, rh, rw)[y0:y1, x0:x1], tg, cv2.TM_CCOEFF_NORMED)
                _, val, _, (bx, by) = cv2.minMaxLoc(res)
                out.append((float(val), rh, rw, x0 + bx, y0 + by))
                best = max(best, out[-1])
            tried[rh] = best
        return tried[rh]

    cur = at(min(max(round(H * f), lo), hi))
    step = max(1, (hi - lo) // 4)
    while step >= 1:
        moved = True
        while moved:
            moved = False
            for rh in (cur[1] - step, cur[1] + step):
                if lo <= rh <= hi and at(rh)[0] > cur[0]:
                    cur, moved = at(rh), True
        step //= 2
    return out


class _Scorer:
    """The affine fit's residual (grey levels RMS) of ``U`` (``3xN``) against many renders, with the channel
    permutation fixed by one full :func:`~d2debug.doctor.fit.fit`: the statistics of ``U`` are kept, so each
    render costs three dot products (the search compares hundreds of renders; the winner gets a full fit)."""

    def __init__(self, U: np.ndarray, first: np.ndarray):
        self.perm = fit(U, first).perm
        self.Uc = (U - U.mean(1, keepdims=True)).astype(np.float32)
        self.var_u = (self.Uc * self.Uc).mean(1)

    def __call__(self, img: np.ndarray) -> float:
        """``img``: ``hxwx3`` (the user's size)."""
        R = img.reshape(-1, 3).astype(np.float32)
        total = 0.0
        for c in range(3):
            r = R[:, self.perm[c]] - R[:, self.perm[c]].mean()
            var_r = float(r @ r) / len(r)
            cov = float(self.Uc[c] @ r) / len(r)
            if var_r <= 1e-12 or abs(cov) <= 1e-12:
                return math.inf
            a = cov / var_r
            total += max(float(self.var_u[c]) - cov * cov / var_r, 0.0) / (a * a)
        return math.sqrt(total / 3)


_Box = tuple[float, int, int, int, int, np.ndarray]  # (residual, rh, rw, x0, y0, the crop hxwx3)


def _confirm(score: _Scorer, size: tuple[int, int], frame_of: Callable[[int, int], np.ndarray],
             boxes: list[tuple[float, int, int, int, int]], tg: Optional[np.ndarray] = None) -> _Box:
    """The best of ``boxes`` (``(correlation, rh, rw, x0, y0)``, each +-1 px) by ``score`` against the crop of
    the frame ``frame_of(rh, rw)`` (the image resized, ``rh x rw x 3``). With ``tg`` (the user's grey levels,
    ``hxw`` float32) each box is first moved to where ``tg`` correlates best with that frame within
    :data:`RELOCATE` px (a frame made by another resampler can put the box a few pixels elsewhere)."""
    h, w = size
    best: Optional[_Box] = None
    for _, rh, rw, bx, by in boxes:
        if rh < h or rw < w:
            continue
        frame = frame_of(rh, rw)
        if tg is not None:
            x0, y0 = max(0, bx - RELOCATE), max(0, by - RELOCATE)
            x1, y1 = min(rw, bx + w + RELOCATE), min(rh, by + h + RELOCATE)
            res = cv2.matchTemplate(_grey(frame[y0:y1, x0:x1]), tg, cv2.TM_CCOEFF_NORMED)
            _, _, _, (dx, dy) = cv2.minMaxLoc(res)
            bx, by = x0 + dx, y0 + dy
        for y0 in range(max(0, by - 1), min(rh - h, by + 1) + 1):
            for x0 in range(max(0, bx - 1), min(rw - w, bx + 1) + 1):
                img = frame[y0:y0 + h, x0:x0 + w]
                r = score(img)
                if best is None or r < best[0]:
                    best = (r, rh, rw, x0, y0, img)
    assert best is not None
    return best


class _Frames:
    """The image (``HxWx3`` uint8) resized to frames ``rh x rw`` by a resampler ``(backend, interpolation)``,
    cached: the boxes are cut from these."""

    def __init__(self, base: np.ndarray):
        self.base = base
        self._cache: dict[tuple[tuple[str, str], int, int], np.ndarray] = {}

    def by(self, key: tuple[str, str]) -> Callable[[int, int], np.ndarray]:
        def frame_of(rh: int, rw: int) -> np.ndarray:
            if (key, rh, rw) not in self._cache:
                self._cache[(key, rh, rw)] = render_at(self.base, (rh, rw), key)
            return self._cache[(key, rh, rw)]
        return frame_of


def _register_box(score: _Scorer, size: tuple[int, int], frame_of: Callable[[int, int], np.ndarray],
                  boxes: list[tuple[float, int, int, int, int]], tg: Optional[np.ndarray] = None) -> _Box:
    """The box among ``boxes`` (``(correlation, rh, rw, x0, y0)``) that ``score`` finds best in the frames of
    ``frame_of`` (``tg``: see :func:`_confirm`). The correlation ran on area-averaged grey levels, which cannot
    tell a frame one pixel wider from another: a box that is not exact (:data:`NOT_EXACT`) is also tried in
    the neighbouring frame sizes."""
    best = _confirm(score, size, frame_of, boxes, tg)
    if best[0] > NOT_EXACT:
        _, rh, rw, bx, by, _ = best
        near = [(0.0, rh + dh, rw + dw, bx, by) for dh in (-1, 0, 1) for dw in (-1, 0, 1) if dh or dw]
        best = min(best, _confirm(score, size, frame_of, near, tg), key=lambda c: c[0])
    return best


def _before_resize(score: _Scorer, base: np.ndarray, size: tuple[int, int], rh: int, rw: int, x0: int,
                   y0: int) -> Optional[tuple[float, tuple[int, int, int, int], np.ndarray]]:
    """The crop cut from the image before the resize: the box (``x0, y0, x1, y1`` in the image's pixels) near
    the one ``(x0, y0)`` in the ``rh x rw`` frame maps to, resized to ``size`` (PIL bilinear), as
    ``(score, box, render)``. A descent over the box's edges, 1 px moves."""
    h, w = size
    H, W = base.shape[:2]
    sx, sy = W / rw, H / rh
    box = [round(x0 * sx), round(y0 * sy), round((x0 + w) * sx), round((y0 + h) * sy)]
    renders: dict[tuple[int, ...], tuple[float, Optional[np.ndarray]]] = {}

    def render(b: list[int]) -> tuple[float, Optional[np.ndarray]]:
        if tuple(b) not in renders:
            if not (0 <= b[0] < b[2] - 1 <= W - 1 and 0 <= b[1] < b[3] - 1 <= H - 1):
                renders[tuple(b)] = (math.inf, None)
            else:
                img = resize_image(np.ascontiguousarray(base[b[1]:b[3], b[0]:b[2]]), h, w, "bilinear", "pil")
                renders[tuple(b)] = (score(img), img)
        return renders[tuple(b)]

    # Moves of one edge, of both edges of an axis together (a shift) and apart (a zoom), 1 px each.
    moves = [m for i in (0, 1) for m in ({i: 1}, {i: -1}, {i + 2: 1}, {i + 2: -1}, {i: 1, i + 2: 1},
                                         {i: -1, i + 2: -1}, {i: -1, i + 2: 1}, {i: 1, i + 2: -1})]
    r, img = render(box)
    for _ in range(BOX_STEPS):
        cand = min(([v + m.get(i, 0) for i, v in enumerate(box)] for m in moves), key=lambda b: render(b)[0])
        if not render(cand)[0] < r:
            break
        box = cand
        r, img = render(box)
    return None if img is None else (r, (box[0], box[1], box[2], box[3]), img)


def _where_in(x0: int, y0: int, x1: int, y1: int, W: int, H: int) -> str:
    """Where the box ``x0, y0, x1, y1`` sits in a ``W x H`` frame: ``centre``, a corner, or ``offset (x0, y0)``
    (1 px of slack for rounding)."""
    def centred(a0, a1, n):
        return abs(a0 - (n - a1)) <= 1

    def start(a0):
        return a0 <= 1

    def end(a1, n):
        return a1 >= n - 1

    if centred(x0, x1, W) and centred(y0, y1, H):
        return "centre"
    for name, ok in (("top-left", start(y0) and start(x0)), ("top-right", start(y0) and end(x1, W)),
                     ("bottom-left", end(y1, H) and start(x0)), ("bottom-right", end(y1, H) and end(x1, W))):
        if ok:
            return f"{name} corner"
    return f"offset ({x0}, {y0})"


def _crop_words(where: str) -> str:
    return "the centre crop" if where == "centre" else (
        f"the {where} crop" if where.endswith("corner") else f"a crop at {where}")


def find_crop(U: np.ndarray, size: tuple[int, int], base: np.ndarray, cfg: CfgNode) -> Optional[CropMatch]:
    """``crop`` when a box of the image at some scale explains ``U`` (``3xN`` float64, the user's ``hxw`` tensor in
    any per-channel affine value map) far better than the whole image stretched to ``size``: a crop anywhere
    (centre, a corner, an offset, a random crop) of the image resized by some scale, or of the image itself
    before a resize. ``base``: the decode, ``HxWx3`` uint8.

    Searched for only when the whole image stretched to ``size`` explains the pixels poorly
    (:data:`CROP_SEARCH_FROM`), whatever the shape (a crop with the image's aspect is a crop too). Accepted
    when the box leaves part of the frame out (:data:`MIN_CUT`) and explains the pixels far better than the
    stretch (:data:`BETTER`, :data:`MAX_GOOD`)."""
    from detectron2.data import transforms as T

    h, w = size
    H, W = base.shape[:2]
    stretched = fit(U, resize_image(base, h, w, "bilinear", "pil")).residual
    if stretched <= CROP_SEARCH_FROM:
        return None  # the whole image explains the pixels: a crop could not do far better
    tg = np.ascontiguousarray(U.reshape(3, h, w).mean(0), dtype=np.float32)
    if float(tg.std()) <= 1e-12 or min(h, w) < 8:
        return None  # a flat tensor correlates with nothing
    G = _grey(base)
    f_min = max(h / H, w / W)
    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    ref_h, ref_w = T.ResizeShortestEdge.get_output_shape(H, W, mn, mx) if mn > 0 else (H, W)
    boxes = [b for _, f, x, y in _coarse(tg, G, f_min, ref_h / H) for b in _fine(tg, G, f, x, y)]
    boxes = [b for b in sorted(boxes, reverse=True)[:FINE_KEEP] if b[1] >= h + MIN_CUT or b[2] >= w + MIN_CUT]
    if not boxes:
        return None  # the best boxes are the whole frame: the image stretched, explained by something else
    frames, kernel = _Frames(base), RESAMPLERS[0]
    _, rh, rw, bx, by = boxes[0]
    score = _Scorer(U, frames.by(kernel)(rh, rw)[by:by + h, bx:bx + w])
    r, rh, rw, x0, y0, img = _register_box(score, size, frames.by(kernel), boxes)

    def in_image_of(x0: int, y0: int, rh: int, rw: int) -> tuple[int, int, int, int]:
        """The box of the ``rh x rw`` frame in the image's pixels."""
        sx, sy = W / rw, H / rh
        return round(x0 * sx), round(y0 * sy), round((x0 + w) * sx), round((y0 + h) * sy)

    in_image = in_image_of(x0, y0, rh, rw)
    cut = "after_resize"
    # The refinements below only pay where the box already explains the pixels far better than the stretch
    # (a picture that is no crop keeps the stretch's geometry, and the box no more than matches it).
    promising = r < BETTER * stretched
    if promising and r > NOT_EXACT:  # a crop cut before the resize sits at a fractional position of any frame
        before = _before_resize(score, base, size, rh, rw, x0, y0)
        if before is not None and before[0] < r:
            r, in_image, img = before
            cut = "before_resize"
    if promising and r > UNEXPLAINED:  # a frame made by another resampler (a cv2 or torch resize, then the crop)
        at = [(0.0, rh, rw, x0, y0)]
        # An aliased frame fits only at its exact size, which the correlation cannot pin: the reference rule's
        # size is the likeliest, so it is tried too.
        if (ref_h, ref_w) != (rh, rw) and abs(ref_h / rh - 1) < FINE_SPAN:
            at.append((0.0, ref_h, ref_w, round(x0 * ref_w / rw), round(y0 * ref_h / rh)))
        tried = {k: _confirm(score, size, frames.by(k), at, tg) for k in RESAMPLERS[1:]}
        for other in sorted(tried, key=lambda k: tried[k][0])[:KERNELS_REFINED]:
            _, orh, orw, ox, oy, _ = tried[other]
            cand = _register_box(score, size, frames.by(other), [(0.0, orh, orw, ox, oy)], tg)
            if cand[0] < r:
                (r, rh, rw, x0, y0, img), kernel, cut = cand, other, "after_resize"
                in_image = in_image_of(x0, y0, rh, rw)
    final = fit(U, img)
    r = final.residual
    if np.any(final.slope <= 0):
        return None  # a box that fits only with a channel inverted is a coincidence of a distorted image, no crop
    if cut == "after_resize":
        whole = rh < h + MIN_CUT and rw < w + MIN_CUT
        where = _where_in(x0, y0, x0 + w, y0 + h, rw, rh)
    else:
        whole = in_image[2] - in_image[0] > W - MIN_CUT and in_image[3] - in_image[1] > H - MIN_CUT
        where = _where_in(*in_image, W, H)
    info = {"crop_residuals": {"stretched": round(stretched, 3), "crop": round(r, 3)},
            "crop": {"resized_to": [rh, rw], "box_xyxy": [x0, y0, x0 + w, y0 + h], "where": where,
                     "scale": round(rh / H, 4), "cut": cut, "box_in_image_xyxy": list(in_image),
                     "resampler": "/".join(kernel)}}
    if whole or not (r < BETTER * stretched and r < MAX_GOOD):
        return None
    finding, size_finding = _crop_findings(info, size, (H, W), (ref_h, ref_w), cfg)
    return CropMatch(np.ascontiguousarray(img), finding, size_finding, info)


def _crop_findings(info: dict, size: tuple[int, int], image: tuple[int, int], ref: tuple[int, int],
                   cfg: CfgNode) -> tuple[Finding, Optional[Finding]]:
    """The ``crop`` finding of a registered box (``info`` as :func:`find_crop` records it) and, when no correct
    resize gives the user's ``size``, the ``resize_size`` one. ``image``: the decode's ``(H, W)``; ``ref``: what
    the reference resize gives for it."""
    from detectron2.data import transforms as T

    h, w = size
    H, W = image
    ref_h, ref_w = ref
    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    c = info["crop"]
    (rh, rw), (x0, y0, _, _), in_image = c["resized_to"], c["box_xyxy"], c["box_in_image_xyxy"]
    cut, where, kernel = c["cut"], c["where"], tuple(c["resampler"].split("/"))
    r, stretched = info["crop_residuals"]["crop"], info["crop_residuals"]["stretched"]
    if cut == "after_resize":
        how = "" if kernel == ("pil", "bilinear") else f" with {resampler_code(*kernel)}"
        what = (f"{_crop_words(where)} (box x {x0}..{x0 + w}, y {y0}..{y0 + h}) of the image resized to {rh}x{rw}"
                f"{how} (scale {rh / H:.3f} of the {H}x{W} image)")
    else:
        bx0, by0, bx1, by1 = in_image
        what = (f"{_crop_words(where)} (box x {bx0}..{bx1}, y {by0}..{by1}) of the {H}x{W} image, cut before the "
                f"resize and resized to {h}x{w} (scale {h / (by1 - by0):.3f})")
    finding = Finding(
        "crop", 0.95,
        f"the {h}x{w} input is {what}: {r:.2f} grey levels RMS, vs {stretched:.2f} for the whole image stretched "
        f"to {h}x{w}; the model never sees the cut-off parts and boxes come back in the crop's frame",
        "no crop (CenterCrop / RandomCrop / a [top:bottom, left:right] slice): feed the whole image; "
        + reference_resize_code(cfg),
    )
    # The size is a mistake of its own only when no correct resize gives it: neither the reference resize of
    # the image it was cut from, nor the reference resize of the box (a crop first, then the right resize).
    bh, bw = in_image[3] - in_image[1], in_image[2] - in_image[0]
    box_h, box_w = T.ResizeShortestEdge.get_output_shape(bh, bw, mn, mx) if mn > 0 else (bh, bw)
    size_finding = None
    if abs(box_h - h) > 1 or abs(box_w - w) > 1:
        if cut == "before_resize":
            size_finding = Finding(
                "resize_size", 0.9,
                f"the {bh}x{bw} crop was resized to {h}x{w}; ResizeShortestEdge({mn}, {mx}) gives "
                f"{box_h}x{box_w} (HxW) for it", reference_resize_code(cfg))
        elif abs(rh - ref_h) > 1 and abs(rw - ref_w) > 1:
            size_finding = Finding(
                "resize_size", 0.9,
                f"the crop was cut from the image resized to {rh}x{rw}; ResizeShortestEdge({mn}, {mx}) gives "
                f"{ref_h}x{ref_w} (HxW) for the {H}x{W} image",
                reference_resize_code(cfg),
            )
    return finding, size_finding
