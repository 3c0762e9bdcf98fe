"""Pictures: predictions drawn by detectron2's ``Visualizer`` (boxes, masks, keypoints, semantic and panoptic
maps), the reference-vs-variant overlay, side-by-side composites and PNG bytes. All images are ``HxWx3`` uint8
RGB. Large images are downscaled for display (boxes, masks, keypoints and maps with them) so drawing cost and
memory stay bounded; ``display_scale`` says by how much.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OVERLAY_COLOURS",
    "display_image",
    "draw_result",
    "draw_overlay",
    "side_by_side",
    "png_bytes",
    "jpeg_bytes",
    "heatmap",
    "stretched",
    "MAX_DISPLAY_SIDE",
]

MAX_DISPLAY_SIDE = 1024

# matched / missed (reference only) / extra (variant only) / class flip: distinct and colour-blind friendly.
OVERLAY_COLOURS = {
    "matched": (0.0, 0.62, 0.45),
    "missed": (0.84, 0.37, 0.0),
    "extra": (0.0, 0.45, 0.70),
    "class_flip": (0.80, 0.47, 0.65),
}


@dataclass(frozen=True)
class Display:
    """An image prepared for drawing: ``image`` RGB uint8, ``scale`` = display size / original size."""

    image: np.ndarray
    scale: float


def display_image(rgb: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> Display:
    """Downscale ``rgb`` (PIL, antialiased) so its long side is at most ``max_side``; never upscales."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return Display(np.ascontiguousarray(rgb), 1.0)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return Display(np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.Resampling.BILINEAR)), s)


def _metadata(class_names, stuff_names=()):
    """Visualizer metadata; stuff classes get fixed colours (detectron2's colormap) so the same class has the
    same colour in the reference's and the variant's map."""
    from detectron2.data import Metadata
    from detectron2.utils.colormap import colormap

    meta = Metadata(thing_classes=list(class_names))
    if stuff_names:
        palette = (colormap(rgb=True, maximum=255)).astype(int).tolist()
        meta.set(stuff_classes=list(stuff_names),
                 stuff_colors=[palette[i % len(palette)] for i in range(len(stuff_names))])
    return meta


# detectron2's Visualizer builds a matplotlib figure per picture, and building it (axes and their clearing)
# costs about as much as drawing: a stage-page toggle draws two pictures of the same size. So each thread keeps
# its last Visualizer per (size, class names) and hands it back with the image swapped in and the previous
# drawing removed: the pixels are what a new Visualizer draws (tests/test_render.py).
_POOL = threading.local()


def _visualizer(image: np.ndarray, class_names=None, stuff_names=()):
    """A detectron2 ``Visualizer`` on ``image`` (``HxWx3`` uint8 RGB) with ``class_names`` (and ``stuff_names``)
    as its metadata."""
    from detectron2.utils.visualizer import Visualizer

    key = (image.shape, tuple(class_names) if class_names is not None else None, tuple(stuff_names))
    pool = getattr(_POOL, "visualizers", None)
    if pool is None:
        pool = _POOL.visualizers = {}
    vis = pool.get(key)
    if vis is None:
        if len(pool) >= 8:  # a few sizes at a time (two per image); each holds a figure of the image's size
            pool.pop(next(iter(pool)))
        meta = _metadata(class_names, stuff_names) if class_names is not None else None
        vis = Visualizer(image, metadata=meta, scale=1.0)
        # The view is the image (imshow's extent) and every box, mask outline and keypoint lies inside it, so
        # the data limits that matplotlib's add_patch recomputes for each patch never move it; a mask's outline
        # has hundreds of vertices and that bookkeeping was the largest cost of drawing masks. add_artist adds
        # the patch the same way, clip path included, without it.
        ax = vis.output.ax
        ax.set_autoscale_on(False)
        ax.add_patch = ax.add_artist
        pool[key] = vis
        return vis
    ax = vis.output.ax
    for artist in [*ax.patches, *ax.texts, *ax.lines, *ax.collections, *ax.images[1:]]:
        artist.remove()
    img = image if image.dtype == np.uint8 else np.asarray(image).clip(0, 255).astype(np.uint8)
    vis.img = vis.output.img = img
    ax.images[0].set_data(img)
    return vis


def _nearest(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` (``...xHxW``: masks or a label map) resampled to ``shape`` by nearest neighbour (labels stay labels)."""
    h, w = a.shape[-2:]
    if (h, w) == tuple(shape):
        return a
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h / shape[0], h - 1).astype(np.intp)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w / shape[1], w - 1).astype(np.intp)
    return a[..., rows[:, None], cols[None, :]]


def _for_display(a: np.ndarray, image_shape: tuple[int, ...], display_shape: tuple[int, ...], fill) -> np.ndarray:
    """A mask stack or label map returned for ``image_shape``'s frame or another one, placed at its pixel
    coordinates on the image (:func:`~d2debug.compare.at_coordinates`) and scaled to ``display_shape``."""
    from .compare import at_coordinates

    return _nearest(at_coordinates(a, image_shape, fill), display_shape)


def _instances_on(rgb, boxes, scores, classes, class_names, max_side, masks=None, keypoints=None, stuff_names=()):
    import torch
    from detectron2.structures import Boxes, Instances

    disp = display_image(rgb, max_side)
    inst = Instances(disp.image.shape[:2])
    inst.pred_boxes = Boxes(torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4) * disp.scale))
    inst.scores = torch.as_tensor(np.asarray(scores, np.float32))
    inst.pred_classes = torch.as_tensor(np.asarray(classes, np.int64))
    if masks is not None:
        inst.pred_masks = torch.as_tensor(_for_display(np.asarray(masks, bool), rgb.shape[:2], disp.image.shape[:2], False))
    if keypoints is not None:
        kp = np.array(keypoints, np.float32)
        kp = kp if kp.ndim == 3 else kp.reshape(len(inst), -1, 3) if len(inst) else np.zeros((0, 1, 3), np.float32)
        kp[:, :, :2] *= disp.scale
        inst.pred_keypoints = torch.as_tensor(kp)
    return _visualizer(disp.image, class_names, stuff_names), inst


def draw_result(rgb: np.ndarray, result, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """Draw everything a :class:`~d2debug.run.RunResult` holds with detectron2's Visualizer on ``rgb`` (its
    decoded image, ``HxWx3`` uint8 RGB): a panoptic map (``draw_panoptic_seg``), else a semantic map
    (``draw_sem_seg``) under the detections, else the detections with their masks and keypoints."""
    import torch

    vis, inst = _instances_on(rgb, result.boxes, result.scores, result.classes, result.class_names, max_side,
                              result.masks, result.keypoints, getattr(result, "stuff_names", ()))
    shown = vis.output.img.shape[:2]
    if getattr(result, "panoptic", None) is not None:
        seg, info = result.panoptic
        seg = torch.as_tensor(_for_display(seg, rgb.shape[:2], shown, 0))  # 0: no segment (void)
        return vis.draw_panoptic_seg(seg, info, area_threshold=0).get_image()
    if getattr(result, "sem_seg", None) is not None:
        sem = _for_display(result.sem_seg, rgb.shape[:2], shown, -1)
        vis.draw_sem_seg(torch.as_tensor(np.where(sem < 0, 255, sem)), area_threshold=0, alpha=0.6)
        if not len(inst):
            return vis.output.get_image()
    return vis.draw_instance_predictions(inst).get_image()


def draw_overlay(rgb: np.ndarray, reference, variant, agreement, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """One picture of both pipelines: matched, missed (reference only), extra (variant only) and class-flipped
    detections in the ``OVERLAY_COLOURS`` (with their masks when the model predicts masks), and for a per-pixel
    map the pixels whose class differs (in the ``missed`` colour). ``reference``/``variant`` are
    :class:`~d2debug.run.RunResult`-like; everything is drawn as each pipeline returned it."""
    disp = display_image(rgb, max_side)
    shown = disp.image.shape[:2]
    names = reference.class_names
    with_masks = getattr(reference, "masks", None) is not None and getattr(variant, "masks", None) is not None
    boxes, labels, colours, masks = [], [], [], []

    def add(run_result, k, label, kind):
        boxes.append(np.asarray(run_result.boxes[k], np.float32) * disp.scale)
        labels.append(label)
        colours.append(OVERLAY_COLOURS[kind])
        if with_masks:
            masks.append(_for_display(run_result.masks[k], rgb.shape[:2], shown, False))

    flips = dict(agreement.flip_pairs)
    for i, j in agreement.pairs:
        if i in flips:
            add(variant, j, f"flip {names[reference.classes[i]]}->{names[variant.classes[j]]}", "class_flip")
        else:
            add(variant, j, f"ok {names[variant.classes[j]]}", "matched")
    for i in agreement.missed_idx:
        add(reference, i, f"missed {names[reference.classes[i]]}", "missed")
    for j in agreement.extra_idx:
        add(variant, j, f"extra {names[variant.classes[j]]}", "extra")
    vis = _visualizer(disp.image)
    if getattr(reference, "sem_seg", None) is not None and getattr(variant, "sem_seg", None) is not None:
        from .compare import at_coordinates

        differs = reference.sem_seg != at_coordinates(variant.sem_seg, reference.sem_seg.shape, -1)
        if differs.any():
            vis.draw_binary_mask(_nearest(differs, shown).astype(np.uint8), color=OVERLAY_COLOURS["missed"],
                                 alpha=0.55)
    if not boxes:
        return vis.output.get_image()
    return vis.overlay_instances(boxes=np.stack(boxes), labels=labels, assigned_colors=colours,
                                 masks=masks or None).get_image()


def side_by_side(images, labels=None, gap: int = 8, label_height: int = 28) -> np.ndarray:
    """Place RGB images left to right on a white canvas, each with an optional caption above it."""
    from PIL import Image, ImageDraw

    h = max(im.shape[0] for im in images) + (label_height if labels else 0)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for k, im in enumerate(images):
        top = label_height if labels else 0
        canvas.paste(Image.fromarray(np.ascontiguousarray(im)), (x, top))
        if labels:
            draw.text((x + 4, 6), str(labels[k]), fill=(0, 0, 0))
        x += im.shape[1] + gap
    return np.asarray(canvas)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode RGB uint8 as PNG (fast compression: these are previews and downloads, not archives)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def heatmap(values: np.ndarray) -> tuple[np.ndarray, float]:
    """An ``HxW`` array of non-negative values as an ``HxWx3`` uint8 RGB heat map (OpenCV's inferno: black =
    0, white-hot = the largest value) and the value shown at full scale."""
    import cv2

    top = float(values.max()) if values.size else 0.0
    scaled = np.zeros(values.shape, np.uint8) if top <= 0 else np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)[:, :, ::-1]), top


def stretched(tensor, order: str) -> np.ndarray:
    """A ``3xHxW`` model input (any value range) as ``HxWx3`` uint8 RGB for display: channels read in ``order``
    (``BGR``/``RGB``, as the model reads them), min-max stretched to 0..255 so a 0..1 or normalized input is
    visible (its value range is what histograms are for)."""
    a = np.asarray(tensor, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    img = np.clip(a + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(img if order == "RGB" else img[:, :, ::-1])


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode RGB uint8 as JPEG for display (a page shows its pictures as these bytes: encoded once, not on
    every rerun, and at 90 rather than the quality 100 Streamlit gives an array)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
