"""The source pixels: what the user decoded when it is not the file's pixels as detectron2 reads them.

Two upload paths change pixels before any stage: an RGBA image composited on a colour instead of its alpha
dropped (what ``read_image`` does), and a JPEG re-encoding (a web form, an image service) before decoding.
Each candidate source is rendered at the user's size and fitted like the reference; one that explains the
pixels far better names the step, with the colour or the estimated JPEG quality.

Images are ``HxWx3`` uint8 in ``cfg.INPUT.FORMAT`` order; ``U`` is the user's tensor as ``3xN`` float64.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Sequence, TypeVar

import numpy as np

from ..findings import Finding, feed_code, reference_resize_code
from .fit import Fit, fit

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Source", "alpha_source", "recompressed_source", "reduced_source"]

BETTER = 0.6  # a source replaces the reference decode when its residual is at most this fraction of it
MIN_RESIDUAL = 0.3  # grey levels: below this the reference decode explains the pixels; nothing to look for
BACKGROUNDS = (255, 0, 114, 128, 192, 64)  # composite colours tried (white, black, letterbox grey, greys)
QUALITIES = (50, 60, 70, 75, 80, 85, 90, 95)


class Source(NamedTuple):
    """The decode that explains the user's pixels (``image``), its fit at the user's size, and the finding."""

    image: np.ndarray
    fit: Fit
    finding: Finding
    info: dict


_C = TypeVar("_C")


def _best(U: np.ndarray, render, candidates: Sequence[_C], make: Callable[[_C], np.ndarray]) -> tuple[_C, Fit, np.ndarray]:
    """``(candidate, its Fit, its decode)`` of the candidate decode that explains ``U`` best at the user's size
    (``candidates`` is not empty)."""
    best: Optional[tuple[_C, Fit, np.ndarray]] = None
    for c in candidates:
        img = make(c)
        f = fit(U, render(img))
        if best is None or f.residual < best[1].residual:
            best = (c, f, img)
    assert best is not None, "no candidates"
    return best


def _rgba(path: Path) -> Optional[np.ndarray]:
    """The file as ``HxWx4`` uint8 RGBA (EXIF applied) when it has an alpha channel, else ``None``."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
            return None
        return np.asarray((ImageOps.exif_transpose(im) or im).convert("RGBA"))


def alpha_source(U: np.ndarray, path: Path, fmt: str, render: Callable[[np.ndarray], np.ndarray],
                 reference_residual: float, cfg: CfgNode) -> Optional[Source]:
    """``alpha_channel`` when the file has alpha and the image composited on one colour explains ``U`` far
    better than alpha dropped; ``render`` puts a decode at the user's size the way the user resized."""
    if reference_residual < MIN_RESIDUAL:
        return None
    rgba = _rgba(path)
    if rgba is None:
        return None
    a = rgba[:, :, 3:4].astype(np.float32) / 255.0

    def composite(bg: int) -> np.ndarray:
        comp = np.clip(rgba[:, :, :3] * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)
        return comp if fmt == "RGB" else np.ascontiguousarray(comp[:, :, ::-1])

    bg, f, img = _best(U, render, BACKGROUNDS, composite)
    info = {"alpha_residuals": {"dropped": round(reference_residual, 3), f"on {bg}": round(f.residual, 3)}}
    if not f.residual < BETTER * reference_residual:
        return None
    translucent = float((a < 0.999).mean())
    return Source(img, f, Finding(
        "alpha_channel", 0.9,
        f"the RGBA image was composited on ({bg}, {bg}, {bg}) instead of its alpha dropped: {f.residual:.2f} grey "
        f"levels RMS vs {reference_residual:.2f} for read_image's decode; {translucent:.0%} of its pixels are "
        "translucent, and there the model sees the background colour mixed in",
        "decode like detectron2 (alpha dropped, not composited): image = read_image(path, format='BGR')  # or "
        "Image.open(path).convert('RGB'); then " + feed_code(cfg),
    ), info)


def _jpeg(img: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    from PIL import Image

    rgb = img if fmt == "RGB" else img[:, :, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return back if fmt == "RGB" else np.ascontiguousarray(back[:, :, ::-1])


def recompressed_source(U: np.ndarray, decode: np.ndarray, fmt: str, render: Callable[[np.ndarray], np.ndarray],
                        reference_residual: float, cfg: CfgNode) -> Optional[Source]:
    """``recompression`` when ``decode`` re-encoded as JPEG at some quality (then decoded) explains ``U`` far
    better than the file's own pixels: the input went through an upload or image service on the way."""
    if reference_residual < MIN_RESIDUAL:
        return None
    q, f, img = _best(U, render, QUALITIES, lambda quality: _jpeg(decode, fmt, quality))
    info = {"recompression_residuals": {"as_read": round(reference_residual, 3), f"jpeg q{q}": round(f.residual, 3)}}
    if not f.residual < BETTER * reference_residual:
        return None
    return Source(img, f, Finding(
        "recompression", float(np.clip(1 - f.residual / reference_residual, 0.5, 0.9)),
        f"the pixels match the image re-encoded as JPEG at quality ~{q}: {f.residual:.2f} grey levels RMS vs "
        f"{reference_residual:.2f} for the file as read; an upload path or image service re-compressed it before "
        "your code decoded it (block artefacts the model never saw in training)",
        "decode the original file, not a re-encoded copy (an upload widget's bytes, a resized thumbnail); "
        + feed_code(cfg),
    ), info)


REDUCTIONS = (2, 4, 8)  # the scales a JPEG decoder downsizes by in the DCT (cv2.IMREAD_REDUCED_*, PIL draft)


def _reduced_decodes(path: Path, fmt: str, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """The file decoded at 1/2, 1/4, 1/8 scale by cv2 (``IMREAD_REDUCED_COLOR_*``, EXIF applied) and by PIL's
    JPEG draft mode (EXIF applied after), in ``fmt`` order; only those with the aspect of ``shape`` (the decode
    the user's orientation gives)."""
    import cv2
    from PIL import Image, ImageOps

    flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    out = []
    H, W = shape[:2]
    for s in REDUCTIONS:
        bgr = cv2.imread(str(path), flags[s])
        if bgr is not None:
            out.append((f"cv2.IMREAD_REDUCED_COLOR_{s}", bgr if fmt == "BGR" else np.ascontiguousarray(bgr[:, :, ::-1])))
        with Image.open(path) as im:
            if im.format != "JPEG":
                continue
            im.draft("RGB", (max(1, im.width // s), max(1, im.height // s)))
            rgb = np.asarray((ImageOps.exif_transpose(im) or im).convert("RGB"))
        out.append((f"PIL draft('RGB', 1/{s})", rgb if fmt == "RGB" else np.ascontiguousarray(rgb[:, :, ::-1])))
    return [(name, img) for name, img in out
            if img.shape[0] < H and abs(np.log((img.shape[1] / img.shape[0]) / (W / H))) < 0.05]


def reduced_source(U: np.ndarray, path: Path, decode: np.ndarray, fmt: str, render: Callable[[np.ndarray], np.ndarray],
                   reference_residual: float, cfg: CfgNode) -> Optional[Source]:
    """``resize_interpolation`` when the file decoded at a reduced scale (the decoder's own DCT downscale), then
    resized to the user's size, explains ``U`` far better than the full decode: a resize done in two steps,
    the first by the decoder."""
    if reference_residual < MIN_RESIDUAL:
        return None
    candidates = _reduced_decodes(path, fmt, decode.shape)
    if not candidates:
        return None
    (name, _), f, img = _best(U, render, candidates, lambda c: c[1])
    info = {"reduced_residuals": {"full": round(reference_residual, 3), name: round(f.residual, 3)}}
    if not f.residual < BETTER * reference_residual:
        return None
    return Source(img, f, Finding(
        "resize_interpolation", float(np.clip(1 - f.residual / reference_residual, 0.5, 0.9)),
        f"the image was decoded at reduced size ({name}: {img.shape[0]}x{img.shape[1]} instead of "
        f"{decode.shape[0]}x{decode.shape[1]}) and then resized: {f.residual:.2f} grey levels RMS vs "
        f"{reference_residual:.2f} for the full decode; the decoder's downscale is a resampler of its own, and "
        "anything resized up from it is blurred",
        "decode at full size (cv2.IMREAD_COLOR, no draft()/thumbnail()), then resize once with detectron2's "
        "transform: " + reference_resize_code(cfg),
    ), info)
