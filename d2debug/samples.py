"""Where the shipped demo lives: the ``sample_data/`` folder of this checkout and each file in it.

The one home of these paths: the demo model's loader, the CLI's defaults, the dashboard's sample images, the
Doctor's worked examples, the benchmark and the demo's own training recipe all read them from here. Paths only:
nothing here opens a file or imports anything heavy.
"""
from __future__ import annotations

from pathlib import Path

__all__ = [
    "SAMPLE_DIR",
    "SAMPLE_IMAGES",
    "SAMPLE_ANNOTATIONS",
    "DEMO_CONFIG",
    "DEMO_WEIGHTS",
    "DEMO_CLASSES",
    "DEMO_METRICS",
    "DEMO_AUDIT",
    "DEPLOY_EXAMPLE",
    "DEFAULT_IMAGE",
]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_IMAGES = SAMPLE_DIR / "images"  # the validation split's images (``python -m d2debug.demo samples``)
SAMPLE_ANNOTATIONS = SAMPLE_DIR / "annotations.json"  # their COCO annotations
DEFAULT_IMAGE = SAMPLE_IMAGES / "val_000.jpg"  # the image a command runs on when none is named
DEMO_CONFIG = SAMPLE_DIR / "demo_config.yaml"
DEMO_WEIGHTS = SAMPLE_DIR / "demo_model.pth"
DEMO_CLASSES = SAMPLE_DIR / "classes.json"  # a JSON list of the demo model's class names
DEMO_METRICS = SAMPLE_DIR / "demo_metrics.json"  # what its training run measured on the validation split
DEMO_AUDIT = SAMPLE_DIR / "demo_audit_summary.json"  # the audit of the demo model on its validation images
DEPLOY_EXAMPLE = SAMPLE_DIR / "deploy_config_example.yaml"  # a typical hand-written deployment config for it
