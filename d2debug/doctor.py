"""Pipeline Doctor: work out which preprocessing stage(s) of a user's own inference code differ from the reference.

Input: a config (the reference pipeline is what ``DefaultPredictor`` does for it), one image file, and what the
user's code feeds the model for that image: a Detectron2 input dict ``{"image": 3xHxW, "height", "width"}``, a
list of them, or a bare tensor/array (``CxHxW`` or ``1xCxHxW``).

The Doctor does not guess from a list of symptoms. It re-renders the image under candidate explanations and
keeps the one that reproduces the user's tensor best:

1. the container: list/dict/tensor, 4-D batch, dtype, height/width (facts, read off the object);
2. the orientation: the EXIF-applied decode (reference) vs the pixels as stored, each rendered at the user's
   size; the one with the smaller residual is what the user decoded;
3. the geometry: the user's size vs ``ResizeShortestEdge.get_output_shape`` of the decoded size (with and
   without the MAX_SIZE clamp, rounding vs truncation, other short sides, no resize, fixed/stretched);
4. the resampler: PIL / cv2 / torch x nearest / bilinear / bicubic / area / lanczos, each rendered from the
   decoded image at the user's size; the smallest residual wins (the right one reproduces the tensor exactly);
5. the values: per user channel, a least-squares affine map from every reference channel (all 6 channel
   permutations are tried); the slope/offset name the value range and any normalization (mean/std estimated);
6. the model side: the first layer's trained BatchNorm statistics say which PIXEL_MEAN/STD the weights were
   trained with; a config whose values do not fit is flagged (``pixel_mean_std``).

No forward pass is needed: everything except step 6 (one 7x7 convolution) is tensor arithmetic.
Finding ids are a public contract: :data:`FINDING_IDS`.
"""
from __future__ import annotations

import io
import itertools
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .errors import D2DebugError
from .run import preprocess  # the same host-side stages run() uses, without the forward pass
from .stages import (
    D2_DEFAULT_PIXEL_MEAN,
    D2_DEFAULT_PIXEL_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PipelineSpec,
    decode,
    resize_image,
    to_model_order,
)

__all__ = [
    "FINDING_IDS",
    "Finding",
    "UserInput",
    "Diagnosis",
    "RESAMPLERS",
    "load_user_input",
    "parse_user_input",
    "preprocess",
    "make_user_input",
    "diagnose",
    "container_findings",
    "norm_check",
]

FINDING_IDS = (
    "channel_order",
    "value_range_0_1",
    "external_normalization",
    "double_normalization",
    "pixel_mean_std",
    "resize_size",
    "resize_aspect",
    "resize_interpolation",
    "exif_orientation",
    "missing_original_size",
    "dtype",
    "batch_contract",
    "match",
)
# Tie-break order for findings of equal confidence: the earlier a stage, the earlier it is listed.
_RANK = {k: i for i, k in enumerate((
    "batch_contract", "dtype", "exif_orientation", "channel_order", "value_range_0_1", "double_normalization",
    "external_normalization", "pixel_mean_std", "resize_aspect", "resize_size", "resize_interpolation",
    "missing_original_size", "match",
))}

# (backend, interpolation) candidates, the reference first. Lanczos has no torch version.
RESAMPLERS: tuple[tuple[str, str], ...] = (
    ("pil", "bilinear"), ("pil", "nearest"), ("pil", "bicubic"), ("pil", "area"), ("pil", "lanczos"),
    ("cv2", "nearest"), ("cv2", "bilinear"), ("cv2", "bicubic"), ("cv2", "area"), ("cv2", "lanczos"),
    ("torch", "nearest"), ("torch", "bilinear"), ("torch", "bicubic"), ("torch", "area"),
    ("torch_antialias", "bilinear"), ("torch_antialias", "bicubic"),
)
_RESAMPLER_CODE = {
    "pil": "PIL Image.resize(..., Image.{})",
    "cv2": "cv2.resize(..., interpolation=cv2.INTER_{})",
    "torch": "F.interpolate(..., mode='{}')",
    "torch_antialias": "F.interpolate(..., mode='{}', antialias=True)",
}
_PIL_NAMES = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "BOX", "lanczos": "LANCZOS"}
_CV2_NAMES = {"nearest": "NEAREST", "bilinear": "LINEAR", "bicubic": "CUBIC", "area": "AREA", "lanczos": "LANCZOS4"}

# Residuals are RMS errors in grey levels (0..255 units of the reference image) after the best affine map.
_EXACT = 0.05  # below this the explanation reproduces the tensor up to float rounding
_UNEXPLAINED = 2.0  # above this something the Doctor does not model remains


@dataclass(frozen=True)
class Finding:
    """One diagnosed difference. ``id`` is one of :data:`FINDING_IDS`; ``confidence`` in [0, 1]; ``evidence``
    quotes the measured numbers; ``fix`` is the correct code for the Detectron2 contract."""

    id: str
    confidence: float
    evidence: str
    fix: str

    def __post_init__(self) -> None:
        if self.id not in FINDING_IDS:
            raise ValueError(f"finding id {self.id!r} is not one of {', '.join(FINDING_IDS)}")

    def to_dict(self) -> dict:
        return {"id": self.id, "confidence": round(float(self.confidence), 3), "evidence": self.evidence,
                "fix": self.fix}


# ---------------------------------------------------------------------------------------------------------------
# What the user's code feeds the model


@dataclass(frozen=True)
class UserInput:
    """The user's model input, unpacked.

    ``tensor``: ``3xHxW`` float32 CPU copy of the (first) image, values as the user had them (analysis copy;
    the original dtype is in ``dtype``). ``container``: ``dict``, ``list_of_dicts``, ``tensor``, ``array``,
    ``list_of_tensors``. ``batch``: the leading batch size when the image was 4-D, else ``None``.
    ``height``/``width``: from a dict (``None`` when absent); ``has_size_keys`` says whether the container
    could carry them at all (only dicts can).
    """

    tensor: torch.Tensor
    dtype: str
    container: str
    batch: Optional[int]
    height: Optional[int]
    width: Optional[int]
    has_size_keys: bool
    source: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        shape = "x".join(str(s) for s in self.tensor.shape)
        if self.batch is not None:
            shape = f"{self.batch}x{shape}"
        what = {"dict": "dict", "list_of_dicts": "list of dicts", "tensor": "tensor", "array": "numpy array",
                "list_of_tensors": "list of tensors"}[self.container]
        size = ""
        if self.has_size_keys:
            size = (f", height={self.height}, width={self.width}" if self.height is not None and self.width is not None
                    else ", no height/width")
        return f"{what}: image {shape} {self.dtype}{size}"


def _dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "")


def _image_to_tensor(img, name: str) -> tuple[torch.Tensor, str, Optional[int], list[str]]:
    """A tensor/array image -> (3xHxW float32 analysis copy, dtype name, batch size or None, notes)."""
    notes: list[str] = []
    if isinstance(img, np.ndarray):
        if img.dtype == object or not (np.issubdtype(img.dtype, np.number) or img.dtype == np.bool_):
            raise D2DebugError(f"{name}: array of dtype {img.dtype} is not an image")
        dtype = str(img.dtype)
        t = torch.from_numpy(np.ascontiguousarray(img).astype(np.float32, copy=False))
    elif isinstance(img, torch.Tensor):
        dtype = _dtype_name(img)
        if img.is_complex():
            raise D2DebugError(f"{name}: complex tensor is not an image")
        t = img.detach().to("cpu", torch.float32)
    else:
        raise D2DebugError(f"{name}: 'image' is a {type(img).__name__}, expected a torch tensor (3xHxW)")
    batch = None
    if t.dim() == 4:
        batch = int(t.shape[0])
        if batch < 1:
            raise D2DebugError(f"{name}: empty batch of shape {tuple(t.shape)}")
        if batch > 1:
            notes.append(f"batch of {batch} images: the first one was checked")
        t = t[0]
    if t.dim() != 3:
        raise D2DebugError(f"{name}: image has shape {tuple(img.shape)}; expected CxHxW (or 1xCxHxW)")
    if t.shape[0] != 3:
        if t.shape[-1] == 3 and t.shape[0] != 3:
            raise D2DebugError(
                f"{name}: image has shape {tuple(t.shape)} (HxWxC); the model takes CxHxW: "
                "torch.as_tensor(img.astype('float32').transpose(2, 0, 1))"
            )
        raise D2DebugError(f"{name}: image has {t.shape[0]} channels (shape {tuple(t.shape)}); expected 3 (CxHxW)")
    if t.shape[1] < 2 or t.shape[2] < 2:
        raise D2DebugError(f"{name}: image of shape {tuple(t.shape)} is too small to analyse")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise D2DebugError(f"{name}: image contains {bad} NaN/inf values")
    return t.contiguous(), dtype, batch, notes


def _size_value(d: dict, key: str, name: str) -> Optional[int]:
    if key not in d:
        return None
    v = d[key]
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise D2DebugError(f"{name}: '{key}' is {v!r}; expected a positive int (the original image {key})")
    return v


def parse_user_input(obj: Any, name: str = "input") -> UserInput:
    """Unpack what a user's code feeds the model (dict, list of dicts, tensor, array, list of tensors).

    Raises :class:`D2DebugError` naming ``name`` when it is not a model input at all.
    """
    notes: list[str] = []
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise D2DebugError(f"{name}: empty list")
        if len(obj) > 1:
            notes.append(f"list of {len(obj)} inputs: the first one was checked")
        first = obj[0]
        if isinstance(first, dict):
            u = parse_user_input(first, name)
            return UserInput(u.tensor, u.dtype, "list_of_dicts", u.batch, u.height, u.width, True, name,
                             tuple(notes) + u.notes)
        if isinstance(first, (torch.Tensor, np.ndarray)):
            t, dtype, batch, n2 = _image_to_tensor(first, name)
            return UserInput(t, dtype, "list_of_tensors", batch, None, None, False, name, tuple(notes + n2))
        raise D2DebugError(f"{name}: list of {type(first).__name__}; expected a list of dicts with an 'image' tensor")
    if isinstance(obj, dict):
        if "image" not in obj:
            keys = ", ".join(map(str, list(obj)[:6])) or "none"
            raise D2DebugError(f"{name}: dict has no 'image' key (keys: {keys}); expected {{'image', 'height', 'width'}}")
        t, dtype, batch, n2 = _image_to_tensor(obj["image"], name)
        h, w = _size_value(obj, "height", name), _size_value(obj, "width", name)
        return UserInput(t, dtype, "dict", batch, h, w, True, name, tuple(notes + n2))
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        t, dtype, batch, n2 = _image_to_tensor(obj, name)
        kind = "array" if isinstance(obj, np.ndarray) else "tensor"
        return UserInput(t, dtype, kind, batch, None, None, False, name, tuple(notes + n2))
    raise D2DebugError(f"{name}: a {type(obj).__name__} is not a model input; expected a dict, list of dicts or tensor")


def load_user_input(source: Union[str, Path, bytes], name: Optional[str] = None) -> UserInput:
    """Read a saved model input SAFELY and unpack it.

    ``.npy``/``.npz``: ``numpy.load(allow_pickle=False)`` (an ``.npz`` may hold ``image``, ``height``,
    ``width``). Anything else: ``torch.load(weights_only=True)``: tensors, dicts, lists and numbers only; a file
    that needs general unpickling (which can run code) is refused, never unpickled. ``source`` is a path or the
    file's bytes (then ``name`` is its file name).
    """
    if isinstance(source, (bytes, bytearray)):
        label = name or "uploaded file"
        data = bytes(source)
        suffix = Path(label).suffix.lower()
    else:
        path = Path(source).expanduser()
        label = name or str(path)
        if not path.exists():
            raise D2DebugError(f"{path}: no such file")
        if not path.is_file():
            raise D2DebugError(f"{path}: not a file")
        data = path.read_bytes()
        suffix = path.suffix.lower()
    if not data:
        raise D2DebugError(f"{label}: empty file")
    is_npy = data[:6] == b"\x93NUMPY"
    is_zip = data[:4] == b"PK\x03\x04"
    if is_npy or suffix in (".npy", ".npz"):
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise D2DebugError(
                    f"{label}: numpy file holds Python objects (needs pickle, which can run code); refused. "
                    "Save a numeric array: np.save(path, tensor.numpy())"
                ) from None
            raise D2DebugError(f"{label}: not a readable numpy file ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise D2DebugError(f"{label}: not a readable numpy file ({exc})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.files)
                try:
                    if "image" in keys:
                        obj = {k: (loaded[k] if k == "image" else loaded[k].item()) for k in keys
                               if k in ("image", "height", "width")}
                    elif len(keys) == 1:
                        obj = loaded[keys[0]]
                    else:
                        raise D2DebugError(f"{label}: .npz holds {', '.join(keys)}; expected 'image' (+ height, width)")
                except ValueError as exc:
                    raise D2DebugError(f"{label}: .npz entry needs pickle; refused ({exc})") from None
        else:
            obj = loaded
        return parse_user_input(obj, label)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        why = msg.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0][:100] if "WeightsUnpickler error:" in msg else "not plain tensors"
        raise D2DebugError(
            f"{label}: holds pickled Python objects ({why}); refused, not unpickled (it could run code). "
            "Save plain tensors: torch.save({'image': t, 'height': h, 'width': w}, path)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        kind = "zip" if is_zip else "file"
        raise D2DebugError(
            f"{label}: not a tensor file torch.load or numpy.load can read ({kind}: {(str(exc).splitlines() or [''])[0][:120]})"
        ) from None
    return parse_user_input(obj, label)


# ---------------------------------------------------------------------------------------------------------------
# The stage chain without the model (the same code path as run.run)


def make_user_input(cfg, image, spec: Optional[PipelineSpec] = None, container: str = "dict",
                    dtype: Optional[torch.dtype] = None):
    """Build what a user pipeline described by ``spec`` feeds the model (for tests and the accuracy suite).

    ``container``: ``dict`` (``{"image", "height", "width"}``; the size keys follow ``spec.original_size``),
    ``list`` (a list with that dict), ``tensor`` (the bare ``3xHxW`` tensor), ``batch`` (a ``1x3xHxW``
    tensor, as in ``model(x)``). ``dtype``: cast the image (e.g. ``torch.uint8`` after rounding).
    """
    spec = spec or PipelineSpec()
    t, (h, w) = preprocess(cfg, image, spec)
    if dtype is not None:
        t = t.round().clamp(0, 255).to(dtype) if dtype == torch.uint8 else t.to(dtype)
    if container == "tensor":
        return t
    if container == "batch":
        return t[None]
    d = {"image": t}
    if spec.original_size == "pass":
        d.update(height=h, width=w)
    if container == "dict":
        return d
    if container == "list":
        return [d]
    raise ValueError(f"container={container!r} is not one of dict, list, tensor, batch")


# ---------------------------------------------------------------------------------------------------------------
# Model-side normalization: do the config's PIXEL_MEAN/STD fit the weights?


def _first_normed_conv(model: torch.nn.Module):
    """The first conv taking 3 channels with a BatchNorm-like ``norm`` holding running statistics, or None."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3:
            norm = getattr(m, "norm", None)
            if norm is not None and getattr(norm, "running_mean", None) is not None:
                return m
            return None
    return None


def _norm_candidates(cfg) -> list[tuple[str, tuple, tuple]]:
    fmt = cfg.INPUT.FORMAT
    inet_mean = tuple(v * 255 for v in IMAGENET_MEAN)
    inet_std = tuple(v * 255 for v in IMAGENET_STD)
    rgb_default = tuple(reversed(D2_DEFAULT_PIXEL_MEAN))

    def order(rgb):  # values given in RGB order -> cfg.INPUT.FORMAT order
        return tuple(rgb) if fmt == "RGB" else tuple(reversed(rgb))

    return [
        ("the config's", tuple(float(v) for v in cfg.MODEL.PIXEL_MEAN), tuple(float(v) for v in cfg.MODEL.PIXEL_STD)),
        ("detectron2's default (model zoo, BGR, std 1)", order(rgb_default), D2_DEFAULT_PIXEL_STD),
        ("detectron2's default means in the wrong channel order", order(tuple(reversed(rgb_default))), D2_DEFAULT_PIXEL_STD),
        ("mean = std = 127.5 (x / 127.5 - 1)", (127.5,) * 3, (127.5,) * 3),
        ("ImageNet mean/std in 0..255 units", order(inet_mean), order(inet_std)),
        ("ImageNet mean/std in the wrong channel order", order(tuple(reversed(inet_mean))), order(tuple(reversed(inet_std)))),
        ("none (mean 0, std 1)", (0.0,) * 3, (1.0,) * 3),
        ("0..1 scaling only (mean 0, std 255)", (0.0,) * 3, (255.0,) * 3),
    ]


def norm_check(model: torch.nn.Module, cfg, reference: torch.Tensor) -> Optional[dict]:
    """Which PIXEL_MEAN/STD the weights were trained with, read from the first layer's BatchNorm statistics.

    ``reference``: the reference model input, ``3xHxW`` float32 0..255 in ``cfg.INPUT.FORMAT`` order. For each
    candidate normalization the stem convolution is applied and its per-channel output compared with the
    trained ``running_mean``/``running_var``: ``score`` = |log(RMS of (y - running_mean) / sqrt(running_var))|,
    ~0 when the input is normalized as in training (one image varies: < ~1), ~log(127.5) = 4.8 when the std is
    off by 127.5. Returns ``None`` when the weights carry no such statistics (random init, frozen folded BN).
    """
    conv = _first_normed_conv(model)
    if conv is None:
        return None
    norm = conv.norm
    rm = norm.running_mean.detach().float().cpu()
    rv = norm.running_var.detach().float().cpu()
    # Untrained BN (0/1) or Caffe2-folded FrozenBN (0/1 with the affine folded in) says nothing.
    if torch.allclose(rm, torch.zeros_like(rm), atol=1e-6) and torch.allclose(rv, torch.ones_like(rv), atol=1e-6):
        return None
    weight = conv.weight.detach().float().cpu()
    bias = conv.bias.detach().float().cpu() if conv.bias is not None else None
    x = reference.float()[None]

    def conv1(t, c):  # the stem convolution restricted to input channel c (it is linear in its input)
        return torch.nn.functional.conv2d(t, weight[:, c:c + 1], None, conv.stride, conv.padding, conv.dilation)[0]

    with torch.no_grad():
        per_channel = [conv1(x[:, c:c + 1], c) for c in range(3)]
        ones = torch.ones_like(x[:, :1])
        per_const = [conv1(ones, c) for c in range(3)]  # zero padding makes the constant term vary at borders
    results = []
    for label, mean, std in _norm_candidates(cfg):
        # conv((x - m) / s) = sum_c conv(x_c) / s_c - sum_c (m_c / s_c) conv(1_c)
        y = sum(per_channel[c] / std[c] - per_const[c] * (mean[c] / std[c]) for c in range(3))
        if bias is not None:
            y = y + bias[:, None, None]
        z2 = ((y - rm[:, None, None]) ** 2).mean(dim=(1, 2)) / rv.clamp_min(1e-8)
        score = abs(0.5 * float(torch.log(z2.clamp_min(1e-12)).median()))
        results.append({"label": label, "mean": [round(v, 3) for v in mean], "std": [round(v, 3) for v in std],
                        "score": round(score, 3)})
    return {"layer_channels": int(rm.numel()), "candidates": results}


# ---------------------------------------------------------------------------------------------------------------
# Fitting


def _affine_matrix(U: np.ndarray, R: np.ndarray):
    """Least-squares ``U[c] ~ a * R[j] + b`` for every pair. ``U``, ``R``: ``3xN`` float64.

    Returns ``(resid, a, b)``, each ``3x3`` indexed ``[c, j]``; ``resid`` is the RMS error in R's units
    (grey levels), i.e. what is left of the user channel after undoing the best affine map.
    """
    mu_u, mu_r = U.mean(1), R.mean(1)
    Uc, Rc = U - mu_u[:, None], R - mu_r[:, None]
    n = U.shape[1]
    var_u = (Uc * Uc).sum(1) / n
    var_r = (Rc * Rc).sum(1) / n
    cov = Uc @ Rc.T / n
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(var_r[None, :] > 1e-12, cov / var_r[None, :], 0.0)
        res_var = np.clip(var_u[:, None] - np.where(var_r[None, :] > 1e-12, cov ** 2 / var_r[None, :], 0.0), 0, None)
        resid = np.where(np.abs(a) > 1e-12, np.sqrt(res_var) / np.abs(a), np.inf)
    # A constant user channel against a constant reference channel is explained exactly (by the offset).
    both_flat = (var_u[:, None] <= 1e-12) & (var_r[None, :] <= 1e-12)
    resid = np.where(both_flat, 0.0, resid)
    a = np.where(both_flat, 1.0, a)
    b = mu_u[:, None] - a * mu_r[None, :]
    return resid, a, b


_PERMS = list(itertools.permutations(range(3)))


def _best_permutation(resid: np.ndarray) -> tuple[tuple[int, ...], float, float]:
    """The channel permutation (user channel c <- reference channel perm[c]) with the smallest RMS residual.

    Identity is kept unless another permutation is clearly better (grey images fit every permutation).
    Returns ``(perm, its residual, identity's residual)``.
    """
    def score(p):
        v = [resid[c, p[c]] for c in range(3)]
        return math.sqrt(sum(x * x for x in v) / 3) if all(np.isfinite(v)) else math.inf

    ident = score((0, 1, 2))
    best = min(_PERMS, key=score)
    if score(best) < ident and (ident - score(best) > 0.5) and score(best) < 0.7 * ident:
        return best, score(best), ident
    return (0, 1, 2), ident, ident


def _fit(U: np.ndarray, img: np.ndarray):
    """Fit the user tensor ``U`` (3xN) against a rendered ``HxWx3`` image; returns (residual, perm, a, b, ident)."""
    R = np.ascontiguousarray(img.transpose(2, 0, 1).reshape(3, -1), dtype=np.float64)
    resid, a, b = _affine_matrix(U, R)
    perm, r, ident = _best_permutation(resid)
    return r, perm, np.array([a[c, perm[c]] for c in range(3)]), np.array([b[c, perm[c]] for c in range(3)]), ident


# ---------------------------------------------------------------------------------------------------------------
# The diagnosis


@dataclass
class Diagnosis:
    """The Doctor's answer for one image.

    ``findings``: most likely first; ``[Finding("match", ...)]`` when the input equals the reference.
    ``reference``: the reference model input, ``3xHxW`` float32 0..255 in ``cfg_format`` order.
    ``user``: the user's image, ``3xhxw`` float32 (a copy, values as fed). ``analysis``: the winning
    explanation and every candidate's residual (for reports and the dashboard).
    """

    findings: list[Finding]
    reference: torch.Tensor
    user: torch.Tensor
    user_input: UserInput
    image: str
    cfg_format: str
    original_size: tuple[int, int]
    analysis: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    @property
    def top(self) -> str:
        return self.findings[0].id if self.findings else "unexplained"

    @property
    def is_match(self) -> bool:
        return self.ids == ["match"]

    def to_dict(self) -> dict:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "image": self.image,
            "original_size": list(self.original_size),
            "reference": {"shape": list(self.reference.shape), "dtype": "float32", "channel_order": self.cfg_format,
                          "range": [round(float(self.reference.min()), 3), round(float(self.reference.max()), 3)]},
            "input": {"container": self.user_input.container, "shape": list(self.user.shape),
                      "dtype": self.user_input.dtype, "batch": self.user_input.batch,
                      "height": self.user_input.height, "width": self.user_input.width,
                      "range": [round(float(self.user.min()), 4), round(float(self.user.max()), 4)]},
            "analysis": self.analysis,
            "notes": list(self.notes),
        }

    def difference(self) -> np.ndarray:
        """Per-pixel ``|user - reference|`` averaged over channels, ``HxW`` float32 in model-input units, on the
        reference's grid (the user tensor is resampled bilinearly when its size differs; see ``notes``)."""
        u = self.user
        if tuple(u.shape[1:]) != tuple(self.reference.shape[1:]):
            u = torch.nn.functional.interpolate(u[None], size=tuple(self.reference.shape[1:]), mode="bilinear",
                                                align_corners=False)[0]
        return (u - self.reference).abs().mean(0).numpy()

    def histograms(self, bins: int = 64):
        """``(reference, user)`` :class:`~d2debug.stats.TensorStats` on shared bins, channels named by format."""
        from .stats import tensor_stats

        return tensor_stats(self.reference, self.user, list(self.cfg_format), bins=bins)

    def histogram_records(self, labels: Sequence[str] = ("reference", "your input"), bins: int = 64) -> list[dict]:
        """Tidy rows ``{pipeline, channel, x, x2, count, fraction}`` of :meth:`histograms`, for charts."""
        rows = []
        for who, st in zip(labels, self.histograms(bins)):
            e = st.edges
            for ch, counts in zip(st.channel_names, st.counts):
                total = max(1, int(counts.sum()))
                rows += [{"pipeline": who, "channel": ch, "x": float(e[k]), "x2": float(e[k + 1]), "count": int(c),
                          "fraction": float(c) / total} for k, c in enumerate(counts)]
        return rows

    def difference_heatmap(self) -> tuple[np.ndarray, float]:
        """:meth:`difference` as an ``HxWx3`` uint8 RGB heat map (black = equal, white-hot = the largest
        difference) and the difference value shown at full scale."""
        import cv2

        d = self.difference()
        top = float(d.max())
        scaled = np.zeros(d.shape, np.uint8) if top <= 0 else np.clip(d / top * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)[:, :, ::-1]), top

    def display_images(self) -> tuple[np.ndarray, np.ndarray]:
        """``(reference, user)`` as ``HxWx3`` uint8 RGB for display: channels read in ``cfg_format`` order (as
        the model reads them), each tensor min-max stretched to 0..255 (so a 0..1 or normalized input is
        visible; its value range is shown by the histograms)."""
        out = []
        for t in (self.reference, self.user):
            a = t.numpy().astype(np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
            img = np.clip(a + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
            out.append(np.ascontiguousarray(img if self.cfg_format == "RGB" else img[:, :, ::-1]))
        return out[0], out[1]

    def report(self) -> str:
        """Human-readable lines (the CLI's text output)."""
        a = self.analysis
        lines = [
            f"image       {self.image} (decoded {self.original_size[0]}x{self.original_size[1]})",
            f"reference   3x{self.reference.shape[1]}x{self.reference.shape[2]} float32 {self.cfg_format} 0..255 "
            f"({a.get('reference_resize', 'ResizeShortestEdge, PIL bilinear')})",
            f"your input  {self.user_input.describe()}, values {float(self.user.min()):.4g}..{float(self.user.max()):.4g}",
        ]
        if "residual" in a:
            lines.append(f"explained   best explanation leaves {a['residual']:.3g} grey levels RMS "
                         f"({a.get('explanation', '')})")
        for i, f in enumerate(self.findings, 1):
            lines.append(f"finding {i}   {f.id} (confidence {f.confidence:.2f})")
            lines.append(f"  evidence  {f.evidence}")
            lines.append(f"  fix       {f.fix}")
        if not self.findings:
            lines.append("finding     none explains the difference (see notes)")
        for n in self.notes:
            lines.append(f"note        {n}")
        return "\n".join(lines)


def _orientation_tag(path: Path) -> Optional[int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            v = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - decode() reports unreadable files with a clear message
        return None
    return v if isinstance(v, int) and 2 <= v <= 8 else None


def _fmt(vals, nd=3) -> str:
    """``[0.485, 0.456, 0.406]``: numbers rounded to ``nd`` decimals, trailing zeros and ``-0`` dropped."""
    out = []
    for v in vals:
        t = f"{float(v) + 0.0:.{nd}f}".rstrip("0").rstrip(".")
        out.append("0" if t in ("-0", "") else t)
    return "[" + ", ".join(out) + "]"


def _reference_resize_code(cfg) -> str:
    return (f"aug = T.ResizeShortestEdge([{cfg.INPUT.MIN_SIZE_TEST}, {cfg.INPUT.MIN_SIZE_TEST}], "
            f"{cfg.INPUT.MAX_SIZE_TEST}); image = aug.get_transform(image).apply_image(image)  "
            "# detectron2.data.transforms as T, on the HxWx3 uint8 image: what DefaultPredictor does")


def _feed_code(cfg) -> str:
    return ("inputs = [{'image': torch.as_tensor(image.astype('float32').transpose(2, 0, 1)), "
            "'height': orig_h, 'width': orig_w}]; model(inputs)  "
            f"# 0..255 float32, {cfg.INPUT.FORMAT} order; the model applies PIXEL_MEAN/STD itself")


def _explain_size(h: int, w: int, H: int, W: int, cfg) -> Optional[Finding]:
    """Compare the user's size ``h x w`` with detectron2's rule for an ``H x W`` decoded image."""
    from detectron2.data import transforms as T

    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    ref = T.ResizeShortestEdge.get_output_shape(H, W, mn, mx) if mn > 0 else (H, W)
    if (h, w) == tuple(ref):
        return None
    fix = _reference_resize_code(cfg)
    ref_txt = f"ResizeShortestEdge({mn}, {mx}) gives {ref[0]}x{ref[1]} (HxW) for the {H}x{W} image"
    if (h, w) == (H, W):
        return Finding("resize_size", 0.98, f"not resized: the input is {h}x{w}, the decoded image's own size; {ref_txt}", fix)
    sy, sx = h / H, w / W
    if abs(sy - sx) > 1.0 / H + 1.0 / W + 1e-9:
        shape = "a fixed square" if h == w else "a fixed size"
        return Finding(
            "resize_aspect", 0.98,
            f"aspect ratio changed: the input is {h}x{w} (w/h {w / h:.3f}), {shape}; the image is {H}x{W} "
            f"(w/h {W / H:.3f}): stretched x{sx / sy:.3f} horizontally; {ref_txt}",
            "keep the aspect ratio (no cv2.resize(image, (S, S))): " + fix,
        )
    short, long_ = min(h, w), max(h, w)
    s0 = mn / min(H, W)
    trunc = (int(H * s0), int(W * s0))
    unclamped = T.ResizeShortestEdge.get_output_shape(H, W, mn, 10 ** 9)
    if (h, w) in (trunc, tuple(unclamped)) and long_ > mx:
        how = "" if (h, w) == tuple(unclamped) else " (and int() truncation)"
        ev = f"no MAX_SIZE clamp{how}: short side {short} = MIN_SIZE_TEST but the long side {long_} > MAX_SIZE_TEST={mx}; {ref_txt}"
    elif (h, w) == trunc:
        ev = f"rounding: {h}x{w} is int() truncation of the scaled size; detectron2 rounds with int(x + 0.5); {ref_txt}"
    else:
        ev = f"scaled x{sy:.3f} to {h}x{w} (short side {short}, long side {long_}); the reference scales x{ref[0] / H:.3f}; {ref_txt}"
        for mn2, mx2, why in ((800, 1333, "detectron2's default INPUT.MIN/MAX_SIZE_TEST: a base config instead of the training config?"),):
            if tuple(T.ResizeShortestEdge.get_output_shape(H, W, mn2, mx2)) == (h, w):
                ev += f"; matches ResizeShortestEdge({mn2}, {mx2}), {why}"
        if long_ == mx and short > ref[0 if H <= W else 1]:
            ev += f"; long side clamped to MAX_SIZE_TEST={mx} with a larger short side than MIN_SIZE_TEST={mn}"
    return Finding("resize_size", 0.98, ev, fix)


def _named_mappings(cfg) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Known value mappings ``user = a * reference + b`` per tensor channel (reference in 0..255)."""
    M = np.array([float(v) for v in cfg.MODEL.PIXEL_MEAN])
    S = np.array([float(v) for v in cfg.MODEL.PIXEL_STD])
    m, s = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    one = np.ones(3)
    # The model's own values first: with PIXEL_MEAN = PIXEL_STD = 127.5, "x / 127.5 - 1" IS double normalization.
    return [
        ("identity", one, 0 * one),
        ("value_range_0_1", one / 255, 0 * one),
        ("double_normalization", 1 / S, -M / S),
        ("ImageNet mean/std (torchvision T.Normalize), RGB order", 1 / (255 * s), -m / s),
        ("ImageNet mean/std in BGR order", 1 / (255 * s[::-1]), -m[::-1] / s[::-1]),
        ("mean = std = 0.5 (x / 127.5 - 1)", 2 * one / 255, -one),
    ]


def _value_findings(U: np.ndarray, Rp: np.ndarray, a: np.ndarray, b: np.ndarray, r_free: float, cfg,
                    quality: float) -> tuple[list[Finding], dict]:
    """Name the value mapping between the user tensor ``U`` and the (channel-matched) reference render ``Rp``
    (both ``3xN``; ``Rp`` in 0..255). Each known mapping is scored by its RMS error in grey levels; the best
    is accepted when it explains the pixels about as well as the free per-channel affine fit ``(a, b)`` with
    residual ``r_free`` (so noise from a decoder or blur does not turn into a made-up normalization).
    Otherwise the free fit's estimated mean/std are reported."""
    model_mean = np.array([float(v) for v in cfg.MODEL.PIXEL_MEAN])
    model_std = np.array([float(v) for v in cfg.MODEL.PIXEL_STD])
    errors = {}
    for name, ah, bh in _named_mappings(cfg):
        errors[name] = float(np.sqrt(np.mean(((U - bh[:, None]) / ah[:, None] - Rp) ** 2)))
    best = min(errors, key=errors.get)  # ties keep the earlier (the model's own values first)
    info = {"value_mapping_errors": {k: round(v, 4) for k, v in errors.items()}}
    fix_feed = _feed_code(cfg)
    with np.errstate(divide="ignore", invalid="ignore"):
        std01 = 1.0 / (255.0 * a)
        mean01 = -b * std01
    est = (f"estimated mean {_fmt(mean01)} / std {_fmt(std01)} in 0..1 units ({_fmt(mean01 * 255, 1)} / "
           f"{_fmt(std01 * 255, 2)} in 0..255)")
    named_ok = errors[best] <= max(1.25 * r_free, r_free + 0.3)
    info["value_mapping"] = best if named_ok else "fitted"
    if named_ok and best == "identity":
        return [], info
    ev_err = f"error {errors[best]:.3g} grey levels vs {errors['identity']:.3g} for 0..255 as is"
    if named_ok and best == "value_range_0_1":
        return [Finding(
            "value_range_0_1", 0.99 * quality,
            f"values are the reference / 255 (slopes {_fmt(a, 5)}, offsets {_fmt(b, 4)}; {ev_err}): a 0..1 tensor "
            "(ToTensor() or / 255); after the model's own normalization the backbone sees a nearly constant image",
            "drop ToTensor() / the division by 255: " + fix_feed,
        )], info
    if named_ok and best == "double_normalization":
        return [Finding(
            "double_normalization", 0.97 * quality,
            f"the tensor is already normalized with the model's own PIXEL_MEAN {_fmt(model_mean, 2)} / PIXEL_STD "
            f"{_fmt(model_std, 2)} ({est}; {ev_err}); GeneralizedRCNN.preprocess_image normalizes again",
            "remove your (x - mean) / std (T.Normalize): " + fix_feed,
        )], info
    if named_ok:
        return [Finding(
            "external_normalization", 0.97 * quality,
            f"{best} applied outside the model: {est}; {ev_err}; the model then applies PIXEL_MEAN "
            f"{_fmt(model_mean, 2)} / PIXEL_STD {_fmt(model_std, 2)} on top",
            "remove T.Normalize(...) and ToTensor(): " + fix_feed,
        )], info
    if np.all(np.abs(a - 1) < 0.25):
        # Still 0..255 with a mild per-channel gain/offset: a colour change (re-encoding, colour conversion),
        # not a normalization. Say so without inventing a stage.
        info["value_note"] = (f"values stay in 0..255 but with a per-channel gain {_fmt(a, 3)} and offset {_fmt(b, 1)} "
                              "(a colour change such as JPEG re-encoding or a colour conversion, not a normalization)")
        return [], info
    if np.all(a > 0):
        return [Finding(
            "external_normalization", 0.9 * quality,
            f"a custom normalization applied outside the model: {est} (fit residual {r_free:.3g} grey levels; the "
            f"closest known mapping, {best}, leaves {errors[best]:.3g}); the model then applies PIXEL_MEAN "
            f"{_fmt(model_mean, 2)} / PIXEL_STD {_fmt(model_std, 2)} on top",
            "remove T.Normalize(...) / the scaling: " + fix_feed,
        )], info
    return [Finding(
        "external_normalization", 0.6 * quality,
        f"an unexpected value mapping: user = a * reference + b with a = {_fmt(a, 5)}, b = {_fmt(b, 3)} "
        "(a negative slope inverts the image)",
        fix_feed,
    )], info


def container_findings(ui: UserInput) -> list[Finding]:
    """Findings read off the container itself: a 4-D batch or list of tensors (``batch_contract``), a dtype
    other than float32 (``dtype``), a dict without height/width (``missing_original_size``)."""
    findings: list[Finding] = []
    if ui.batch is not None or ui.container == "list_of_tensors":
        if ui.container == "list_of_tensors":
            ev = "a list of tensors; GeneralizedRCNN.forward reads x['image'] from each element, so it needs dicts"
            conf = 0.99
        elif ui.container in ("dict", "list_of_dicts"):
            ev = f"the dict's 'image' is a 4-D batch {ui.batch}x{'x'.join(map(str, ui.tensor.shape))}; each dict holds ONE 3xHxW image"
            conf = 0.99
        else:
            ev = (f"a 4-D batch tensor {ui.batch}x{'x'.join(map(str, ui.tensor.shape))}: model(x) with a tensor does not "
                  "follow the contract (GeneralizedRCNN.forward takes list[dict], one dict per image)")
            conf = 0.9
        findings.append(Finding("batch_contract", conf, ev,
                                "model([{'image': x[i], 'height': orig_h, 'width': orig_w} for i in range(len(x))])"
                                "  # one 3xHxW float32 tensor per dict"))
    if ui.dtype != "float32":
        if ui.dtype == "uint8":
            ev = ("uint8 image: detectron2 documents float32 0..255; uint8 only works where the normalization happens "
                  "to promote it, and cannot hold any scaled or normalized value")
            conf = 0.95
        else:
            ev = (f"{ui.dtype} image: the model's weights are float32; float64/float16 inputs fail in the first "
                  "convolution (dtype mismatch) or lose precision")
            conf = 0.99
        findings.append(Finding("dtype", conf, ev, "image = image.to(torch.float32)  # or torch.as_tensor("
                                "img.astype('float32').transpose(2, 0, 1)), values 0..255"))
    if ui.has_size_keys and (ui.height is None or ui.width is None):
        missing = "height/width" if ui.height is None and ui.width is None else "height" if ui.height is None else "width"
        findings.append(Finding(
            "missing_original_size", 0.99,
            f"the dict has no {missing}: boxes come back in the {ui.tensor.shape[1]}x{ui.tensor.shape[2]} input "
            "frame, not the original image's",
            "{'image': tensor, 'height': orig_h, 'width': orig_w}  # the ORIGINAL size: detector_postprocess "
            "rescales boxes to it",
        ))
    return findings


def diagnose(model_or_cfg, image: Union[str, Path], user_input: Union[UserInput, Any],
             fingerprint: Optional[dict] = None) -> Diagnosis:
    """Diagnose one user model input against the reference pipeline on ``image``.

    ``model_or_cfg``: a :class:`~d2debug.model.LoadedModel` (its config is the reference, and its weights
    are checked against PIXEL_MEAN/STD), a detectron2 ``CfgNode``, or ``None`` with a ``fingerprint`` (then
    the fingerprint's recorded stage values are the reference). ``user_input``: a :class:`UserInput` or any
    object :func:`parse_user_input` accepts. ``fingerprint``: a loaded pipeline fingerprint; when given, the
    recorded training-time stage values are the reference and the config is checked against them.
    """
    from .fingerprint import cfg_from_fingerprint, check_config, check_statistics

    model = getattr(model_or_cfg, "model", None)
    cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
    if cfg is None and fingerprint is None:
        raise D2DebugError("the Doctor needs a config (or a model) or a pipeline fingerprint")
    ui = user_input if isinstance(user_input, UserInput) else parse_user_input(user_input)
    ref_cfg = cfg_from_fingerprint(fingerprint) if fingerprint is not None else cfg
    deploy_cfg = cfg if cfg is not None else ref_cfg
    path = Path(image)
    fmt = ref_cfg.INPUT.FORMAT

    dec_ref = decode(path, "detectron2")
    img_ref = np.ascontiguousarray(to_model_order(dec_ref.image, dec_ref.order, fmt, "cfg"))
    reference, (H, W) = preprocess(ref_cfg, dec_ref)
    findings: list[Finding] = []
    notes = list(ui.notes) + [n for n in dec_ref.notes if "EXIF" not in n]
    analysis: dict = {"reference_resize": f"ResizeShortestEdge({ref_cfg.INPUT.MIN_SIZE_TEST}, "
                                          f"{ref_cfg.INPUT.MAX_SIZE_TEST}), PIL bilinear"}

    # 1. The container (facts read off the object).
    findings += container_findings(ui)

    U = ui.tensor.numpy().reshape(3, -1).astype(np.float64)
    h, w = int(ui.tensor.shape[1]), int(ui.tensor.shape[2])

    # 2. Orientation: the reference decode vs the pixels as stored (EXIF ignored), each rendered at the user's size.
    tag = _orientation_tag(path)
    orient = [("exif_applied", img_ref)]
    if tag is not None:
        raw = decode(path, "pil")
        orient.append(("as_stored", np.ascontiguousarray(to_model_order(raw.image, raw.order, fmt, "cfg"))))
    orient_scores = {}
    for name, img in orient:
        rendered = img if img.shape[:2] == (h, w) else resize_image(img, h, w, "bilinear", "pil")
        orient_scores[name] = _fit(U, rendered)[0]
    chosen, base = "exif_applied", img_ref
    if tag is not None:
        r_ref, r_raw = orient_scores["exif_applied"], orient_scores["as_stored"]
        analysis["orientation_residuals"] = {k: round(v, 3) for k, v in orient_scores.items()}
        if r_raw < 0.5 * r_ref:
            chosen, base = "as_stored", orient[1][1]
            findings.append(Finding(
                "exif_orientation", float(np.clip(1 - r_raw / max(r_ref, 1e-9), 0.5, 0.99)),
                f"the file's EXIF orientation is {tag} but the pixels were used as stored "
                f"({orient[1][1].shape[0]}x{orient[1][1].shape[1]} instead of {H}x{W}): residual {r_raw:.2f} "
                f"grey levels against the unrotated decode vs {r_ref:.2f} against the reference decode",
                "image = detectron2.data.detection_utils.read_image(path, format='BGR')  # applies EXIF; or "
                "PIL.ImageOps.exif_transpose(Image.open(path)), or cv2.imread(path)",
            ))
    Hc, Wc = base.shape[:2]
    analysis["orientation"] = chosen

    # 3. Geometry.
    size_finding = _explain_size(h, w, Hc, Wc, ref_cfg)
    if size_finding is not None:
        findings.append(size_finding)

    # 4. Resampler: re-render every candidate at the user's size; the right one reproduces the tensor.
    if (h, w) == (Hc, Wc):
        renders = {("none", "none"): base}
    else:
        renders = {RESAMPLERS[0]: resize_image(base, h, w, RESAMPLERS[0][1], RESAMPLERS[0][0])}
    fits = [(key, _fit(U, img)) for key, img in renders.items()]
    if (h, w) != (Hc, Wc) and fits[0][1][0] > _EXACT:
        # The reference resampler does not reproduce the pixels exactly: try every other one.
        for be, it in RESAMPLERS[1:]:
            renders[(be, it)] = resize_image(base, h, w, it, be)
            fits.append(((be, it), _fit(U, renders[(be, it)])))
    analysis["resampler_residuals"] = {f"{k[0]}/{k[1]}": round(float(f[0]), 4) for k, f in fits}
    best_key, best = min(fits, key=lambda kf: kf[1][0])
    ref_fit = fits[0][1]
    residual, perm, a, b, ident = best
    # Decisive: clearly better than the reference resampler, or an exact reproduction where the reference is not
    # exact (e.g. antialiased F.interpolate, which differs from PIL bilinear by little more than uint8 rounding).
    exact_only = residual < _EXACT and ref_fit[0] > 2 * _EXACT
    if best_key != fits[0][0] and ((ref_fit[0] - residual > 0.25 and residual < 0.67 * ref_fit[0]) or exact_only):
        be, it = best_key
        names = _PIL_NAMES if be == "pil" else _CV2_NAMES if be == "cv2" else {k: k for k in _PIL_NAMES}
        code = _RESAMPLER_CODE[be].format(names[it])
        runner = sorted((f[0], f"{k[0]}/{k[1]}") for k, f in fits if k != best_key)[0]
        small = (f"; a small difference: {ref_fit[0]:.2f} grey levels RMS, about uint8 rounding"
                 if ref_fit[0] < 1.0 else "")
        findings.append(Finding(
            "resize_interpolation", float(np.clip(1 - residual / ref_fit[0], 0.5, 0.97) * min(1.0, 0.5 + ref_fit[0])),
            f"the pixels are best explained by {be} {it} ({code}): residual {residual:.3f} grey levels vs "
            f"{ref_fit[0]:.3f} for the reference PIL bilinear (next best {runner[1]} {runner[0]:.3f}){small}",
            "resize the uint8 HxWx3 image with detectron2's transform (PIL bilinear, antialiased when "
            "downscaling), not cv2.resize / F.interpolate: " + _reference_resize_code(ref_cfg),
        ))
    else:
        best_key, (residual, perm, a, b, ident) = fits[0]
    Rp = np.ascontiguousarray(renders[best_key].transpose(2, 0, 1).reshape(3, -1), dtype=np.float64)[list(perm)]
    del renders
    analysis.update(resampler=f"{best_key[0]}/{best_key[1]}", residual=round(float(residual), 4),
                    permutation=list(perm), slope=[float(f"{v:.6g}") for v in a], offset=[float(f"{v:.6g}") for v in b])
    quality = 1.0 / (1.0 + max(0.0, residual - _EXACT) / 5.0)

    # 5. Values: channel permutation, then the affine map per channel.
    if perm != (0, 1, 2):
        src = "".join(fmt[p] for p in perm)
        findings.append(Finding(
            "channel_order", float(np.clip((1 - residual / max(ident, 1e-9)) * quality, 0.5, 0.99)),
            f"the tensor's channels are {src} but the model (INPUT.FORMAT={fmt}) wants {fmt}: residual "
            f"{residual:.2f} grey levels with the channels reordered vs {ident:.2f} as they stand",
            (f"DefaultPredictor takes the BGR array of cv2.imread / read_image(path, 'BGR') and flips it itself; "
             f"calling the model directly, feed {fmt}: image = read_image(path, format='{fmt}')  # or image[:, :, ::-1]"),
        ))
    value_findings, value_info = _value_findings(U, Rp, a, b, residual, ref_cfg, quality)
    findings += value_findings
    if "value_note" in value_info:
        notes.append(value_info.pop("value_note"))
    analysis.update(value_info)

    # 6. Original size (dicts only).
    # (absent keys are a container finding; here: keys present but not the original size)
    if ui.height is not None and ui.width is not None and (ui.height, ui.width) != (H, W) and not (
            chosen == "as_stored" and (ui.height, ui.width) == (Hc, Wc)):
        what = " (the resized size)" if (ui.height, ui.width) == (h, w) else ""
        findings.append(Finding(
            "missing_original_size", 0.95,
            f"height/width = {ui.height}/{ui.width}{what} but the image is {H}x{W}: boxes are rescaled to the wrong frame",
            f"{{'image': tensor, 'height': {H}, 'width': {W}}}  # the ORIGINAL size",
        ))

    # 7. The model side: the deployment config's PIXEL_MEAN/STD vs the weights / the fingerprint.
    if fingerprint is not None and cfg is not None:
        findings += check_config(fingerprint, cfg)
    if model is not None:
        nc = norm_check(model, deploy_cfg, reference)
        if nc is not None:
            analysis["norm_check"] = nc
            cands = nc["candidates"]
            own, best_c = cands[0], min(cands, key=lambda c: c["score"])
            if own["score"] > 1.5 and own["score"] - best_c["score"] > 1.0 and not any(f.id == "pixel_mean_std" for f in findings):
                findings.append(Finding(
                    "pixel_mean_std", float(np.clip(0.5 + 0.1 * (own["score"] - best_c["score"]), 0.5, 0.9)),
                    f"the weights' first BatchNorm statistics fit PIXEL_MEAN {best_c['mean']} / PIXEL_STD {best_c['std']} "
                    f"({best_c['label']}; activation scale off by x{math.exp(best_c['score']):.2f}), not the config's "
                    f"{own['mean']} / {own['std']} (off by x{math.exp(own['score']):.1f})",
                    f"deploy with the training run's dumped config.yaml, or set cfg.MODEL.PIXEL_MEAN = {best_c['mean']}; "
                    f"cfg.MODEL.PIXEL_STD = {best_c['std']}  # 0..255 units, {deploy_cfg.INPUT.FORMAT} order",
                ))
    if fingerprint is not None:
        extra = check_statistics(fingerprint, ui.tensor, (ui.height, ui.width))
        have = {f.id for f in findings}
        for f in extra:
            if f.id in have:
                notes.append(f"fingerprint statistics agree on {f.id}: {f.evidence}")
            else:
                notes.append(f"fingerprint statistics alone suggest {f.id} (not confirmed by the pixels): {f.evidence}")

    if residual > _UNEXPLAINED:
        notes.append(f"{residual:.2f} grey levels RMS remain after the best explanation: a step the Doctor does not "
                     "model (crop, padding, colour conversion, blur, another decoder) also differs")
    analysis["explanation"] = (f"{chosen.replace('_', ' ')}, {h}x{w}, {best_key[0]}/{best_key[1]}, "
                               f"channels {list(perm)}, slope {_fmt(a, 4)}, offset {_fmt(b, 3)}")
    if not findings:
        if tuple(reference.shape) == tuple(ui.tensor.shape):
            diff = (reference - ui.tensor).abs()
            analysis["max_abs_diff"] = float(diff.max())
            if float(diff.max()) < 0.5:
                findings.append(Finding(
                    "match", 0.99 if float(diff.max()) < 1e-3 else 0.9,
                    f"the input equals the reference: max |difference| {float(diff.max()):.3g}, mean {float(diff.mean()):.3g}",
                    "nothing to fix",
                ))
            else:
                rms = float(diff.pow(2).mean().sqrt())
                if rms < 1.0:
                    findings.append(Finding(
                        "match", 0.6,
                        f"every stage the Doctor checks agrees with the reference; small pixel differences remain "
                        f"(RMS {rms:.2f}, max {float(diff.max()):.1f} grey levels: another JPEG decoder, re-encoding, "
                        "a light filter)",
                        "nothing to fix in the stages the Doctor checks",
                    ))
                else:
                    notes.append(f"the input differs from the reference by RMS {rms:.2f} grey levels (max "
                                 f"{float(diff.max()):.1f}) in a way no stage the Doctor checks explains")
        else:
            notes.append("the input's size differs from the reference, but no resize rule the Doctor knows explains it")
    merged: dict[str, Finding] = {}
    for f in findings:  # the pixels and the fingerprint may both report one stage: one finding, both evidences
        g = merged.get(f.id)
        merged[f.id] = f if g is None else Finding(
            f.id, max(f.confidence, g.confidence), f"{g.evidence}; {f.evidence}", g.fix if g.confidence >= f.confidence else f.fix)
    findings = sorted(merged.values(), key=lambda f: (-round(f.confidence, 3), _RANK[f.id]))
    return Diagnosis(findings, reference, ui.tensor, ui, str(path), fmt, (H, W), analysis, notes)
