"""d2debug.samples: every path it names is in the checkout, and nothing else in the package spells the sample
folder out again."""
from __future__ import annotations

import json

import d2debug.samples as samples
from d2debug.files import list_images

from helpers import ROOT


def test_every_sample_path_exists_in_the_checkout():
    assert samples.SAMPLE_DIR == ROOT / "sample_data"
    for name in samples.__all__:
        path = getattr(samples, name)
        assert path.exists(), f"{name}: {path}"
        assert path.is_relative_to(samples.SAMPLE_DIR)
    assert len(list_images(samples.SAMPLE_IMAGES)) == 48
    assert json.loads(samples.DEMO_CLASSES.read_text()) and json.loads(samples.SAMPLE_ANNOTATIONS.read_text())["images"]


def test_the_sample_folder_is_named_only_in_its_home():
    spelled = [str(p.relative_to(ROOT)) for p in (ROOT / "d2debug").rglob("*.py")
               if p != ROOT / "d2debug" / "samples.py" and '"sample_data"' in p.read_text()]
    assert not spelled, spelled
