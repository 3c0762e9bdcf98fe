"""Example model inputs made the way real inference scripts make them (torchvision transforms, OpenCV, plain
PIL), for the Doctor to diagnose before a user has saved an input of their own.

Each example is written with the libraries a script uses, not with d2debug's stage functions, and carries the
code it runs, so the Doctor page can show the code beside the diagnosis. They run on one of the shipped sample
images (the EXIF example needs a rotated photo).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ..errors import D2DebugError
from ..samples import SAMPLE_IMAGES

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["Example", "EXAMPLES", "example_input"]


@dataclass(frozen=True)
class Example:
    """``build(path, cfg)`` returns what the script feeds the model for the image at ``path``; ``image`` is the
    sample image it runs on; ``code`` is the script's preprocessing as a user would write it."""

    id: str
    title: str
    image: Path
    code: str
    build: Callable[[Path, Any], Any]


def _imread(path: Path) -> np.ndarray:
    """``cv2.imread(path)`` (``HxWx3`` uint8 BGR), as the examples' scripts call it; one line when it fails."""
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise D2DebugError(f"{path}: OpenCV cannot decode this file")
    return img


def _seed_article_resize(path: Path, cfg: CfgNode) -> torch.Tensor:
    import cv2
    from torchvision import transforms as T

    img = cv2.cvtColor(_imread(path), cv2.COLOR_BGR2RGB)
    target = int(cfg.INPUT.MIN_SIZE_TEST)
    h, w = img.shape[:2]
    scale = target / min(h, w)
    img = cv2.resize(img, (int(w * scale), int(h * scale)))
    t = T.Compose([T.ToTensor(), T.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])])(img)
    return t.unsqueeze(0)


def _imagenet_normalize(path: Path, cfg: CfgNode) -> dict:
    from PIL import Image
    from torchvision import transforms as T

    img = Image.open(path).convert("RGB")
    x = T.Compose([T.Resize(int(cfg.INPUT.MIN_SIZE_TEST)), T.ToTensor(),
                   T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])(img)
    return {"image": x, "height": img.height, "width": img.width}


def _cv2_bgr(path: Path, cfg: CfgNode) -> dict:
    from detectron2.data import transforms as T

    img = _imread(path)  # BGR
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = aug.get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)),
            "height": img.shape[0], "width": img.shape[1]}


def _pil_no_exif(path: Path, cfg: CfgNode) -> dict:
    from detectron2.data import transforms as T
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))  # pixels as stored: no ImageOps.exif_transpose
    if cfg.INPUT.FORMAT == "BGR":
        img = img[:, :, ::-1]
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = aug.get_transform(img).apply_image(np.ascontiguousarray(img))
    return {"image": torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)),
            "height": img.shape[0], "width": img.shape[1]}


EXAMPLES: dict[str, Example] = {e.id: e for e in (
    Example(
        "seed_article", "The seed article's \"correct resize\": cv2 + ToTensor + Normalize(0.5, 0.5)",
        SAMPLE_IMAGES / "val_001.jpg",
        "img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)\n"
        "scale = cfg.INPUT.MIN_SIZE_TEST / min(h, w)\n"
        "img = cv2.resize(img, (int(w * scale), int(h * scale)))\n"
        "x = T.Compose([T.ToTensor(), T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])(img)\n"
        "outputs = predictor.model(x.unsqueeze(0))",
        _seed_article_resize,
    ),
    Example(
        "imagenet_normalize", "torchvision Resize + ToTensor + Normalize(ImageNet)",
        SAMPLE_IMAGES / "val_003.jpg",
        "img = Image.open(path).convert('RGB')\n"
        "x = T.Compose([T.Resize(cfg.INPUT.MIN_SIZE_TEST), T.ToTensor(),\n"
        "               T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])(img)\n"
        "outputs = model([{'image': x, 'height': img.height, 'width': img.width}])",
        _imagenet_normalize,
    ),
    Example(
        "cv2_bgr", "cv2.imread (BGR) fed to the model directly",
        SAMPLE_IMAGES / "val_000.jpg",
        "img = cv2.imread(path)  # BGR\n"
        "aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)\n"
        "x = torch.as_tensor(aug.get_transform(img).apply_image(img).astype('float32').transpose(2, 0, 1))\n"
        "outputs = model([{'image': x, 'height': img.shape[0], 'width': img.shape[1]}])",
        _cv2_bgr,
    ),
    Example(
        "pil_no_exif", "PIL Image.open without exif_transpose, on a phone-style rotated photo",
        SAMPLE_IMAGES / "val_044_exif6.jpg",
        "img = np.asarray(Image.open(path).convert('RGB'))  # no ImageOps.exif_transpose\n"
        "aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)\n"
        "x = torch.as_tensor(aug.get_transform(img).apply_image(img).astype('float32').transpose(2, 0, 1))\n"
        "outputs = model([{'image': x, 'height': img.shape[0], 'width': img.shape[1]}])",
        _pil_no_exif,
    ),
)}


def example_input(example_id: str, cfg: CfgNode) -> tuple[Path, Any]:
    """``(image path, what the example script feeds the model)`` for ``cfg``. Raises ``KeyError`` for an
    unknown id."""
    ex = EXAMPLES[example_id]
    return ex.image, ex.build(ex.image, cfg)
