"""What the written suites' inference scripts share, written the way a script writes it (no d2debug in it): the
demo model's test sizes from its config, the ImageNet statistics of torchvision recipes, and a checked
``cv2.imread`` and ``ImageOps.exif_transpose``.

:mod:`.handwritten` and :mod:`.wild` import only this from d2debug, so their cases stay free of the Doctor's code.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageOps

__all__ = ["MIN_SIZE_TEST", "MAX_SIZE_TEST", "IMAGENET_MEAN", "IMAGENET_STD", "imread", "exif_transpose"]

# What the user's config says (cfg.INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST of the demo model).
MIN_SIZE_TEST = 320
MAX_SIZE_TEST = 533
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def imread(path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """``cv2.imread(path, flags)``, which returns ``None`` for a file it cannot read, as a script would check."""
    img = cv2.imread(path, flags)
    if img is None:
        raise FileNotFoundError(f"{path}: cv2.imread cannot read it")
    return img


def exif_transpose(im: Image.Image) -> Image.Image:
    """``ImageOps.exif_transpose(im)``: a new upright image (older Pillow types it as optional)."""
    out = ImageOps.exif_transpose(im)
    assert out is not None
    return out
