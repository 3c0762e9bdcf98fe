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
from typing import Optional, Sequence, Union

import torch

from .arch import Arch, arch_of
from .errors import D2DebugError, first_line

__all__ = [
    "LoadedModel",
    "load_cfg",
    "import_user_code",
    "load_model",
    "load_demo_model",
    "default_device",
    "read_state_dict",
    "key_mismatches",
    "parse_class_names",
    "DEMO_DIR",
    "DEMO_CONFIG",
    "DEMO_WEIGHTS",
    "DEMO_CLASSES",
    "DEMO_AUDIT",
    "DEPLOY_EXAMPLE",
]

DEMO_DIR = Path(__file__).resolve().parent.parent / "sample_data"
DEMO_CONFIG = DEMO_DIR / "demo_config.yaml"
DEMO_WEIGHTS = DEMO_DIR / "demo_model.pth"
DEMO_CLASSES = DEMO_DIR / "classes.json"
DEMO_AUDIT = DEMO_DIR / "demo_audit_summary.json"  # the audit of the demo model on its validation images
DEPLOY_EXAMPLE = DEMO_DIR / "deploy_config_example.yaml"  # a typical hand-written deployment config for it

IMPORT_HINT = "register it by importing your code with --import MODULE_OR_FILE (dashboard: the sidebar's 'Your code' field)"


def default_device() -> str:
    """This process's GPU when there is one (``cuda:0``; ``cuda:LOCAL_RANK`` under torchrun, which sets the
    current device), else ``cpu``."""
    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


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
    from .compat import check_newer_keys, get_cfg

    path = _check_file(Path(config), "config")
    if path.suffix.lower() == ".py":
        raise D2DebugError(f"{path}: a LazyConfig (.py); this needs a YAML config (the model loaders read .py "
                           "configs with --trust-config)")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise D2DebugError(f"{path}: expected a YAML config (.yaml/.yml) or a LazyConfig .py, got "
                           f"{path.suffix or 'no suffix'!r}")
    _check_yaml_mapping(path)  # the file and its _BASE_ chain parse and have the shape yacs expects
    cfg = get_cfg()
    # Configs with _BASE_ may be from the model zoo; their base files are resolved relative to the file.
    try:
        cfg.merge_from_file(str(path), allow_unsafe=False)
        if overrides:
            cfg.merge_from_list(list(overrides))
    except KeyError as exc:
        raise D2DebugError(f"{path}: unknown config key ({exc.args[0] if exc.args else exc})") from None
    except (ValueError, TypeError, AssertionError, AttributeError) as exc:
        raise D2DebugError(f"{path}: invalid config value ({first_line(exc)})") from None
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read config ({first_line(exc)})") from None
    check_newer_keys(cfg, str(path))
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise D2DebugError(f"{path}: INPUT.FORMAT={cfg.INPUT.FORMAT!r}; d2debug supports BGR and RGB")
    cfg.freeze()
    return cfg


def _check_yaml_mapping(path: Path, seen: tuple[Path, ...] = ()) -> None:
    """A detectron2 config file is a YAML mapping of sections (``MODEL:``, ``INPUT:``...), possibly on a
    ``_BASE_`` file: say so in one line naming the file when it is empty, a list or a scalar, when a section is
    not a mapping, or when ``_BASE_`` is not a file name, is missing, or leads back to itself. yacs would fail
    on these with a Python error (or recurse forever)."""
    import yaml
    from detectron2.config import CfgNode

    from .compat import get_cfg

    try:
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise D2DebugError(f"{path}: YAML syntax error{where}") from None
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read config ({first_line(exc)})") from None
    if data is None:
        raise D2DebugError(f"{path}: empty config (expected a YAML mapping such as MODEL: ..., INPUT: ...)")
    if not isinstance(data, dict):
        raise D2DebugError(f"{path}: the top level is a {type(data).__name__}, expected a YAML mapping of config "
                           "sections (MODEL: ..., INPUT: ...)")
    defaults = get_cfg()
    for key, value in data.items():
        if isinstance(defaults.get(key), CfgNode) and value is not None and not isinstance(value, dict):
            raise D2DebugError(f"{path}: section {key} is a {type(value).__name__} ({str(value)[:40]!r}); "
                               f"expected a mapping of {key}.* keys")
    base = data.get("_BASE_")
    if base is None:
        return
    if not isinstance(base, str) or not base:
        raise D2DebugError(f"{path}: _BASE_ is {base!r}; expected the path of a base config file")
    if base.startswith(("~", "/", "https://", "http://")):
        base_path = Path(base).expanduser()
    else:
        base_path = path.parent / base
    base_path = base_path.resolve()
    if base_path in seen + (path.resolve(),):
        raise D2DebugError(f"{path}: _BASE_ {base} leads back to {base_path.name}: the base configs form a cycle")
    if not base_path.is_file():
        raise D2DebugError(f"{path}: _BASE_ {base} not found at {base_path}")
    try:
        _check_yaml_mapping(base_path, seen + (path.resolve(),))
    except D2DebugError as exc:
        if seen:
            raise
        raise D2DebugError(f"{path}: in its _BASE_ chain, {exc}") from None


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


def _class_names_from_file(path: Path) -> tuple[list[str], str]:
    """Class names from a JSON file: a COCO annotation file (its categories, by id, as detectron2's
    ``load_coco_json`` orders them) or a plain list of names (like the demo's ``classes.json``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise D2DebugError(f"{path}: cannot read class names ({first_line(exc)})") from None
    if isinstance(data, list) and data and all(isinstance(n, str) for n in data):
        return list(data), f"names listed in {path}"
    cats = data.get("categories") if isinstance(data, dict) else None
    if not (isinstance(cats, list) and cats and all(isinstance(c, dict) and isinstance(c.get("id"), int)
                                                    and isinstance(c.get("name"), str) for c in cats)):
        raise D2DebugError(f"{path}: cannot read class names (expected a COCO json whose 'categories' each have "
                           "an int 'id' and a 'name', or a JSON list of names)")
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])], f"COCO categories of {path}"


@dataclass
class LoadedModel:
    """A built, weight-loaded detectron2 model in ``eval()`` mode, with what is needed to explain it.

    ``device`` is ``"cuda:0"`` or ``"cpu"``. ``class_names_source`` says where the names came from.
    ``class_names`` name the classes of its detections, ``stuff_names`` those of its ``sem_seg`` map (a
    semantic segmentor's ``class_names`` are these too). ``arch`` says what it predicts and where its
    thresholds live. ``cfg`` is a yacs ``CfgNode``; for a LazyConfig model (``lazy`` holds the loaded
    LazyConfig) it carries what the stages read (``INPUT.FORMAT``, ``MIN/MAX_SIZE_TEST``, ``PIXEL_MEAN/STD``,
    the thresholds), taken from the test mapper and the built model.
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
    stuff_names: list[str] = field(default_factory=list)
    lazy: object = field(default=None, repr=False)
    arch: Optional[Arch] = None
    options: dict = field(default_factory=dict)  # how load_model was asked to load it (flags, imports)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _copies: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.arch is None:
            self.arch = arch_of(self.model, lazy=self.lazy is not None)

    def model_on(self, device: str) -> torch.nn.Module:
        """The model on ``device`` (``cpu``, or ``cuda``: this process's GPU), copied once and cached."""
        if device != "cpu" and not torch.cuda.is_available():
            raise D2DebugError("device=cuda requested but no CUDA GPU is available on this machine")
        want = "cpu" if device == "cpu" else (default_device() if device == "cuda" else device)
        if want == self.device:
            return self.model
        if want not in self._copies:
            self._copies[want] = copy.deepcopy(self.model).to(want).eval()
        return self._copies[want]

    def describe(self) -> dict:
        """A JSON-ready summary: architecture, classes, input format, normalization, sizes, thresholds, device."""
        c, a = self.cfg.MODEL, self.arch
        backbone = type(self.model.backbone).__name__ if self.lazy is not None else c.BACKBONE.NAME
        return {
            "config": str(self.config_path) if self.config_path else None,
            "config_kind": "LazyConfig" if self.lazy is not None else "yacs",
            "weights": str(self.weights_path) if self.weights_path else None,
            "architecture": f"{a.describe()} / {backbone}"
            + (f" (ResNet-{c.RESNETS.DEPTH})" if self.lazy is None and "resnet" in c.BACKBONE.NAME else ""),
            "outputs": list(a.outputs),
            "num_classes": a.num_classes if a.instances else a.num_stuff,
            "class_names": list(self.class_names),
            "class_names_source": self.class_names_source,
            **({"stuff_classes": len(self.stuff_names)} if a.num_stuff else {}),
            "input_format": self.cfg.INPUT.FORMAT,
            "pixel_mean": [float(v) for v in c.PIXEL_MEAN],
            "pixel_std": [float(v) for v in c.PIXEL_STD],
            "min_size_test": int(self.cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(self.cfg.INPUT.MAX_SIZE_TEST),
            "score_thresh_test": a.score_thresh,
            "nms_thresh_test": a.nms_thresh,
            "threshold_keys": [a.score_key, a.nms_key] if a.score_key else None,
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
    trust_config: bool = False,
    imports: Sequence[str] = (),
) -> LoadedModel:
    """Build the model of ``config`` and load ``weights`` (default: ``cfg.MODEL.WEIGHTS``, or a LazyConfig's
    ``train.init_checkpoint``) on ``device``.

    ``config``: a yacs ``.yaml`` merged onto ``get_cfg()``, or a LazyConfig ``.py`` (code: refused unless
    ``trust_config``), whose ``model`` is instantiated and whose ``dataloader.test.mapper`` gives the
    reference pipeline. ``imports``: the user's modules or ``.py`` files registering their own parts, run
    first (see :func:`import_user_code`). ``device``: ``None`` picks this process's GPU when available, else ``cpu``.
    ``class_names``: a list, or a COCO annotation file whose categories give them; else the metadata
    registered for the test set; else ``class 0..N-1`` (and the source says so). Missing, unexpected or
    wrongly shaped checkpoint keys raise :class:`D2DebugError` naming them, unless ``allow_key_mismatch``.
    """
    import_user_code(imports)
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise D2DebugError("device=cuda requested but no CUDA GPU is available on this machine")
    if device == "cuda":
        device = default_device()
    lazy = model = None
    if Path(config).suffix.lower() == ".py":
        cfg, lazy, model = _load_lazy(Path(config), trust_config, overrides)
    else:
        cfg = load_cfg(config, overrides)
    cfg.defrost()
    cfg.MODEL.DEVICE = device
    weights = weights or cfg.MODEL.WEIGHTS
    if not weights:
        raise D2DebugError(f"{config}: no weights given and "
                           f"{'train.init_checkpoint' if lazy is not None else 'MODEL.WEIGHTS'} is empty")
    wpath = Path(str(weights)).expanduser()
    if str(weights).startswith(("detectron2://", "http://", "https://")):
        raise D2DebugError(f"{weights}: remote weights are not downloaded; pass a local file")
    cfg.MODEL.WEIGHTS = str(wpath)
    cfg.freeze()
    checkpoint = read_state_dict(wpath, trust_checkpoint=trust_checkpoint)
    model = model if model is not None else _build(cfg, config)
    arch = arch_of(model, lazy=lazy is not None)
    report = _load_weights(model, checkpoint)
    if not allow_key_mismatch and any(report.values()):
        raise D2DebugError(
            f"{wpath}: checkpoint does not match the config's model: " + "; ".join(key_mismatches(report, 4))
            + " (detectron2 would run on with random layers)"
        )
    model.to(device)
    names, source, stuff = _class_names(cfg, class_names, arch)
    return LoadedModel(
        cfg=cfg,
        model=model,
        class_names=names,
        class_names_source=source,
        device=device,
        config_path=Path(config).resolve(),
        weights_path=wpath.resolve(),
        load_report=report,
        stuff_names=stuff,
        lazy=lazy,
        arch=arch,
        options={"classes": class_names if isinstance(class_names, (str, Path)) or class_names is None
                 else [str(n) for n in class_names],
                 "imports": [str(i) for i in imports], "trust_config": bool(trust_config),
                 "trust_checkpoint": bool(trust_checkpoint), "allow_key_mismatch": bool(allow_key_mismatch),
                 "overrides": list(overrides)},
    )


def _build(cfg, config) -> torch.nn.Module:
    """``build_model(cfg)`` in eval mode; a component the registries do not know is one line naming it."""
    from detectron2.modeling import build_model

    try:
        model = build_model(cfg)
    except KeyError as exc:
        raise D2DebugError(f"{config}: unregistered component: {exc.args[0] if exc.args else exc}; {IMPORT_HINT}") from None
    except (AssertionError, ValueError, TypeError) as exc:
        raise D2DebugError(f"{config}: cannot build the model ({first_line(exc)})") from None
    return model.eval()


def _load_lazy(path: Path, trust_config: bool, overrides: Sequence[str]):
    """A LazyConfig ``.py``: ``(yacs cfg of its test-time contract, the LazyConfig, the built model in eval
    mode)``. The reference is what detectron2 evaluates it with: ``instantiate(cfg.dataloader.test.mapper)``
    feeding ``instantiate(cfg.model)``; the returned ``cfg`` carries the mapper's ``image_format`` and resize,
    the model's PIXEL_MEAN/STD and thresholds, so every stage reads it as it reads a yacs config."""
    path = _check_file(path, "config")
    if not trust_config:
        raise D2DebugError(f"{path}: a LazyConfig .py is Python code and runs when loaded; refused. If you trust it, "
                           "pass --trust-config (CLI) or tick 'Trust this config' (dashboard)")
    from detectron2.config import LazyConfig, instantiate

    try:
        lazy = LazyConfig.load(str(path))
        if overrides:
            lazy = LazyConfig.apply_overrides(lazy, list(overrides))
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything; one line names it
        raise D2DebugError(f"{path}: cannot load the LazyConfig ({type(exc).__name__}: {first_line(exc)})") from None
    for key in ("model", "dataloader"):
        if key not in lazy:
            raise D2DebugError(f"{path}: the LazyConfig has no '{key}' (expected detectron2's model / dataloader.test)")
    try:
        mapper_node = lazy.dataloader.test.mapper
    except Exception:  # noqa: BLE001 - omegaconf raises its own errors for a missing key
        raise D2DebugError(f"{path}: the LazyConfig has no dataloader.test.mapper (the test-time mapper the "
                           "reference pipeline comes from)") from None
    mapper = _instantiate(instantiate, mapper_node, path, "dataloader.test.mapper")
    model = _instantiate(instantiate, lazy.model, path, "model")
    if not isinstance(model, torch.nn.Module):
        raise D2DebugError(f"{path}: model instantiates to a {type(model).__name__}, not a torch module")
    return _lazy_cfg(path, lazy, mapper, model), lazy, model.eval()


def _instantiate(instantiate, node, path: Path, what: str):
    try:
        return instantiate(node)
    except (ImportError, AssertionError, KeyError) as exc:
        raise D2DebugError(f"{path}: cannot build {what}: {first_line(exc)}; {IMPORT_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything; one line names it
        raise D2DebugError(f"{path}: cannot build {what} ({type(exc).__name__}: {first_line(exc)})") from None


def _lazy_cfg(path: Path, lazy, mapper, model):
    """The yacs form of a LazyConfig's test-time contract (see :func:`_load_lazy`); an augmentation of the test
    mapper that the stage model cannot express (it knows one deterministic ``ResizeShortestEdge`` with PIL
    bilinear, or none) is one line naming it."""
    from detectron2.data import transforms as T
    from PIL import Image

    from .compat import get_cfg

    cfg = get_cfg()
    fmt = getattr(mapper, "image_format", None)
    if fmt not in ("BGR", "RGB"):
        raise D2DebugError(f"{path}: dataloader.test.mapper image_format={fmt!r}; d2debug supports BGR and RGB")
    cfg.INPUT.FORMAT = fmt
    augs = getattr(mapper, "augmentations", None)
    augs = list(getattr(augs, "augs", augs) or [])
    if not augs:
        cfg.INPUT.MIN_SIZE_TEST = 0  # detectron2's "no resize"
    else:
        aug = augs[0]
        if len(augs) > 1 or not isinstance(aug, T.ResizeShortestEdge):
            names = ", ".join(type(a).__name__ for a in augs)
            raise D2DebugError(f"{path}: the test mapper's augmentations ({names}) are not one the stage model can "
                               "express (it knows a single ResizeShortestEdge, or none)")
        sizes = sorted(set(int(v) for v in aug.short_edge_length))
        if len(sizes) != 1 or aug.interp != Image.BILINEAR:
            raise D2DebugError(f"{path}: the test mapper's ResizeShortestEdge(short_edge_length={list(aug.short_edge_length)}, "
                               f"interp={aug.interp}) is not deterministic bilinear; the stage model cannot express it")
        cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = sizes[0], int(aug.max_size)
    m = cfg.MODEL
    m.PIXEL_MEAN = [float(v) for v in model.pixel_mean.flatten()]
    m.PIXEL_STD = [float(v) for v in model.pixel_std.flatten()]
    m.META_ARCHITECTURE = type(model).__name__
    arch = arch_of(model, lazy=True)
    if arch.score_thresh is not None:
        sec = m.RETINANET if arch.meta in ("RetinaNet", "FCOS") else m.ROI_HEADS
        sec.SCORE_THRESH_TEST, sec.NMS_THRESH_TEST = arch.score_thresh, arch.nms_thresh
    if arch.instances:
        m.ROI_HEADS.NUM_CLASSES = m.RETINANET.NUM_CLASSES = arch.num_classes
    m.MASK_ON, m.KEYPOINT_ON = "masks" in arch.outputs, "keypoints" in arch.outputs
    m.WEIGHTS = str(lazy.get("train", {}).get("init_checkpoint", "") or "")
    try:
        names = lazy.dataloader.test.dataset.names
        cfg.DATASETS.TEST = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    except Exception:  # noqa: BLE001 - a test loader without a named dataset: no metadata to look up
        cfg.DATASETS.TEST = ()
    return cfg


_IMPORTED: dict[str, object] = {}


def import_user_code(items: Sequence[str]) -> list[str]:
    """Run the user's code that registers their own parts (a ROI head, backbone or meta-architecture) before a
    model is built, as their training script did: each item is a module importable from the working directory
    (``my_project.modeling``) or a path to a ``.py`` file. This RUNS that code: callers pass only what the user
    named (``--import``; the dashboard's 'Your code' field with its tick). A file is run once per process
    (registering twice is an error in detectron2's registries). Returns the module names; an item that cannot
    be imported is one line naming it."""
    import importlib
    import importlib.util
    import sys

    done = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        path = Path(item).expanduser()
        if item.endswith(".py") or path.is_file():
            if not path.is_file():
                raise D2DebugError(f"{path}: --import file not found")
            key = str(path.resolve())
            if key not in _IMPORTED:
                name = f"d2debug_user_{len(_IMPORTED)}_{path.stem}"
                spec = importlib.util.spec_from_file_location(name, key)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                if str(path.resolve().parent) not in sys.path:
                    sys.path.insert(0, str(path.resolve().parent))  # its own imports work as when run as a script
                try:
                    spec.loader.exec_module(module)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything
                    sys.modules.pop(name, None)
                    raise D2DebugError(f"{path}: importing it raised {type(exc).__name__}: {first_line(exc)}") from None
                _IMPORTED[key] = module
            done.append(_IMPORTED[key].__name__)
            continue
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            done.append(importlib.import_module(item).__name__)
        except ModuleNotFoundError as exc:
            raise D2DebugError(f"{item}: no such module importable from {Path.cwd()} ({first_line(exc)})") from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything
            raise D2DebugError(f"{item}: importing it raised {type(exc).__name__}: {first_line(exc)}") from None
    return done


def _load_weights(model: torch.nn.Module, checkpoint: dict) -> dict:
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


def _class_names(cfg, class_names, arch: Arch) -> tuple[list[str], str, list[str]]:
    """``(names, where they came from, stuff names)``: the names of the model's detections (of its ``sem_seg``
    classes for a semantic segmentor) given, from a COCO file's categories, the test set's registered metadata,
    or generic ``class i``; raises when their number is not the model's. Stuff names (PanopticFPN,
    SemanticSegmentor) come from the metadata's ``stuff_classes`` or are generic."""
    from detectron2.data import MetadataCatalog

    num = arch.num_classes if arch.instances else arch.num_stuff
    meta = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST and cfg.DATASETS.TEST[0] in \
        MetadataCatalog.list() else None
    stuff = list(meta.get("stuff_classes") or []) if meta is not None else []
    if len(stuff) != arch.num_stuff:
        stuff = [f"class {i}" for i in range(arch.num_stuff)]
    names, source = None, ""
    if class_names is not None:
        if isinstance(class_names, (str, Path)):
            names, source = _class_names_from_file(Path(class_names))
        else:
            names, source = [str(n) for n in class_names], "given"
    elif meta is not None and meta.get("thing_classes" if arch.instances else "stuff_classes"):
        key = "thing_classes" if arch.instances else "stuff_classes"
        names, source = list(meta.get(key)), f"metadata of {cfg.DATASETS.TEST[0]}"
        if len(names) != num:  # e.g. a model-zoo config's COCO test set kept on a model trained for other classes
            names, source = None, (f"the metadata of {cfg.DATASETS.TEST[0]} has {len(names)} classes, the model "
                                   f"{num}: generic names class 0..N-1")
    if names is None:
        names, source = [f"class {i}" for i in range(num)], source or "none found: generic names class 0..N-1"
    if len(names) != num:
        what = "NUM_CLASSES" if arch.instances else "sem_seg classes"
        raise D2DebugError(f"{len(names)} class names given ({source}) but the model has {what}={num}")
    if not arch.instances:
        stuff = names
    return names, source, stuff


def parse_class_names(text: str) -> Union[None, str, list[str]]:
    """What a user types for class names (the CLI's ``--classes``, the sidebar's field): empty -> ``None``;
    a ``.json`` path -> that file (checked to exist: a COCO json or a list of names); otherwise comma-separated
    names."""
    text = (text or "").strip()
    if not text:
        return None
    if text.lower().endswith(".json"):
        p = Path(text).expanduser()
        if not p.is_file():
            raise D2DebugError(f"{p}: class-names file not found")
        return str(p)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise D2DebugError(f"class names {text!r}: expected a .json path (COCO or a list of names) or comma-separated names")
    return names


def load_demo_model(device: Optional[str] = None) -> LoadedModel:
    """The shipped demo model (``sample_data/``), with its class names from ``classes.json``."""
    for p in (DEMO_CONFIG, DEMO_WEIGHTS, DEMO_CLASSES):
        if not p.is_file():
            raise D2DebugError(f"{p}: the demo model file is missing from this checkout")
    names = json.loads(DEMO_CLASSES.read_text())
    model = load_model(DEMO_CONFIG, DEMO_WEIGHTS, device=device, class_names=names)
    model.class_names_source = f"{DEMO_CLASSES.name} beside the demo config"
    return model
