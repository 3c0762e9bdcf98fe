"""The synthetic detection dataset of the demo model, designed so that every pitfall bites.

Every class is told apart by exactly one property that a preprocessing mistake destroys:

- ``red_disc`` vs ``blue_disc``: colour only, so a swapped channel order flips them;
- ``green_square`` vs ``green_wide_rect`` (2:1): aspect ratio only, so a stretching square resize flips them;
- ``striped_disc`` vs ``grey_disc``: texture only. In large images the grey disc and the background are
  printed as an ordered-dither halftone whose 1-2 px pattern averages to a flat tone under PIL's antialiased
  downscale (the reference) but aliases into moire stripes under nearest or unantialiased resizing.

Images come in several aspect ratios (1:2 to 2:1) and sizes, some far above ``MAX_SIZE_TEST``, so resize policy
matters. Objects never overlap, so every label is fully visible. Everything is seeded.

Images are produced as ``HxWx3`` uint8 arrays in RGB order; boxes are ``XYXY_ABS`` floats in the displayed frame.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CLASS_NAMES",
    "Scene",
    "render_scene",
    "random_scene",
    "write_split",
    "write_sample_split",
    "outline",
]

CLASS_NAMES: tuple[str, ...] = (
    "red_disc",
    "blue_disc",
    "green_square",
    "green_wide_rect",
    "striped_disc",
    "grey_disc",
)

# Object sizes are drawn relative to the short side of the image so that after the reference resize to a
# short side of ~320 px they span roughly 22-110 px, inside what the model was trained on.
_REL_SIZE = (0.07, 0.34)

# 4x4 Bayer matrix: ordered-dither thresholds in 0..255 for the halftone print of large images.
_BAYER4 = (np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) + 0.5) * 16.0


@dataclass(frozen=True)
class Obj:
    """One object: class index and its box ``(x0, y0, x1, y1)`` in pixels of the displayed image."""

    cls: int
    box: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    stripe_period: float


@dataclass(frozen=True)
class Scene:
    """A full description of one image: size, background recipe, objects and whether it is halftone-printed."""

    width: int
    height: int
    seed: int
    halftone: bool
    objects: tuple[Obj, ...]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A low-saturation background: gradient, blurred noise, or soft texture. ``HxWx3`` float32 in 0..255."""
    kind = rng.integers(0, 3)
    base = rng.uniform(70, 190, size=3)
    tint = rng.uniform(-25, 25, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        ang = rng.uniform(0, 2 * math.pi)
        ramp = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)[..., None]
        bg = base + tint * 2 * ramp
    elif kind == 1:
        # Low-frequency noise: a coarse random grid upsampled with bicubic.
        gh, gw = max(2, h // 64), max(2, w // 64)
        coarse = rng.uniform(-35, 35, size=(gh, gw)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC))
        bg = base + smooth[..., None] + tint * 0.5
    else:
        # Soft diagonal weave, period well above the resize factor so it survives any downscale.
        period = rng.uniform(0.05, 0.12) * min(h, w)
        wave = np.sin((xx + yy) * 2 * math.pi / period) * np.sin((xx - yy) * 2 * math.pi / period)
        bg = base + 18 * wave[..., None] + tint * 0.5
    return np.clip(bg, 0, 255).astype(np.float32)


def _colour_for(rng: np.random.Generator, cls: int) -> tuple[int, int, int]:
    """RGB colour of a class; jittered but never ambiguous between classes."""
    name = CLASS_NAMES[cls]
    if name == "red_disc":
        return (int(rng.integers(190, 256)), int(rng.integers(0, 50)), int(rng.integers(0, 50)))
    if name == "blue_disc":
        return (int(rng.integers(0, 50)), int(rng.integers(0, 50)), int(rng.integers(190, 256)))
    if name in ("green_square", "green_wide_rect"):
        return (int(rng.integers(0, 50)), int(rng.integers(150, 230)), int(rng.integers(0, 50)))
    if name == "grey_disc":
        g = int(rng.integers(110, 150))
        return (g, g, g)
    return (0, 0, 0)


def _box_size(rng: np.random.Generator, cls: int, short: int) -> tuple[float, float]:
    """(width, height) of an object in pixels."""
    s = rng.uniform(*_REL_SIZE) * short
    if CLASS_NAMES[cls] == "green_wide_rect":
        return 2.0 * s, s
    return s, s


def random_scene(seed: int, width: int, height: int, halftone: bool | None = None, classes=None) -> Scene:
    """Draw a scene of 2-6 non-overlapping objects. ``classes`` restricts the classes used (e.g. for grayscale)."""
    rng = np.random.default_rng(seed)
    short = min(width, height)
    if halftone is None:
        halftone = short >= 1000
    allowed = list(range(len(CLASS_NAMES))) if classes is None else list(classes)
    n = int(rng.integers(2, 7))
    objs: list[Obj] = []
    for _ in range(n * 30):
        if len(objs) == n:
            break
        cls = int(rng.choice(allowed))
        bw, bh = _box_size(rng, cls, short)
        if bw >= width - 4 or bh >= height - 4:
            continue
        x0 = rng.uniform(2, width - bw - 2)
        y0 = rng.uniform(2, height - bh - 2)
        box = (float(x0), float(y0), float(x0 + bw), float(y0 + bh))
        margin = 0.04 * short
        if any(
            box[0] < o.box[2] + margin and o.box[0] < box[2] + margin and box[1] < o.box[3] + margin
            and o.box[1] < box[3] + margin
            for o in objs
        ):
            continue
        # Stripe period chosen at the model's scale (short side ~320): 7-11 px there, scaled to native pixels.
        period = float(rng.uniform(7, 11) * short / 320.0)
        objs.append(Obj(cls, box, _colour_for(rng, cls), period))
    return Scene(width, height, seed, bool(halftone), tuple(objs))


def _halftone(tone: np.ndarray) -> np.ndarray:
    """Ordered-dither each channel of ``HxWxC`` float 0..255 to {0, 255} with a 4x4 Bayer matrix."""
    h, w = tone.shape[:2]
    thr = np.tile(_BAYER4, (h // 4 + 1, w // 4 + 1))[:h, :w]
    return np.where(tone > thr[..., None], 255.0, 0.0).astype(np.float32)


def render_scene(scene: Scene) -> np.ndarray:
    """Render a scene. Returns ``HxWx3`` uint8, RGB order, in the displayed orientation."""
    rng = np.random.default_rng(scene.seed + 7919)
    h, w = scene.height, scene.width
    img = _background(rng, h, w)
    if scene.halftone:
        img = _halftone(img)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        ix0, iy0, ix1, iy1 = int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))
        sub_y, sub_x = yy[iy0:iy1, ix0:ix1] + 0.5, xx[iy0:iy1, ix0:ix1] + 0.5
        name = CLASS_NAMES[o.cls]
        if name in ("green_square", "green_wide_rect"):
            mask = (sub_x >= x0) & (sub_x < x1) & (sub_y >= y0) & (sub_y < y1)
        else:
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
            mask = (sub_x - cx) ** 2 + (sub_y - cy) ** 2 <= r * r
        region = img[iy0:iy1, ix0:ix1]
        if name == "striped_disc":
            on = np.floor((sub_y - y0) / (o.stripe_period / 2)).astype(np.int64) % 2 == 0
            fill = np.where(on[..., None], 235.0, 20.0) * np.ones(3, np.float32)
        elif name == "grey_disc" and scene.halftone:
            fill = _halftone(np.full(mask.shape + (3,), float(o.colour[0]), np.float32))
            fill = np.roll(fill, (iy0 % 4, ix0 % 4), axis=(0, 1))
        else:
            fill = np.broadcast_to(np.array(o.colour, np.float32), region.shape)
        region[mask] = fill[mask]
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Splits on disk (COCO json)


def _coco(images: list[dict], anns: list[dict]) -> dict:
    return {
        "info": {"description": "d2debug demo dataset (synthetic, seeded)"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)],
    }


# Vertices of a disc's outline polygon: at the demo's object sizes (22-110 px after the reference resize) 48
# vertices keep the polygon within 0.1 px of the circle, far below what mask AP can tell.
_DISC_VERTICES = 48


def outline(obj: Obj) -> list[float]:
    """The object's outline as one COCO polygon ``[x0, y0, x1, y1, ...]`` in pixels of the displayed image: the
    rectangle's four corners, or a disc's circle (what :func:`render_scene` paints)."""
    x0, y0, x1, y1 = obj.box
    if CLASS_NAMES[obj.cls] in ("green_square", "green_wide_rect"):
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    else:
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a))
               for a in np.linspace(0, 2 * math.pi, _DISC_VERTICES, endpoint=False)]
    return [round(float(v), 2) for p in pts for v in p]


def _ann_entries(scene: Scene, image_id: int, start_id: int) -> list[dict]:
    out = []
    for k, o in enumerate(scene.objects):
        x0, y0, x1, y1 = o.box
        is_disc = CLASS_NAMES[o.cls] not in ("green_square", "green_wide_rect")
        area = math.pi * ((x1 - x0) / 2) ** 2 if is_disc else (x1 - x0) * (y1 - y0)
        out.append(
            {
                "id": start_id + k,
                "image_id": image_id,
                "category_id": o.cls + 1,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "segmentation": [outline(o)],
                "area": round(area, 2),
                "iscrowd": 0,
            }
        )
    return out


def _random_size(rng: np.random.Generator, large: bool) -> tuple[int, int]:
    """(width, height) with an aspect ratio between 1:2 and 2:1."""
    aspect = float(rng.choice([0.5, 0.6, 0.75, 1.0, 1.33, 1.5, 1.78, 2.0]))
    short = int(rng.integers(1100, 1700)) if large else int(rng.integers(240, 720))
    if aspect >= 1:
        return int(short * aspect), short
    return short, int(short / aspect)


def _save(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Halftone prints go to PNG (JPEG cannot compress a 1 px dither); the rest to JPEG with 4:4:4 chroma,
    which keeps colour edges intact."""
    if path.suffix == ".png":
        Image.fromarray(rgb).save(path, compress_level=6)
    else:
        Image.fromarray(rgb).save(path, quality=quality, subsampling=0)


def write_split(out_dir: Path, n: int, seed: int, large_fraction: float = 0.12, quality: int = 95) -> Path:
    """Write ``n`` generated JPEG images and ``annotations.json`` (COCO) to ``out_dir``; return the json path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images: list[dict] = []
    anns: list[dict] = []
    for i in range(n):
        w, h = _random_size(rng, large=rng.uniform() < large_fraction)
        scene = random_scene(int(rng.integers(0, 2**31)), w, h)
        name = f"images/{i:05d}.png" if scene.halftone else f"images/{i:05d}.jpg"
        _save(out_dir / name, render_scene(scene), quality)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        anns += _ann_entries(scene, i + 1, len(anns) + 1)
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(_coco(images, anns)))
    return path


# EXIF orientation -> the PIL transpose that turns the displayed image into the stored pixels (the inverse of
# what ImageOps.exif_transpose applies when reading).
_STORE_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def write_sample_split(out_dir: Path, seed: int = 20261127) -> Path:
    """Write the shipped validation split: 48 images that exercise every pitfall, and ``annotations.json``.

    Besides ordinary JPEGs of several sizes and aspect ratios it holds: large halftone-printed images (resize
    policy and interpolation), JPEGs stored rotated with an EXIF orientation tag (3, 5, 6, 8; boxes are in the
    displayed orientation), a grayscale JPEG and an RGBA PNG.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images: list[dict] = []
    anns: list[dict] = []

    def add(name: str, scene: Scene, save) -> None:
        image_id = len(images) + 1
        save(out_dir / "images" / name, render_scene(scene))
        images.append({"id": image_id, "file_name": f"images/{name}", "width": scene.width, "height": scene.height})
        anns.extend(_ann_entries(scene, image_id, len(anns) + 1))


    plan = ["normal"] * 34 + ["large"] * 8 + ["exif3", "exif5", "exif6", "exif8", "gray", "rgba"]
    for i, kind in enumerate(plan):
        s = int(rng.integers(0, 2**31))
        if kind == "normal":
            w, h = _random_size(rng, large=False)
            add(f"val_{i:03d}.jpg", random_scene(s, w, h), _save)
        elif kind == "large":
            w, h = _random_size(rng, large=True)
            add(f"val_{i:03d}_large.png", random_scene(s, w, h, halftone=True), _save)
        elif kind.startswith("exif"):
            orientation = int(kind[4:])
            w, h = (480, 640) if orientation in (5, 6, 8) else (640, 480)

            def save_exif(path: Path, rgb: np.ndarray, o=orientation) -> None:
                exif = Image.Exif()
                exif[0x0112] = o
                stored = Image.fromarray(rgb).transpose(_STORE_FOR_ORIENTATION[o])
                stored.save(path, quality=95, subsampling=0, exif=exif.tobytes())

            add(f"val_{i:03d}_exif{orientation}.jpg", random_scene(s, w, h), save_exif)
        elif kind == "gray":
            # Only classes that do not depend on colour make sense in a grayscale photo.
            scene = random_scene(s, 600, 450, classes=[4, 5])

            def save_gray(path: Path, rgb: np.ndarray) -> None:
                Image.fromarray(rgb).convert("L").save(path, quality=95)

            add(f"val_{i:03d}_gray.jpg", scene, save_gray)
        else:

            def save_rgba(path: Path, rgb: np.ndarray) -> None:
                alpha = np.full(rgb.shape[:2], 255, np.uint8)
                alpha[: rgb.shape[0] // 6] = 96  # a translucent band: every decoder drops alpha the same way
                Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)

            add(f"val_{i:03d}_rgba.png", random_scene(s, 560, 420), save_rgba)
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(_coco(images, anns), indent=1))
    return path
