"""Bad configs, checkpoints, class-name files, fingerprints, COCO files and saved model inputs, generated here:
each makes the CLI exit 2 with ONE line naming the file and what is wrong. Never a traceback (each of these
once ended in IndexError, AttributeError, RecursionError, KeyError, TypeError or a wrong message)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from d2debug.cli import main
from d2debug.doctor import make_fingerprint
from d2debug.samples import DEMO_CONFIG, DEMO_WEIGHTS

from corpus import BAD_CONFIGS
from helpers import SAMPLES

IMAGE = SAMPLES / "images" / "val_000.jpg"


def _one_line_error(capsys, argv, *needles) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# --- configs --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    for name, (text, _) in BAD_CONFIGS.items():
        (d / name).write_text(text)
    (d / "cycle_a.yaml").write_text("_BASE_: cycle_b.yaml\n")
    (d / "cycle_b.yaml").write_text("_BASE_: cycle_a.yaml\n")
    return d


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_files(config_dir, capsys, name):
    _one_line_error(capsys, ["compare", "--config", config_dir / name, "--weights", DEMO_WEIGHTS],
                    name, BAD_CONFIGS[name][1])


def test_base_config_cycle_through_two_files(config_dir, capsys):
    _one_line_error(capsys, ["compare", "--config", config_dir / "cycle_a.yaml", "--weights", DEMO_WEIGHTS],
                    "cycle")


def test_config_diff_with_a_list_yaml(config_dir, capsys):
    _one_line_error(capsys, ["config-diff", DEMO_CONFIG, config_dir / "list.yaml"], "list.yaml", "top level")


# --- checkpoints ----------------------------------------------------------------------------------------------
def _checkpoints(d):
    good = {k: v for k, v in torch.load(DEMO_WEIGHTS, weights_only=True)["model"].items()}
    (d / "empty.pth").write_bytes(b"")
    (d / "empty.pt").write_bytes(b"")
    torch.save({"model": {**good, "extra": "hello"}}, d / "string_value.pth")
    torch.save({3: torch.zeros(1)}, d / "int_key.pth")
    torch.save({"model": {"x": 1.5}}, d / "float_value.pth")
    with open(d / "author_int.pkl", "wb") as f:
        pickle.dump({"model": 3, "__author__": "me"}, f)
    return {"empty.pth": "empty file", "empty.pt": "empty file", "string_value.pth": "'extra' is a str",
            "int_key.pth": "key 3 is a int", "float_value.pth": "'x' is a float",
            "author_int.pkl": "checkpoint['model'] is a int"}


def test_bad_checkpoints(tmp_path, capsys):
    for name, needle in _checkpoints(tmp_path).items():
        _one_line_error(capsys, ["compare", "--config", DEMO_CONFIG, "--weights", tmp_path / name,
                                 "--trust-checkpoint"], name, needle)


# --- class names ----------------------------------------------------------------------------------------------
def test_bad_class_name_files_and_a_list_of_names(tmp_path, capsys):
    bad = {"no_name.json": {"categories": [{"id": 1}]}, "no_id.json": {"categories": [{"name": "a"}]},
           "cats_int.json": {"categories": 3}}
    for name, data in bad.items():
        (tmp_path / name).write_text(json.dumps(data))
        _one_line_error(capsys, ["compare", "--config", DEMO_CONFIG, "--weights", DEMO_WEIGHTS,
                                 "--classes", tmp_path / name], name, "cannot read class names")
    (tmp_path / "latin1.json").write_bytes("{\"categories\": \"caf\xe9\"}".encode("latin-1"))
    _one_line_error(capsys, ["compare", "--config", DEMO_CONFIG, "--weights", DEMO_WEIGHTS,
                             "--classes", tmp_path / "latin1.json"], "latin1.json")
    # The demo's own classes.json is a plain list of names: accepted.
    assert main(["compare", "--config", str(DEMO_CONFIG), "--weights", str(DEMO_WEIGHTS),
                 "--classes", str(SAMPLES / "classes.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["class_names"] == json.loads((SAMPLES / "classes.json").read_text())


# --- fingerprints ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_fingerprint(demo):
    return make_fingerprint(demo, [IMAGE, SAMPLES / "images" / "val_001.jpg"])


@pytest.mark.parametrize("where,key,value,needle", [
    ("stages", "min_size_test", "abc", "min_size_test='abc'"),
    ("stages", "max_size_test", None, "max_size_test=None"),
    ("stages", "min_size_test", [320], "min_size_test=[320]"),
    ("stages", "score_thresh_test", "x", "score_thresh_test='x'"),
    ("stages", "pixel_std", [float("nan"), 1, 1], "pixel_std"),
    ("input_stats", None, 3, "input_stats is a int"),
    ("input_stats", "mean", "abc", "input_stats.mean='abc'"),
    ("input_stats", "mean", [1, 2], "input_stats.mean=[1, 2]"),
    ("input_stats", "images", "many", "input_stats.images='many'"),
])
def test_bad_fingerprints(tmp_path, capsys, good_fingerprint, where, key, value, needle):
    fp = json.loads(json.dumps(good_fingerprint))
    if key is None:
        fp[where] = value
    else:
        fp[where][key] = value
    path = tmp_path / "fp.json"
    path.write_text(json.dumps(fp))
    t = tmp_path / "input.pt"
    torch.save({"image": torch.zeros(3, 8, 8), "height": 8, "width": 8}, t)
    _one_line_error(capsys, ["doctor", "--fingerprint", path, "--input", t], "fp.json", needle)


# --- COCO files -----------------------------------------------------------------------------------------------
def test_bad_coco_files(tmp_path, capsys):
    real = json.loads((SAMPLES / "annotations.json").read_text())
    first = real["images"][0]
    cases = {
        "images_dict.json": ({**real, "images": {"a": 1}}, "'images' is a dict"),
        "images_strings.json": ({**real, "images": ["a"]}, "images[0] is not an object"),
        "image_no_id.json": ({**real, "images": [{"file_name": first["file_name"]}]}, "images[0] has no valid 'id'"),
        "image_id_str.json": ({**real, "images": [{**first, "id": "abc"}]}, "images[0] has no valid 'id'"),
        "ann_no_bbox.json": ({**real, "annotations": [{k: v for k, v in a.items() if k != "bbox"}
                                                      for a in real["annotations"]]}, "has no valid 'bbox'"),
        "no_images.json": ({**real, "images": [], "annotations": []}, "lists no images"),
    }
    for name, (data, needle) in cases.items():
        path = tmp_path / name  # no images beside it: each must fail on the file itself, before any image
        path.write_text(json.dumps(data))
        _one_line_error(capsys, ["audit", "--images", path, "--out", tmp_path / "out", "--no-progress",
                                 "--variants", "channel_swap", "--limit", "1"], name, needle)


# --- saved model inputs ---------------------------------------------------------------------------------------
def test_bad_saved_inputs(tmp_path, capsys):
    np.savez(tmp_path / "empty.npz")
    np.savez(tmp_path / "two_heights.npz", image=np.zeros((3, 8, 8), np.float32), height=np.array([8, 8]), width=8)
    torch.save(torch.zeros(3, 8, 8).to_sparse(), tmp_path / "sparse.pt")
    cases = {"empty.npz": ".npz holds nothing", "two_heights.npz": "'height' has shape (2,)",
             "sparse.pt": "sparse_coo tensor"}
    for name, needle in cases.items():
        line = _one_line_error(capsys, ["doctor", "--image", IMAGE, "--input", tmp_path / name], name, needle)
        assert "pickle" not in line
