"""What a user's code feeds the model, read safely and unpacked: a Detectron2 input dict
``{"image": 3xHxW, "height", "width"}``, a list of them, or a bare tensor/array (``CxHxW`` or ``1xCxHxW``).

Saved inputs are untrusted files: ``numpy.load(allow_pickle=False)`` and ``torch.load(weights_only=True)``
only; a file that needs general unpickling is refused, never unpickled. The container itself already tells
some mistakes (a 4-D batch, a dtype, missing height/width): :func:`container_findings`.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from ..errors import D2DebugError, first_line
from ..findings import Finding
from ..run import preprocess
from ..stages import PipelineSpec

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["UserInput", "parse_user_input", "load_user_input", "make_user_input", "container_findings",
           "preprocess_function", "call_preprocess"]


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
    channels_last: bool = False  # the image was HxWxC (``tensor`` is it permuted to CxHxW for the analysis)

    @property
    def original_size(self) -> Optional[tuple[int, int]]:
        """``(height, width)`` when the dict passed both, else ``None``."""
        return (self.height, self.width) if self.height is not None and self.width is not None else None

    def describe(self) -> str:
        shape = "x".join(str(s) for s in (self.tensor.permute(1, 2, 0) if self.channels_last else self.tensor).shape)
        if self.batch is not None:
            shape = f"{self.batch}x{shape}"
        what = {"dict": "dict", "list_of_dicts": "list of dicts", "tensor": "tensor", "array": "numpy array",
                "list_of_tensors": "list of tensors"}[self.container]
        size = ""
        if self.has_size_keys:
            size = (f", height={self.height}, width={self.width}" if self.original_size is not None
                    else ", no height/width")
        return f"{what}: image {shape} {self.dtype}{size}"


def _dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "")


def _image_to_tensor(img, name: str) -> tuple[torch.Tensor, str, Optional[int], list[str], bool]:
    """A tensor/array image -> (3xHxW float32 analysis copy, dtype name, batch size or None, notes, whether it
    was HxWxC)."""
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
        if img.layout != torch.strided:
            raise D2DebugError(f"{name}: a {str(img.layout).replace('torch.', '')} tensor; the model takes a dense "
                               "3xHxW tensor (tensor.to_dense())")
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
    channels_last = t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3)
    if channels_last:
        # An HxWxC image handed over as it came from cv2/PIL: diagnosed as the image it holds, and named
        # (``channels_last``), since the model cannot run it.
        t = t.permute(2, 0, 1)
    if t.shape[0] == 1:
        # detectron2 runs a 1xHxW image: (x - PIXEL_MEAN) / PIXEL_STD broadcasts it to three channels, so the
        # backbone sees the same plane three times. Diagnose it as that input.
        notes.append("a 1-channel image: the model's normalization broadcasts it to 3 identical channels (a colour "
                     "model then sees a grey image); it was checked as those 3 channels")
        t = t.expand(3, -1, -1)
    if t.shape[0] != 3:
        raise D2DebugError(f"{name}: image has {t.shape[0]} channels (shape {tuple(t.shape)}); expected 3 (CxHxW)")
    if t.shape[1] < 2 or t.shape[2] < 2:
        raise D2DebugError(f"{name}: image of shape {tuple(t.shape)} is too small to analyse")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise D2DebugError(f"{name}: image contains {bad} NaN/inf values")
    return t.contiguous(), dtype, batch, notes, channels_last


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
                             tuple(notes) + u.notes, u.channels_last)
        if isinstance(first, (torch.Tensor, np.ndarray)):
            t, dtype, batch, n2, hwc = _image_to_tensor(first, name)
            return UserInput(t, dtype, "list_of_tensors", batch, None, None, False, name, tuple(notes + n2), hwc)
        raise D2DebugError(f"{name}: list of {type(first).__name__}; expected a list of dicts with an 'image' tensor")
    if isinstance(obj, dict):
        if "image" not in obj:
            keys = ", ".join(map(str, list(obj)[:6])) or "none"
            raise D2DebugError(f"{name}: dict has no 'image' key (keys: {keys}); expected {{'image', 'height', 'width'}}")
        t, dtype, batch, n2, hwc = _image_to_tensor(obj["image"], name)
        h, w = _size_value(obj, "height", name), _size_value(obj, "width", name)
        return UserInput(t, dtype, "dict", batch, h, w, True, name, tuple(notes + n2), hwc)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        t, dtype, batch, n2, hwc = _image_to_tensor(obj, name)
        kind = "array" if isinstance(obj, np.ndarray) else "tensor"
        return UserInput(t, dtype, kind, batch, None, None, False, name, tuple(notes + n2), hwc)
    raise D2DebugError(f"{name}: a {type(obj).__name__} is not a model input; expected a dict, list of dicts or tensor")


TRUST_CODE_HINT = "pass --trust-code (CLI) or tick 'Run my function' (dashboard)"


def preprocess_function(spec: str, trust: bool):
    """The user's preprocessing function named ``FILE.py:FUNCTION``. Importing the file RUNS it: refused unless
    ``trust`` (their explicit say), in one line naming the flag."""
    from ..usercode import import_user_code

    file, sep, func = str(spec).rpartition(":")
    if not sep or not file.endswith(".py") or not func.isidentifier():
        raise D2DebugError(f"{spec}: expected FILE.py:FUNCTION (a Python file and the function in it that takes "
                           "an image path and returns what your code feeds the model)")
    if not trust:
        raise D2DebugError(f"{spec}: calling it runs your code; refused. If you trust it, {TRUST_CODE_HINT}")
    import sys

    module = sys.modules[import_user_code([file])[0]]
    fn = getattr(module, func, None)
    if not callable(fn):
        raise D2DebugError(f"{file}: has no function {func!r}")
    return fn


def call_preprocess(spec: str, image: Union[str, Path], trust: bool, fn=None) -> UserInput:
    """Call the user's ``FILE.py:FUNCTION`` on ``image`` (its path, as a string) and unpack what it returns
    (a tensor, an array, or a detectron2 input dict / list of them). An exception in their code is one line.
    ``fn``: the function already imported by :func:`preprocess_function`."""
    fn = fn or preprocess_function(spec, trust)
    try:
        out = fn(str(image))
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything; say what and where
        raise D2DebugError(f"{spec}: raised {type(exc).__name__} on {Path(image).name}: {first_line(exc)}") from None
    return parse_user_input(out, f"{spec}({Path(image).name!r})")


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
    if data[:6] == b"\x93NUMPY" or suffix in (".npy", ".npz"):
        return parse_user_input(_load_numpy(data, label), label)
    return parse_user_input(_load_torch(data, label), label)


def _load_numpy(data: bytes, label: str):
    """An ``.npy`` array, or an ``.npz``'s ``{image, height, width}`` (or its one array), without pickle."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise D2DebugError(
                f"{label}: numpy file holds Python objects (needs pickle, which can run code); refused. "
                "Save a numeric array: np.save(path, tensor.numpy())"
            ) from None
        raise D2DebugError(f"{label}: not a readable numpy file ({first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise D2DebugError(f"{label}: not a readable numpy file ({first_line(exc)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    with loaded:
        keys = list(loaded.files)
        try:
            if "image" in keys:
                return {k: (loaded[k] if k == "image" else _scalar(loaded[k], k, label)) for k in keys
                        if k in ("image", "height", "width")}
            if len(keys) == 1:
                return loaded[keys[0]]
        except D2DebugError:
            raise
        except ValueError as exc:
            raise D2DebugError(f"{label}: .npz entry needs pickle; refused ({first_line(exc)})") from None
    raise D2DebugError(f"{label}: .npz holds {', '.join(keys) or 'nothing'}; expected 'image' (+ height, width)")


def _scalar(a: np.ndarray, key: str, label: str):
    if a.size != 1:
        raise D2DebugError(f"{label}: .npz '{key}' has shape {a.shape}; expected one number (the original {key})")
    return a.item()


def _load_torch(data: bytes, label: str):
    """What ``torch.save`` wrote, read with ``weights_only=True`` (tensors, dicts, lists, numbers)."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        why = (first_line(msg.split("WeightsUnpickler error:", 1)[1], 100) if "WeightsUnpickler error:" in msg
               else "not plain tensors")
        raise D2DebugError(
            f"{label}: holds pickled Python objects ({why}); refused, not unpickled (it could run code). "
            "Save plain tensors: torch.save({'image': t, 'height': h, 'width': w}, path)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        kind = "zip" if data[:4] == b"PK\x03\x04" else "file"
        raise D2DebugError(
            f"{label}: not a tensor file torch.load or numpy.load can read ({kind}: {first_line(exc, 120)})"
        ) from None


def make_user_input(cfg: CfgNode, image, spec: Optional[PipelineSpec] = None, container: str = "dict",
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
    d: dict[str, object] = {"image": t}
    if spec.original_size == "pass":
        d.update(height=h, width=w)
    if container == "dict":
        return d
    if container == "list":
        return [d]
    raise ValueError(f"container={container!r} is not one of dict, list, tensor, batch")


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
    if ui.channels_last:
        h, w = int(ui.tensor.shape[1]), int(ui.tensor.shape[2])
        findings.append(Finding(
            "channels_last", 0.99,
            f"the image is {h}x{w}x3 (HxWxC, as cv2/PIL/numpy hold it); GeneralizedRCNN reads dimension 0 as the "
            f"channels: PIXEL_MEAN (3x1x1) cannot broadcast over it and the model does not run",
            "torch.as_tensor(image.astype('float32').transpose(2, 0, 1))  # HxWxC -> CxHxW, or tensor.permute(2, 0, 1)"))
    if ui.dtype != "float32":
        if ui.dtype == "uint8":
            ev = ("uint8 image: detectron2 documents float32 0..255; uint8 only works where the normalization happens "
                  "to promote it, and cannot hold any scaled or normalized value")
            conf = 0.95
        elif ui.dtype == "float64":
            ev = ("float64 image: the normalization keeps float64 and the first convolution fails against the "
                  "float32 weights (dtype mismatch)")
            conf = 0.99
        else:
            ev = (f"{ui.dtype} image: detectron2 documents float32; the model's normalization promotes it to float32, "
                  "so it runs, but the values were already rounded to what the type holds (integers lose fractions, "
                  "float16/bfloat16 lose precision) and other code paths (a traced/exported model, AMP) do not "
                  "promote it")
            conf = 0.95
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
