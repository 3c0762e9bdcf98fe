"""Shared fixtures: the real shipped demo model, and a second real model (BGR, seeded random weights)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from helpers import SAMPLES, TINY_CONFIG

warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)


@pytest.fixture(scope="session")
def demo():
    from d2debug.model import load_demo_model

    return load_demo_model(device="cpu")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Seeded random weights for tests/configs/tiny_bgr.yaml, saved as a normal detectron2 .pth."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(TINY_CONFIG))
    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("tiny") / "tiny_bgr.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_weights):
    from d2debug.model import load_model

    return load_model(TINY_CONFIG, tiny_weights, device="cpu", class_names=["a", "b", "c"])


@pytest.fixture(scope="session")
def demo_classes():
    return json.loads((SAMPLES / "classes.json").read_text())


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA GPU: skipped, with the reason, on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine; scripts/gpu_check.sh runs these)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
