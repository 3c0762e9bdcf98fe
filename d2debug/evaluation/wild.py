"""Pipelines from the wild: inference preprocessing as people write it, for testing the Pipeline Doctor
independently of its code.

The third suite beside :mod:`.suite` (generated) and :mod:`.handwritten`. Its cases come from the places a
script goes wrong that the other two touch lightly or not at all: crops anywhere (corners, offsets, seeded
random crops, a crop of the original, ``FiveCrop``), padding in every border mode of OpenCV, numpy, torchvision
and ``F.pad``, decoders that scale or do not apply EXIF (``torchvision.io``, ``cv2.IMREAD_REDUCED_*``, PIL's
draft mode and ``thumbnail``), size rules copied from training or from other libraries, tensors of the wrong
layout or dtype, photo "enhancements" the vocabulary has no id for (``unexplained``), pipelines quoted from
public detectron2 issues, and correct pipelines written in other ways. None of them uses anything from the
d2debug package.

The demo model's contract (what ``DefaultPredictor`` feeds it): ``read_image(path, "BGR")`` (PIL decode, EXIF
applied) flipped to RGB (``INPUT.FORMAT`` RGB), ``ResizeShortestEdge([320, 320], 533)`` (PIL bilinear on
uint8), then a ``3xHxW`` float32 RGB tensor with values 0..255 in ``{"image": x, "height": H_orig, "width":
W_orig}``; the model normalizes with its own PIXEL_MEAN/STD (127.5/127.5). Its training sizes are
``MIN_SIZE_TRAIN (288, 320, 352)``, ``MAX_SIZE_TRAIN 587``.

``Case.mistakes`` lists the finding ids that are wrong, the most damaging first, ``()`` for a pipeline that
matches the contract (decoders may differ by a grey level). The order was MEASURED, not guessed: for every
case with two or more mistakes, ``Case.alone`` holds one function per mistake, the correct pipeline with only
that mistake; the model ran on each and on the reference input (``measure_alone`` in :mod:`.suite`), and the
mistakes are listed by that agreement, lowest first (``Case.tied``: how many lead within 0.02 of each other).
The numbers are in a comment on each such case. An input the model cannot run at all (an ``HxWx3`` tensor, a
float64 one) scores 0; float16, bfloat16, int64 and uint8 tensors run (the model's normalization promotes them
to float32, and 0..255 integers are exact in all of them), so a dtype mistake on its own costs nothing here.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from d2debug.evaluation.scripts import IMAGENET_MEAN as _IMAGENET_MEAN
from d2debug.evaluation.scripts import IMAGENET_STD as _IMAGENET_STD
from d2debug.evaluation.scripts import MAX_SIZE_TEST, MIN_SIZE_TEST
from d2debug.evaluation.scripts import exif_transpose as _exif_transpose
from d2debug.evaluation.scripts import imread as _imread

__all__ = ["Case", "CASES", "MIN_SIZE_TEST", "MAX_SIZE_TEST", "MIN_SIZE_TRAIN", "MAX_SIZE_TRAIN"]

MIN_SIZE_TRAIN = (288, 320, 352)
MAX_SIZE_TRAIN = 587


@dataclass(frozen=True)
class Case:
    """A pipeline from the wild: ``fn(path)`` returns what the script feeds the model for the image at
    ``path``; ``mistakes``: the finding ids that are wrong, most damaging first (``()`` = matches the
    contract), the first ``tied`` of them equally damaging; ``image``: the sample image (a file name in
    sample_data/images/) it runs on; ``alone``: for two or more mistakes, per mistake the correct pipeline with
    only that mistake (what the damage order was measured on)."""

    name: str
    family: str
    fn: Callable[[str], Any]
    mistakes: tuple[str, ...]
    image: str
    note: str
    tied: int = 1
    alone: dict[str, Callable[[str], Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Small helpers a script would have (reading, detectron2's own test resize, the hand-over).
# --------------------------------------------------------------------------------------------------------------

def _read_rgb(path: str) -> np.ndarray:
    """detectron2's ``read_image(path, "RGB")``: PIL decode, EXIF applied, ``HxWx3`` uint8 RGB."""
    from detectron2.data.detection_utils import read_image

    return read_image(path, format="RGB")


def _d2_resize(img: np.ndarray, short: int = MIN_SIZE_TEST, max_size: int = MAX_SIZE_TEST) -> np.ndarray:
    """detectron2's ``ResizeShortestEdge([short, short], max_size)`` (PIL bilinear on uint8), ``HxWxC`` in and out."""
    from detectron2.data import transforms as T

    return T.ResizeShortestEdge([short, short], max_size).get_transform(img).apply_image(img)


def _feed(img: np.ndarray, h: int, w: int) -> dict:
    """An ``HxWx3`` image as the model's input dict: ``3xHxW`` float32, values as they are, the given size."""
    x = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32"))
    return {"image": x, "height": h, "width": w}


# --------------------------------------------------------------------------------------------------------------
# The ``alone`` variants: the reference pipeline with one step replaced.
# --------------------------------------------------------------------------------------------------------------

def _correct(path: str, *, decode: Optional[Callable] = None, resize: Optional[Callable] = None,
             after: Optional[Callable] = None, tensor: Optional[Callable] = None,
             feed: Optional[Callable] = None) -> Any:
    """DefaultPredictor's preprocessing written out (``read_image`` RGB, ``ResizeShortestEdge(320, 533)``,
    float32 ``3xHxW`` 0..255, the decoded image's height/width) with hooks replacing one step:
    ``decode(path)`` -> ``HxWx3`` uint8 RGB; ``resize(img)``; ``after(img)`` on the resized ``HxWx3`` image;
    ``tensor(x)`` on the ``3xHxW`` float32 tensor; ``feed(x, h, w)``: what is handed to the model."""
    rgb = decode(path) if decode is not None else _read_rgb(path)
    h, w = rgb.shape[:2]
    out = resize(rgb) if resize is not None else _d2_resize(rgb)
    if after is not None:
        out = after(out)
    x = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)).astype(np.float32))
    if tensor is not None:
        x = tensor(x)
    return feed(x, h, w) if feed is not None else {"image": x, "height": h, "width": w}


def _bgr(img: np.ndarray) -> np.ndarray:
    return img[:, :, ::-1]


def _div255(x: torch.Tensor) -> torch.Tensor:
    return x / 255.0


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(_IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(_IMAGENET_STD).view(3, 1, 1)
    return (x / 255.0 - mean) / std


def _dtype(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.to(dtype)


def _hwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(1, 2, 0).contiguous()


def _cv2_rule(interpolation: int) -> Callable[[np.ndarray], np.ndarray]:
    """cv2.resize with ``interpolation`` to the size detectron2's test resize gives."""
    def resize(img: np.ndarray) -> np.ndarray:
        from detectron2.data import transforms as T

        newh, neww = T.ResizeShortestEdge.get_output_shape(img.shape[0], img.shape[1], MIN_SIZE_TEST, MAX_SIZE_TEST)
        return cv2.resize(img, (neww, newh), interpolation=interpolation)
    return resize


def _pil_to(size: Callable[[int, int], tuple[int, int]], resample=Image.Resampling.BILINEAR,
            reducing_gap: Optional[float] = None) -> Callable[[np.ndarray], np.ndarray]:
    """PIL resize to ``size(h, w)`` -> ``(newh, neww)`` with ``resample``."""
    def resize(img: np.ndarray) -> np.ndarray:
        newh, neww = size(img.shape[0], img.shape[1])
        return np.asarray(Image.fromarray(img).resize((neww, newh), resample, reducing_gap=reducing_gap))
    return resize


def _reference_size(h: int, w: int) -> tuple[int, int]:
    from detectron2.data import transforms as T

    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    return newh, neww


def _longest(side: int) -> Callable[[int, int], tuple[int, int]]:
    """The long side to ``side``, the aspect kept (albumentations' rounding)."""
    return lambda h, w: (int(round(h * side / max(h, w))), int(round(w * side / max(h, w))))


def _thumbnail_size(box: tuple[int, int]) -> Callable[[int, int], tuple[int, int]]:
    """The size PIL's ``thumbnail(box)`` gives an ``h x w`` image."""
    def size(h: int, w: int) -> tuple[int, int]:
        im = Image.new("L", (w, h))
        im.thumbnail(box)
        return im.height, im.width
    return size


# --------------------------------------------------------------------------------------------------------------
# Correct pipelines, each written differently.
# --------------------------------------------------------------------------------------------------------------

def correct_tvio_read_image(path: str) -> dict:
    """torchvision.io.read_image (mode RGB: 3xHxW uint8) on a plain JPEG: it applies no EXIF, and this photo has
    none; detectron2's resize on the HWC numpy view, float32 0..255."""
    from detectron2.data import transforms as T
    from torchvision.io import ImageReadMode, read_image

    img = read_image(path, mode=ImageReadMode.RGB)
    hwc = img.permute(1, 2, 0).numpy()
    out = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(hwc).apply_image(hwc)
    return {"image": torch.from_numpy(out.copy()).permute(2, 0, 1).float(), "height": img.shape[1],
            "width": img.shape[2]}


def correct_decode_image_png(path: str) -> dict:
    """read_file + decode_image(mode RGB) on a PNG, detectron2's ResizeTransform to get_output_shape's size."""
    from detectron2.data import transforms as T
    from torchvision.io import ImageReadMode, decode_image, read_file

    img = decode_image(read_file(path), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    out = T.ResizeTransform(h, w, newh, neww, Image.Resampling.BILINEAR).apply_image(img)
    return {"image": torch.tensor(out.transpose(2, 0, 1), dtype=torch.float32), "height": h, "width": w}


def correct_decode_jpeg_square(path: str) -> dict:
    """decode_jpeg (RGB uint8 3xHxW) on a square photo, PIL bilinear to 320x320 by hand."""
    from torchvision.io import decode_jpeg, read_file

    img = decode_jpeg(read_file(path)).permute(1, 2, 0).numpy()
    h, w = img.shape[:2]
    assert h == w  # a square photo: the short side is both
    out = np.asarray(Image.fromarray(img).resize((MIN_SIZE_TEST, MIN_SIZE_TEST), Image.Resampling.BILINEAR))
    return {"image": torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1), "height": h, "width": w}


def correct_tvio_exif_applied(path: str) -> dict:
    """read_image(..., apply_exif_orientation=True) on an EXIF-transposed phone photo: upright, as read_image."""
    from torchvision.io import ImageReadMode, read_image

    img = read_image(path, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
    return _feed(_d2_resize(hwc), hwc.shape[0], hwc.shape[1])


def correct_cv2_unchanged_rgba(path: str) -> dict:
    """cv2.IMREAD_UNCHANGED on an RGBA PNG (HxWx4 BGRA), alpha dropped with COLOR_BGRA2RGB, as PIL's
    convert("RGB") does in read_image."""
    bgra = _imread(path, cv2.IMREAD_UNCHANGED)
    rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def correct_cv2_unchanged_gray(path: str) -> dict:
    """cv2.IMREAD_UNCHANGED on a greyscale JPEG (HxW uint8), stacked to 3 identical channels."""
    gray = _imread(path, cv2.IMREAD_UNCHANGED)
    rgb = np.stack([gray, gray, gray], axis=-1)
    return _feed(_d2_resize(rgb), gray.shape[0], gray.shape[1])


def correct_channels_last_memory(path: str) -> dict:
    """Correct values in a channels_last memory-format tensor (still 3xHxW; only the strides differ)."""
    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    x = x[None].contiguous(memory_format=torch.channels_last)[0]
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def correct_list_of_dicts(path: str) -> list:
    """Batch inference done right: a list of input dicts built in a loop over the paths."""
    inputs = []
    for p in [path]:
        img = _read_rgb(p)
        inputs.append(_feed(_d2_resize(img), img.shape[0], img.shape[1]))
    return inputs


def correct_imdecode_upload(path: str) -> dict:
    """A web handler: the upload's bytes, np.frombuffer + cv2.imdecode (BGR), cvtColor to RGB, detectron2's resize."""
    with open(path, "rb") as f:
        data = f.read()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cv2.imdecode cannot decode it")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def correct_pil_from_cv2(path: str) -> dict:
    """cv2.imread + cvtColor, then Image.fromarray(...).resize(BILINEAR) to the size worked out by hand."""
    rgb = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = MIN_SIZE_TEST / min(h, w)
    newh, neww = (MIN_SIZE_TEST, w * s) if h < w else (h * s, MIN_SIZE_TEST)
    if max(newh, neww) > MAX_SIZE_TEST:
        r = MAX_SIZE_TEST / max(newh, neww)
        newh, neww = newh * r, neww * r
    out = Image.fromarray(rgb).resize((int(neww + 0.5), int(newh + 0.5)), Image.Resampling.BILINEAR)
    return {"image": torch.from_numpy(np.array(out, dtype=np.float32).transpose(2, 0, 1)), "height": h, "width": w}


# --------------------------------------------------------------------------------------------------------------
# Crops anywhere: after the resize (corners, offsets, random, FiveCrop) or of the original.
# --------------------------------------------------------------------------------------------------------------

def crop_top_left(path: str) -> dict:
    """Correct resize (533x320 here), then img[:320, :320]: a square for a model "that wants squares"."""
    img = _read_rgb(path)
    out = _d2_resize(img)[:320, :320]
    return _feed(out, img.shape[0], img.shape[1])


def crop_bottom_right(path: str) -> dict:
    """Correct resize, then the bottom-right 256x256 (img[-256:, -256:])."""
    img = _read_rgb(path)
    return _feed(_d2_resize(img)[-256:, -256:], img.shape[0], img.shape[1])


def crop_offset_tf(path: str) -> dict:
    """PIL resized to detectron2's size, torchvision TF.crop(top=8, left=100, 256x320), PILToTensor().float()."""
    import torchvision.transforms.functional as TF
    from detectron2.data import transforms as T

    im = _exif_transpose(Image.open(path)).convert("RGB")
    newh, neww = T.ResizeShortestEdge.get_output_shape(im.height, im.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    im_r = im.resize((neww, newh), Image.Resampling.BILINEAR)
    x = TF.pil_to_tensor(TF.crop(im_r, top=8, left=100, height=256, width=320)).float()
    return {"image": x, "height": im.height, "width": im.width}


def crop_random_torch(path: str) -> dict:
    """torch.manual_seed(0) + transforms.RandomCrop(288) left in from training, on the correctly resized tensor."""
    from torchvision import transforms

    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    torch.manual_seed(0)
    x = transforms.RandomCrop(288)(x)
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def _rng_crop(img: np.ndarray, seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    return img[top:top + size, left:left + size]


def crop_random_numpy_totensor(path: str) -> dict:
    """A numpy random crop (np.random.default_rng(7), 288x288) after the correct resize, then ToTensor (0..1)."""
    from torchvision import transforms

    img = _read_rgb(path)
    out = _d2_resize(img)
    rng = np.random.default_rng(7)
    top = int(rng.integers(0, out.shape[0] - 288 + 1))
    left = int(rng.integers(0, out.shape[1] - 288 + 1))
    patch = np.ascontiguousarray(out[top:top + 288, left:left + 288])
    return {"image": transforms.ToTensor()(patch), "height": img.shape[0], "width": img.shape[1]}


def crop_original_roi(path: str) -> dict:
    """A region of interest cut from the ORIGINAL (the middle 60%), then the correct resize of that crop, its own
    size as height/width (the model sees, and answers for, the crop)."""
    img = _read_rgb(path)
    h, w = img.shape[:2]
    roi = np.ascontiguousarray(img[h // 5:h - h // 5, w // 5:w - w // 5])
    return _feed(_d2_resize(roi), roi.shape[0], roi.shape[1])


def fivecrop_first_imagenet(path: str) -> dict:
    """Resize to detectron2's size, FiveCrop(256)[0] (the top-left one), ToTensor + Normalize(ImageNet)."""
    from detectron2.data import transforms as T
    from torchvision import transforms

    im = _exif_transpose(Image.open(path)).convert("RGB")
    size = T.ResizeShortestEdge.get_output_shape(im.height, im.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    crops = transforms.Compose([transforms.Resize(tuple(size)), transforms.FiveCrop(256)])(im)
    x = transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)(transforms.ToTensor()(crops[0]))
    return {"image": x, "height": im.height, "width": im.width}


def crop_offset_bgr(path: str) -> dict:
    """cv2 BGR kept, detectron2's resize (427x320), rows 40..360 cut out (a 320x320 window below the top)."""
    img = _imread(path)
    out = _d2_resize(img)[40:360]
    return _feed(out, img.shape[0], img.shape[1])


# --------------------------------------------------------------------------------------------------------------
# Padding after a correct resize, in every border mode: centred, bottom/right to a multiple of 32, one-sided.
# --------------------------------------------------------------------------------------------------------------

def pad_reflect101_centred(path: str) -> dict:
    """albumentations PadIfNeeded(544, 544) by hand: its default border, cv2.BORDER_REFLECT_101, centred."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    h, w = out.shape[:2]
    top, left = (544 - h) // 2, (544 - w) // 2
    out = cv2.copyMakeBorder(out, top, 544 - h - top, left, 544 - w - left, cv2.BORDER_REFLECT_101)
    return _feed(out, img.shape[0], img.shape[1])


def pad_reflect_div32(path: str) -> dict:
    """cv2.BORDER_REFLECT bottom/right to a multiple of 32 ("the backbone wants /32")."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    ph, pw = -out.shape[0] % 32, -out.shape[1] % 32
    out = cv2.copyMakeBorder(out, 0, ph, 0, pw, cv2.BORDER_REFLECT)
    return _feed(out, img.shape[0], img.shape[1])


def pad_replicate_bottom(path: str) -> dict:
    """One-sided: the short side brought up to 320 rows with cv2.BORDER_REPLICATE at the bottom (the max-size
    clamp left 300 rows)."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    out = cv2.copyMakeBorder(out, 0, max(0, 320 - out.shape[0]), 0, 0, cv2.BORDER_REPLICATE)
    return _feed(out, img.shape[0], img.shape[1])


def pad_wrap_centred(path: str) -> dict:
    """cv2.BORDER_WRAP, centred, to a multiple of 32 on each side."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    ph, pw = -out.shape[0] % 32, -out.shape[1] % 32
    out = cv2.copyMakeBorder(out, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_WRAP)
    return _feed(out, img.shape[0], img.shape[1])


def np_pad_edge_div32(path: str) -> dict:
    """np.pad(mode="edge") bottom/right to a multiple of 32."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    out = np.pad(out, ((0, -out.shape[0] % 32), (0, -out.shape[1] % 32), (0, 0)), mode="edge")
    return _feed(out, img.shape[0], img.shape[1])


def np_pad_symmetric_square(path: str) -> dict:
    """np.pad(mode="symmetric") centred to a square of the long side (533x533)."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    h, w = out.shape[:2]
    s = max(h, w)
    out = np.pad(out, (((s - h) // 2, s - h - (s - h) // 2), ((s - w) // 2, s - w - (s - w) // 2), (0, 0)),
                 mode="symmetric")
    return _feed(out, img.shape[0], img.shape[1])


def np_pad_reflect_left(path: str) -> dict:
    """One-sided: 32 columns of np.pad(mode="reflect") on the left."""
    img = _read_rgb(path)
    out = np.pad(_d2_resize(img), ((0, 0), (32, 0), (0, 0)), mode="reflect")
    return _feed(out, img.shape[0], img.shape[1])


def tv_pad_reflect_all(path: str) -> dict:
    """torchvision transforms.Pad(16, padding_mode="reflect") on the float tensor: 16 px on every side."""
    from torchvision import transforms

    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    return {"image": transforms.Pad(16, padding_mode="reflect")(x), "height": img.shape[0], "width": img.shape[1]}


def tv_pad_edge_div32(path: str) -> dict:
    """torchvision Pad((0, 0, right, bottom), padding_mode="edge") on the resized PIL image, to a multiple of 32."""
    from torchvision import transforms

    im = _exif_transpose(Image.open(path)).convert("RGB")
    out = Image.fromarray(_d2_resize(np.asarray(im)))
    pad = (0, 0, -out.width % 32, -out.height % 32)
    x = transforms.PILToTensor()(transforms.Pad(pad, padding_mode="edge")(out)).float()
    return {"image": x, "height": im.height, "width": im.width}


def tv_pad_symmetric_canvas(path: str) -> dict:
    """torchvision Pad(padding_mode="symmetric") centring the 320x320 image on a fixed 384x384 canvas."""
    from torchvision import transforms

    im = _exif_transpose(Image.open(path)).convert("RGB")
    out = Image.fromarray(_d2_resize(np.asarray(im)))
    dw, dh = 384 - out.width, 384 - out.height
    pad = (dw // 2, dh // 2, dw - dw // 2, dh - dh // 2)
    x = transforms.PILToTensor()(transforms.Pad(pad, padding_mode="symmetric")(out)).float()
    return {"image": x, "height": im.height, "width": im.width}


def F_pad_reflect_centred(path: str) -> dict:
    """F.pad(mode="reflect") centred to a multiple of 64 (426 -> 448 rows: 11 on top, 11 at the bottom)."""
    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    ph, pw = -x.shape[1] % 64, -x.shape[2] % 64
    x = F.pad(x[None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")[0]
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def F_pad_replicate_div32(path: str) -> dict:
    """F.pad(mode="replicate") bottom/right to a multiple of 32."""
    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    x = F.pad(x[None], (0, -x.shape[2] % 32, 0, -x.shape[1] % 32), mode="replicate")[0]
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def F_pad_circular_top(path: str) -> dict:
    """One-sided: F.pad(mode="circular") adds rows on top until the short side is 320 (the bottom rows wrap round)."""
    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).float()
    x = F.pad(x[None], (0, 0, max(0, 320 - x.shape[1]), 0), mode="circular")[0]
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def _letterbox_reflect(img: np.ndarray, side: int = MAX_SIZE_TEST) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_REFLECT)


def letterbox_reflect_totensor(path: str) -> dict:
    """A letterbox into 533x533: cv2.resize (INTER_LINEAR) of the long side to 533 (300x533 here, the reference's
    size), reflect padding to the square instead of grey, ToTensor (0..1)."""
    from torchvision import transforms

    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h0, w0 = img.shape[:2]
    r = MAX_SIZE_TEST / max(h0, w0)
    img = cv2.resize(img, (int(round(w0 * r)), int(round(h0 * r))), interpolation=cv2.INTER_LINEAR)
    top, left = (MAX_SIZE_TEST - img.shape[0]) // 2, (MAX_SIZE_TEST - img.shape[1]) // 2
    img = cv2.copyMakeBorder(img, top, MAX_SIZE_TEST - img.shape[0] - top, left,
                             MAX_SIZE_TEST - img.shape[1] - left, cv2.BORDER_REFLECT)
    return {"image": transforms.ToTensor()(img), "height": h0, "width": w0}


# --------------------------------------------------------------------------------------------------------------
# Decoders: torchvision.io without EXIF, cv2's reduced decodes, PIL's draft mode and thumbnail.
# --------------------------------------------------------------------------------------------------------------

def tvio_read_image_exif3(path: str) -> dict:
    """torchvision.io.read_image(mode RGB) applies no EXIF by default: this photo (orientation 3) stays upside
    down; the rest is correct."""
    from torchvision.io import ImageReadMode, read_image

    img = read_image(path, mode=ImageReadMode.RGB)
    hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
    return _feed(_d2_resize(hwc), hwc.shape[0], hwc.shape[1])


def tvio_decode_image_exif6(path: str) -> dict:
    """decode_image(read_file(path)) on a 90-degree phone photo (orientation 6): landscape where the reference is
    portrait; the resize rule and the rest are right for the image it decoded."""
    from torchvision.io import decode_image, read_file

    hwc = np.ascontiguousarray(decode_image(read_file(path)).permute(1, 2, 0).numpy())
    return _feed(_d2_resize(hwc), hwc.shape[0], hwc.shape[1])


def _pil_no_exif(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def decode_jpeg_exif8_div255(path: str) -> dict:
    """decode_jpeg (no EXIF) on an orientation-8 photo, correct resize rule, then .float() / 255."""
    from torchvision.io import decode_jpeg, read_file

    hwc = np.ascontiguousarray(decode_jpeg(read_file(path)).permute(1, 2, 0).numpy())
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(hwc).transpose(2, 0, 1))).float() / 255
    return {"image": x, "height": hwc.shape[0], "width": hwc.shape[1]}


def cv2_reduced2_original_size(path: str) -> dict:
    """cv2.IMREAD_REDUCED_COLOR_2 (libjpeg's DCT downscale by 2) "to save time", then the resize rule (which gives
    the reference's size here) and the original size read from the file header."""
    with Image.open(path) as im:
        w0, h0 = im.size
    img = cv2.cvtColor(_imread(path, cv2.IMREAD_REDUCED_COLOR_2), cv2.COLOR_BGR2RGB)
    return _feed(_d2_resize(img), h0, w0)


def cv2_reduced4_reduced_size(path: str) -> dict:
    """cv2.IMREAD_REDUCED_COLOR_4, the resize rule (an upscale from 151 px), and the DECODED (quarter) size
    passed as height/width."""
    img = cv2.cvtColor(_imread(path, cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)
    return _feed(_d2_resize(img), img.shape[0], img.shape[1])


def _reduced4(path: str) -> np.ndarray:
    return cv2.cvtColor(_imread(path, cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)


def _quarter_size(x: torch.Tensor, h: int, w: int) -> dict:
    return {"image": x, "height": -(-h // 4), "width": -(-w // 4)}


def _reduced4_original_size(path: str) -> dict:
    """The reduced decode alone: quarter-size decode, the rule, the original size passed."""
    with Image.open(path) as im:
        w0, h0 = im.size
    return _feed(_d2_resize(_reduced4(path)), h0, w0)


def pil_draft_half(path: str) -> dict:
    """PIL's JPEG draft mode, im.draft("RGB", (w // 2, h // 2)): the decoder halves the image; the rule then
    upsamples it to the reference's size; the original size (read before draft) passed."""
    im = Image.open(path)
    w0, h0 = im.size
    im.draft("RGB", (w0 // 2, h0 // 2))
    img = np.asarray(im.convert("RGB"))
    return _feed(_d2_resize(img), h0, w0)


def pil_thumbnail_533x320(path: str) -> dict:
    """PIL im.thumbnail((533, 320)) on a landscape photo: 480x320, the reference's size, but thumbnail resamples
    with BICUBIC (reducing_gap=2), not bilinear."""
    im = _exif_transpose(Image.open(path)).convert("RGB")
    w0, h0 = im.size
    im.thumbnail((MAX_SIZE_TEST, MIN_SIZE_TEST))
    return _feed(np.asarray(im), h0, w0)


def pil_thumbnail_533_square(path: str) -> dict:
    """PIL im.thumbnail((533, 533)): the long side to 533 (533x356 instead of 480x320), BICUBIC."""
    im = _exif_transpose(Image.open(path)).convert("RGB")
    w0, h0 = im.size
    im.thumbnail((MAX_SIZE_TEST, MAX_SIZE_TEST))
    return _feed(np.asarray(im), h0, w0)


# --------------------------------------------------------------------------------------------------------------
# Sizes: longest-edge rules, training sizes, the max-size clamp forgotten.
# --------------------------------------------------------------------------------------------------------------

def longest_533_pil(path: str) -> dict:
    """"Resize so the long side is 533" with PIL bilinear (on a square photo: 533x533 instead of 320x320)."""
    im = _exif_transpose(Image.open(path)).convert("RGB")
    s = MAX_SIZE_TEST / max(im.size)
    out = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BILINEAR)
    return _feed(np.asarray(out), im.height, im.width)


def albu_longest_max_size(path: str) -> dict:
    """albumentations LongestMaxSize(max_size=533) written by hand: scale = 533 / long side, cv2.resize with its
    default cv2.INTER_LINEAR (401x533 instead of 320x425)."""
    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    scale = 533 / max(h, w)
    out = cv2.resize(img, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_LINEAR)
    return _feed(out, h, w)


def train_min_352(path: str) -> dict:
    """ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN[-1], cfg.INPUT.MAX_SIZE_TRAIN) = (352, 587): the training
    sizes, "the biggest one for accuracy"."""
    from detectron2.data import transforms as T

    img = _read_rgb(path)
    out = T.ResizeShortestEdge(MIN_SIZE_TRAIN[-1], MAX_SIZE_TRAIN).get_transform(img).apply_image(img)
    return _feed(out, img.shape[0], img.shape[1])


def train_choice_seeded(path: str) -> dict:
    """The training augmentation at test time: ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, "choice"),
    np.random.seed(0) for reproducibility (it picks 288)."""
    from detectron2.data import transforms as T

    img = _read_rgb(path)
    np.random.seed(0)
    aug = T.ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, sample_style="choice")
    return _feed(aug.get_transform(img).apply_image(img), img.shape[0], img.shape[1])


def no_clamp_sysmaxsize(path: str) -> dict:
    """ResizeShortestEdge(320, sys.maxsize): the max-size clamp switched off, on a 2:1 photo (320x640)."""
    from detectron2.data import transforms as T

    img = _read_rgb(path)
    out = T.ResizeShortestEdge(MIN_SIZE_TEST, sys.maxsize).get_transform(img).apply_image(img)
    return _feed(out, img.shape[0], img.shape[1])


def train_min_288_bgr(path: str) -> dict:
    """cv2 BGR kept, ResizeShortestEdge(MIN_SIZE_TRAIN[0], MAX_SIZE_TRAIN) = (288, 587)."""
    from detectron2.data import transforms as T

    img = _imread(path)
    out = T.ResizeShortestEdge(MIN_SIZE_TRAIN[0], MAX_SIZE_TRAIN).get_transform(img).apply_image(img)
    return _feed(out, img.shape[0], img.shape[1])


def _resize_to(short: int, max_size: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: _d2_resize(img, short, max_size)


# --------------------------------------------------------------------------------------------------------------
# Tensors: layout and dtype.
# --------------------------------------------------------------------------------------------------------------

def hwc_tensor(path: str) -> dict:
    """Correct pixels, but the HxWx3 array made into a tensor without the transpose: HxWx3 float32."""
    img = _read_rgb(path)
    return {"image": torch.from_numpy(_d2_resize(img).astype(np.float32)), "height": img.shape[0],
            "width": img.shape[1]}


def half_tensor(path: str) -> dict:
    """Correct values, .half() "for speed": a float16 3xHxW tensor."""
    img = _read_rgb(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).half()
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def int64_tensor(path: str) -> dict:
    """Correct values, torch.tensor(arr.astype(int)): an int64 3xHxW tensor."""
    img = _read_rgb(path)
    x = torch.tensor(_d2_resize(img).transpose(2, 0, 1).astype(int))
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def bf16_bgr(path: str) -> dict:
    """cv2 BGR kept, correct resize, .to(torch.bfloat16) (copied from an autocast recipe)."""
    img = _imread(path)
    x = torch.from_numpy(np.ascontiguousarray(_d2_resize(img).transpose(2, 0, 1))).to(torch.bfloat16)
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def mapper_uint8(path: str) -> dict:
    """What build_detection_test_loader feeds (inference_on_dataset): detectron2's DatasetMapper at test time,
    RGB, ResizeShortestEdge(320, 533): the image stays a uint8 tensor."""
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    with Image.open(path) as im:
        w, h = _exif_transpose(im).size
    mapper = DatasetMapper(is_train=False, augmentations=[T.ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)],
                           image_format="RGB")
    d = mapper({"file_name": path, "height": h, "width": w, "image_id": 0})
    return {"image": d["image"], "height": d["height"], "width": d["width"]}


# --------------------------------------------------------------------------------------------------------------
# Transforms the vocabulary has no id for ("unexplained"): photo enhancements, and pairs with known mistakes.
# --------------------------------------------------------------------------------------------------------------

def _gamma(img: np.ndarray) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1 / 2.2) + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def gamma_after_resize(path: str) -> dict:
    """Gamma correction 255 * (x / 255) ** (1 / 2.2) on the resized float image ("brighten dark photos")."""
    img = _read_rgb(path)
    out = 255.0 * (_d2_resize(img).astype(np.float32) / 255.0) ** (1 / 2.2)
    return _feed(out, img.shape[0], img.shape[1])


def _equalize_y(rgb: np.ndarray) -> np.ndarray:
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def equalize_y(path: str) -> dict:
    """cv2.equalizeHist on the Y channel of YCrCb of the original, then the correct pipeline."""
    bgr = _imread(path)
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    rgb = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def clahe_lab(path: str) -> dict:
    """CLAHE (clipLimit 2, 8x8 tiles) on the L channel of LAB of the original, then the correct pipeline."""
    rgb = _read_rgb(path)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def _blur5(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (5, 5), 0)


def blur_after_resize(path: str) -> dict:
    """cv2.GaussianBlur((5, 5)) after the correct resize ("denoise")."""
    img = _read_rgb(path)
    return _feed(cv2.GaussianBlur(_d2_resize(img), (5, 5), 0), img.shape[0], img.shape[1])


def unsharp_mask(path: str) -> dict:
    """An unsharp mask after the resize: addWeighted(img, 1.5, GaussianBlur(sigma 2), -0.5), uint8 (clipped)."""
    img = _read_rgb(path)
    out = _d2_resize(img)
    out = cv2.addWeighted(out, 1.5, cv2.GaussianBlur(out, (0, 0), 2.0), -0.5, 0)
    return _feed(out, img.shape[0], img.shape[1])


def grayworld(path: str) -> dict:
    """Grey-world white balance of the original (each channel scaled to the mean grey), clipped, uint8."""
    img = _read_rgb(path).astype(np.float32)
    img *= img.mean() / img.mean(axis=(0, 1))
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def scale_abs(path: str) -> dict:
    """cv2.convertScaleAbs(alpha=1.3, beta=10) on the original: brightness/contrast, clipped at 255."""
    rgb = cv2.convertScaleAbs(_read_rgb(path), alpha=1.3, beta=10)
    return _feed(_d2_resize(rgb), rgb.shape[0], rgb.shape[1])


def gamma_bgr(path: str) -> dict:
    """A gamma LUT (1/2.2) on the cv2 BGR image, the channels left BGR, correct resize."""
    bgr = _gamma(_imread(path))
    return _feed(_d2_resize(bgr), bgr.shape[0], bgr.shape[1])


def equalize_totensor(path: str) -> dict:
    """equalizeHist on Y (YCrCb) of the original, correct resize, ToTensor (0..1)."""
    from torchvision import transforms

    rgb = _equalize_y(_read_rgb(path))
    return {"image": transforms.ToTensor()(_d2_resize(rgb)), "height": rgb.shape[0], "width": rgb.shape[1]}


def blur_wrong_size(path: str) -> dict:
    """ResizeShortestEdge(352, 587) (the training max) and a GaussianBlur((5, 5)) after it."""
    img = _read_rgb(path)
    out = cv2.GaussianBlur(_d2_resize(img, MIN_SIZE_TRAIN[-1], MAX_SIZE_TRAIN), (5, 5), 0)
    return _feed(out, img.shape[0], img.shape[1])


# --------------------------------------------------------------------------------------------------------------
# From public detectron2 issues (the code as posted, on the demo model).
# --------------------------------------------------------------------------------------------------------------

def issue282_batch(path: str) -> list:
    """facebookresearch/detectron2#282 ("Do you support batch inference?"), the posted "working example":
    cv2.imread, np.transpose(img, (2, 0, 1)), torch.from_numpy, [{"image": t}, {"image": t}]: uint8 BGR at full
    resolution, no height/width (harmless here: with no resize the output frame is the original's)."""
    img = _imread(path)
    img = np.transpose(img, (2, 0, 1))
    img_tensor = torch.from_numpy(img)
    return [{"image": img_tensor}, {"image": img_tensor}]


def issue5105_custom_predictor(path: str) -> dict:
    """facebookresearch/detectron2#5105 ("CustomPredictor Class Implementation"): the forward's preprocessing on a
    cv2 image, torch.from_numpy(cv_image.astype("float32").transpose(2, 0, 1)) with its own size as height/width:
    no resize, BGR for an RGB model."""
    cv_image = _imread(path)
    image_tensor = torch.from_numpy(cv_image.astype("float32").transpose(2, 0, 1))
    height, width = image_tensor.shape[1], image_tensor.shape[2]
    return {"image": image_tensor, "height": height, "width": width}


def issue1005_hwc_list(path: str) -> list:
    """facebookresearch/detectron2#1005 ("outputs.pred_boxes format"): model([{"image": image} for image in
    image_l]) with each image "a numpy array (height, width, channel)": a cv2 image as an HxWx3 tensor, full
    resolution, BGR."""
    image_l = [torch.as_tensor(_imread(path).astype("float32"))]
    return [{"image": image} for image in image_l]


def docsegtr_totensor(path: str) -> dict:
    """biswassanket/DocSegTr#5 (a detectron2-based model; "the transform from torch converts it to 0-1 values but
    the preprocessing step within the model expects 0-255"): the right size, then transforms.ToTensor()."""
    import torchvision.transforms.functional as TF
    from detectron2.data import transforms as T
    from torchvision import transforms

    im = _exif_transpose(Image.open(path)).convert("RGB")
    size = T.ResizeShortestEdge.get_output_shape(im.height, im.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    x = transforms.ToTensor()(TF.resize(im, list(size), interpolation=TF.InterpolationMode.BILINEAR))
    return {"image": x, "height": im.height, "width": im.width}


def _full_resolution(img: np.ndarray) -> np.ndarray:
    return img


CASES: list[Case] = [
    # ---- correct
    Case("correct_tvio_read_image", "correct", correct_tvio_read_image, (), "val_001.jpg",
         "torchvision.io.read_image(RGB) on a plain JPEG (no EXIF to apply) + detectron2's resize on the HWC view"),
    Case("correct_decode_image_png", "correct", correct_decode_image_png, (), "val_036_large.png",
         "read_file + decode_image(RGB) on a 1475x2458 PNG + T.ResizeTransform to get_output_shape's size"),
    Case("correct_decode_jpeg_square", "correct", correct_decode_jpeg_square, (), "val_027.jpg",
         "decode_jpeg on a square photo + PIL bilinear to 320x320 by hand"),
    Case("correct_tvio_exif_applied", "correct", correct_tvio_exif_applied, (), "val_043_exif5.jpg",
         "read_image(apply_exif_orientation=True) on an orientation-5 (transposed) photo"),
    Case("correct_cv2_unchanged_rgba", "correct", correct_cv2_unchanged_rgba, (), "val_047_rgba.png",
         "cv2.IMREAD_UNCHANGED on an RGBA PNG, COLOR_BGRA2RGB drops the alpha as read_image does"),
    Case("correct_cv2_unchanged_gray", "correct", correct_cv2_unchanged_gray, (), "val_046_gray.jpg",
         "cv2.IMREAD_UNCHANGED on a grey JPEG (HxW), np.stack to 3 channels"),
    Case("correct_channels_last_memory", "correct", correct_channels_last_memory, (), "val_025.jpg",
         "the right 3xHxW values in a channels_last memory-format tensor (strides only)"),
    Case("correct_list_of_dicts", "correct", correct_list_of_dicts, (), "val_034_large.png",
         "batch inference done right: a list of input dicts built in a loop"),
    Case("correct_imdecode_upload", "correct", correct_imdecode_upload, (), "val_029.jpg",
         "upload bytes -> np.frombuffer -> cv2.imdecode -> cvtColor(BGR2RGB) -> detectron2's resize"),
    Case("correct_pil_from_cv2", "correct", correct_pil_from_cv2, (), "val_011.jpg",
         "cv2.imread + cvtColor, Image.fromarray(...).resize(BILINEAR) to the size worked out by hand"),
    # ---- crops
    Case("crop_top_left", "crop", crop_top_left, ("crop",), "val_010.jpg",
         "correct resize to 533x320, then img[:320, :320]"),
    Case("crop_bottom_right", "crop", crop_bottom_right, ("crop",), "val_005.jpg",
         "correct resize to 300x533, then the bottom-right 256x256"),
    Case("crop_offset_tf", "crop", crop_offset_tf, ("crop",), "val_013.jpg",
         "PIL resize to 267x533, TF.crop(top=8, left=100, 256x320), PILToTensor().float()"),
    Case("crop_random_torch", "crop", crop_random_torch, ("crop",), "val_014.jpg",
         "torch.manual_seed(0) + transforms.RandomCrop(288) on the correctly resized 533x320 tensor"),
    # measured alone: ToTensor (0..1) 0.0, the random crop 0.0
    Case("crop_random_numpy_totensor", "crop", crop_random_numpy_totensor, ("value_range_0_1", "crop"),
         "val_020.jpg", "np.random.default_rng(7) 288x288 crop of the resized 427x320 image, then ToTensor", tied=2,
         alone={"crop": partial(_correct, after=partial(_rng_crop, seed=7, size=288)),
                "value_range_0_1": partial(_correct, tensor=_div255)}),
    Case("crop_original_roi", "crop", crop_original_roi, ("crop",), "val_035_large.png",
         "the middle 60% of the ORIGINAL, then the correct resize of the crop, the crop's size as height/width"),
    # measured alone: Normalize(ImageNet) 0.0, FiveCrop's first 0.0
    Case("fivecrop_first_imagenet", "crop", fivecrop_first_imagenet, ("external_normalization", "crop"),
         "val_026.jpg", "Resize to 320x480, FiveCrop(256)[0] (top-left), ToTensor + Normalize(ImageNet)", tied=2,
         alone={"crop": partial(_correct, after=lambda im: im[:256, :256]),
                "external_normalization": partial(_correct, tensor=_imagenet)}),
    # measured alone: rows 40..360 cut out 0.4, BGR 0.6
    Case("crop_offset_bgr", "crop", crop_offset_bgr, ("crop", "channel_order"), "val_030.jpg",
         "cv2 BGR kept, correct resize to 427x320, rows 40..360",
         alone={"crop": partial(_correct, after=lambda im: im[40:360]),
                "channel_order": partial(_correct, after=_bgr)}),
    # ---- padding
    Case("pad_reflect101_centred", "padding", pad_reflect101_centred, ("padding",), "val_000.jpg",
         "PadIfNeeded(544, 544) with its default cv2.BORDER_REFLECT_101, centred, after the correct resize"),
    Case("pad_reflect_div32", "padding", pad_reflect_div32, ("padding",), "val_006.jpg",
         "cv2.BORDER_REFLECT bottom/right to a multiple of 32 (320x425 -> 320x448)"),
    Case("pad_replicate_bottom", "padding", pad_replicate_bottom, ("padding",), "val_023.jpg",
         "one-sided cv2.BORDER_REPLICATE at the bottom, 300 -> 320 rows"),
    Case("pad_wrap_centred", "padding", pad_wrap_centred, ("padding",), "val_017.jpg",
         "cv2.BORDER_WRAP centred to a multiple of 32 (267x533 -> 288x544)"),
    Case("np_pad_edge_div32", "padding", np_pad_edge_div32, ("padding",), "val_032.jpg",
         "np.pad(mode='edge') bottom/right to a multiple of 32 (320x425 -> 320x448)"),
    Case("np_pad_symmetric_square", "padding", np_pad_symmetric_square, ("padding",), "val_021.jpg",
         "np.pad(mode='symmetric') centred to a 533x533 square"),
    Case("np_pad_reflect_left", "padding", np_pad_reflect_left, ("padding",), "val_009.jpg",
         "one-sided np.pad(mode='reflect'), 32 columns on the left"),
    Case("tv_pad_reflect_all", "padding", tv_pad_reflect_all, ("padding",), "val_031.jpg",
         "torchvision Pad(16, padding_mode='reflect') on the float tensor, every side"),
    Case("tv_pad_edge_div32", "padding", tv_pad_edge_div32, ("padding",), "val_018.jpg",
         "torchvision Pad((0, 0, r, b), padding_mode='edge') on PIL to a multiple of 32 (533x267 -> 544x288)"),
    Case("tv_pad_symmetric_canvas", "padding", tv_pad_symmetric_canvas, ("padding",), "val_037_large.png",
         "torchvision Pad(padding_mode='symmetric') centring 320x320 on a 384x384 canvas"),
    Case("F_pad_reflect_centred", "padding", F_pad_reflect_centred, ("padding",), "val_024.jpg",
         "F.pad(mode='reflect') centred to a multiple of 64 (426 -> 448 rows)"),
    Case("F_pad_replicate_div32", "padding", F_pad_replicate_div32, ("padding",), "val_033.jpg",
         "F.pad(mode='replicate') bottom/right to a multiple of 32 (267x533 -> 288x544)"),
    Case("F_pad_circular_top", "padding", F_pad_circular_top, ("padding",), "val_040_large.png",
         "one-sided F.pad(mode='circular') on top, 299 -> 320 rows"),
    # measured alone: ToTensor 0.0, reflect padding to 533x533 0.4615, cv2 INTER_LINEAR 1.0
    Case("letterbox_reflect_totensor", "padding", letterbox_reflect_totensor,
         ("value_range_0_1", "padding", "resize_interpolation"), "val_019.jpg",
         "letterbox into 533x533: cv2 INTER_LINEAR to 300x533, BORDER_REFLECT to the square, ToTensor",
         alone={"value_range_0_1": partial(_correct, tensor=_div255),
                "padding": partial(_correct, after=_letterbox_reflect),
                "resize_interpolation": partial(_correct, resize=_cv2_rule(cv2.INTER_LINEAR))}),
    # ---- decoders
    Case("tvio_read_image_exif3", "decoder", tvio_read_image_exif3, ("exif_orientation",), "val_042_exif3.jpg",
         "torchvision.io.read_image without apply_exif_orientation on an orientation-3 (180 degrees) photo"),
    Case("tvio_decode_image_exif6", "decoder", tvio_decode_image_exif6, ("exif_orientation",),
         "val_044_exif6.jpg", "decode_image(read_file(path)) on an orientation-6 (90 degrees) photo"),
    # measured alone: ToTensor 0.0, no EXIF (upright -> turned by 90 degrees) 0.0
    Case("decode_jpeg_exif8_div255", "decoder", decode_jpeg_exif8_div255, ("value_range_0_1", "exif_orientation"),
         "val_045_exif8.jpg", "decode_jpeg without EXIF on an orientation-8 photo, .float() / 255", tied=2,
         alone={"value_range_0_1": partial(_correct, tensor=_div255),
                "exif_orientation": partial(_correct, decode=_pil_no_exif)}),
    Case("cv2_reduced2_original_size", "decoder", cv2_reduced2_original_size, ("resize_interpolation",),
         "val_008.jpg", "cv2.IMREAD_REDUCED_COLOR_2 (334x668), the rule gives 267x533 as the reference, original "
         "size from the header"),
    # measured alone: the quarter size as height/width 0.0, the quarter-size decode 1.0
    Case("cv2_reduced4_reduced_size", "decoder", cv2_reduced4_reduced_size,
         ("missing_original_size", "resize_interpolation"), "val_002.jpg",
         "cv2.IMREAD_REDUCED_COLOR_4 (201x151), the rule upsamples to 426x320, the decoded size as height/width",
         alone={"missing_original_size": partial(_correct, feed=_quarter_size),
                "resize_interpolation": _reduced4_original_size}),
    Case("pil_draft_half", "decoder", pil_draft_half, ("resize_interpolation",), "val_007.jpg",
         "im.draft('RGB', (w // 2, h // 2)): 259x195 decoded, upsampled to 425x320, original size passed"),
    Case("pil_thumbnail_533x320", "decoder", pil_thumbnail_533x320, ("resize_interpolation",), "val_016.jpg",
         "im.thumbnail((533, 320)) on an 847x565 photo: 480x320 (the reference's size) with BICUBIC"),
    # measured alone: 533x356 instead of 480x320 1.0, BICUBIC at the reference size 1.0
    Case("pil_thumbnail_533_square", "decoder", pil_thumbnail_533_square, ("resize_size", "resize_interpolation"),
         "val_004.jpg", "im.thumbnail((533, 533)) on a 1027x685 photo: 533x356 with BICUBIC", tied=2,
         alone={"resize_size": partial(_correct, resize=_pil_to(_thumbnail_size((533, 533)))),
                "resize_interpolation": partial(_correct, resize=_pil_to(_reference_size, Image.Resampling.BICUBIC,
                                                                         reducing_gap=2.0))}),
    # ---- sizes
    Case("longest_533_pil", "size", longest_533_pil, ("resize_size",), "val_015.jpg",
         "the long side to 533 with PIL bilinear on a square photo: 533x533 instead of 320x320"),
    # measured alone: 401x533 (PIL bilinear) 1.0, cv2 INTER_LINEAR at 320x425 1.0
    Case("albu_longest_max_size", "size", albu_longest_max_size, ("resize_size", "resize_interpolation"),
         "val_012.jpg", "albumentations LongestMaxSize(533) by hand: cv2 INTER_LINEAR to 401x533", tied=2,
         alone={"resize_size": partial(_correct, resize=_pil_to(_longest(533))),
                "resize_interpolation": partial(_correct, resize=_cv2_rule(cv2.INTER_LINEAR))}),
    Case("train_min_352", "size", train_min_352, ("resize_size",), "val_003.jpg",
         "ResizeShortestEdge(352, 587) from the training config: 294x587 instead of 267x533"),
    Case("train_choice_seeded", "size", train_choice_seeded, ("resize_size",), "val_022.jpg",
         "ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, 'choice') with np.random.seed(0): 576x288 for 533x267"),
    Case("no_clamp_sysmaxsize", "size", no_clamp_sysmaxsize, ("resize_size",), "val_028.jpg",
         "ResizeShortestEdge(320, sys.maxsize) on a 2:1 photo: 320x640 instead of 267x533"),
    # measured alone: BGR 0.5, 480x288 1.0
    Case("train_min_288_bgr", "size", train_min_288_bgr, ("channel_order", "resize_size"), "val_038_large.png",
         "cv2 BGR kept, ResizeShortestEdge(288, 587): 480x288 instead of 533x320",
         alone={"channel_order": partial(_correct, after=_bgr),
                "resize_size": partial(_correct, resize=_resize_to(MIN_SIZE_TRAIN[0], MAX_SIZE_TRAIN))}),
    # ---- tensors
    Case("hwc_tensor", "tensor", hwc_tensor, ("channels_last",), "val_041_large.png",
         "correct pixels as an HxWx3 tensor (no transpose): the model cannot broadcast PIXEL_MEAN over it"),
    Case("half_tensor", "tensor", half_tensor, ("dtype",), "val_039_large.png",
         "correct values, .half(): float16"),
    Case("int64_tensor", "tensor", int64_tensor, ("dtype",), "val_016.jpg",
         "correct values, torch.tensor(arr.astype(int)): int64"),
    # measured alone: BGR 0.3333, bfloat16 1.0 (it runs: the model's normalization promotes it to float32)
    Case("bf16_bgr", "tensor", bf16_bgr, ("channel_order", "dtype"), "val_003.jpg",
         "cv2 BGR kept, correct resize, .to(torch.bfloat16)",
         alone={"channel_order": partial(_correct, after=_bgr),
                "dtype": partial(_correct, tensor=_dtype(torch.bfloat16))}),
    Case("mapper_uint8", "tensor", mapper_uint8, ("dtype",), "val_006.jpg",
         "DatasetMapper(is_train=False) as build_detection_test_loader feeds inference_on_dataset: a uint8 tensor "
         "(facebookresearch/detectron2#765 compares it with DefaultPredictor: "
         "https://github.com/facebookresearch/detectron2/issues/765)"),
    # ---- transforms with no finding id
    Case("gamma_after_resize", "unexplained", gamma_after_resize, ("unexplained",), "val_005.jpg",
         "255 * (x / 255) ** (1 / 2.2) on the resized float image"),
    Case("equalize_y", "unexplained", equalize_y, ("unexplained",), "val_008.jpg",
         "cv2.equalizeHist on Y of YCrCb of the original"),
    Case("clahe_lab", "unexplained", clahe_lab, ("unexplained",), "val_034_large.png",
         "CLAHE(2.0, 8x8) on L of LAB of the original"),
    Case("blur_after_resize", "unexplained", blur_after_resize, ("unexplained",), "val_036_large.png",
         "cv2.GaussianBlur((5, 5)) after the correct resize"),
    Case("unsharp_mask", "unexplained", unsharp_mask, ("unexplained",), "val_013.jpg",
         "unsharp mask after the resize: 1.5 img - 0.5 GaussianBlur(sigma 2)"),
    Case("grayworld", "unexplained", grayworld, ("unexplained",), "val_010.jpg",
         "grey-world white balance of the original"),
    Case("scale_abs", "unexplained", scale_abs, ("unexplained",), "val_035_large.png",
         "cv2.convertScaleAbs(alpha=1.3, beta=10) on the original (clipped brightness/contrast)"),
    # measured alone: BGR 0.6667, gamma 1.0
    Case("gamma_bgr", "unexplained", gamma_bgr, ("channel_order", "unexplained"), "val_039_large.png",
         "a gamma LUT on the cv2 BGR image, left BGR",
         alone={"channel_order": partial(_correct, after=_bgr),
                "unexplained": partial(_correct, after=_gamma)}),
    # measured alone: ToTensor 0.0, equalize 0.4167
    Case("equalize_totensor", "unexplained", equalize_totensor, ("value_range_0_1", "unexplained"), "val_018.jpg",
         "equalizeHist on Y of the original, correct resize, ToTensor",
         alone={"value_range_0_1": partial(_correct, tensor=_div255),
                "unexplained": partial(_correct, decode=lambda p: _equalize_y(_read_rgb(p)))}),
    # measured alone: 352 short side 1.0, blur 1.0
    Case("blur_wrong_size", "unexplained", blur_wrong_size, ("resize_size", "unexplained"), "val_028.jpg",
         "ResizeShortestEdge(352, 587) and a GaussianBlur((5, 5)) after it", tied=2,
         alone={"resize_size": partial(_correct, resize=_resize_to(MIN_SIZE_TRAIN[-1], MAX_SIZE_TRAIN)),
                "unexplained": partial(_correct, after=_blur5)}),
    # ---- from public issues
    # measured alone: BGR 0.6667, full resolution 1.0, uint8 1.0
    Case("issue282_batch", "issue", issue282_batch, ("channel_order", "resize_size", "dtype"), "val_031.jpg",
         "https://github.com/facebookresearch/detectron2/issues/282 : cv2.imread + np.transpose + from_numpy, "
         "a list of two dicts without height/width: uint8, BGR, full resolution",
         alone={"channel_order": partial(_correct, after=_bgr),
                "resize_size": partial(_correct, resize=_full_resolution),
                "dtype": partial(_correct, tensor=_dtype(torch.uint8))}),
    # measured alone: BGR 0.0, full resolution 1.0
    Case("issue5105_custom_predictor", "issue", issue5105_custom_predictor, ("channel_order", "resize_size"),
         "val_000.jpg", "https://github.com/facebookresearch/detectron2/issues/5105 : a CustomPredictor's "
         "from_numpy(cv_image.astype('float32').transpose(2, 0, 1)), no resize, BGR",
         alone={"channel_order": partial(_correct, after=_bgr),
                "resize_size": partial(_correct, resize=_full_resolution)}),
    # measured alone: HxWx3 0.0 (the model cannot run it), BGR 0.4, full resolution 1.0
    Case("issue1005_hwc_list", "issue", issue1005_hwc_list, ("channels_last", "channel_order", "resize_size"),
         "val_033.jpg", "https://github.com/facebookresearch/detectron2/issues/1005 : [{'image': image} for image "
         "in image_l] with HxWxC images (cv2, full resolution)",
         alone={"channels_last": partial(_correct, tensor=_hwc),
                "channel_order": partial(_correct, after=_bgr),
                "resize_size": partial(_correct, resize=_full_resolution)}),
    Case("docsegtr_totensor", "issue", docsegtr_totensor, ("value_range_0_1",), "val_024.jpg",
         "https://github.com/biswassanket/DocSegTr/issues/5 (a detectron2 model): transforms.ToTensor() gives 0..1 "
         "where the model expects 0..255"),
]
