"""Teaching text per stage: what Detectron2 does, why the variant hurts on the loaded model, and the correct
code for the user's own inference script, filled in with the loaded config's actual values (Markdown).

The code always follows the real Detectron2 contract: ``DefaultPredictor(cfg)(bgr_uint8_array)``, or
``model([{"image": CxHxW float32 0..255 in cfg.INPUT.FORMAT order, "height": H, "width": W}])``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional

from .pitfalls import PITFALLS, pitfall_stage
from .stages import D2_DEFAULT_PIXEL_MEAN, D2_DEFAULT_PIXEL_STD, IMAGENET_MEAN, IMAGENET_STD
from .text import fmt, pct

if TYPE_CHECKING:
    from detectron2.config import CfgNode

    from .arch import Arch

PITFALL_NAMES = {p.name: p for p in PITFALLS}

__all__ = ["Lesson", "lesson", "correct_code"]


@dataclass(frozen=True)
class Lesson:
    title: str
    what: str  # Markdown: what this stage does in Detectron2
    why: str  # Markdown: why the variant hurts on the loaded model (with the measured numbers when given)
    code: str  # Python: the correct code


def correct_code(cfg: CfgNode) -> str:
    """Both correct ways to run the loaded config on one image file, with its values filled in."""
    order = cfg.INPUT.FORMAT
    lo, hi = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    return f'''import torch
import detectron2.data.transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor

# cfg = the training run's dumped config.yaml (INPUT.FORMAT={order}, PIXEL_MEAN={fmt(cfg.MODEL.PIXEL_MEAN)},
#       PIXEL_STD={fmt(cfg.MODEL.PIXEL_STD)}, MIN/MAX_SIZE_TEST={lo}/{hi})

# 1) Simplest: DefaultPredictor takes a BGR HxWx3 uint8 array and does every step itself.
predictor = DefaultPredictor(cfg)
bgr = read_image(path, format="BGR")        # PIL decode + EXIF orientation (cv2.imread also works)
instances = predictor(bgr)["instances"]     # boxes in the original image's frame

# 2) Calling the model yourself: reproduce exactly what DefaultPredictor does.
model = predictor.model                     # already in eval() mode with the weights loaded
img = read_image(path, format="{order}")          # HxWx3 uint8 in cfg.INPUT.FORMAT order
h, w = img.shape[:2]
aug = T.ResizeShortestEdge([{lo}, {lo}], {hi})   # PIL bilinear, short side {lo}, long side <= {hi}
x = aug.get_transform(img).apply_image(img)
x = torch.as_tensor(x.astype("float32").transpose(2, 0, 1))   # CxHxW float32, 0..255: no /255, no Normalize
with torch.no_grad():
    instances = model([{{"image": x, "height": h, "width": w}}])[0]["instances"]
# The model subtracts PIXEL_MEAN and divides by PIXEL_STD itself; never pass a 4-D batch tensor.
'''


def _measured(view) -> str:
    if view is None:
        return ""
    a = view.agreement
    extra = "".join(f"; {label} {v:.3f}" for label, v in (("mask IoU of pairs", a.mask_iou),
                                                          ("keypoint distance (px)", a.keypoint_distance))
                    if v is not None)
    if a.map_only:
        return f"\n\n**Measured on this image:** semantic mIoU {a.sem_seg_miou:.3f} against the reference's map."
    seg = f"; semantic mIoU {a.sem_seg_miou:.3f}" if a.sem_seg_miou is not None else ""
    return (f"\n\n**Measured on this image:** agreement F1 {a.f1:.3f}; of {a.n_reference} reference detections "
            f"{a.matched} matched, {a.missed} missed, {a.class_flips} changed class; {a.extra} extra{extra}{seg}.")


class _Config(NamedTuple):
    """The values a lesson quotes, read once from the config."""

    cfg: CfgNode
    order: str
    other: str
    mean: list
    std: list
    lo: int
    hi: int
    names: set
    code: str
    arch: Optional[Arch] = None


def _channel_order(c: _Config) -> tuple[str, str, str, str]:
    colour = ""
    if {"red_disc", "blue_disc"} <= c.names:
        colour = (" This model tells `red_disc` from `blue_disc` by colour alone, so a swap turns one into the "
                  "other.")
    return (
        "Channel order",
        f"`DefaultPredictor` takes a **BGR** array (what `cv2.imread` returns) and flips it itself when "
        f"`cfg.INPUT.FORMAT == \"RGB\"`. Calling the model directly, the tensor must already be in "
        f"`cfg.INPUT.FORMAT` order. This model's FORMAT is **{c.order}**.",
        f"Fed in {c.other} order, the first and last channels trade places: every colour the model learned "
        f"is wrong (red looks blue). PIXEL_MEAN/STD are per channel, so a swap also shifts normalization "
        f"when they differ per channel (here {fmt(c.mean)}).{colour} Typical causes: a PIL/`np.asarray` RGB "
        f"array passed to `DefaultPredictor`, or `cv2.cvtColor(BGR2RGB)` before it.",
        c.code,
    )


def _resize(c: _Config) -> tuple[str, str, str, str]:
    demo = ""
    if {"green_square", "green_wide_rect"} <= c.names:
        demo += (" This model tells `green_square` from `green_wide_rect` by aspect ratio alone, so a stretch "
                 "turns one into the other.")
    if {"striped_disc", "grey_disc"} <= c.names:
        demo += (" It tells `striped_disc` from `grey_disc` by texture; the large `*_large.png` samples are "
                 "halftone-printed, so non-antialiased downscaling changes their texture.")
    return (
        "Resize policy and interpolation",
        f"`ResizeShortestEdge([{c.lo}, {c.lo}], {c.hi})`: the short side goes to {c.lo}, then the image shrinks so "
        f"the long side is at most {c.hi}; sizes round with `int(x + 0.5)`. detectron2's `ResizeTransform` "
        f"resizes uint8 images with **PIL bilinear**, which antialiases when downscaling. Boxes come back "
        f"in the original frame because height/width are passed.",
        "A fixed square stretches the aspect ratio (shapes told apart by aspect change class); no resize "
        "shows objects at a scale the model never saw; a different short side or no MAX_SIZE clamp shifts the "
        "scale; `cv2.resize` INTER_LINEAR and nearest neighbour do not antialias, so fine textures (halftone "
        "prints, stripes) alias into different patterns on large images." + demo,
        c.code,
    )


def _normalization(c: _Config) -> tuple[str, str, str, str]:
    lo = [round((0 - m) / s, 3) for m, s in zip(c.mean, c.std)]
    hi = [round((1 - m) / s, 3) for m, s in zip(c.mean, c.std)]
    return (
        "Normalization and value range",
        f"The model takes float32 **0..255** and normalizes itself in `preprocess_image`: "
        f"`(x - PIXEL_MEAN) / PIXEL_STD` with PIXEL_MEAN={fmt(c.mean)}, PIXEL_STD={fmt(c.std)} "
        f"({c.order} order, 0..255 units) from the training config. Nothing is normalized outside the model.",
        f"`ToTensor()` (0..1) makes the backbone see values between {lo} and {hi}: a nearly "
        f"constant image. A `T.Normalize(mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)})` before the "
        f"model normalizes **twice** (the model subtracts {fmt(c.mean)} again). A model-zoo base config brings "
        f"the defaults PIXEL_MEAN={fmt(D2_DEFAULT_PIXEL_MEAN)}, PIXEL_STD={fmt(D2_DEFAULT_PIXEL_STD)} instead "
        f"of the training values; deploy with the training run's dumped `config.yaml`.",
        c.code,
    )


def _decoding(c: _Config) -> tuple[str, str, str, str]:
    return (
        "Decoding and EXIF",
        "`detection_utils.read_image` decodes with PIL, **applies the EXIF orientation**, converts grayscale, "
        "palette and RGBA to 3 channels (alpha dropped), then gives BGR. `cv2.imread` also applies EXIF "
        "orientation; plain `PIL.Image.open` does not.",
        "Phone photos store pixels sideways with an orientation tag: ignore it and the model sees a rotated "
        "image whose boxes land in the wrong place. Different JPEG decoders (libjpeg-turbo in OpenCV vs "
        "Pillow's) differ by a grey level here and there, usually harmless. Pick the `exif`, `gray` and "
        "`rgba` sample images to see each case.",
        c.code.replace("# PIL decode + EXIF orientation (cv2.imread also works)",
                       "# PIL decode + EXIF orientation; with plain PIL use ImageOps.exif_transpose"),
    )


def _output(c: _Config) -> tuple[str, str, str, str]:
    a = c.arch
    if a is None or a.score_key:
        score_key, nms_key = (a.score_key, a.nms_key) if a is not None else ("MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                                                                             "MODEL.ROI_HEADS.NMS_THRESH_TEST")
        score, nms = (a.score_thresh, a.nms_thresh) if a is not None else (
            float(c.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), float(c.cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST))
        thresholds = (f"Test-time thresholds come from the config: {score_key}={score:g}, {nms_key}={nms:g}, "
                      f"DETECTIONS_PER_IMAGE={int(c.cfg.TEST.DETECTIONS_PER_IMAGE)}.")
    else:
        thresholds = f"{a.name} has no test thresholds: every pixel gets the class of its highest logit."
    return (
        "Output frame and thresholds",
        "Passing the ORIGINAL `height`/`width` makes detectron2's post-processing (`detector_postprocess`, "
        "`sem_seg_postprocess`) scale boxes, masks, keypoints and class maps back to the original image. "
        + thresholds,
        "Without height/width the boxes are in the resized frame (here scaled by the resize factor) and land "
        "misplaced on the original image. A lower score threshold adds low-confidence detections, a higher "
        "one drops true ones; a looser NMS keeps duplicates. Deploy with the thresholds you evaluated with.",
        c.code,
    )


def _device(c: _Config) -> tuple[str, str, str, str]:
    return (
        "Device and precision",
        "`DefaultPredictor` runs on `cfg.MODEL.DEVICE` in fp32. The reference here runs on the GPU when one "
        "is present, else on the CPU. fp16 (`torch.autocast`) rounds activations to 11 significant bits.",
        "CPU vs GPU kernels and TF32 on Ampere GPUs change results slightly; fp16 can move borderline scores "
        "across the threshold and change NMS decisions. Measure before deploying a different precision.",
        c.code + "\n# Reduced precision, if you must:  with torch.autocast('cuda', dtype=torch.float16): ...\n",
    )


# Stage id (the pages' :data:`d2debug.pitfalls.STAGES`) -> its lesson: (title, what, why, code).
_LESSONS = {
    "channel_order": _channel_order,
    "resize": _resize,
    "normalization": _normalization,
    "decoding": _decoding,
    "output": _output,
    "device": _device,
}


# Mask AP lost beyond box AP lost (a fraction) from which a lesson says masks suffer more: half a point, what a
# 48-image validation set resolves.
MASKS_MORE = 0.005


def masks_note(stage: str, audit: Optional[dict]) -> str:
    """From an audit ``summary.json`` with mask AP: each pitfall of ``stage`` that costs masks at least
    :data:`MASKS_MORE` more AP than boxes, with both numbers (``""`` when none does)."""
    if not audit:
        return ""
    lines = []
    for r in audit.get("rows", []):
        if (r.get("name") in PITFALL_NAMES and pitfall_stage(PITFALL_NAMES[r["name"]]) == stage
                and r.get("dmask_AP") is not None and r.get("dAP") is not None
                and r["dmask_AP"] <= r["dAP"] - MASKS_MORE):
            iou = f", the masks of the detections it keeps overlap the reference's by {r['mask_iou']:.3f} IoU" \
                if r.get("mask_iou") is not None and r["mask_iou"] < 1.0 else ""
            lines.append(f"{r['label']} costs {pct(r['dAP'], True)} box AP but {pct(r['dmask_AP'], True)} mask AP{iou}")
    if not lines:
        return ""
    n = audit.get("dataset", {}).get("finished")
    return (f"\n\n**Masks suffer more** (measured on {n} validation images of this model): " + "; ".join(lines)
            + ". A mask is predicted on a 28x28 grid inside its box and pasted back into the image, and scored "
              "per class and per pixel: a box that moves takes its mask's edges with it, a class that flips "
              "loses its mask too.")


def lesson(stage: str, cfg: CfgNode, view=None, class_names: Optional[list[str]] = None, arch=None,
           audit: Optional[dict] = None) -> Lesson:
    """The lesson for ``stage`` (a :data:`d2debug.pitfalls.STAGES` id) on ``cfg``; ``view`` (a
    :class:`~d2debug.session.ComparisonView`) adds the measured numbers; ``arch`` (an
    :class:`~d2debug.arch.Arch`) names the model's own threshold keys; ``audit`` (this model's audit
    ``summary.json``, e.g. the demo's) adds where a pitfall of the stage hurts masks more than boxes."""
    order = cfg.INPUT.FORMAT
    c = _Config(cfg, order, "BGR" if order == "RGB" else "RGB", [float(v) for v in cfg.MODEL.PIXEL_MEAN],
                [float(v) for v in cfg.MODEL.PIXEL_STD], int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST),
                set(class_names or []), correct_code(cfg), arch)
    title, what, why, code = _LESSONS[stage](c)
    return Lesson(title, what, why + masks_note(stage, audit) + _measured(view), code)
