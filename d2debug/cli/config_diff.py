"""``python -m d2debug config-diff``: training vs deployment config, what changes at inference first.

``diff-config``, the name it was published under, stays an alias so existing scripts keep working."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "cmd_config_diff"]


def register(sub) -> None:
    p = sub.add_parser(
        "config-diff",
        aliases=["diff-config"],
        help="keys that differ between the training and the deployment config, inference-relevant first",
        description=(
            "Merges both YAML files onto detectron2's get_cfg() and lists the keys that differ: preprocessing "
            "(INPUT.*, MODEL.PIXEL_*), thresholds, classes/weights/device, architecture, then training-only "
            "keys, each with one line on what it changes at inference. Exit status: 0 when nothing that "
            "matters at inference differs, 1 when something does, 2 when a file cannot be read."
        ),
    )
    p.add_argument("train_config", type=Path, help="the training run's dumped config.yaml")
    p.add_argument("deploy_config", type=Path, help="the config your deployment builds the model from")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_config_diff)


def cmd_config_diff(a: argparse.Namespace) -> int:
    from ..config_diff import diff_configs

    diff = diff_configs(a.train_config, a.deploy_config)
    if a.json:
        print(json.dumps(diff.to_dict(), indent=1, default=str))
    else:
        print(diff.text())
    return 1 if diff.inference_differences else 0
