"""What differs between the stacks d2debug runs on, in one place.

Two stacks are tested (README, "Stacks"): the default one (Python 3.10, torch 2.3, numpy 1.x, sal-detectron2 0.7.2
with compiled ops) and the modern one (Python 3.12, the newest torch, numpy 2, detectron2 0.6 built from source).
Everything else in d2debug is written once for both; what a version changed is handled here:

- detectron2 releases after 0.6 added config keys to ``get_cfg()`` (:data:`NEWER_CFG_KEYS`): a config dumped by
  a newer detectron2 carries them, and 0.6 refuses an unknown key. :func:`get_cfg` adds them at their defaults
  so such a config merges, and :func:`check_newer_keys` refuses, in one line, one that sets them otherwise (on
  0.6 the setting would silently do nothing). :func:`portable_dump` writes a config both versions load.
- A detectron2 built from a source distribution without its C++ sources has a ``detectron2._C`` that imports but
  holds no ops (``scripts/build_detectron2.py``); :func:`compiled_ops` tells the two apart.
"""
from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any

from .errors import D2DebugError

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["NEWER_CFG_KEYS", "cfg_node", "get_cfg", "check_newer_keys", "portable_dump", "compiled_ops", "detectron2_version",
           "OPS_LESS_BUILD", "LIBRARY_NOISE", "silence_library_noise"]

# Keys detectron2 added to its defaults after 0.6 (federated loss and sigmoid CE for the box head, repeat-factor
# sampling's square root, the solver's decays and end LR), with the defaults it gave them. All but USE_SIGMOID_CE
# and USE_FED_LOSS act only in training; those two change the box head's scores when set.
NEWER_CFG_KEYS: dict[str, Any] = {
    "DATALOADER.REPEAT_SQRT": True,
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER": 0.5,
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES": 50,
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": False,
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": False,
    "SOLVER.BASE_LR_END": 0.0,
    "SOLVER.NUM_DECAYS": 3,
    "SOLVER.RESCALE_INTERVAL": False,
}


def detectron2_version() -> str:
    import detectron2

    return str(getattr(detectron2, "__version__", "unknown"))


def cfg_node(cfg: CfgNode, key: str):
    """``(node, leaf)`` for a dotted config key: ``cfg_node(cfg, "MODEL.ROI_HEADS.NMS_THRESH_TEST")`` is
    ``(cfg.MODEL.ROI_HEADS, "NMS_THRESH_TEST")``; ``leaf in node`` says whether the key exists."""
    *path, leaf = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    return node, leaf


@functools.lru_cache(maxsize=1)
def _missing_keys() -> tuple[str, ...]:
    """The keys of :data:`NEWER_CFG_KEYS` this detectron2's ``get_cfg()`` lacks (none on 0.7)."""
    from detectron2.config import get_cfg as d2_get_cfg

    defaults = d2_get_cfg()
    missing = []
    for key in NEWER_CFG_KEYS:
        node, leaf = cfg_node(defaults, key)
        if leaf not in node:
            missing.append(key)
    return tuple(missing)


def get_cfg():
    """detectron2's ``get_cfg()`` (a mutable ``CfgNode``), plus the keys this detectron2 lacks from
    :data:`NEWER_CFG_KEYS` at their defaults, so that a config dumped by a newer detectron2 merges onto it."""
    from detectron2.config import get_cfg as d2_get_cfg

    cfg = d2_get_cfg()
    for key in _missing_keys():
        node, leaf = cfg_node(cfg, key)
        node[leaf] = NEWER_CFG_KEYS[key]
    return cfg


def check_newer_keys(cfg: CfgNode, source: str) -> None:
    """Refuse, in one line naming ``source``, a config that sets a key this detectron2 does not know to anything
    but its default: this detectron2 would ignore it and the model would not be the one that was trained."""
    for key in _missing_keys():
        node, leaf = cfg_node(cfg, key)
        if leaf in node and node[leaf] != NEWER_CFG_KEYS[key]:
            raise D2DebugError(f"{source}: {key}={node[leaf]!r} needs a newer detectron2 than "
                               f"{detectron2_version()} (it has no such key and would ignore it)")


def portable_dump(cfg: CfgNode) -> str:
    """``cfg.dump()`` without the :data:`NEWER_CFG_KEYS` that hold their defaults: YAML that detectron2 0.6 and
    the newer releases both merge onto their ``get_cfg()``."""
    cfg = cfg.clone()
    cfg.defrost()
    for key, default in NEWER_CFG_KEYS.items():
        node, leaf = cfg_node(cfg, key)
        if leaf in node and node[leaf] == default:
            del node[leaf]
    return cfg.dump()


# Warnings libraries raise on every run that are noise to a user and would make an error more than one line:
# detectron2's anchors call torch.meshgrid without indexing=; detectron2 (box regression) and fvcore (focal loss)
# call torch.jit.script at import, which torch 2.10+ deprecates; torch 2.6+'s weights_only loader warns about
# the pickle protocol of a legacy file just before d2debug refuses or reads it.
LIBRARY_NOISE = (
    ("torch.meshgrid", UserWarning),
    (r"`torch.jit.script` is deprecated", FutureWarning),
    ("Detected pickle protocol", UserWarning),
)


def silence_library_noise() -> None:
    """Hide :data:`LIBRARY_NOISE` in this process (the CLI and the dashboard call it first)."""
    for message, category in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


OPS_LESS_BUILD = "built without compiled ops (its source had no layers/csrc): no rotated boxes or deformable conv"


def compiled_ops() -> bool | str:
    """True when ``detectron2._C`` holds detectron2's compiled ops; else why not, in a few words."""
    try:
        from detectron2 import _C
    except ImportError as exc:
        return f"compiled ops do not load: {exc}"
    if getattr(_C, "__d2_compiled_ops__", True) is False:
        return OPS_LESS_BUILD
    return True
