"""Hand-written inference preprocessing pipelines, for testing the Pipeline Doctor independently of its code.

Each case is a function written the way a user's inference script is written (torchvision v1/v2, OpenCV,
cv2.dnn, YOLO letterboxing, plain PIL, detectron2's own public API) and returns what that script would feed
the demo model. None of them uses d2debug's stage functions or anything else from the d2debug package, so a
Doctor that only recognises its own renderings fails here.

The demo model's contract (what ``DefaultPredictor`` feeds it): ``read_image(path, "BGR")`` (PIL decode, EXIF
applied) flipped to RGB, ``ResizeShortestEdge([320, 320], 533)`` (PIL bilinear on uint8), then a 3xHxW float32
RGB tensor with values 0..255 in ``{"image": x, "height": H_orig, "width": W_orig}``; the model normalizes.

``Case.mistakes`` lists the finding ids that are wrong, the most damaging first (``Case.tied``: how many
lead equally, each alone removing every detection); ``()`` means the pipeline
matches the contract (decoders may differ by a grey level). Container mistakes that make the model fail
outright (a 4-D batch, a float64 tensor) are listed first; a uint8 tensor, which the model's own
normalization promotes to float, and size changes of a pixel or two are listed last.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

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

__all__ = ["Case", "CASES", "MIN_SIZE_TEST", "MAX_SIZE_TEST"]


@dataclass(frozen=True)
class Case:
    """A hand-written pipeline: ``fn(path)`` returns what the script feeds the model for the image at ``path``;
    ``mistakes``: the finding ids that are wrong, most damaging first (``()`` = matches the contract);
    ``image``: the sample image (a file name in sample_data/images/) it runs on."""

    name: str
    family: str
    fn: Callable[[str], Any]
    mistakes: tuple[str, ...]
    image: str
    note: str
    tied: int = 1  # how many leading mistakes are equally damaging (each alone destroys every detection)


# --------------------------------------------------------------------------------------------------------------
# Correct pipelines, each written differently.
# --------------------------------------------------------------------------------------------------------------

def correct_defaultpredictor_by_hand(path: str) -> dict:
    """DefaultPredictor.__call__ copied into a script."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    original_image = read_image(path, format="BGR")
    original_image = original_image[:, :, ::-1]  # cfg.INPUT.FORMAT == "RGB"
    height, width = original_image.shape[:2]
    aug = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST)
    image = aug.get_transform(original_image).apply_image(original_image)
    image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    return {"image": image, "height": height, "width": width}


def correct_cv2_imread_flip(path: str) -> dict:
    """cv2.imread, [:, :, ::-1] to RGB, detectron2's resize, from_numpy + permute + float."""
    from detectron2.data import transforms as T

    img = _imread(path)[:, :, ::-1]
    h, w = img.shape[:2]
    resized = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(img).apply_image(img)
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float()
    return {"image": x, "height": h, "width": w}


def correct_pil_exif_auginput(path: str) -> dict:
    """PIL + ImageOps.exif_transpose, then detectron2's AugInput / AugmentationList."""
    from detectron2.data import transforms as T

    pil = _exif_transpose(Image.open(path)).convert("RGB")
    image = np.asarray(pil)
    aug_input = T.AugInput(image)
    T.AugmentationList([T.ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)])(aug_input)
    x = torch.tensor(aug_input.image.transpose(2, 0, 1), dtype=torch.float32)
    return {"image": x, "height": pil.height, "width": pil.width}


def correct_read_image_rgb(path: str) -> dict:
    """read_image(path, "RGB") directly, T.apply_augmentations."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, "RGB")
    out, _ = T.apply_augmentations([T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST)], img)
    return {"image": torch.as_tensor(np.ascontiguousarray(out.transpose(2, 0, 1)), dtype=torch.float32),
            "height": img.shape[0], "width": img.shape[1]}


def correct_float64_roundtrip(path: str) -> dict:
    """Resize on uint8, a float64 numpy copy for "precision", converted back to a float32 tensor."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    bgr = read_image(path, format="BGR")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    tfm = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(rgb)
    arr = tfm.apply_image(rgb).astype(np.float64)
    arr = np.transpose(arr, (2, 0, 1)).copy()
    return {"image": torch.from_numpy(arr).to(torch.float32), "height": bgr.shape[0], "width": bgr.shape[1]}


def correct_manual_pil_resize(path: str) -> dict:
    """The shortest-edge size rule worked out by hand, PIL BILINEAR resize, no detectron2 transforms."""
    img = _exif_transpose(Image.open(path)).convert("RGB")
    w, h = img.size
    scale = MIN_SIZE_TEST / min(h, w)
    if h < w:
        newh, neww = float(MIN_SIZE_TEST), scale * w
    else:
        newh, neww = scale * h, float(MIN_SIZE_TEST)
    if max(newh, neww) > MAX_SIZE_TEST:
        s = MAX_SIZE_TEST / max(newh, neww)
        newh, neww = newh * s, neww * s
    newh, neww = int(newh + 0.5), int(neww + 0.5)
    resized = img.resize((neww, newh), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(resized, dtype=np.float32)).permute(2, 0, 1).contiguous()
    return {"image": x, "height": h, "width": w}


def correct_torchvision_functional(path: str) -> dict:
    """torchvision.transforms.functional.resize on a PIL image to detectron2's output size (PIL underneath)."""
    import torchvision.transforms.functional as TF
    from detectron2.data import transforms as T
    from torchvision.transforms import InterpolationMode

    img = _exif_transpose(Image.open(path)).convert("RGB")
    newh, neww = T.ResizeShortestEdge.get_output_shape(img.height, img.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    img_r = TF.resize(img, [newh, neww], interpolation=InterpolationMode.BILINEAR)
    x = TF.pil_to_tensor(img_r).float()  # uint8 0..255 -> float, no scaling
    return {"image": x, "height": img.height, "width": img.width}


def correct_v2_pil(path: str) -> dict:
    """transforms.v2 on a PIL image: Resize((h, w)) (PIL path), PILToTensor, ToDtype(float32, scale=False)."""
    from detectron2.data import transforms as T
    from torchvision.transforms import v2

    img = _exif_transpose(Image.open(path)).convert("RGB")  # convert drops the alpha, as read_image
    size = T.ResizeShortestEdge.get_output_shape(img.height, img.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    tf = v2.Compose([v2.Resize(tuple(size), interpolation=v2.InterpolationMode.BILINEAR), v2.PILToTensor(),
                     v2.ToDtype(torch.float32, scale=False)])
    return {"image": tf(img), "height": img.height, "width": img.width}


def correct_cv2_cvtcolor_numpy(path: str) -> np.ndarray:
    """cv2.imread + cvtColor(BGR2RGB) + detectron2's resize, saved as a bare 3xHxW float32 numpy array."""
    from detectron2.data import transforms as T

    rgb = cv2.cvtColor(_imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    aug = T.ResizeShortestEdge(short_edge_length=[MIN_SIZE_TEST], max_size=MAX_SIZE_TEST, sample_style="choice")
    out = aug.get_transform(rgb).apply_image(rgb)
    return np.ascontiguousarray(out.transpose(2, 0, 1)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# torchvision v1: transforms.Compose([... ToTensor(), Normalize(...)]) as written for classifiers.
# --------------------------------------------------------------------------------------------------------------

def tv1_resize_imagenet(path: str) -> dict:
    from torchvision import transforms

    img = Image.open(path).convert("RGB")
    tf = transforms.Compose([transforms.Resize(MIN_SIZE_TEST), transforms.ToTensor(),
                             transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)])
    return {"image": tf(img), "height": img.height, "width": img.width}


def tv1_square_totensor(path: str) -> dict:
    from torchvision import transforms

    img = Image.open(path).convert("RGB")
    tf = transforms.Compose([transforms.Resize((320, 320)), transforms.ToTensor()])
    return {"image": tf(img), "height": img.height, "width": img.width}


def tv1_seed_article(path: str) -> dict:
    """cv2 resize to int(w * scale) x int(h * scale), then ToTensor + Normalize(0.5, 0.5)."""
    from torchvision import transforms

    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    scale = MIN_SIZE_TEST / min(h, w)
    img = cv2.resize(img, (int(w * scale), int(h * scale)))
    x = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])(img)
    return {"image": x, "height": h, "width": w}


def tv1_resize_no_clamp(path: str) -> dict:
    """torchvision Resize(320) with no max_size, PILToTensor().float() (values stay 0..255)."""
    from torchvision import transforms

    img = _exif_transpose(Image.open(path)).convert("RGB")
    tf = transforms.Compose([transforms.Resize(MIN_SIZE_TEST), transforms.PILToTensor()])
    return {"image": tf(img).float(), "height": img.height, "width": img.width}


# --------------------------------------------------------------------------------------------------------------
# torchvision v2: transforms.v2 ToImage / ToDtype / Resize / Normalize.
# --------------------------------------------------------------------------------------------------------------

def tv2_imagenet_no_exif(path: str) -> dict:
    from torchvision.transforms import v2

    img = Image.open(path).convert("RGB")  # no exif_transpose
    tf = v2.Compose([v2.ToImage(), v2.Resize(MIN_SIZE_TEST, antialias=True), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(mean=_IMAGENET_MEAN, std=_IMAGENET_STD)])
    x = tf(img).as_subclass(torch.Tensor)  # a plain tensor, not a tv_tensors.Image
    return {"image": x, "height": img.height, "width": img.width}


def tv2_uint8_batch(path: str) -> dict:
    """v2 on a uint8 tensor, the right size, but left uint8 and given as a 1x3xHxW batch."""
    from detectron2.data import transforms as T
    from torchvision.transforms import v2

    img = _exif_transpose(Image.open(path)).convert("RGB")
    size = T.ResizeShortestEdge.get_output_shape(img.height, img.width, MIN_SIZE_TEST, MAX_SIZE_TEST)
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(list(size), antialias=True)])
    return {"image": tf(img).unsqueeze(0), "height": img.height, "width": img.width}


def tv2_half_normalize(path: str) -> dict:
    """v2 Resize(320, max_size=533) (truncates), ToDtype(scale=True) + Normalize(0.5, 0.5)."""
    from torchvision.transforms import v2

    img = _exif_transpose(Image.open(path)).convert("RGB")
    tf = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                     v2.Resize(MIN_SIZE_TEST, max_size=MAX_SIZE_TEST, antialias=True),
                     v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])])
    return {"image": tf(img).as_subclass(torch.Tensor), "height": img.height, "width": img.width}


# --------------------------------------------------------------------------------------------------------------
# cv2.dnn.blobFromImage: (img - mean) * scalefactor, cv2 INTER_LINEAR to a fixed size, optional R<->B swap,
# returns 1xCxHxW float32.
# --------------------------------------------------------------------------------------------------------------

def dnn_blob_rgb_square(path: str) -> torch.Tensor:
    img = _imread(path)
    blob = cv2.dnn.blobFromImage(img, scalefactor=1.0, size=(320, 320), mean=(0, 0, 0), swapRB=True, crop=False)
    return torch.from_numpy(blob)


def dnn_blob_half_norm(path: str) -> dict:
    img = _imread(path)
    blob = cv2.dnn.blobFromImage(img, 1 / 127.5, (320, 320), (127.5, 127.5, 127.5), swapRB=False, crop=False)
    return {"image": torch.from_numpy(blob[0]), "height": img.shape[0], "width": img.shape[1]}


# --------------------------------------------------------------------------------------------------------------
# YOLO-style letterbox: resize keeping the aspect ratio into a square, pad with grey 114.
# --------------------------------------------------------------------------------------------------------------

def letterbox_640_cv2(path: str) -> dict:
    """yolov5's letterbox(img, 640, auto=False), BGR->RGB, the /255 dropped."""
    img0 = _imread(path)
    h0, w0 = img0.shape[:2]
    new_shape = (640, 640)
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    new_unpad = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    img = cv2.resize(img0, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    img = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))  # BGR to RGB, HWC to CHW
    return {"image": torch.from_numpy(img).float(), "height": h0, "width": w0}


def letterbox_320_pil(path: str) -> dict:
    """Letterbox into 320x320 with PIL (BILINEAR, grey 114 canvas), then ToTensor (0..1)."""
    from torchvision import transforms

    img = _exif_transpose(Image.open(path)).convert("RGB")
    w, h = img.size
    r = min(320 / w, 320 / h)
    nw, nh = round(w * r), round(h * r)
    canvas = Image.new("RGB", (320, 320), (114, 114, 114))
    canvas.paste(img.resize((nw, nh), Image.Resampling.BILINEAR), ((320 - nw) // 2, (320 - nh) // 2))
    return {"image": transforms.ToTensor()(canvas), "height": h, "width": w}


# --------------------------------------------------------------------------------------------------------------
# Pad to a size (albumentations PadIfNeeded / divisibility padding written with cv2.copyMakeBorder).
# --------------------------------------------------------------------------------------------------------------

def pad_if_needed_544(path: str) -> dict:
    """Correct decode and resize, then PadIfNeeded(544, 544, BORDER_CONSTANT, 0) centred, by hand."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    h0, w0 = img.shape[:2]
    img = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(img).apply_image(img)
    h, w = img.shape[:2]
    min_h = min_w = 544
    top = max(0, (min_h - h) // 2)
    bottom = max(0, min_h - h - top)
    left = max(0, (min_w - w) // 2)
    right = max(0, min_w - w - left)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return {"image": torch.as_tensor(img.astype("float32").transpose(2, 0, 1)), "height": h0, "width": w0}


def pad_divisible_32_bgr(path: str) -> dict:
    """cv2 BGR kept, correct resize, zero padding bottom/right to a multiple of 32."""
    from detectron2.data import transforms as T

    img = _imread(path)
    h0, w0 = img.shape[:2]
    img = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(img).apply_image(img)
    h, w = img.shape[:2]
    ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
    img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return {"image": torch.from_numpy(img).permute(2, 0, 1).float(), "height": h0, "width": w0}


# --------------------------------------------------------------------------------------------------------------
# Float resizes: skimage.transform.resize(anti_aliasing=True) written with cv2, torch F.interpolate.
# --------------------------------------------------------------------------------------------------------------

def skimage_style_float_resize(path: str) -> dict:
    """Gaussian prefilter sigma = (1/scale - 1)/2 per axis on float32, then cv2 INTER_LINEAR; values 0..255."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB").astype(np.float32)
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    sy = max(0.0, (h / newh - 1) / 2)
    sx = max(0.0, (w / neww - 1) / 2)
    if sx > 0 or sy > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    img = cv2.resize(img, (neww, newh), interpolation=cv2.INTER_LINEAR)
    return {"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), "height": h, "width": w}


def torch_interpolate_0_1(path: str) -> dict:
    """ToTensor-style /255, then F.interpolate(bilinear, align_corners=False) with no antialias."""
    from detectron2.data import transforms as T

    img = np.asarray(_exif_transpose(Image.open(path)).convert("RGB"))
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float().div(255)
    x = F.interpolate(x[None], size=(newh, neww), mode="bilinear", align_corners=False)[0]
    return {"image": x, "height": h, "width": w}


# --------------------------------------------------------------------------------------------------------------
# Web uploads: the image is re-encoded as JPEG on the way in.
# --------------------------------------------------------------------------------------------------------------

def web_upload_jpeg75(path: str) -> dict:
    """The upload handler re-saves the (EXIF-applied) image as JPEG quality 75; the rest is correct."""
    from detectron2.data import transforms as T

    with open(path, "rb") as f:
        upload = f.read()
    pil = _exif_transpose(Image.open(io.BytesIO(upload))).convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=75)
    img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    out = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


def web_upload_exif_stripped(path: str) -> dict:
    """A thumbnailing service re-saves the stored pixels as JPEG 75 (PIL's save drops the EXIF tag); the server
    then does everything right, exif_transpose included, on a file that no longer has the tag."""
    from detectron2.data import transforms as T

    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "JPEG", quality=75)
    img = np.asarray(_exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    out = T.ResizeShortestEdge([MIN_SIZE_TEST, MIN_SIZE_TEST], MAX_SIZE_TEST).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


# --------------------------------------------------------------------------------------------------------------
# Grayscale, Caffe-style mean subtraction, transposed axes, crops, EXIF, alpha.
# --------------------------------------------------------------------------------------------------------------

def grayscale_totensor(path: str) -> dict:
    """PIL .convert("L"), correct resize, ToTensor -> 1xHxW in 0..1."""
    from detectron2.data import transforms as T
    from torchvision import transforms

    gray = np.asarray(Image.open(path).convert("L"))
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(gray).apply_image(gray)
    return {"image": transforms.ToTensor()(np.array(out)), "height": gray.shape[0], "width": gray.shape[1]}


def caffe_bgr_mean(path: str) -> dict:
    """cv2 BGR, correct resize, img - [103.53, 116.28, 123.675] (Caffe/MSRA BGR means), no division."""
    from detectron2.data import transforms as T

    img = _imread(path)
    h, w = img.shape[:2]
    img = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    img = img.astype(np.float32) - np.array([103.53, 116.28, 123.675], dtype=np.float32)
    return {"image": torch.from_numpy(img.transpose(2, 0, 1).copy()), "height": h, "width": w}


def caffe_mean_127(path: str) -> dict:
    """read_image RGB, correct resize, then img - 127.5 (centred, no scaling)."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    x = torch.as_tensor(out.astype("float32").transpose(2, 0, 1)) - 127.5
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def transposed_permute_210(path: str) -> dict:
    """Correct decode and resize, but permute(2, 1, 0): CxWxH instead of CxHxW."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    x = torch.from_numpy(out.copy()).permute(2, 1, 0).float()
    return {"image": x, "height": img.shape[0], "width": img.shape[1]}


def transposed_cv2_bgr(path: str) -> dict:
    """cv2 BGR, cv2.resize INTER_LINEAR to the right size, permute(2, 1, 0)."""
    from detectron2.data import transforms as T

    img = _imread(path)
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    img = cv2.resize(img, (neww, newh), interpolation=cv2.INTER_LINEAR)
    return {"image": torch.from_numpy(img).permute(2, 1, 0).float(), "height": h, "width": w}


def centre_crop_after_resize(path: str) -> dict:
    """Correct resize, then a centred 320x320 box cut out."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="BGR")[:, :, ::-1]
    h0, w0 = img.shape[:2]
    img = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    h, w = img.shape[:2]
    top, left = (h - 320) // 2, (w - 320) // 2
    img = img[top:top + 320, left:left + 320]
    return {"image": torch.as_tensor(img.astype("float32").transpose(2, 0, 1)), "height": h0, "width": w0}


def tv1_centercrop_imagenet(path: str) -> dict:
    """The classifier recipe: Resize(320), CenterCrop(320), ToTensor, Normalize(ImageNet)."""
    from torchvision import transforms

    img = _exif_transpose(Image.open(path)).convert("RGB")
    tf = transforms.Compose([transforms.Resize(320), transforms.CenterCrop(320), transforms.ToTensor(),
                             transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)])
    return {"image": tf(img), "height": img.height, "width": img.width}


def pil_no_exif_transpose(path: str) -> dict:
    """PIL.Image.open without ImageOps.exif_transpose; otherwise correct."""
    from detectron2.data import transforms as T

    img = np.asarray(Image.open(path).convert("RGB"))
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


def rgba_on_white(path: str) -> dict:
    """RGBA PNG alpha-composited on a white background, then correct."""
    from detectron2.data import transforms as T

    im = Image.open(path).convert("RGBA")
    im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    img = np.asarray(im)
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": im.height,
            "width": im.width}


def rgba_premultiplied_cv2_area(path: str) -> dict:
    """cv2.IMREAD_UNCHANGED, colour multiplied by alpha (composited on black), BGR->RGB, cv2 INTER_AREA."""
    from detectron2.data import transforms as T

    bgra = _imread(path, cv2.IMREAD_UNCHANGED)
    h, w = bgra.shape[:2]
    a = bgra[:, :, 3:4].astype(np.float32) / 255.0
    rgb = cv2.cvtColor(np.round(bgra[:, :, :3] * a).astype(np.uint8), cv2.COLOR_BGR2RGB)
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    rgb = cv2.resize(rgb, (neww, newh), interpolation=cv2.INTER_AREA)
    return {"image": torch.as_tensor(rgb.transpose(2, 0, 1).astype(np.float32)), "height": h, "width": w}


# --------------------------------------------------------------------------------------------------------------
# Single resize / dtype mistakes and combinations.
# --------------------------------------------------------------------------------------------------------------

def cv2_square_imagenet(path: str) -> dict:
    """cv2 RGB, cv2.resize to 320x320, ToTensor + Normalize(ImageNet)."""
    from torchvision import transforms

    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    img = cv2.resize(img, (320, 320))
    x = transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)(transforms.ToTensor()(img))
    return {"image": x, "height": h, "width": w}


def resized_size_bgr_uint8(path: str) -> dict:
    """cv2 BGR, correct resize, uint8 tensor, and the RESIZED size as height/width."""
    from detectron2.data import transforms as T

    img = _imread(path)
    img = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)
    return {"image": x, "height": x.shape[1], "width": x.shape[2]}


def no_exif_square_totensor(path: str) -> dict:
    """PIL without exif_transpose, Resize((320, 320)), ToTensor."""
    from torchvision import transforms

    img = Image.open(path).convert("RGB")
    x = transforms.Compose([transforms.Resize((320, 320)), transforms.ToTensor()])(img)
    return {"image": x, "height": img.height, "width": img.width}


def coco_sizes_800(path: str) -> dict:
    """Correct code, but ResizeShortestEdge(800, 1333) copied from a COCO config."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="BGR")[:, :, ::-1]
    out = T.ResizeShortestEdge([800, 800], 1333).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


def no_resize_full_res(path: str) -> dict:
    """read_image RGB at full resolution, no resize."""
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    return {"image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32")),
            "height": img.shape[0], "width": img.shape[1]}


def float64_tensor(path: str) -> dict:
    """Correct pixels, but torch.from_numpy on a float64 array (no .float())."""
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    out = T.ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST).get_transform(img).apply_image(img)
    return {"image": torch.from_numpy(out.transpose(2, 0, 1).astype(np.float64)), "height": img.shape[0],
            "width": img.shape[1]}


def cv2_inter_nearest(path: str) -> dict:
    """cv2 RGB, cv2.resize INTER_NEAREST to the right size."""
    from detectron2.data import transforms as T

    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    img = cv2.resize(img, (neww, newh), interpolation=cv2.INTER_NEAREST)
    return {"image": torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)), "height": h, "width": w}


def cv2_linear_no_size(path: str) -> dict:
    """cv2 RGB, cv2.resize INTER_LINEAR to the right size, {"image": x} only."""
    from detectron2.data import transforms as T

    img = _imread(path)[..., ::-1]
    h, w = img.shape[:2]
    newh, neww = T.ResizeShortestEdge.get_output_shape(h, w, MIN_SIZE_TEST, MAX_SIZE_TEST)
    img = cv2.resize(np.ascontiguousarray(img), (neww, newh), interpolation=cv2.INTER_LINEAR)
    return {"image": torch.from_numpy(img).permute(2, 0, 1).float()}


CASES: list[Case] = [
    # correct
    Case("correct_defaultpredictor_by_hand", "correct", correct_defaultpredictor_by_hand, (), "val_044_exif6.jpg",
         "DefaultPredictor's preprocessing copied out: read_image BGR, ::-1, ResizeShortestEdge, as_tensor float32"),
    Case("correct_cv2_imread_flip", "correct", correct_cv2_imread_flip, (), "val_031.jpg",
         "cv2.imread + [:, :, ::-1] + T.ResizeShortestEdge + from_numpy().permute(2, 0, 1).float()"),
    Case("correct_pil_exif_auginput", "correct", correct_pil_exif_auginput, (), "val_045_exif8.jpg",
         "PIL + ImageOps.exif_transpose + np.asarray + T.AugInput / AugmentationList"),
    Case("correct_read_image_rgb", "correct", correct_read_image_rgb, (), "val_008.jpg",
         "read_image(path, 'RGB') + T.apply_augmentations on a wide image (the max-size clamp applies)"),
    Case("correct_float64_roundtrip", "correct", correct_float64_roundtrip, (), "val_022.jpg",
         "resize on uint8, a float64 numpy copy, converted back to a float32 tensor"),
    Case("correct_manual_pil_resize", "correct", correct_manual_pil_resize, (), "val_042_exif3.jpg",
         "the shortest-edge size rule by hand + PIL BILINEAR, no detectron2 transforms"),
    Case("correct_torchvision_functional", "correct", correct_torchvision_functional, (), "val_046_gray.jpg",
         "grey JPEG converted to RGB, TF.resize on PIL to detectron2's size, pil_to_tensor().float()"),
    Case("correct_v2_pil", "correct", correct_v2_pil, (), "val_047_rgba.png",
         "RGBA .convert('RGB') (alpha dropped, as read_image), v2 Resize on PIL + PILToTensor + ToDtype(scale=False)"),
    Case("correct_cv2_cvtcolor_numpy", "correct", correct_cv2_cvtcolor_numpy, (), "val_021.jpg",
         "cv2.imread + cvtColor(BGR2RGB) + T.ResizeShortestEdge, a bare 3xHxW float32 numpy array"),
    # torchvision v1
    Case("tv1_resize_imagenet", "torchvision_v1", tv1_resize_imagenet, ("external_normalization", "resize_size"),
         "val_003.jpg", "Resize(320) (no max-size clamp on a 2:1 image) + ToTensor + Normalize(ImageNet)"),
    Case("tv1_square_totensor", "torchvision_v1", tv1_square_totensor, ("value_range_0_1", "resize_aspect"),
         "val_028.jpg", "Resize((320, 320)) + ToTensor on a 2:1 image"),
    Case("tv1_seed_article", "torchvision_v1", tv1_seed_article,
         ("double_normalization", "resize_interpolation", "resize_size"), "val_004.jpg",
         "cv2.resize to int(w*s) x int(h*s) (INTER_LINEAR, one pixel short) + ToTensor + Normalize(0.5, 0.5)"),
    Case("tv1_resize_no_clamp", "torchvision_v1", tv1_resize_no_clamp, ("resize_size",), "val_013.jpg",
         "Resize(320) without max_size on a 2:1 image (640x320 instead of 533x267), PILToTensor().float()"),
    # torchvision v2
    Case("tv2_imagenet_no_exif", "torchvision_v2", tv2_imagenet_no_exif,
         ("external_normalization", "exif_orientation", "resize_size"), "val_042_exif3.jpg",
         "no exif_transpose on an upside-down photo, v2 Resize(320) (426 for 427) + ToDtype + Normalize(ImageNet)",
         # measured alone with `compare --set`: ImageNet Normalize F1 0.0, PIL without EXIF F1 0.0 on this photo
         tied=2),
    Case("tv2_uint8_batch", "torchvision_v2", tv2_uint8_batch, ("batch_contract", "dtype"), "val_018.jpg",
         "v2 PILToTensor + Resize to the right size, left uint8, 1x3xHxW in the dict"),
    # The Resize runs on the float tensor (after ToDtype): torch's antialiased bilinear, not PIL's on uint8, a
    # resampler of its own (0.4 grey levels RMS from PIL's; harmless, but not the reference's).
    Case("tv2_half_normalize", "torchvision_v2", tv2_half_normalize,
         ("double_normalization", "resize_size", "resize_interpolation"),
         "val_032.jpg", "v2 ToDtype(scale=True) + Resize(320, max_size=533) (424 for 425) + Normalize(0.5, 0.5)"),
    # cv2.dnn
    Case("dnn_blob_rgb_square", "cv2_dnn", dnn_blob_rgb_square,
         ("batch_contract", "resize_aspect", "resize_interpolation"), "val_012.jpg",
         "blobFromImage(img, 1.0, (320, 320), swapRB=True): a 1x3x320x320 blob passed as is"),
    Case("dnn_blob_half_norm", "cv2_dnn", dnn_blob_half_norm,
         ("double_normalization", "channel_order", "resize_aspect", "resize_interpolation"), "val_019.jpg",
         "blobFromImage(img, 1/127.5, (320, 320), mean 127.5, swapRB=False), blob[0] in a dict"),
    # letterbox
    Case("letterbox_640_cv2", "letterbox", letterbox_640_cv2,
         ("padding", "resize_size", "resize_interpolation"), "val_016.jpg",
         "yolov5 letterbox to 640x640 (cv2 INTER_LINEAR, grey 114), BGR->RGB, values 0..255"),
    Case("letterbox_320_pil", "letterbox", letterbox_320_pil, ("value_range_0_1", "padding", "resize_size"),
         "val_017.jpg", "letterbox into 320x320 with PIL BILINEAR on a grey 114 canvas, ToTensor"),
    # pad to size
    Case("pad_if_needed_544", "pad_to_size", pad_if_needed_544, ("padding",), "val_000.jpg",
         "correct resize, then PadIfNeeded(544, 544) centred with zeros via cv2.copyMakeBorder"),
    Case("pad_divisible_32_bgr", "pad_to_size", pad_divisible_32_bgr, ("channel_order", "padding"), "val_020.jpg",
         "cv2 BGR kept, correct resize, zero padding bottom/right to a multiple of 32"),
    # float resize
    Case("skimage_style_float_resize", "float_resize", skimage_style_float_resize, ("resize_interpolation",),
         "val_035_large.png", "skimage-style resize by hand: GaussianBlur sigma=(1/s-1)/2 on float32, cv2 linear"),
    Case("torch_interpolate_0_1", "float_resize", torch_interpolate_0_1, ("value_range_0_1", "resize_interpolation"),
         "val_039_large.png", "/255 then F.interpolate bilinear without antialias (6x downscale of a halftone PNG)"),
    # web uploads
    Case("web_upload_jpeg75", "web_upload", web_upload_jpeg75, ("recompression",), "val_006.jpg",
         "the upload handler re-saves the image as JPEG quality 75 in memory; the rest is correct"),
    Case("web_upload_exif_stripped", "web_upload", web_upload_exif_stripped, ("exif_orientation", "recompression"),
         "val_043_exif5.jpg", "re-saved as JPEG 75 from the stored pixels (EXIF tag lost), then read_image"),
    # grayscale
    Case("grayscale_totensor", "grayscale", grayscale_totensor, ("value_range_0_1",), "val_046_gray.jpg",
         "PIL .convert('L') + correct resize + ToTensor: a 1xHxW tensor in 0..1"),
    # caffe
    # Measured alone with `compare --set` on this image: the channel swap leaves F1 0.5, the mean subtracted
    # without division (external_norm=custom:0.406,0.456,0.485/0.0039,...) F1 1.0: the swap does the damage.
    Case("caffe_bgr_mean", "caffe", caffe_bgr_mean, ("channel_order", "external_normalization"), "val_010.jpg",
         "cv2 BGR, correct resize, img - [103.53, 116.28, 123.675], no division"),
    Case("caffe_mean_127", "caffe", caffe_mean_127, ("external_normalization",), "val_023.jpg",
         "read_image RGB, correct resize, x - 127.5"),
    # transposed
    Case("transposed_permute_210", "transposed", transposed_permute_210, ("transposed_hw",), "val_005.jpg",
         "correct pixels, permute(2, 1, 0) instead of (2, 0, 1)"),
    Case("transposed_cv2_bgr", "transposed", transposed_cv2_bgr,
         # the channel swap alone leaves F1 0.8 here (`compare --set channel_order=swapped`); H and W exchanged
         # put every box elsewhere
         ("transposed_hw", "channel_order", "resize_interpolation"), "val_026.jpg",
         "cv2 BGR, cv2.resize INTER_LINEAR to the right size, permute(2, 1, 0)"),
    # crop
    Case("centre_crop_after_resize", "crop", centre_crop_after_resize, ("crop",), "val_014.jpg",
         "correct resize to 533x320, then the centred 320x320 box"),
    Case("tv1_centercrop_imagenet", "crop", tv1_centercrop_imagenet, ("external_normalization", "crop"),
         "val_024.jpg", "Resize(320) + CenterCrop(320) + ToTensor + Normalize(ImageNet)"),
    # EXIF, alpha
    Case("pil_no_exif_transpose", "exif", pil_no_exif_transpose, ("exif_orientation",), "val_044_exif6.jpg",
         "PIL.Image.open without exif_transpose on a 90-degree phone photo; otherwise correct"),
    Case("rgba_on_white", "alpha", rgba_on_white, ("alpha_channel",), "val_047_rgba.png",
         "RGBA PNG alpha-composited on white, then correct"),
    Case("rgba_premultiplied_cv2_area", "alpha", rgba_premultiplied_cv2_area,
         ("alpha_channel", "resize_interpolation"), "val_047_rgba.png",
         "cv2 IMREAD_UNCHANGED, colour times alpha (on black), BGR->RGB, cv2 INTER_AREA to the right size"),
    # resize / dtype / combos
    Case("cv2_square_imagenet", "combo", cv2_square_imagenet,
         ("external_normalization", "resize_aspect", "resize_interpolation"), "val_002.jpg",
         "cv2 RGB, cv2.resize to 320x320, ToTensor + Normalize(ImageNet)"),
    Case("resized_size_bgr_uint8", "combo", resized_size_bgr_uint8,
         ("missing_original_size", "channel_order", "dtype"), "val_007.jpg",
         "cv2 BGR, correct resize, uint8 tensor, height/width of the resized image"),
    Case("no_exif_square_totensor", "combo", no_exif_square_totensor,
         ("value_range_0_1", "exif_orientation", "resize_aspect"), "val_045_exif8.jpg",
         "PIL without exif_transpose on a 90-degree photo, Resize((320, 320)), ToTensor",
         # measured alone with `compare --set`: 0..1 F1 0.0, PIL without EXIF F1 0.0 on this photo
         tied=2),
    Case("coco_sizes_800", "resize", coco_sizes_800, ("resize_size",), "val_009.jpg",
         "correct code with ResizeShortestEdge(800, 1333) from a COCO config"),
    Case("no_resize_full_res", "resize", no_resize_full_res, ("resize_size",), "val_033.jpg",
         "read_image RGB at full resolution (1284x642), no resize"),
    Case("float64_tensor", "dtype", float64_tensor, ("dtype",), "val_030.jpg",
         "correct pixels in a float64 tensor (torch.from_numpy without .float())"),
    Case("cv2_inter_nearest", "resize", cv2_inter_nearest, ("resize_interpolation",), "val_019.jpg",
         "cv2 RGB, cv2.resize INTER_NEAREST to the right size"),
    Case("cv2_linear_no_size", "combo", cv2_linear_no_size, ("missing_original_size", "resize_interpolation"),
         "val_040_large.png", "cv2 RGB, cv2.resize INTER_LINEAR to the right size, {'image': x} without height/width"),
]
