"""The command line that runs an audit, for settings chosen elsewhere (the dashboard): one process, or
sharded with torchrun over the GPUs of one machine or of several.

The model options are the ones it was loaded with (``LoadedModel.options``), so the command loads the same
model; the results folder is the same one, so the dashboard and the command resume each other's work.
"""
from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Optional, Sequence

from ..model import LoadedModel
from ..pitfalls import STANDARD_PITFALLS
from ..samples import DEMO_CONFIG, DEMO_WEIGHTS

__all__ = ["RDZV_PORT", "audit_args", "torchrun_command", "audit_commands", "default_processes", "default_host"]

RDZV_PORT = 29400  # torchrun's own default rendezvous port


def default_processes() -> int:
    """Processes per machine to suggest: one per GPU of this machine, else 2 sharing its CPU cores."""
    import torch

    return torch.cuda.device_count() or 2


def default_host() -> str:
    """This machine's name, where the other machines meet it (torchrun's c10d rendezvous)."""
    return socket.gethostname()


def _same_file(a: Optional[Path], b: Path) -> bool:
    return a is not None and Path(a).resolve() == Path(b).resolve()


def _is_demo(loaded: LoadedModel) -> bool:
    return _same_file(loaded.config_path, DEMO_CONFIG) and _same_file(loaded.weights_path, DEMO_WEIGHTS)


def _model_args(loaded: LoadedModel) -> list[str]:
    """The ``--config``/``--weights``/... that load ``loaded`` again (none for the demo model)."""
    if _is_demo(loaded):
        return []
    opts = loaded.options
    args = ["--config", str(loaded.config_path), "--weights", str(loaded.weights_path)]
    classes = opts.get("classes")
    if isinstance(classes, list):
        args += ["--classes", ",".join(classes)]  # as the CLI and the sidebar take them (no comma in a name)
    elif classes is not None:
        args += ["--classes", str(classes)]
    for flag in ("trust_checkpoint", "trust_config", "allow_key_mismatch"):
        if opts.get(flag):
            args.append("--" + flag.replace("_", "-"))
    for module in opts.get("imports", []):
        args += ["--import", module]
    return args


def audit_args(loaded: LoadedModel, images: str | Path, annotations: Optional[str | Path] = None,
               variants: Optional[Sequence[str]] = None, limit: Optional[int] = None,
               out: Optional[str | Path] = None) -> list[str]:
    """``audit ...`` arguments for these settings (``variants``: pitfall names; ``None`` or all of them: the
    default set)."""
    args = ["audit", *_model_args(loaded), "--images", str(images)]
    if annotations:
        args += ["--annotations", str(annotations)]
    standard = [p.name for p in STANDARD_PITFALLS]
    if variants is not None and list(variants) != standard:
        args += ["--variants", *variants] if variants else ["--variants"]
    if limit:
        args += ["--limit", str(int(limit))]
    if out:
        args += ["--out", str(out)]
    return args


def torchrun_command(args: Sequence[str], nproc_per_node: int, nnodes: int = 1,
                     host: Optional[str] = None) -> str:
    """The shell command running ``python -m d2debug <args>`` under torchrun: ``nproc_per_node`` processes on
    each of ``nnodes`` machines, which meet at ``host:RDZV_PORT`` (c10d rendezvous; run it on every machine)."""
    head = ["torchrun", "--nproc-per-node", str(int(nproc_per_node))]
    if nnodes > 1:
        head += ["--nnodes", str(int(nnodes)), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", f"{host or default_host()}:{RDZV_PORT}", "--rdzv-id", "d2debug-audit"]
    return shlex.join([*head, "-m", "d2debug", *args])


def audit_commands(args: Sequence[str], nproc_per_node: int, nnodes: int = 1,
                   host: Optional[str] = None) -> dict[str, str]:
    """Ready-to-copy commands for one audit: ``one process`` (``python -m d2debug ...``), ``this machine``
    (torchrun over ``nproc_per_node`` processes) and, when ``nnodes`` > 1, ``every machine``."""
    out = {"one process": shlex.join(["python", "-m", "d2debug", *args]),
           "this machine": torchrun_command(args, nproc_per_node)}
    if nnodes > 1:
        out["every machine"] = torchrun_command(args, nproc_per_node, nnodes, host)
    return out
