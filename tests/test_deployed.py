"""The deployed model: the demo model (boxes and masks) exported here to TorchScript (traced and scripted) and
ONNX through detectron2's export code, run as a deployment runs it, against the reference DefaultPredictor."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import ROOT, SAMPLE_IMAGES, cli, default_predictor, sample

# Measured: the exports agree with the Python model to 6e-5 px in boxes and 1.2e-7 in scores on these images
# (ONNX; TorchScript exactly), so these bounds are margins, not fits.
BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-4
ARTIFACTS = {"ts": ("torchscript", "tracing"), "onnx": ("onnx", "tracing"), "scripted": ("torchscript", "scripting")}


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    from d2debug.deploy import export_model

    root = tmp_path_factory.mktemp("exports")
    return {key: export_model(demo, fmt, root / key, method) for key, (fmt, method) in ARTIFACTS.items()}


@pytest.fixture(scope="module")
def deployed(exported):
    from d2debug.deploy import load_deployed

    return {key: load_deployed(r.artifact) for key, r in exported.items()}


@pytest.mark.parametrize("key", list(ARTIFACTS))
def test_each_artifact_fed_the_reference_input_agrees_with_default_predictor(demo, deployed, key):
    """Boxes, scores, classes and masks of the artifact, mapped back to the original frame, equal
    DefaultPredictor's within the measured tolerance, on several images and sizes."""
    from detectron2.data.detection_utils import read_image

    from d2debug.deploy import run_deployed
    from d2debug.run import reference_spec

    predictor = default_predictor(demo)
    for path in SAMPLE_IMAGES[:4]:
        theirs = predictor(read_image(str(path), "BGR"))["instances"].to("cpu")
        ours = run_deployed(demo, deployed[key], path, reference_spec(None, "cpu"))
        assert len(ours.boxes) == len(theirs) > 0, path.name
        np.testing.assert_allclose(ours.boxes, theirs.pred_boxes.tensor.numpy(), atol=BOX_TOL_PX)
        np.testing.assert_allclose(ours.scores, theirs.scores.numpy(), atol=SCORE_TOL)
        np.testing.assert_array_equal(ours.classes, theirs.pred_classes.numpy())
        agree = (ours.masks == theirs.pred_masks.numpy()).mean()
        assert agree > 0.999, f"{path.name}: masks agree on {agree:.5f} of pixels"


def test_export_measures_itself_and_writes_its_contract_inside_and_beside(demo, exported):
    from d2debug.deploy import read_contract_file

    for key, report in exported.items():
        c = report.contract
        assert c.agreement["f1"] == 1.0 and c.agreement["max_box_diff_px"] < BOX_TOL_PX, key
        assert c.any_size is True and c.agreement["other_size"]["input_size"] != c.agreement["input_size"]
        assert c.channel_order == demo.cfg.INPUT.FORMAT and c.normalizes and c.min_size == demo.cfg.INPUT.MIN_SIZE_TEST
        assert {"pred_boxes", "pred_classes", "scores", "pred_masks"} <= set(c.outputs)
        assert read_contract_file(report.contract_path) == c
    from d2debug.deploy import load_deployed

    for key, report in exported.items():
        assert load_deployed(report.artifact).contract_source == "embedded in the artifact", key


# Each deployment pitfall, as a PipelineSpec change: what a deployment script gets wrong.
DEPLOYMENT_PITFALLS = {
    "channel_order": {"channel_order": "swapped"},
    "double normalization": {"external_norm": "imagenet"},
    "boxes not rescaled": {"original_size": "omit"},
    "another resize": {"resize": "fixed", "resize_size": 512},
    "PIL decode without EXIF": {"decoder": "pil"},
}


@pytest.mark.parametrize("key", ["ts", "onnx"])
@pytest.mark.parametrize("pitfall", list(DEPLOYMENT_PITFALLS))
def test_each_deployment_pitfall_moves_the_agreement_and_the_export_part_stays_exact(demo, deployed, key, pitfall):
    from d2debug.deploy import compare_deployed
    from d2debug.run import reference_spec, run

    image = sample("exif6") if "EXIF" in pitfall else sample("val_003")
    ref = run(demo, image, reference_spec(None, "cpu"))
    same = compare_deployed(demo, deployed[key], image, ref.spec, ref)
    assert [r["f1"] for r in same.gap_rows()] == [1.0, 1.0, 1.0]
    assert same.deployment.mean_iou == 1.0  # the reference setting gives exactly the artifact's own reference
    gap = compare_deployed(demo, deployed[key], image, ref.spec.replace(**DEPLOYMENT_PITFALLS[pitfall]), ref)
    export, deployment, total = gap.gap_rows()
    assert export["f1"] == 1.0 and export["mean_iou"] > 0.999
    moved = total["f1"] < 1.0 or total["mean_iou"] < 0.99
    assert moved, f"{pitfall}: {total}"
    assert deployment["f1"] < 1.0 or deployment["mean_iou"] < 0.99


def test_a_users_own_tensor_is_fed_as_is(demo, deployed):
    """A deployment's own preprocessing (here: cv2 decode, BGR kept, cv2 resize) fed to the artifact."""
    import cv2

    from d2debug.deploy import compare_deployed
    from d2debug.run import preprocess, reference_spec, run

    image = sample("val_003")
    ref = run(demo, image, reference_spec(None, "cpu"))
    bgr = cv2.imread(str(image))
    h, w = ref.input_size
    mine = torch.from_numpy(cv2.resize(bgr, (w, h)).transpose(2, 0, 1).astype(np.float32))
    gap = compare_deployed(demo, deployed["onnx"], image, ref.spec, ref, (mine, ref.original_size))
    assert torch.equal(gap.view.variant.input_tensor, mine)
    assert gap.export.f1 == 1.0 and gap.view.agreement.mean_iou < 0.999
    exact, _ = preprocess(demo.cfg, image)
    same = compare_deployed(demo, deployed["onnx"], image, ref.spec, ref, (exact, ref.original_size))
    assert same.view.agreement.f1 == 1.0 and same.deployment.mean_iou == 1.0


def test_baked_fields_are_refused_in_one_line(demo, deployed):
    from d2debug.deploy import run_deployed
    from d2debug.errors import D2DebugError
    from d2debug.run import reference_spec

    for change in ({"model_norm": "d2_default"}, {"score_thresh": 0.9}, {"precision": "fp16"}):
        with pytest.raises(D2DebugError) as err:
            run_deployed(demo, deployed["ts"], sample("val_000"), reference_spec(None, "cpu").replace(**change))
        assert "baked into the exported graph" in str(err.value) and "\n" not in str(err.value)


def _classifier_ts(path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 32, 32)), str(path))


def _other_onnx(path, rank3: bool):
    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=0)

    net = Mean() if rank3 else torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    x = torch.zeros(3, 8, 8) if rank3 else torch.zeros(1, 3, 8, 8)
    torch.onnx.export(net.eval(), (x,), str(path), input_names=["x"], dynamic_axes={"x": {x.dim() - 2: "h", x.dim() - 1: "w"}},
                      **kw)


def test_bad_artifacts_are_one_line_each(demo, exported, tmp_path):
    from d2debug.deploy import load_deployed, run_deployed
    from d2debug.errors import D2DebugError
    from d2debug.run import reference_spec

    contract = exported["ts"].contract_path
    cases = {}
    for key in ("ts", "onnx"):
        data = exported[key].artifact.read_bytes()
        cut = tmp_path / f"cut_{key}" / exported[key].artifact.name
        cut.parent.mkdir()
        cut.write_bytes(data[: len(data) // 2])
        cases[f"truncated {key}"] = (cut, "not a readable")
    for name, make, expect in (("classifier.ts", _classifier_ts, "fails on a 3x"),
                               ("other4d.onnx", lambda p: _other_onnx(p, False), "takes"),
                               ("other3d.onnx", lambda p: _other_onnx(p, True), "outputs")):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        make(folder / name)
        fmt = "onnx" if name.endswith(".onnx") else "torchscript"
        c = json.loads(contract.read_text())
        (folder / "contract.json").write_text(json.dumps({**c, "format": fmt}))  # the demo's contract beside it
        cases[name] = (folder / name, expect)
    lonely = tmp_path / "lonely" / "model.onnx"
    lonely.parent.mkdir()
    shutil.copy(tmp_path / "other3d" / "other3d.onnx", lonely)
    cases["no contract"] = (lonely, "no contract")
    cases["not an artifact"] = (contract, "not an exported model")
    for label, (path, expect) in cases.items():
        with pytest.raises(D2DebugError) as err:
            run_deployed(demo, load_deployed(path), sample("val_000"), reference_spec(None, "cpu"))
        msg = str(err.value)
        assert expect in msg and str(path.name) in msg and "\n" not in msg, f"{label}: {msg}"


@pytest.mark.slow
def test_cli_export_then_compare_deployed(tmp_path):
    out = tmp_path / "onnx"
    r = cli("export", "--format", "onnx", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["agreement"]["f1"] == 1.0 and (out / "model.onnx").is_file() and (out / "contract.json").is_file()
    again = cli("export", "--format", "onnx", "--out", out)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    r = cli("compare", "--deployed", out / "model.onnx", "--image", sample("val_003"), "--set",
            "external_norm=imagenet", "--json")
    assert r.returncode == 0, r.stderr
    gap = json.loads(r.stdout)["deployed"]["gap"]
    assert gap[0]["f1"] == 1.0 and gap[2]["f1"] < 1.0
    r = cli("compare", "--deployed", out / "model.onnx", "--set", "model_norm=d2_default")
    assert r.returncode == 2 and "baked" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    script = tmp_path / "mine.py"
    script.write_text("import torch\ndef pre(path):\n    return torch.zeros(3, 64, 64)\n")
    r = cli("compare", "--deployed", out / "model.onnx", "--preprocess", f"{script}:pre")
    assert r.returncode == 2 and "--trust-code" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_audit_of_a_deployed_model_over_a_dataset(demo, deployed, tmp_path):
    """The audit runs the artifact fed the reference input (the export's gap: none) and each deployment
    pitfall through the artifact; model-side pitfalls, baked into the graph, are left out."""
    from d2debug.audit import load_dataset, parse_variants, run_audit

    ds = load_dataset(ROOT / "sample_data" / "images", ROOT / "sample_data" / "annotations.json", limit=3)
    pitfalls = parse_variants(["channel_swap", "model_zoo_norm", "imagenet_double_norm"])
    audit = run_audit(demo, ds, tmp_path / "out", pitfalls, write_report=False, deployed=deployed["onnx"])
    rows = {r["name"]: r for r in audit.summary["rows"]}
    assert set(rows) == {"reference", "deployed", "deployed_channel_swap", "deployed_imagenet_double_norm"}
    assert rows["deployed"]["f1"] == 1.0 and rows["deployed"]["dAP"] == 0.0
    assert rows["deployed_imagenet_double_norm"]["dAP"] < -0.1 and rows["deployed_channel_swap"]["f1"] < 1.0
    assert audit.settings["deployed"]["format"] == "onnx"
