"""What several subcommands share: the model arguments and loading the model they name."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import D2DebugError
from ..samples import DEFAULT_IMAGE

__all__ = ["DEFAULT_IMAGE", "add_model_args", "load_from_args", "variant_from_sets"]


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (default: the shipped demo model)")
    g.add_argument("--config", type=Path,
                   help="the training run's dumped config.yaml, or a LazyConfig .py (needs --trust-config)")
    g.add_argument("--weights", type=Path, help="checkpoint (.pth/.pt/.safetensors; .pkl needs --trust-checkpoint)")
    g.add_argument("--classes", help="class names: a COCO annotation json, a JSON list of names, or comma-separated names")
    g.add_argument("--device", choices=["cpu", "cuda"], help="reference device (default: cuda when available)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow pickle checkpoints (.pkl, or .pth needing full unpickling): they can run code")
    g.add_argument("--trust-config", action="store_true",
                   help="allow a LazyConfig .py: it is Python code and runs when loaded")
    g.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="run your code that registers your own parts (a module importable from here, or a .py "
                        "file) before the model is built; repeatable. This runs that code")
    g.add_argument("--allow-key-mismatch", action="store_true",
                   help="load even if checkpoint keys do not match the model (random layers remain)")


def load_from_args(a: argparse.Namespace):
    """Load the model named by the common model arguments (the demo model when ``--config`` is absent)."""
    from ..model import load_demo_model, load_model, parse_class_names

    if a.config is None:
        if a.weights is not None:
            raise D2DebugError("--weights needs --config (the training run's config.yaml)")
        if a.imports:
            raise D2DebugError("--import needs --config: the demo model has no parts of yours to register")
        return load_demo_model(device=a.device)
    return load_model(
        a.config,
        a.weights,
        device=a.device,
        class_names=parse_class_names(a.classes),
        allow_key_mismatch=a.allow_key_mismatch,
        trust_checkpoint=a.trust_checkpoint,
        trust_config=a.trust_config,
        imports=a.imports,
    )


def variant_from_sets(reference, sets: list[str]):
    """``reference`` with each ``--set KEY=VALUE`` applied in turn (validated)."""
    spec = reference
    for s in sets or []:
        try:
            spec = spec.with_assignment(s)
        except D2DebugError as exc:
            raise D2DebugError(f"--set {exc}") from None
    return spec
