"""Preprocessing stages: one frozen :class:`PipelineSpec` and a pure function per stage.

The chain (see ``run.py``)::

    file --decode--> HxWx3 uint8 (BGR or RGB, named) --channel order--> the order fed to the model
         --resize--> HxWx3 (uint8 from PIL/cv2, float32 from torch) --value range / external norm-->
         3xHxW float32 tensor ("model input") --model: (x - PIXEL_MEAN) / PIXEL_STD--> "what the backbone sees"

Every function returns new arrays and never modifies its input. Field names and values are a public contract:
the CLI's ``--set KEY=VALUE``, the dashboard and the reports use them.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch

from .errors import D2DebugError

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = [
    "PipelineSpec",
    "Decoded",
    "FIELD_CHOICES",
    "StageValueError",
    "check_value",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "D2_DEFAULT_PIXEL_MEAN",
    "D2_DEFAULT_PIXEL_STD",
    "decode",
    "model_order",
    "to_model_order",
    "resize_shape",
    "resize_image",
    "resize",
    "to_input_tensor",
    "external_norm_values",
    "model_norm_values",
    "custom_norm",
    "parse_assignment",
    "Order",
]

Decoder = Literal["detectron2", "cv2", "pil", "pil_exif"]
ChannelOrder = Literal["cfg", "swapped"]
ResizePolicy = Literal["shortest_edge", "shortest_edge_noclamp", "fixed", "none"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]
Backend = Literal["pil", "cv2", "torch", "torch_antialias"]
ValueRange = Literal["0_255", "0_1"]
OriginalSize = Literal["pass", "omit"]
Precision = Literal["fp32", "fp16"]
Device = Literal["cpu", "cuda"]
Order = Literal["BGR", "RGB"]

# torchvision / ImageNet statistics in 0..1 units, RGB order (what `T.Normalize` users paste).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# detectron2's get_cfg() defaults in 0..255 units, BGR order (the model-zoo values).
D2_DEFAULT_PIXEL_MEAN = (103.53, 116.28, 123.675)
D2_DEFAULT_PIXEL_STD = (1.0, 1.0, 1.0)

MAX_SIZE = 8192  # the largest resize_size side accepted, in pixels


class StageValueError(D2DebugError):
    """A bad value for one :class:`PipelineSpec` field, as data: ``field``, ``value`` (as given: the typed value,
    or the text that did not parse) and ``reason``. ``str``: the one line ``field=value: reason``."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        shown = f"{value[0]}x{value[1]}" if isinstance(value, tuple) and len(value) == 2 else repr(value)
        super().__init__(f"{field}={shown}: {reason}")

    def __reduce__(self):
        # Crosses process boundaries (DataLoader workers, torch.distributed): rebuilt from its fields.
        return type(self), (self.field, self.value, self.reason)


@dataclass(frozen=True)
class PipelineSpec:
    """One inference pipeline. The defaults are the reference (what ``DefaultPredictor`` does) on CPU.

    ``resize_size``: ``None`` means the config's ``MIN_SIZE_TEST`` (a square of it for ``fixed``); an int is a
    short side (a square for ``fixed``); a ``(width, height)`` pair is for ``fixed`` only.
    ``score_thresh`` / ``nms_thresh``: ``None`` means the config's value.
    """

    decoder: Decoder = "detectron2"
    channel_order: ChannelOrder = "cfg"
    resize: ResizePolicy = "shortest_edge"
    resize_size: Optional[Union[int, tuple[int, int]]] = None
    interpolation: Interpolation = "bilinear"
    resize_backend: Backend = "pil"
    value_range: ValueRange = "0_255"
    external_norm: str = "none"
    model_norm: str = "cfg"
    original_size: OriginalSize = "pass"
    precision: Precision = "fp32"
    device: Device = "cpu"
    score_thresh: Optional[float] = None
    nms_thresh: Optional[float] = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name))
        rs = self.resize_size
        if isinstance(rs, tuple) and self.resize != "fixed":
            raise StageValueError("resize_size", rs, "a WxH size only applies to resize=fixed")
        if self.resize_backend in ("torch", "torch_antialias") and self.interpolation == "lanczos":
            raise StageValueError("interpolation", "lanczos", "not available with resize_backend=torch")
        if self.resize_backend == "torch_antialias" and self.interpolation not in ("bilinear", "bicubic"):
            raise StageValueError("interpolation", self.interpolation,
                                  "resize_backend=torch_antialias supports bilinear and bicubic only")

    def replace(self, **changes) -> "PipelineSpec":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def with_assignment(self, text: str) -> "PipelineSpec":
        """A copy with one ``KEY=VALUE`` applied (the CLI's ``--set``)."""
        key, value = parse_assignment(text)
        return self.replace(**{key: value})

    def to_dict(self) -> dict[str, str]:
        """Every field as the string the CLI accepts, for JSON and display."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                out[f.name] = "cfg"
            elif isinstance(v, tuple):
                out[f.name] = f"{v[0]}x{v[1]}"
            else:
                out[f.name] = str(v)
        return out

    def differences(self, other: "PipelineSpec") -> dict[str, tuple[str, str]]:
        """Fields whose values differ: ``{name: (self value, other value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


# The values of each field: a Literal field's are its type's; the free-form ones are described.
_FREE_FORM: dict[str, tuple[str, ...]] = {
    "external_norm": ("none", "imagenet", "half", "custom:m1,m2,m3/s1,s2,s3"),
    "model_norm": ("cfg", "d2_default", "custom:m1,m2,m3/s1,s2,s3"),
    "score_thresh": ("cfg", "<float in [0, 1]>"),
    "nms_thresh": ("cfg", "<float in [0, 1]>"),
    "resize_size": ("cfg", "<short side, e.g. 320>", "<WxH for fixed, e.g. 320x320>"),
}
_HINTS = get_type_hints(PipelineSpec)
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    f.name: get_args(_HINTS[f.name]) if get_origin(_HINTS[f.name]) is Literal else _FREE_FORM[f.name]
    for f in dataclasses.fields(PipelineSpec)
}


def check_value(name: str, value: object) -> None:
    """THE check of one :class:`PipelineSpec` field's typed value (``None`` is the config's value where a field
    allows it); the CLI's ``--set`` and the spec itself both go through it. Raises :class:`StageValueError`."""
    if name in ("external_norm", "model_norm"):
        if not isinstance(value, str):
            raise StageValueError(name, value, f"is not one of {', '.join(FIELD_CHOICES[name])}")
        if name == "external_norm":
            external_norm_values(value)
        elif value.startswith(CUSTOM):
            _parse_mean_std(value, name)
        elif value not in ("cfg", "d2_default"):
            raise StageValueError(name, value, f"is not one of {', '.join(FIELD_CHOICES[name])}")
    elif name in ("score_thresh", "nms_thresh"):
        if value is not None and not (isinstance(value, float) and 0.0 <= value <= 1.0):
            raise StageValueError(name, value, "must be a float between 0 and 1, or cfg")
    elif name == "resize_size":
        sides: tuple = value if isinstance(value, tuple) and len(value) == 2 else (value,)
        if value is not None and not all(isinstance(v, int) for v in sides):
            raise StageValueError(name, value, "must be a short side (e.g. 320) or WxH")
        if value is not None and not all(1 <= v <= MAX_SIZE for v in sides):
            raise StageValueError(name, value, f"out of range (1..{MAX_SIZE} pixels)")
    elif name not in FIELD_CHOICES:
        raise StageValueError(name, value, f"unknown key (known: {', '.join(FIELD_CHOICES)})")
    elif value not in FIELD_CHOICES[name]:
        raise StageValueError(name, value, f"is not one of {', '.join(FIELD_CHOICES[name])}")


def parse_assignment(text: str) -> tuple[str, object]:
    """Parse ``KEY=VALUE`` (the CLI's ``--set``) into a field name and its typed value, checked by
    :func:`check_value`. Raises :class:`StageValueError` for a bad value, :class:`D2DebugError` for text that
    is not ``KEY=VALUE`` of a known key."""
    if "=" not in text:
        raise D2DebugError(f"{text!r}: expected KEY=VALUE")
    key, value = (s.strip() for s in text.split("=", 1))
    if key not in FIELD_CHOICES:
        raise D2DebugError(f"{text!r}: unknown key {key!r} (known: {', '.join(FIELD_CHOICES)})")
    typed: object = value
    if key in ("score_thresh", "nms_thresh", "resize_size") and value == "cfg":
        typed = None
    elif key in ("score_thresh", "nms_thresh"):
        try:
            typed = float(value)
        except ValueError:
            raise StageValueError(key, value, "must be a float between 0 and 1, or cfg") from None
    elif key == "resize_size":
        try:
            typed = tuple(int(p) for p in value.lower().split("x")) if "x" in value.lower() else int(value)
        except ValueError:
            raise StageValueError(key, value, "must be a short side (e.g. 320) or WxH") from None
    check_value(key, typed)
    return key, typed


CUSTOM = "custom:"  # the prefix of a custom mean/std value: custom:m1,m2,m3/s1,s2,s3


def custom_norm(mean, std) -> str:
    """The ``external_norm`` / ``model_norm`` value for a custom mean/std: ``custom:m1,m2,m3/s1,s2,s3``.

    ``mean``, ``std``: three numbers each, or the text of three comma-separated numbers as typed (spaces are
    dropped; the values are validated when a :class:`PipelineSpec` is built with the result)."""
    def part(v) -> str:
        return v.replace(" ", "") if isinstance(v, str) else ",".join(f"{float(x):g}" for x in v)

    return f"{CUSTOM}{part(mean)}/{part(std)}"


def _parse_mean_std(text: str, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    body = text[len(CUSTOM):]
    try:
        m, s = body.split("/")
        mean = tuple(float(v) for v in m.split(","))
        std = tuple(float(v) for v in s.split(","))
    except ValueError:
        raise StageValueError(name, text, "expected custom:m1,m2,m3/s1,s2,s3") from None
    if len(mean) != 3 or len(std) != 3:
        raise StageValueError(name, text, "needs three means and three stds")
    if any(v <= 0 for v in std):
        raise StageValueError(name, text, "every std must be positive")
    return mean, std


def external_norm_values(external_norm: str) -> Optional[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The (mean, std) in 0..1 units applied outside the model, per tensor channel, or ``None`` for none."""
    if external_norm == "none":
        return None
    if external_norm == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if external_norm == "half":
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if external_norm.startswith(CUSTOM):
        return _parse_mean_std(external_norm, "external_norm")
    raise StageValueError("external_norm", external_norm,
                          f"is not one of {', '.join(FIELD_CHOICES['external_norm'])}")


def model_norm_values(model_norm: str, cfg: CfgNode) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model's own PIXEL_MEAN / PIXEL_STD (0..255 units, cfg.INPUT.FORMAT order) for a ``model_norm``."""
    if model_norm == "cfg":
        return tuple(float(v) for v in cfg.MODEL.PIXEL_MEAN), tuple(float(v) for v in cfg.MODEL.PIXEL_STD)
    if model_norm == "d2_default":
        return D2_DEFAULT_PIXEL_MEAN, D2_DEFAULT_PIXEL_STD
    return _parse_mean_std(model_norm, "model_norm")


# ---------------------------------------------------------------------------------------------------------------
# Decode


@dataclass(frozen=True)
class Decoded:
    """A decoded image: ``image`` is ``HxWx3`` uint8 in channel order ``order``; ``notes`` say what was converted."""

    image: np.ndarray
    order: Order
    notes: tuple[str, ...] = field(default=())


def _inspect(path: Path, use=None):
    """Open with PIL to check the file and learn its mode and EXIF orientation, with a clear error if broken.
    ``use(im)``, when given, decodes the open image (so the file is decoded once); otherwise it is loaded to
    check the pixel data. Returns ``(mode, size, orientation, n_frames, use's result or None)``."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise D2DebugError(f"{path}: no such file")
    if not path.is_file():
        raise D2DebugError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode, size = im.mode, im.size
                orientation = im.getexif().get(0x0112, 1)
                n_frames = getattr(im, "n_frames", 1)
                if size[0] < 1 or size[1] < 1:
                    raise D2DebugError(f"{path}: image has zero width or height ({size[0]}x{size[1]})")
                used = use(im) if use is not None else None
                if use is None:
                    im.load()
    except D2DebugError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise D2DebugError(f"{path}: image is larger than Pillow's decompression-bomb limit; refused") from None
    except UnidentifiedImageError:
        raise D2DebugError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise D2DebugError(f"{path}: cannot decode image ({exc})") from None
    return mode, size, orientation, n_frames, used


def _conversion_notes(mode: str, orientation, n_frames: int, applies_exif: bool) -> list[str]:
    notes = []
    if mode in ("L", "LA", "1", "I", "I;16", "F", "P", "CMYK", "RGBA", "PA", "YCbCr", "LAB", "HSV"):
        what = {
            "L": "grayscale replicated to 3 channels",
            "LA": "grayscale+alpha: alpha dropped, gray replicated",
            "1": "1-bit image expanded to 3 channels",
            "I": "32-bit integer image clipped to 8 bits",
            "I;16": "16-bit image clipped to 8 bits",
            "F": "float image clipped to 8 bits",
            "P": "palette image expanded to RGB",
            "PA": "palette+alpha image expanded to RGB, alpha dropped",
            "CMYK": "CMYK converted to RGB",
            "RGBA": "alpha channel dropped (not composited)",
        }.get(mode, f"{mode} converted to RGB")
        notes.append(f"{mode} image: {what}")
    if n_frames > 1:
        notes.append(f"animated/multi-frame image: first of {n_frames} frames used")
    if orientation not in (1, None):
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            notes.append(f"invalid EXIF orientation {orientation!r} ignored")
        elif applies_exif:
            notes.append(f"EXIF orientation {orientation} applied")
        else:
            notes.append(f"EXIF orientation {orientation} IGNORED (pixels used as stored)")
    return notes


def decode(path: str | Path, decoder: Decoder) -> Decoded:
    """Decode an image file like the named decoder does.

    - ``detectron2``: ``detection_utils.read_image(path, "BGR")``: PIL, EXIF orientation applied. BGR.
    - ``cv2``: ``cv2.imread(path, cv2.IMREAD_COLOR)``: libjpeg-turbo, EXIF applied, 16-bit shifted to 8. BGR.
    - ``pil``: ``np.asarray(Image.open(path).convert("RGB"))``: EXIF orientation NOT applied. RGB.
    - ``pil_exif``: as ``pil`` after ``ImageOps.exif_transpose``. RGB.

    Returns ``HxWx3`` uint8, contiguous. Raises :class:`D2DebugError` naming the file when it cannot be read.
    """
    import cv2
    from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy
    from PIL import ImageOps

    path = Path(path)
    check_value("decoder", decoder)
    # The PIL-based decoders decode the image _inspect opened (one decode per call, not two): `detectron2` is
    # read_image's own body (open, _apply_exif_orientation, convert_PIL_to_numpy), so the result is identical.
    use = {
        "detectron2": lambda im: (convert_PIL_to_numpy(_apply_exif_orientation(im), "BGR"), "BGR"),
        "pil": lambda im: (np.asarray(im.convert("RGB")), "RGB"),
        "pil_exif": lambda im: (np.asarray((ImageOps.exif_transpose(im) or im).convert("RGB")), "RGB"),
    }.get(decoder)
    mode, _size, orientation, n_frames, used = _inspect(path, use)
    notes = _conversion_notes(mode, orientation, n_frames, applies_exif=decoder != "pil")
    if used is not None:
        img, order = used
    else:
        try:
            img, order = cv2.imread(str(path), cv2.IMREAD_COLOR), "BGR"
        except cv2.error as exc:
            raise D2DebugError(f"{path}: cannot decode image with {decoder} ({exc})") from None
        if img is None:
            raise D2DebugError(f"{path}: OpenCV cannot decode this file")
    return Decoded(_contiguous(img), order, tuple(notes))


def _contiguous(image: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray``, except that a channel-reversed view (``x[:, :, ::-1]`` of a contiguous uint8
    ``HxWx3``) is copied with OpenCV's vectorised channel swap: the same bytes, about 10x faster than numpy's
    strided copy (and PIL's ``fromarray`` on such a view is as slow)."""
    if image.flags.c_contiguous:
        return image
    base = image[:, :, ::-1] if image.ndim == 3 else image
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and base.flags.c_contiguous:
        import cv2

        return cv2.cvtColor(base, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image)


def model_order(cfg_format: Order, channel_order: ChannelOrder) -> Order:
    """The channel order fed to the model (``"BGR"``/``"RGB"``): ``cfg_format`` (``cfg.INPUT.FORMAT``, as
    ``DefaultPredictor`` does) for ``cfg``, the other one for ``swapped`` (the classic BGR/RGB mix-up)."""
    if cfg_format not in ("BGR", "RGB"):
        raise D2DebugError(f"INPUT.FORMAT={cfg_format!r}: only BGR and RGB are supported")
    if channel_order == "cfg":
        return cfg_format
    return "RGB" if cfg_format == "BGR" else "BGR"


def to_model_order(image: np.ndarray, order: Order, cfg_format: Order, channel_order: ChannelOrder) -> np.ndarray:
    """Return the ``HxWx3`` image (``order`` channels) in the channel order fed to the model
    (:func:`model_order`). A swap returns a contiguous copy with the values of ``image[:, :, ::-1]`` (what
    ``DefaultPredictor`` hands to its resize), so the resize need not copy it again.
    """
    return image if model_order(cfg_format, channel_order) == order else _contiguous(image[:, :, ::-1])


# ---------------------------------------------------------------------------------------------------------------
# Resize


def resize_shape(h: int, w: int, spec: PipelineSpec, min_size_test: int, max_size_test: int) -> tuple[int, int]:
    """Output ``(new_h, new_w)`` of the resize policy for an ``h x w`` image.

    ``shortest_edge`` is detectron2's ``ResizeShortestEdge.get_output_shape`` (MAX_SIZE clamp, rounding);
    ``shortest_edge_noclamp`` scales the short side with no clamp and truncates (``int(x)``); ``fixed`` is a
    stretch to ``W x H``; ``none`` keeps the size.
    """
    from detectron2.data import transforms as T

    if spec.resize == "none":
        return h, w
    if spec.resize == "fixed":
        rs = spec.resize_size
        if rs is None:
            return min_size_test, min_size_test
        if isinstance(rs, int):
            return rs, rs
        return rs[1], rs[0]
    short = spec.resize_size if isinstance(spec.resize_size, int) else min_size_test
    if short <= 0:
        # detectron2 treats MIN_SIZE_TEST == 0 as "no resize".
        return h, w
    if spec.resize == "shortest_edge":
        return T.ResizeShortestEdge.get_output_shape(h, w, short, max_size_test)
    scale = short / min(h, w)
    return int(h * scale), int(w * scale)


def _pil_filter(interpolation: str):
    from PIL import Image

    return {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "area": Image.Resampling.BOX,
        "lanczos": Image.Resampling.LANCZOS,
    }[interpolation]


def resize_image(image: np.ndarray, new_h: int, new_w: int, interpolation: Interpolation, backend: Backend) -> np.ndarray:
    """Resize an ``HxWx3`` uint8 image to ``new_h x new_w``.

    ``pil`` goes through detectron2's own ``ResizeTransform`` (PIL; filters antialias when downscaling; the
    reference with ``bilinear``); ``cv2`` is ``cv2.resize`` (no antialias except ``area``); ``torch`` and
    ``torch_antialias`` are ``F.interpolate`` on float32 (``align_corners=False``). Returns uint8 for PIL and
    cv2, float32 (not rounded) for torch.
    """
    import cv2
    from detectron2.data.transforms import ResizeTransform

    h, w = image.shape[:2]
    if backend == "pil":
        return ResizeTransform(h, w, new_h, new_w, _pil_filter(interpolation)).apply_image(image)
    if backend == "cv2":
        flag = {
            "nearest": cv2.INTER_NEAREST,
            "bilinear": cv2.INTER_LINEAR,
            "bicubic": cv2.INTER_CUBIC,
            "area": cv2.INTER_AREA,
            "lanczos": cv2.INTER_LANCZOS4,
        }[interpolation]
        return cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=flag)
    # np.require: decoders may hand back read-only arrays, which torch.from_numpy warns about.
    t = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].float()
    mode = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic", "area": "area"}[interpolation]
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    if backend == "torch_antialias":
        kwargs["antialias"] = True
    out = torch.nn.functional.interpolate(t, size=(new_h, new_w), mode=mode, **kwargs)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def resize(image: np.ndarray, spec: PipelineSpec, min_size_test: int, max_size_test: int) -> np.ndarray:
    """The resize stage of ``spec`` on an ``HxWx3`` uint8 image (any channel order; channels are untouched).

    The reference (``shortest_edge``, PIL ``bilinear``) is detectron2's own ``ResizeShortestEdge`` augmentation
    exactly as ``DefaultPredictor`` applies it (``MIN_SIZE_TEST``/``MAX_SIZE_TEST`` from the config, or the
    short side ``spec.resize_size``); any other policy is :func:`resize_shape` then :func:`resize_image`.
    ``none`` returns ``image`` itself. Returns uint8 (PIL, cv2) or float32 0..255 (torch backends).
    """
    if spec.resize == "shortest_edge" and spec.interpolation == "bilinear" and spec.resize_backend == "pil":
        from detectron2.data import transforms as T

        short = spec.resize_size if isinstance(spec.resize_size, int) else min_size_test
        return T.ResizeShortestEdge([short, short], max_size_test).get_transform(image).apply_image(image)
    if spec.resize == "none":
        return image
    nh, nw = resize_shape(image.shape[0], image.shape[1], spec, min_size_test, max_size_test)
    return resize_image(image, nh, nw, spec.interpolation, spec.resize_backend)


# ---------------------------------------------------------------------------------------------------------------
# To the model input tensor


def to_input_tensor(image: np.ndarray, value_range: ValueRange, external_norm: str) -> torch.Tensor:
    """``HxWx3`` (uint8 or float, 0..255) -> ``3xHxW`` float32 tensor as fed to the model.

    Reference: ``torch.as_tensor(image.astype("float32").transpose(2, 0, 1))``, 0..255. ``0_1`` divides by 255
    (``ToTensor``). An external normalization (``T.Normalize``) implies the ``ToTensor`` scaling: the result is
    ``(x / 255 - mean) / std`` with mean/std in 0..1 units applied to channels 0, 1, 2 as they stand.
    """
    t = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    if value_range == "0_1" or external_norm != "none":
        t = t / 255.0
    ms = external_norm_values(external_norm)
    if ms is not None:
        mean = torch.tensor(ms[0], dtype=torch.float32)[:, None, None]
        std = torch.tensor(ms[1], dtype=torch.float32)[:, None, None]
        t = (t - mean) / std
    return t
