"""Read a checkpoint without running code, and load it with detectron2's own matching.

Checkpoints from users are untrusted: ``.pth``/``.pt`` are read with ``torch.load(weights_only=True)`` (tensors
and plain containers only), ``.safetensors`` with the safetensors package; pickle-only ``.pkl`` files (the
model-zoo format) are refused unless the caller passes ``trust_checkpoint=True``. The tensors are then handed
to detectron2's own ``DetectionCheckpointer`` matching logic, and what did not fit is reported, not skipped.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from .errors import D2DebugError, first_line
from .files import readable_file

__all__ = ["read_state_dict", "load_weights", "key_mismatches"]


def read_state_dict(weights: str | Path, trust_checkpoint: bool = False) -> dict:
    """Read a checkpoint into a detectron2 checkpoint dict ``{"model": {name: tensor}, ...}`` without running code.

    ``.pth``/``.pt``: ``torch.load(weights_only=True)``; a file that needs arbitrary unpickling is refused.
    ``.safetensors``: safetensors. ``.pkl``: refused unless ``trust_checkpoint`` (pickle runs code on load).
    """
    path = readable_file(Path(weights), "weights")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        # Older safetensors releases export it without declaring it in their type stubs.
        from safetensors import SafetensorError  # type: ignore[attr-defined, unused-ignore]
        from safetensors.torch import load_file

        try:
            return {"model": load_file(str(path))}
        except (SafetensorError, OSError, ValueError) as exc:
            raise D2DebugError(f"{path}: not a valid safetensors file ({exc})") from None
    if suffix == ".pkl":
        if not trust_checkpoint:
            raise D2DebugError(
                f"{path}: .pkl checkpoints are pickles and can run code when loaded; refused. If you trust "
                "this file, pass --trust-checkpoint (CLI) or tick 'Trust this checkpoint' (dashboard)"
            )
        # The user opted in: read it the way detectron2's DetectionCheckpointer reads model-zoo pickles.
        with open(path, "rb") as f:
            try:
                data = pickle.load(f, encoding="latin1")
            except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
                raise D2DebugError(f"{path}: cannot unpickle checkpoint ({type(exc).__name__})") from None
        if isinstance(data, dict) and "model" in data and "__author__" in data:
            return _checked(path, data)
        if isinstance(data, dict) and "blobs" in data:
            data = data["blobs"]
        if not isinstance(data, dict):
            raise D2DebugError(f"{path}: checkpoint is not a dict of tensors")
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.endswith("_momentum"))}
        return _checked(path, {"model": data, "__author__": "Caffe2", "matching_heuristics": True})
    if suffix not in (".pth", ".pt"):
        raise D2DebugError(f"{path}: unknown weights format {suffix!r} (expected .pth, .pt, .safetensors or .pkl)")
    if path.stat().st_size == 0:
        raise D2DebugError(f"{path}: empty file, not a PyTorch checkpoint")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise D2DebugError(
            f"{path}: checkpoint holds objects other than tensors and was refused by the safe loader "
            f"(weights_only=True: {first_line(exc, 160)}); re-save it as {{'model': state_dict}} or .safetensors, "
            "or pass --trust-checkpoint if you trust it"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise D2DebugError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise D2DebugError(f"{path}: checkpoint is a {type(data).__name__}, expected a dict of tensors")
    if "model" not in data:
        data = {"model": data}
    return _checked(path, data)


def _checked(path: Path, checkpoint: dict) -> dict:
    """``checkpoint`` when its ``model`` is a state dict (names -> tensors or arrays), else one line naming
    the first entry that is not (detectron2's loader would fail on it with a Python error)."""
    import numpy as np

    sd = checkpoint["model"]
    if not isinstance(sd, dict):
        raise D2DebugError(f"{path}: checkpoint['model'] is a {type(sd).__name__}, expected a state dict")
    for k, v in sd.items():
        if not isinstance(k, str):
            raise D2DebugError(f"{path}: checkpoint key {k!r} is a {type(k).__name__}; state dict keys are names")
        if not isinstance(v, (torch.Tensor, np.ndarray)):
            raise D2DebugError(f"{path}: checkpoint entry {k!r} is a {type(v).__name__}, not a tensor")
    return checkpoint


def load_weights(model: torch.nn.Module, checkpoint: dict) -> dict:
    """Load ``checkpoint`` with detectron2's own matching (``DetectionCheckpointer``: name heuristics for
    model-zoo and Caffe2 files) and return what did not fit: ``missing_keys``, ``unexpected_keys`` (sorted
    names) and ``incorrect_shapes`` (``(name, checkpoint shape, model shape)``)."""
    from detectron2.checkpoint import DetectionCheckpointer

    # detectron2 logs key mismatches as warnings and goes on with random layers; we collect them instead.
    logging.getLogger("fvcore.common.checkpoint").setLevel(logging.ERROR)
    incompatible = DetectionCheckpointer(model)._load_model(checkpoint)
    return {
        "missing_keys": sorted(incompatible.missing_keys),
        "unexpected_keys": sorted(incompatible.unexpected_keys),
        "incorrect_shapes": [(k, list(a), list(b)) for k, a, b in incompatible.incorrect_shapes],
    }


def key_mismatches(report: dict, limit: int) -> list[str]:
    """One phrase per kind of checkpoint mismatch in a load ``report`` (see :attr:`LoadedModel.load_report`),
    each naming its first ``limit`` keys (the CLI's error line and the dashboard's warning)."""
    parts = []
    if report.get("incorrect_shapes"):
        shapes = "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in report["incorrect_shapes"][:limit])
        parts.append(f"{len(report['incorrect_shapes'])} tensor(s) of the wrong shape ({shapes})")
    if report.get("missing_keys"):
        parts.append(f"{len(report['missing_keys'])} missing key(s) ({', '.join(report['missing_keys'][:limit])})")
    if report.get("unexpected_keys"):
        parts.append(
            f"{len(report['unexpected_keys'])} unexpected key(s) ({', '.join(report['unexpected_keys'][:limit])})"
        )
    return parts
