"""Load a Detectron2 config + weights safely, pick the device, find class names, and make key mismatches loud.

Checkpoints from users are untrusted: ``.pth``/``.pt`` are read with ``torch.load(weights_only=True)`` (tensors
and plain containers only), ``.safetensors`` with the safetensors package; pickle-only ``.pkl`` files (the
model-zoo format) are refused unless the caller passes ``trust_checkpoint=True``. The tensors are then handed
to detectron2's own ``DetectionCheckpointer`` matching logic.
"""
from __future__ import annotations

import copy
import json
import logging
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .errors import D2DebugError

__all__ = [
    "LoadedModel",
    "load_cfg",
    "load_model",
    "load_demo_model",
    "default_device",
    "read_state_dict",
    "DEMO_DIR",
    "DEMO_CONFIG",
    "DEMO_WEIGHTS",
    "DEMO_CLASSES",
]

DEMO_DIR = Path(__file__).resolve().parent.parent / "sample_data"
DEMO_CONFIG = DEMO_DIR / "demo_config.yaml"
DEMO_WEIGHTS = DEMO_DIR / "demo_model.pth"
DEMO_CLASSES = DEMO_DIR / "classes.json"

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".pkl")


def default_device() -> str:
    """``cuda:0`` when a GPU is available, else ``cpu``."""
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _check_file(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise D2DebugError(f"{path}: {what} not found")
    if path.is_dir():
        raise D2DebugError(f"{path}: is a directory, expected a {what} file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read {what} ({exc.strerror})") from None
    return path.resolve()


def load_cfg(config: str | Path, overrides: Sequence[str] = ()):
    """Merge a YAML config onto ``get_cfg()`` (plus ``KEY VALUE`` overrides). Returns a frozen ``CfgNode``.

    Raises :class:`D2DebugError` naming the file and the problem (YAML error, unknown key, wrong type).
    """
    import yaml
    from detectron2.config import get_cfg

    path = _check_file(Path(config), "config")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise D2DebugError(f"{path}: expected a YAML config (.yaml/.yml), got {path.suffix or 'no suffix'!r}")
    cfg = get_cfg()
    # Configs with _BASE_ may be from the model zoo; their base files are resolved relative to the file.
    try:
        cfg.merge_from_file(str(path), allow_unsafe=False)
        if overrides:
            cfg.merge_from_list(list(overrides))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise D2DebugError(f"{path}: YAML syntax error{where}") from None
    except KeyError as exc:
        raise D2DebugError(f"{path}: unknown config key ({exc.args[0] if exc.args else exc})") from None
    except (ValueError, TypeError, AssertionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise D2DebugError(f"{path}: invalid config value ({msg})") from None
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read config ({exc})") from None
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise D2DebugError(f"{path}: INPUT.FORMAT={cfg.INPUT.FORMAT!r}; d2debug supports BGR and RGB")
    cfg.freeze()
    return cfg


def read_state_dict(weights: str | Path, trust_checkpoint: bool = False) -> dict:
    """Read a checkpoint into a detectron2 checkpoint dict ``{"model": {name: tensor}, ...}`` without running code.

    ``.pth``/``.pt``: ``torch.load(weights_only=True)``; a file that needs arbitrary unpickling is refused.
    ``.safetensors``: safetensors. ``.pkl``: refused unless ``trust_checkpoint`` (pickle runs code on load).
    """
    path = _check_file(Path(weights), "weights")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
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
            return data
        if isinstance(data, dict) and "blobs" in data:
            data = data["blobs"]
        if not isinstance(data, dict):
            raise D2DebugError(f"{path}: checkpoint is not a dict of tensors")
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
    if suffix not in (".pth", ".pt"):
        raise D2DebugError(f"{path}: unknown weights format {suffix!r} (expected .pth, .pt, .safetensors or .pkl)")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise D2DebugError(
            f"{path}: checkpoint holds objects other than tensors and was refused by the safe loader "
            f"(weights_only=True: {first[:160]}); re-save it as {{'model': state_dict}} or .safetensors, or "
            "pass --trust-checkpoint if you trust it"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise D2DebugError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise D2DebugError(f"{path}: checkpoint is a {type(data).__name__}, expected a dict of tensors")
    if "model" not in data:
        data = {"model": data}
    if not isinstance(data["model"], dict):
        raise D2DebugError(f"{path}: checkpoint['model'] is a {type(data['model']).__name__}, expected a state dict")
    return data


def _class_names_from_coco(path: Path) -> list[str]:
    try:
        cats = json.loads(Path(path).read_text())["categories"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise D2DebugError(f"{path}: cannot read COCO categories ({exc})") from None
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])]


@dataclass
class LoadedModel:
    """A built, weight-loaded detectron2 model in ``eval()`` mode, with what is needed to explain it.

    ``device`` is ``"cuda:0"`` or ``"cpu"``. ``class_names_source`` says where the names came from.
    ``lock`` serialises forward passes: stage variants change a few model attributes for one call.
    """

    cfg: object
    model: torch.nn.Module
    class_names: list[str]
    class_names_source: str
    device: str
    config_path: Optional[Path]
    weights_path: Optional[Path]
    load_report: dict = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _copies: dict = field(default_factory=dict, repr=False)

    def model_on(self, device: str) -> torch.nn.Module:
        """The model on ``device`` (``cpu`` or ``cuda``/``cuda:0``), copied once and cached."""
        want = "cpu" if device == "cpu" else "cuda:0"
        if want == self.device:
            return self.model
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise D2DebugError("device=cuda requested but no CUDA GPU is available on this machine")
        if want not in self._copies:
            self._copies[want] = copy.deepcopy(self.model).to(want).eval()
        return self._copies[want]

    def describe(self) -> dict:
        """A JSON-ready summary: architecture, classes, input format, normalization, sizes, thresholds, device."""
        c = self.cfg.MODEL
        return {
            "config": str(self.config_path) if self.config_path else None,
            "weights": str(self.weights_path) if self.weights_path else None,
            "architecture": f"{c.META_ARCHITECTURE} / {c.BACKBONE.NAME}"
            + (f" (ResNet-{c.RESNETS.DEPTH})" if "resnet" in c.BACKBONE.NAME else ""),
            "num_classes": int(c.ROI_HEADS.NUM_CLASSES),
            "class_names": list(self.class_names),
            "class_names_source": self.class_names_source,
            "input_format": self.cfg.INPUT.FORMAT,
            "pixel_mean": [float(v) for v in c.PIXEL_MEAN],
            "pixel_std": [float(v) for v in c.PIXEL_STD],
            "min_size_test": int(self.cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(self.cfg.INPUT.MAX_SIZE_TEST),
            "score_thresh_test": float(c.ROI_HEADS.SCORE_THRESH_TEST),
            "nms_thresh_test": float(c.ROI_HEADS.NMS_THRESH_TEST),
            "detections_per_image": int(self.cfg.TEST.DETECTIONS_PER_IMAGE),
            "device": self.device,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
        }


def load_model(
    config: str | Path,
    weights: str | Path | None = None,
    device: Optional[str] = None,
    class_names: Sequence[str] | str | Path | None = None,
    allow_key_mismatch: bool = False,
    trust_checkpoint: bool = False,
    overrides: Sequence[str] = (),
) -> LoadedModel:
    """Build the model of ``config`` and load ``weights`` (default: ``cfg.MODEL.WEIGHTS``) on ``device``.

    ``device``: ``None`` picks ``cuda:0`` when available, else ``cpu``. ``class_names``: a list, or a COCO
    annotation file whose categories give them; else the metadata registered for ``cfg.DATASETS.TEST[0]``;
    else ``class 0..N-1`` (and the source says so). Missing, unexpected or wrongly shaped checkpoint keys
    raise :class:`D2DebugError` naming them, unless ``allow_key_mismatch``.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import MetadataCatalog
    from detectron2.modeling import build_model

    cfg = load_cfg(config, overrides)
    device = device or default_device()
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise D2DebugError("device=cuda requested but no CUDA GPU is available on this machine")
    cfg.defrost()
    cfg.MODEL.DEVICE = device
    weights = weights or cfg.MODEL.WEIGHTS
    if not weights:
        raise D2DebugError(f"{config}: no weights given and MODEL.WEIGHTS is empty")
    wpath = Path(str(weights)).expanduser()
    if str(weights).startswith(("detectron2://", "http://", "https://")):
        raise D2DebugError(f"{weights}: remote weights are not downloaded; pass a local file")
    cfg.MODEL.WEIGHTS = str(wpath)
    cfg.freeze()
    checkpoint = read_state_dict(wpath, trust_checkpoint=trust_checkpoint)
    try:
        model = build_model(cfg)
    except KeyError as exc:
        raise D2DebugError(f"{config}: unregistered architecture or component ({exc.args[0] if exc.args else exc})") from None
    except (AssertionError, ValueError, TypeError) as exc:
        raise D2DebugError(f"{config}: cannot build the model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    model.eval()
    ckpt = DetectionCheckpointer(model)
    # detectron2 logs key mismatches as warnings and goes on with random layers; we collect them instead.
    logging.getLogger("fvcore.common.checkpoint").setLevel(logging.ERROR)
    incompatible = ckpt._load_model(checkpoint)
    report = {
        "missing_keys": sorted(incompatible.missing_keys),
        "unexpected_keys": sorted(incompatible.unexpected_keys),
        "incorrect_shapes": [(k, list(a), list(b)) for k, a, b in incompatible.incorrect_shapes],
    }
    if not allow_key_mismatch and any(report.values()):
        parts = []
        if report["incorrect_shapes"]:
            shapes = "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in report["incorrect_shapes"][:4])
            parts.append(f"{len(report['incorrect_shapes'])} tensor(s) of the wrong shape ({shapes})")
        if report["missing_keys"]:
            parts.append(f"{len(report['missing_keys'])} missing key(s) ({', '.join(report['missing_keys'][:4])})")
        if report["unexpected_keys"]:
            parts.append(
                f"{len(report['unexpected_keys'])} unexpected key(s) ({', '.join(report['unexpected_keys'][:4])})"
            )
        raise D2DebugError(
            f"{wpath}: checkpoint does not match the config's model: " + "; ".join(parts)
            + " (detectron2 would run on with random layers)"
        )
    model.to(device)

    num = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    names, source = None, ""
    if class_names is not None:
        if isinstance(class_names, (str, Path)):
            names, source = _class_names_from_coco(Path(class_names)), f"COCO categories of {class_names}"
        else:
            names, source = [str(n) for n in class_names], "given"
    elif cfg.DATASETS.TEST and cfg.DATASETS.TEST[0] in MetadataCatalog.list():
        meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        if meta.get("thing_classes"):
            names, source = list(meta.thing_classes), f"metadata of {cfg.DATASETS.TEST[0]}"
    if names is None:
        names, source = [f"class {i}" for i in range(num)], "none found: generic names class 0..N-1"
    if len(names) != num:
        raise D2DebugError(f"{len(names)} class names given ({source}) but the config has NUM_CLASSES={num}")
    return LoadedModel(
        cfg=cfg,
        model=model,
        class_names=names,
        class_names_source=source,
        device=device,
        config_path=Path(config).resolve(),
        weights_path=wpath.resolve(),
        load_report=report,
    )


def load_demo_model(device: Optional[str] = None) -> LoadedModel:
    """The shipped demo model (``sample_data/``), with its class names from ``classes.json``."""
    for p in (DEMO_CONFIG, DEMO_WEIGHTS, DEMO_CLASSES):
        if not p.is_file():
            raise D2DebugError(f"{p}: the demo model file is missing from this checkout")
    names = json.loads(DEMO_CLASSES.read_text())
    model = load_model(DEMO_CONFIG, DEMO_WEIGHTS, device=device, class_names=names)
    model.class_names_source = f"{DEMO_CLASSES.name} beside the demo config"
    return model
