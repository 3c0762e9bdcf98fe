"""Read a Detectron2 config safely: a yacs YAML (checked to be the mapping yacs expects, its ``_BASE_`` chain
included) or a LazyConfig ``.py`` (Python code: refused unless the caller passes ``trust_config=True``).

A LazyConfig becomes a yacs ``CfgNode`` of its test-time contract (:func:`load_lazy_config`), so every stage
reads one kind of config. Every bad file is one :class:`D2DebugError` line naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from .arch import arch_of
from .errors import D2DebugError, first_line
from .files import readable_file
from .serving import PathCheck
from .usercode import IMPORT_HINT

__all__ = ["load_cfg", "load_lazy_config"]


def load_cfg(config: str | Path, overrides: Sequence[str] = (), path_check: Optional[PathCheck] = None):
    """Merge a YAML config onto ``get_cfg()`` (plus ``KEY VALUE`` overrides). Returns a frozen ``CfgNode``.
    ``path_check``: each ``_BASE_`` file outside detectron2's own model-zoo configs goes through it before it is
    read (the dashboard's served-to-a-team policy).

    Raises :class:`D2DebugError` naming the file and the problem (YAML error, unknown key, wrong type).
    """
    from .compat import check_newer_keys, get_cfg

    path = readable_file(Path(config), "config")
    if path.suffix.lower() == ".py":
        raise D2DebugError(f"{path}: a LazyConfig (.py); this needs a YAML config (the model loaders read .py "
                           "configs with --trust-config)")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise D2DebugError(f"{path}: expected a YAML config (.yaml/.yml) or a LazyConfig .py, got "
                           f"{path.suffix or 'no suffix'!r}")
    _check_yaml_mapping(path, (), path_check)  # the file and its _BASE_ chain parse and have the shape yacs expects
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


def _check_yaml_mapping(path: Path, seen: tuple[Path, ...] = (), path_check: Optional[PathCheck] = None) -> None:
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
    if path_check is not None and not base_path.is_relative_to(_model_zoo_configs()):
        base_path = path_check(base_path, f"_BASE_ of {path.name}")
    if base_path in seen + (path.resolve(),):
        raise D2DebugError(f"{path}: _BASE_ {base} leads back to {base_path.name}: the base configs form a cycle")
    if not base_path.is_file():
        raise D2DebugError(f"{path}: _BASE_ {base} not found at {base_path}")
    try:
        _check_yaml_mapping(base_path, seen + (path.resolve(),), path_check)
    except D2DebugError as exc:
        if seen:
            raise
        raise D2DebugError(f"{path}: in its _BASE_ chain, {exc}") from None


def _model_zoo_configs() -> Path:
    """detectron2's packaged model-zoo configs (the ``_BASE_`` files of every model-zoo config)."""
    import detectron2.model_zoo

    return (Path(detectron2.model_zoo.__file__).parent / "configs").resolve()


def load_lazy_config(path: Path, trust_config: bool, overrides: Sequence[str]):
    """A LazyConfig ``.py``: ``(yacs cfg of its test-time contract, the LazyConfig, the built model in eval
    mode)``. The reference is what detectron2 evaluates it with: ``instantiate(cfg.dataloader.test.mapper)``
    feeding ``instantiate(cfg.model)``; the returned ``cfg`` carries the mapper's ``image_format`` and resize,
    the model's PIXEL_MEAN/STD and thresholds, so every stage reads it as it reads a yacs config."""
    path = readable_file(path, "config")
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
    """The yacs form of a LazyConfig's test-time contract (see :func:`load_lazy_config`); an augmentation of the test
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
        if len(sizes) != 1 or aug.interp != Image.Resampling.BILINEAR:
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
