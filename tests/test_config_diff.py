"""Config diff: merged onto get_cfg(), inference-relevant keys first, each explained; bad files named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from d2debug.cli import main
from d2debug.config_diff import GROUPS, diff_configs
from d2debug.errors import D2DebugError

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "sample_data" / "demo_config.yaml"

# A typical deployment mistake: a model-zoo style config with the training run's class count and weights.
DEPLOY = """\
MODEL:
  WEIGHTS: /srv/models/model_final.pth
  BACKBONE: {NAME: build_resnet_fpn_backbone}
  ROI_HEADS: {NUM_CLASSES: 6, SCORE_THRESH_TEST: 0.7}
INPUT:
  MIN_SIZE_TEST: 800
SOLVER:
  BASE_LR: 0.05
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_preprocessing_first_each_explained(tmp_path):
    diff = diff_configs(DEMO_CONFIG, write(tmp_path, "deploy.yaml", DEPLOY))
    keys = [d.key for d in diff.differences]
    # The most consequential keys lead, in the documented order.
    assert keys[:5] == ["INPUT.FORMAT", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "INPUT.MIN_SIZE_TEST",
                        "INPUT.MAX_SIZE_TEST"]
    groups = [d.group for d in diff.differences]
    assert groups == sorted(groups, key=GROUPS.index)
    by = {d.key: d for d in diff.differences}
    fmt = by["INPUT.FORMAT"]
    assert (fmt.train, fmt.deploy) == ("RGB", "BGR")  # deploy left FORMAT at get_cfg()'s default
    assert "red and blue swap" in fmt.effect
    assert "model-zoo default" in by["MODEL.PIXEL_MEAN"].effect
    assert "128x as large" in by["MODEL.PIXEL_STD"].effect  # 127.5 / 1, what the backbone really sees
    assert "2.50x" in by["INPUT.MIN_SIZE_TEST"].effect
    assert "0.7" in by["MODEL.ROI_HEADS.SCORE_THRESH_TEST"].effect
    assert by["MODEL.ROI_HEADS.SCORE_THRESH_TEST"].group == "thresholds"
    assert by["MODEL.WEIGHTS"].group == "model identity"
    for k in ("SOLVER.BASE_LR", "INPUT.MIN_SIZE_TRAIN", "SEED"):
        assert by[k].group == "training only" and not by[k].affects_inference
    assert "NUM_CLASSES" not in " ".join(keys)  # equal on both sides: not listed
    assert all(d.effect for d in diff.differences)


def test_keys_left_out_count_with_detectron2_defaults(tmp_path):
    a = write(tmp_path, "a.yaml", "MODEL:\n  PIXEL_STD: [57.375, 57.12, 58.395]\n")
    b = write(tmp_path, "b.yaml", "VERSION: 2\n")
    diff = diff_configs(a, b)
    assert [d.key for d in diff.differences] == ["MODEL.PIXEL_STD"]
    d = diff.differences[0]
    assert d.deploy == [1.0, 1.0, 1.0]
    assert "model-zoo default" in d.effect


def test_mean_in_the_other_channel_order_is_named(tmp_path):
    a = write(tmp_path, "a.yaml", "MODEL:\n  PIXEL_MEAN: [103.53, 116.28, 123.675]\n")
    b = write(tmp_path, "b.yaml", "MODEL:\n  PIXEL_MEAN: [123.675, 116.28, 103.53]\n")
    (d,) = diff_configs(a, b).differences
    assert "other channel order" in d.effect


def test_identical_configs_have_no_differences():
    diff = diff_configs(DEMO_CONFIG, DEMO_CONFIG)
    assert diff.differences == () and diff.n_keys > 150


def test_cli_json_and_exit_status(tmp_path, capsys):
    deploy = write(tmp_path, "deploy.yaml", DEPLOY)
    assert main(["config-diff", str(DEMO_CONFIG), str(deploy), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["differences"][0]["key"] == "INPUT.FORMAT"
    assert out["n_inference_differences"] < out["n_differences"]
    # Only training-only keys differ: exit 0, and the text says they do not matter at inference.
    train_only = write(tmp_path, "train_only.yaml", DEMO_CONFIG.read_text().replace("BASE_LR: 0.01", "BASE_LR: 0.5"))
    assert main(["config-diff", str(DEMO_CONFIG), str(train_only)]) == 0
    text = capsys.readouterr().out
    assert "SOLVER.BASE_LR: 0.01 -> 0.5" in text and "no effect at inference" in text
    assert main(["config-diff", str(DEMO_CONFIG), str(DEMO_CONFIG)]) == 0
    assert "no differences" in capsys.readouterr().out


def test_diff_config_stays_an_alias_of_config_diff(tmp_path, capsys):
    # `diff-config` is the name the command was published under: scripts calling it get the same answer.
    deploy = write(tmp_path, "deploy.yaml", DEPLOY)
    assert main(["config-diff", str(DEMO_CONFIG), str(deploy), "--json"]) == 1
    new = capsys.readouterr().out
    assert main(["diff-config", str(DEMO_CONFIG), str(deploy), "--json"]) == 1
    assert capsys.readouterr().out == new and json.loads(new)["n_differences"] > 0


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("missing.yaml", None, "not found"),
        ("syntax.yaml", "MODEL: [unclosed\n", "YAML syntax error"),
        ("unknown.yaml", "MODEL:\n  NOT_A_KEY: 3\n", "unknown config key"),
        ("wrongtype.yaml", "INPUT:\n  MIN_SIZE_TEST: [a, b]\n", "invalid config value"),
        ("adir", "DIR", "directory"),
    ],
)
def test_bad_file_is_one_line_naming_it(tmp_path, capsys, name, content, needle):
    bad = tmp_path / name
    if content == "DIR":
        bad.mkdir()
    elif content is not None:
        bad.write_text(content)
    assert main(["config-diff", str(DEMO_CONFIG), str(bad)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(bad) in err[0] and needle in err[0]
    with pytest.raises(D2DebugError, match=name):
        diff_configs(bad, DEMO_CONFIG)


def test_format_difference_does_what_the_diff_says(demo):
    """The effect line for INPUT.FORMAT is true of the real model: deploying the demo weights with the other
    FORMAT gives exactly the detections of the reference pipeline with channel_order=swapped."""
    from d2debug.model import load_model
    from d2debug.run import reference_spec, run
    from d2debug.samples import DEMO_WEIGHTS

    image = ROOT / "sample_data" / "images" / "val_000.jpg"
    other = load_model(DEMO_CONFIG, DEMO_WEIGHTS, device="cpu", class_names=demo.class_names,
                       overrides=["INPUT.FORMAT", "BGR"])
    (d,) = [x for x in diff_cfg(demo.cfg, other.cfg) if x.key == "INPUT.FORMAT"]
    assert "red and blue swap" in d.effect
    spec = reference_spec(demo.cfg, "cpu")
    deployed = run(other, image, spec)
    swapped = run(demo, image, spec.replace(channel_order="swapped"))
    assert np.array_equal(deployed.input_tensor.numpy(), swapped.input_tensor.numpy())
    assert np.array_equal(deployed.boxes, swapped.boxes) and np.array_equal(deployed.classes, swapped.classes)
    # And it is not the reference: the input channels really are exchanged.
    ref = run(demo, image, spec)
    assert np.array_equal(ref.input_tensor.numpy()[::-1], deployed.input_tensor.numpy())
    assert not np.array_equal(ref.input_tensor.numpy(), deployed.input_tensor.numpy())


def diff_cfg(a, b):
    from d2debug.config_diff import diff_cfg_nodes

    return diff_cfg_nodes(a, b).differences
