"""The model d2debug explains: build it from a config, load its weights, pick the device, find its class names.

The config is read by :mod:`d2debug.config` (yacs or LazyConfig), the weights by :mod:`d2debug.checkpoint`
(without running code unless trusted), the user's registering code is run by :mod:`d2debug.usercode`; a
checkpoint that does not fit the model is an error naming the keys, not random layers.
"""
from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch

from .arch import Arch, arch_of
from .checkpoint import key_mismatches, load_weights, read_state_dict
from .config import load_cfg, load_lazy_config
from .errors import D2DebugError, first_line
from .samples import DEMO_CLASSES, DEMO_CONFIG, DEMO_WEIGHTS
from .serving import PathCheck
from .usercode import IMPORT_HINT, import_user_code

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = [
    "LoadedModel",
    "load_model",
    "load_demo_model",
    "default_device",
    "parse_class_names",
]


def default_device() -> str:
    """This process's GPU when there is one (``cuda:0``; ``cuda:LOCAL_RANK`` under torchrun, which sets the
    current device), else ``cpu``."""
    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


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

    cfg: CfgNode
    model: torch.nn.Module
    class_names: list[str]
    class_names_source: str
    device: str
    config_path: Path
    weights_path: Path
    arch: Arch
    load_report: dict = field(default_factory=dict)
    stuff_names: list[str] = field(default_factory=list)
    lazy: Any = field(default=None, repr=False)
    options: dict = field(default_factory=dict)  # how load_model was asked to load it (flags, imports)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _copies: dict = field(default_factory=dict, repr=False)

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
    path_check: Optional[PathCheck] = None,
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
        cfg, lazy, model = load_lazy_config(Path(config), trust_config, overrides)
    else:
        cfg = load_cfg(config, overrides, path_check)
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
    report = load_weights(model, checkpoint)
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


def _build(cfg: CfgNode, config) -> torch.nn.Module:
    """``build_model(cfg)`` in eval mode; a component the registries do not know is one line naming it."""
    from detectron2.modeling import build_model

    try:
        model = build_model(cfg)
    except KeyError as exc:
        raise D2DebugError(f"{config}: unregistered component: {exc.args[0] if exc.args else exc}; {IMPORT_HINT}") from None
    except (AssertionError, ValueError, TypeError) as exc:
        raise D2DebugError(f"{config}: cannot build the model ({first_line(exc)})") from None
    return model.eval()


def _class_names(cfg: CfgNode, class_names, arch: Arch) -> tuple[list[str], str, list[str]]:
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
    names: Optional[list[str]] = None
    source = ""
    if class_names is not None:
        if isinstance(class_names, (str, Path)):
            names, source = _class_names_from_file(Path(class_names))
        else:
            names, source = [str(n) for n in class_names], "given"
    elif meta is not None and meta.get("thing_classes" if arch.instances else "stuff_classes"):
        key = "thing_classes" if arch.instances else "stuff_classes"
        names, source = list(meta.get(key)), f"metadata of {cfg.DATASETS.TEST[0]}"
        if len(names) != num:  # e.g. a model-zoo config's COCO test set kept on a model trained for other classes
            source = (f"the metadata of {cfg.DATASETS.TEST[0]} has {len(names)} classes, the model "
                      f"{num}: generic names class 0..N-1")
            names = None
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
