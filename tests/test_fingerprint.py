"""Pipeline fingerprint: recorded stage values and input statistics, and the Doctor checking a deployment
against them when the training config is lost."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from d2debug.doctor import (
    cfg_from_fingerprint,
    check_config,
    check_statistics,
    diagnose,
    load_fingerprint,
    make_fingerprint,
    make_user_input,
    preprocess,
    save_fingerprint,
)
from d2debug.errors import D2DebugError
from d2debug.stages import PipelineSpec

from helpers import ROOT, SAMPLE_IMAGES, sample

IMAGES = [p for p in SAMPLE_IMAGES if "exif" not in p.name][::4]


@pytest.fixture(scope="module")
def fp(demo):
    return make_fingerprint(demo, IMAGES)


def test_fingerprint_records_stages_and_statistics(demo, fp):
    st = fp["stages"]
    assert st["input_format"] == "RGB" and (st["min_size_test"], st["max_size_test"]) == (320, 533)
    assert st["pixel_mean"] == [127.5] * 3 and st["pixel_std"] == [127.5] * 3
    assert st["score_thresh_test"] == demo.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    assert st["interpolation"] == "bilinear" and st["value_range"] == "0..255"
    stats = fp["input_stats"]
    assert stats["images"] == len(IMAGES)
    tensors = [preprocess(demo.cfg, p)[0].reshape(3, -1).double() for p in IMAGES]
    pooled = torch.cat(tensors, dim=1)
    assert np.allclose(stats["mean"], pooled.mean(1).numpy(), atol=1e-3)
    assert np.allclose(stats["std"], pooled.std(1, unbiased=False).numpy(), atol=1e-2)
    assert stats["sizes"]["short_side"][1] == 320 and stats["sizes"]["long_side"][1] <= 533
    assert len(fp["source"]["weights_sha256"]) == 64


def test_round_trip_and_reference_from_the_fingerprint_alone(demo, fp, tmp_path):
    path = save_fingerprint(fp, tmp_path / "fp.json")
    loaded = load_fingerprint(path)
    assert loaded == json.loads(json.dumps(fp))
    cfg = cfg_from_fingerprint(loaded)
    img = sample("val_033")
    assert torch.equal(preprocess(cfg, img)[0], preprocess(demo.cfg, img)[0])


def test_doctor_without_the_training_config(demo, fp):
    img = sample("val_007")
    # The reference is rebuilt from the fingerprint: no config, no model.
    d = diagnose(None, img, make_user_input(demo.cfg, img), fingerprint=fp)
    assert d.ids == ["match"]
    d = diagnose(None, img, make_user_input(demo.cfg, img, PipelineSpec(external_norm="imagenet")), fingerprint=fp)
    assert d.ids == ["external_normalization"]
    assert any("fingerprint statistics agree on external_normalization" in n for n in d.notes)


def test_deployment_config_checked_against_the_fingerprint(demo, fp):
    cfg = demo.cfg.clone()
    cfg.defrost()
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]
    cfg.INPUT.FORMAT = "BGR"
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 800, 1333
    ids = {f.id: f for f in check_config(fp, cfg)}
    assert set(ids) == {"pixel_mean_std", "channel_order", "resize_size"}
    assert ids["pixel_mean_std"].confidence >= 0.99 and "127.5" in ids["pixel_mean_std"].fix
    assert check_config(fp, demo.cfg) == []
    # DefaultPredictor with that deployment config: BGR fed to the RGB-trained model, at 800/1333
    img = sample("val_006")
    user = make_user_input(cfg, img)
    d = diagnose(cfg, img, user, fingerprint=fp)
    assert {"pixel_mean_std", "channel_order", "resize_size"} <= set(d.ids)


@pytest.mark.parametrize("spec, expected", [
    ({}, []),
    ({"value_range": "0_1"}, ["value_range_0_1"]),
    ({"external_norm": "imagenet"}, ["external_normalization"]),
    ({"external_norm": "half"}, ["double_normalization"]),
])
def test_statistics_only_check(demo, fp, spec, expected):
    for img in (sample("val_001"), sample("val_038_large")):
        t, _ = preprocess(demo.cfg, img, PipelineSpec(**spec))
        assert [f.id for f in check_statistics(fp, t)] == expected


def test_statistics_size_rule(demo, fp):
    img = sample("val_000")
    t, (h, w) = preprocess(demo.cfg, img, PipelineSpec(resize="fixed", resize_size=(300, 300)))
    assert [f.id for f in check_statistics(fp, t)] == ["resize_size"]  # neither side is 320 or 533
    t, (h, w) = preprocess(demo.cfg, img, PipelineSpec(resize="fixed"))
    assert check_statistics(fp, t) == []  # 320x320 fits the rule without the original size...
    assert [f.id for f in check_statistics(fp, t, (h, w))] == ["resize_aspect"]  # ...but not with it


@pytest.mark.parametrize("content, message", [
    ("{", "not a JSON fingerprint"),
    ('{"a": 1}', "not a d2debug fingerprint"),
    ('{"d2debug_fingerprint": 1, "stages": {"input_format": "RGB"}}', "lacks one of"),
    ('{"d2debug_fingerprint": 1, "stages": {"input_format": "RGB", "min_size_test": 1, "max_size_test": 2, '
     '"pixel_mean": [1, 2, 3], "pixel_std": [0, 1, 1]}}', "must be positive"),
])
def test_bad_fingerprints(tmp_path, content, message):
    (tmp_path / "fp.json").write_text(content)
    with pytest.raises(D2DebugError, match=message):
        load_fingerprint(tmp_path / "fp.json")


def test_cli_fingerprint_then_doctor_without_config(demo, tmp_path):
    out = tmp_path / "fp.json"
    r = subprocess.run([sys.executable, "-m", "d2debug", "fingerprint", "--images", str(ROOT / "sample_data" / "images"),
                        "--max-images", "4", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert load_fingerprint(out)["input_stats"]["images"] == 4
    img = sample("val_009")
    torch.save(make_user_input(demo.cfg, img, PipelineSpec(value_range="0_1")), tmp_path / "in.pt")
    r = subprocess.run([sys.executable, "-m", "d2debug", "doctor", "--fingerprint", str(out), "--image", str(img),
                        "--input", str(tmp_path / "in.pt"), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert [f["id"] for f in json.loads(r.stdout)["findings"]] == ["value_range_0_1"]
    # statistics only: no image at all
    r = subprocess.run([sys.executable, "-m", "d2debug", "doctor", "--fingerprint", str(out),
                        "--input", str(tmp_path / "in.pt"), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert [f["id"] for f in json.loads(r.stdout)["findings"]] == ["value_range_0_1"]
