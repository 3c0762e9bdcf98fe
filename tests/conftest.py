"""Shared fixtures: the real shipped demo model, and a second real model (BGR, seeded random weights)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
SAMPLE_IMAGES = sorted(p for p in (SAMPLES / "images").iterdir() if p.suffix in (".jpg", ".png"))
TINY_CONFIG = ROOT / "tests" / "configs" / "tiny_bgr.yaml"

warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)


def app_run(at):
    """Run a Streamlit ``AppTest`` and assert the page raised nothing."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def app_errors(at) -> list[str]:
    """The texts of the ``st.error`` messages an ``AppTest`` page shows."""
    return [str(e.value) for e in at.error]


def page_with_model_files(page: str, config, weights):
    """A Streamlit ``AppTest`` of ``page`` (a path under the checkout) with the sidebar loading ``config`` +
    ``weights`` by path, run once the paths are in (errors are left for the caller to check)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page), default_timeout=180)
    app_run(at)
    at.radio(key="sb_model_source").set_value("Files on this workstation")
    app_run(at)
    at.text_input(key="sb_config_path").input(str(config))
    at.text_input(key="sb_weights_path").input(str(weights))
    return app_run(at)


def sample(name_part: str) -> Path:
    """The first sample image whose file name contains ``name_part``."""
    return next(p for p in SAMPLE_IMAGES if name_part in p.name)


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
