"""Pipeline Doctor: safe loading, each finding with its evidence, the CLI and the pytest helper.

Everything runs the real detectron2 stages and the real demo model's config and weights. User inputs are
built by the library's stage functions (or by hand, like a user would write them) and diagnosed.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from d2debug.doctor import (
    FINDING_IDS,
    Finding,
    diagnose,
    load_user_input,
    make_user_input,
    norm_check,
    parse_user_input,
    preprocess,
)
from d2debug.errors import D2DebugError
from d2debug.run import reference_spec, run
from d2debug.stages import PipelineSpec
from d2debug.testing import assert_matches_reference

from helpers import ROOT, sample


def diag(loaded, image, **spec):
    return diagnose(loaded, image, make_user_input(loaded.cfg, image, PipelineSpec(**spec)))


def finding(d, fid) -> Finding:
    found = [f for f in d.findings if f.id == fid]
    assert found, f"expected {fid}, got {d.ids}"
    return found[0]


# --- the stage chain without the model is the reference pipeline -------------------------------------------


@pytest.mark.parametrize("name", ["val_000", "val_036_large", "val_044_exif6"])
def test_preprocess_equals_what_run_feeds_the_model(demo, name):
    img = sample(name)
    ref = run(demo, img, reference_spec(demo.cfg, "cpu"))
    t, size = preprocess(demo.cfg, img)
    assert torch.equal(t, ref.input_tensor)
    assert size == ref.original_size
    var = run(demo, img, reference_spec(demo.cfg, "cpu").replace(resize="fixed", resize_backend="cv2"))
    assert torch.equal(preprocess(demo.cfg, img, var.spec)[0], var.input_tensor)


# --- loading user files safely --------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("how", ["pickle", "torch"])
def test_pickle_disguised_as_pt_is_refused_and_never_unpickled(tmp_path, how):
    marker = tmp_path / "ran"
    path = tmp_path / "input.pt"
    if how == "pickle":
        path.write_bytes(pickle.dumps({"image": _Evil(marker)}))
    else:
        torch.save({"image": _Evil(marker)}, path)
    with pytest.raises(D2DebugError) as err:
        load_user_input(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "refused" in msg
    assert not marker.exists()


def test_numpy_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"image": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(D2DebugError, match="pickle"):
        load_user_input(path)


def test_load_formats(demo, tmp_path):
    img = sample("val_000")
    d = make_user_input(demo.cfg, img)
    torch.save(d, tmp_path / "d.pt")
    torch.save([d], tmp_path / "l.pt")
    np.save(tmp_path / "a.npy", d["image"].numpy())
    np.savez(tmp_path / "z.npz", image=d["image"].numpy(), height=d["height"], width=d["width"])
    u = load_user_input(tmp_path / "d.pt")
    assert (u.container, u.height, u.width, u.dtype) == ("dict", 524, 393, "float32")
    assert torch.equal(u.tensor, d["image"])
    assert load_user_input(tmp_path / "l.pt").container == "list_of_dicts"
    a = load_user_input(tmp_path / "a.npy")
    assert a.container == "array" and not a.has_size_keys
    z = load_user_input((tmp_path / "z.npz").read_bytes(), name="z.npz")
    assert (z.container, z.height, z.width) == ("dict", 524, 393)


@pytest.mark.parametrize("obj, message", [
    (torch.zeros(40, 50, 4), "40 channels"),  # (an HxWx3 image is diagnosed: the finding channels_last)
    (torch.zeros(2, 40, 50), "2 channels"),  # (1 channel is an input detectron2 runs: it broadcasts)
    ({"img": torch.zeros(3, 4, 4)}, "no 'image' key"),
    ({"image": torch.zeros(3, 8, 8), "height": -3, "width": 8}, "'height' is -3"),
    (torch.full((3, 8, 8), float("nan")), "NaN"),
    ("a string", "not a model input"),
])
def test_bad_inputs_raise_one_clear_line(obj, message):
    with pytest.raises(D2DebugError, match=message) as err:
        parse_user_input(obj, "x.pt")
    assert "\n" not in str(err.value) and "x.pt" in str(err.value)


def test_unreadable_files(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    (tmp_path / "g.pt").write_bytes(b"not a tensor at all")
    with pytest.raises(D2DebugError, match="empty file"):
        load_user_input(tmp_path / "e.pt")
    with pytest.raises(D2DebugError, match="g.pt"):
        load_user_input(tmp_path / "g.pt")
    with pytest.raises(D2DebugError, match="no such file"):
        load_user_input(tmp_path / "missing.pt")


# --- findings and their evidence ------------------------------------------------------------------------------


def test_reference_is_match_with_zero_difference(demo):
    d = diag(demo, sample("val_003"))
    assert d.ids == ["match"] and d.is_match
    assert float(np.abs(d.difference()).max()) == 0.0
    ref_stats, user_stats = d.histograms()
    assert all((a == b).all() for a, b in zip(ref_stats.counts, user_stats.counts))


def test_channel_order_and_fixed_square_together(demo):
    d = diag(demo, sample("val_000"), channel_order="swapped", resize="fixed")
    assert set(d.ids) == {"channel_order", "resize_aspect"}
    assert d.analysis["permutation"] == [2, 1, 0]
    assert "BGR" in finding(d, "channel_order").evidence
    assert "320x320" in finding(d, "resize_aspect").evidence
    assert "ResizeShortestEdge([320, 320], 533)" in finding(d, "resize_aspect").fix
    assert d.difference().shape == (427, 320)


def test_external_normalization_estimates_imagenet(demo):
    d = diag(demo, sample("val_012"), external_norm="imagenet")
    assert d.ids == ["external_normalization"]
    f = d.findings[0]
    assert "ImageNet" in f.evidence and "RGB order" in f.evidence
    assert "0.485, 0.456, 0.406" in f.evidence and "0.229, 0.224, 0.225" in f.evidence
    # and a custom one is estimated, not named
    d = diag(demo, sample("val_012"), external_norm="custom:0.3,0.4,0.5/0.2,0.25,0.3")
    assert d.ids == ["external_normalization"] and "custom" in d.findings[0].evidence
    assert "[0.3, 0.4, 0.5]" in d.findings[0].evidence and "[0.2, 0.25, 0.3]" in d.findings[0].evidence


def test_double_normalization_on_a_bgr_model_with_detectron2_defaults(tiny):
    # (x - PIXEL_MEAN) / PIXEL_STD done by the user, with the model's own values (std 1): the model does it again
    m = [v / 255 for v in tiny.cfg.MODEL.PIXEL_MEAN]
    s = [v / 255 for v in tiny.cfg.MODEL.PIXEL_STD]
    norm = "custom:" + ",".join(f"{v:.6f}" for v in m) + "/" + ",".join(f"{v:.6f}" for v in s)
    d = diag(tiny, sample("val_005"), external_norm=norm)
    assert d.ids == ["double_normalization"]
    assert "103.53" in d.findings[0].evidence
    # the BGR model's channel swap and 0..1 range are found the same way
    assert diag(tiny, sample("val_005"), channel_order="swapped").ids == ["channel_order"]
    assert diag(tiny, sample("val_005"), value_range="0_1").ids == ["value_range_0_1"]
    # random BatchNorm statistics say nothing about the normalization: no guess
    assert norm_check(tiny.model, tiny.cfg, preprocess(tiny.cfg, sample("val_005"))[0]) is None


@pytest.mark.parametrize("backend, interpolation", [
    ("cv2", "bilinear"), ("cv2", "nearest"), ("cv2", "area"), ("pil", "bicubic"), ("pil", "nearest"),
    ("torch", "bilinear"), ("torch_antialias", "bilinear"),
])
def test_resampler_is_identified_by_rerendering(demo, backend, interpolation):
    d = diag(demo, sample("val_035_large"), resize_backend=backend, interpolation=interpolation)
    assert d.ids == ["resize_interpolation"]
    assert d.analysis["resampler"] == f"{backend}/{interpolation}"
    assert d.analysis["residual"] < 0.05  # the right candidate reproduces the tensor
    res = d.analysis["resampler_residuals"]
    assert res["pil/bilinear"] > d.analysis["residual"] + 0.25  # the reference resampler explains it worse


def test_resize_size_explanations(demo):
    wide = sample("val_033")  # 642x1284: the MAX_SIZE clamp applies
    f = diag(demo, wide, resize="shortest_edge_noclamp").findings[0]
    assert f.id == "resize_size" and "no MAX_SIZE clamp" in f.evidence and "533" in f.evidence
    f = diag(demo, sample("val_000"), resize="none").findings[0]
    assert f.id == "resize_size" and "not resized" in f.evidence
    small = sample("val_006")
    cfg800 = demo.cfg.clone()
    cfg800.defrost()
    cfg800.INPUT.MIN_SIZE_TEST, cfg800.INPUT.MAX_SIZE_TEST = 800, 1333
    d = diagnose(demo.cfg, small, make_user_input(cfg800, small))
    assert d.ids == ["resize_size"] and "ResizeShortestEdge(800, 1333)" in d.findings[0].evidence


@pytest.mark.parametrize("name", ["val_042_exif3", "val_044_exif6", "val_043_exif5"])
def test_exif_orientation_ignored(demo, name):
    d = diag(demo, sample(name), decoder="pil")
    assert d.ids == ["exif_orientation"], d.ids
    assert d.analysis["orientation"] == "as_stored"


def test_container_findings(demo):
    img = sample("val_010")
    base = make_user_input(demo.cfg, img)
    d = diagnose(demo, img, {"image": base["image"]})
    assert d.ids == ["missing_original_size"]
    d = diagnose(demo, img, {"image": base["image"], "height": 320, "width": base["image"].shape[2]})
    assert d.ids == ["missing_original_size"] and "320" in d.findings[0].evidence
    assert diagnose(demo, img, dict(base, image=base["image"].double())).ids == ["dtype"]
    assert diagnose(demo, img, dict(base, image=base["image"].round().to(torch.uint8))).ids == ["dtype"]
    d = diagnose(demo, img, base["image"][None])
    assert d.ids == ["batch_contract"]
    assert diagnose(demo, img, [base["image"]]).ids == ["batch_contract"]


def test_model_zoo_pixel_mean_std_found_from_the_weights(demo):
    cfg = demo.cfg.clone()
    cfg.defrost()
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]
    deployed = type("Deployed", (), {"cfg": cfg, "model": demo.model})()
    img = sample("val_020")
    d = diagnose(deployed, img, make_user_input(cfg, img))
    assert d.ids == ["pixel_mean_std"]
    assert "127.5" in d.findings[0].fix
    nc = d.analysis["norm_check"]["candidates"]
    assert nc[0]["score"] > 3  # the config's std of 1 is off by about log(127.5)


def test_finding_ids_are_the_contract():
    assert FINDING_IDS == ("channel_order", "value_range_0_1", "external_normalization", "double_normalization",
                           "pixel_mean_std", "resize_size", "resize_aspect", "resize_interpolation",
                           "exif_orientation", "missing_original_size", "dtype", "batch_contract", "padding",
                           "crop", "transposed_hw", "recompression", "alpha_channel", "traced_size",
                           "graph_double_normalization", "rescale_boxes", "channels_last", "unexplained",
                           "match")
    with pytest.raises(ValueError):
        Finding("colour", 1.0, "", "")


# --- the CLI --------------------------------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "d2debug", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True)


def test_cli_doctor_json_and_exit_codes(demo, tmp_path):
    img = sample("val_000")
    torch.save(make_user_input(demo.cfg, img, PipelineSpec(channel_order="swapped", resize="fixed")), tmp_path / "bad.pt")
    torch.save(make_user_input(demo.cfg, img), tmp_path / "ok.pt")
    r = _cli("doctor", "--image", img, "--input", tmp_path / "bad.pt", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [f["id"] for f in out["findings"]] == ["channel_order", "resize_aspect"]
    assert all(set(f) == {"id", "confidence", "evidence", "fix", "recovers", "costs_alone", "recovers_own", "own"}
               for f in out["findings"])
    # measured with the model: fixing the channel order alone recovers more agreement than the resize
    assert out["findings"][0]["recovers"] >= out["findings"][1]["recovers"]
    assert out["findings"][0]["confidence"] >= out["findings"][1]["confidence"]
    r = _cli("doctor", "--image", img, "--input", tmp_path / "ok.pt")
    assert r.returncode == 0 and "match" in r.stdout
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Evil(tmp_path / "ran")))
    r = _cli("doctor", "--image", img, "--input", tmp_path / "evil.pt")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ran").exists()


def test_cli_doctor_on_a_user_model_by_path(tiny_weights, tmp_path):
    from d2debug.config import load_cfg

    from helpers import TINY_CONFIG

    cfg = load_cfg(TINY_CONFIG)  # BGR, MIN/MAX_SIZE_TEST 256/400
    img = sample("val_014")
    np.save(tmp_path / "x.npy", make_user_input(cfg, img, PipelineSpec(channel_order="swapped"), "batch").numpy())
    r = _cli("doctor", "--config", TINY_CONFIG, "--weights", tiny_weights, "--image", img, "--input", tmp_path / "x.npy",
             "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert {f["id"] for f in out["findings"]} == {"channel_order", "batch_contract"}
    assert out["reference"]["channel_order"] == "BGR"
    assert max(out["reference"]["shape"][1:]) <= 400


# --- the pytest helper, with preprocessing written the way users write it --------------------------------------


def _by_the_contract(path):
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(path, format="RGB")
    aug = T.ResizeShortestEdge([320, 320], 533)
    out = aug.get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


def _typical_mistakes(path):
    import cv2

    img = cv2.imread(path)  # BGR, fed to an RGB model
    img = cv2.resize(img, (320, 320))
    return torch.as_tensor(img.astype("float32").transpose(2, 0, 1) / 255.0)


def test_assert_matches_reference_passes_and_fails_with_findings(demo):
    images = [sample("val_001"), sample("val_044_exif6")]
    diags = assert_matches_reference(_by_the_contract, demo.cfg, images)
    assert [d.ids for d in diags] == [["match"], ["match"]]
    with pytest.raises(AssertionError) as err:
        assert_matches_reference(_typical_mistakes, demo.cfg, images)
    msg = str(err.value)
    assert "2 of 2 image(s)" in msg
    for fid in ("channel_order", "resize_aspect", "resize_interpolation", "value_range_0_1"):
        assert fid in msg
    assert "fix: " in msg and "ResizeShortestEdge" in msg


def test_assert_matches_reference_accepts_a_config_path(demo):
    assert_matches_reference(_by_the_contract, ROOT / "sample_data" / "demo_config.yaml", [sample("val_002")])
