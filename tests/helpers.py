"""Plain helpers the tests share: the checkout's paths, the sample images, and running a Streamlit ``AppTest``
page. Fixtures stay in ``conftest.py``; tests import these with ``from helpers import ...``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

__all__ = ["ROOT", "streamlit_config", "SAMPLES", "SAMPLE_IMAGES", "TINY_CONFIG", "APP_TIMEOUT", "app_run", "app_errors", "app_metrics",
           "set_radio", "page_with_model_files", "sample", "cli", "default_predictor"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
SAMPLE_IMAGES = sorted(p for p in (SAMPLES / "images").iterdir() if p.suffix in (".jpg", ".png"))
TINY_CONFIG = ROOT / "tests" / "configs" / "tiny_bgr.yaml"
# Seconds an AppTest page may take: the CPU is shared with other work and a forward pass can take seconds.
APP_TIMEOUT = 180


def app_run(at):
    """Run a Streamlit ``AppTest`` and assert the page raised nothing."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def app_errors(at) -> list[str]:
    """The texts of the ``st.error`` messages an ``AppTest`` page shows."""
    return [str(e.value) for e in at.error]


def app_metrics(at) -> dict:
    """The agreement numbers a stage page recorded (its ``Keys.METRICS`` entry)."""
    from d2debug.ui.state import Keys

    assert Keys.METRICS in at.session_state, [e.value for e in at.error]
    return at.session_state[Keys.METRICS]


def set_radio(at, key: str, value):
    """Choose ``value`` in the radio ``key`` and rerun the page."""
    at.radio(key=key).set_value(value)
    return app_run(at)


def page_with_model_files(page: str, config, weights):
    """A Streamlit ``AppTest`` of ``page`` (a path under the checkout) with the sidebar loading ``config`` +
    ``weights`` by path, run once the paths are in (errors are left for the caller to check)."""
    from streamlit.testing.v1 import AppTest

    from d2debug.ui.state import Keys

    at = AppTest.from_file(str(ROOT / page), default_timeout=APP_TIMEOUT)
    app_run(at)
    at.radio(key=Keys.MODEL_SOURCE).set_value("Files on this workstation")
    app_run(at)
    at.text_input(key=Keys.CONFIG_PATH).input(str(config))
    at.text_input(key=Keys.WEIGHTS_PATH).input(str(weights))
    return app_run(at)


def sample(name_part: str) -> Path:
    """The first sample image whose file name contains ``name_part``."""
    return next(p for p in SAMPLE_IMAGES if name_part in p.name)


def cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """``python -m d2debug ARGS`` in a real subprocess; its exit code, stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "d2debug", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def default_predictor(loaded, device: Optional[str] = None):
    """detectron2's own ``DefaultPredictor`` for a loaded model (its config and weights file; ``device``: the
    model's own unless given): what the reference is measured against."""
    from detectron2.engine import DefaultPredictor

    cfg = loaded.cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(loaded.weights_path)
    if device is not None:
        cfg.MODEL.DEVICE = device
    return DefaultPredictor(cfg)


def streamlit_config() -> dict:
    """The shipped ``.streamlit/config.toml``, parsed."""
    try:
        import tomllib as toml  # Python >= 3.11 (the modern stack); its streamlit no longer pulls in toml
    except ImportError:
        import toml  # type: ignore[no-redef]  # Python 3.10: streamlit's own dependency
    return toml.loads((ROOT / ".streamlit" / "config.toml").read_text())


# The one d2debug module the written suites may import: their scripts' shared helpers, free of the Doctor's code.
SCRIPT_HELPERS = "d2debug.evaluation.scripts"


def d2debug_imports(path: Path) -> set[str]:
    """The d2debug (or relative) modules a source file imports, besides :data:`SCRIPT_HELPERS`; a relative
    import counts as ``"."``."""
    import ast

    tree = ast.parse(Path(path).read_text())
    names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {"." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    return {m for m in names if m.startswith(("d2debug", ".")) and m != SCRIPT_HELPERS}
