"""The CLI through a real subprocess: JSON shape, and one-line errors with non-zero exits."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import TINY_CONFIG, cli, sample


def test_env_json():
    r = cli("env", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    from d2debug.compat import compiled_ops

    assert info["detectron2_ops"] == compiled_ops() and info["torch"] == torch.__version__
    assert info["reference_device"] in ("cpu", "cuda:0")


def test_compare_channel_swap_json_on_demo_model():
    r = cli("compare", "--image", sample("val_000"), "--set", "channel_order=swapped", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for side in ("reference", "variant"):
        s = out[side]
        assert s["device"] == "cpu" and len(s["input_shape"]) == 3
        for d in s["detections"]:
            # the demo model is a Mask R-CNN: each detection carries its mask as a COCO RLE
            assert set(d) == {"box", "score", "class_id", "class_name", "mask"} and len(d["box"]) == 4
            assert d["mask"]["size"] == s["original_size"] and isinstance(d["mask"]["counts"], str)
    assert set(out["agreement"]) >= {"matched", "missed", "extra", "class_flips", "mean_iou", "f1", "mask_iou"}
    assert out["agreement"]["keypoint_distance"] is None and out["agreement"]["sem_seg_miou"] is None
    assert out["changed"] == {"channel_order": {"reference": "cfg", "variant": "swapped"}}
    # The variant's tensor is the reference's with channels 0 and 2 exchanged: the stats say so.
    ref_in, var_in = out["stats"]["model_input"]["reference"], out["stats"]["model_input"]["variant"]
    assert ref_in["R"]["mean"] == var_in["B"]["mean"] and ref_in["B"]["mean"] == var_in["R"]["mean"]


def test_compare_without_changes_agrees_exactly():
    r = cli("compare", "--image", sample("val_001"), "--json")
    out = json.loads(r.stdout)
    assert out["agreement"]["f1"] == 1.0 and out["reference"]["detections"] == out["variant"]["detections"]


def test_compare_user_model_by_path(tiny_weights):
    r = cli("compare", "--config", TINY_CONFIG, "--weights", tiny_weights, "--classes", "a,b,c",
            "--image", sample("val_002"), "--set", "value_range=0_1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"]["input_format"] == "BGR" and out["model"]["class_names"] == ["a", "b", "c"]


@pytest.mark.parametrize("args,needle", [
    (["--image", "/nonexistent/x.jpg"], "/nonexistent/x.jpg: no such file"),
    (["--set", "channel_order=rgb"], "channel_order='rgb'"),
    (["--set", "nonsense"], "KEY=VALUE"),
    (["--set", "colour=red"], "unknown key 'colour'"),
    (["--set", "resize_size=-3"], "resize_size"),
    (["--config", "/nonexistent/c.yaml", "--weights", "/nonexistent/w.pth"], "/nonexistent/c.yaml: config not found"),
    (["--weights", "w.pth"], "--weights needs --config"),
])
def test_errors_are_one_line(args, needle):
    r = cli("compare", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_unreadable_image_and_bad_config(tmp_path, tiny_weights):
    bad = tmp_path / "photo.jpg"
    bad.write_text("this is text")
    r = cli("compare", "--image", bad)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("MODEL:\n  ROI_HEADS: [unclosed\n")
    r = cli("compare", "--config", cfg, "--weights", tiny_weights)
    assert r.returncode == 2 and "YAML syntax error" in r.stderr and str(cfg) in r.stderr


def test_debug_shows_traceback():
    r = cli("--debug", "compare", "--set", "colour=red")
    assert r.returncode != 0 and "Traceback" in r.stderr
