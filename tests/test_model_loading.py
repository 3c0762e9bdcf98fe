"""Loading configs and checkpoints: safe by default, loud on mismatches, clear on bad files."""
from __future__ import annotations

import pickle

import pytest
import torch

from d2debug.checkpoint import read_state_dict
from d2debug.errors import D2DebugError
from d2debug.model import load_model

from corpus import evil_pickle
from helpers import TINY_CONFIG


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".pkl"])
def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path, suffix):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / f"evil{suffix}"
    with open(path, "wb") as f:
        f.write(evil_pickle(marker))
    with pytest.raises(D2DebugError, match=str(path.name)):
        load_model(TINY_CONFIG, path, device="cpu")
    assert not marker.exists()


def test_pkl_needs_explicit_trust(tmp_path, tiny_weights):
    state = torch.load(tiny_weights, weights_only=True)["model"]
    path = tmp_path / "zoo_style.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, f)
    with pytest.raises(D2DebugError, match="--trust-checkpoint"):
        read_state_dict(path)
    m = load_model(TINY_CONFIG, path, device="cpu", trust_checkpoint=True)
    assert torch.equal(m.model.state_dict()["backbone.bottom_up.stem.conv1.weight"],
                       state["backbone.bottom_up.stem.conv1.weight"])


def test_safetensors_weights_load_identically(tmp_path, tiny_weights, tiny):
    from safetensors.torch import save_file

    state = torch.load(tiny_weights, weights_only=True)["model"]
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    m = load_model(TINY_CONFIG, path, device="cpu")
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(m.model.state_dict()[k], v), k


def test_num_classes_mismatch_names_tensors_and_shapes(tmp_path, tiny_weights):
    cfg = tmp_path / "five.yaml"
    cfg.write_text(TINY_CONFIG.read_text().replace("NUM_CLASSES: 3", "NUM_CLASSES: 5"))
    with pytest.raises(D2DebugError) as e:
        load_model(cfg, tiny_weights, device="cpu")
    msg = str(e.value)
    assert "roi_heads.box_predictor.cls_score.weight" in msg and "[4, 64]" in msg and "[6, 64]" in msg
    # Explicitly allowed: loads, and the report keeps the evidence.
    m = load_model(cfg, tiny_weights, device="cpu", allow_key_mismatch=True)
    assert m.load_report["incorrect_shapes"]


def test_missing_and_unexpected_keys_are_errors(tmp_path, tiny_weights):
    state = torch.load(tiny_weights, weights_only=True)["model"]
    state.pop("roi_heads.box_head.fc1.weight")
    state["something.extra"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)
    with pytest.raises(D2DebugError, match="missing key.*fc1.weight.*unexpected key.*something.extra"):
        load_model(TINY_CONFIG, path, device="cpu")


@pytest.mark.parametrize("text,needle", [
    ("MODEL:\n  NOT_A_KEY: 3\n", "unknown config key"),
    ("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: many\n", "invalid config value"),
    ("MODEL: [\n", "YAML syntax error"),
    ("MODEL:\n  META_ARCHITECTURE: NoSuchRCNN\n", "unregistered component.*NoSuchRCNN.*--import"),
    ("INPUT:\n  FORMAT: YUV\n", "INPUT.FORMAT"),
])
def test_bad_configs(tmp_path, tiny_weights, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(D2DebugError, match=needle) as e:
        load_model(cfg, tiny_weights, device="cpu")
    assert "\n" not in str(e.value)


def test_paths_are_checked(tmp_path):
    with pytest.raises(D2DebugError, match="weights not found"):
        load_model(TINY_CONFIG, tmp_path / "missing.pth", device="cpu")
    with pytest.raises(D2DebugError, match="is a directory"):
        load_model(TINY_CONFIG, tmp_path, device="cpu")
    with pytest.raises(D2DebugError, match="is a directory"):
        load_model(tmp_path, tmp_path / "x.pth", device="cpu")
    not_yaml = tmp_path / "weights_in_config_field.pth"
    not_yaml.write_bytes(b"")
    with pytest.raises(D2DebugError, match="expected a YAML config"):
        load_model(not_yaml, TINY_CONFIG)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(D2DebugError, match="junk.pth"):
        load_model(TINY_CONFIG, junk, device="cpu")


def test_class_names_sources(tmp_path, tiny_weights):
    m = load_model(TINY_CONFIG, tiny_weights, device="cpu")
    assert m.class_names == ["class 0", "class 1", "class 2"] and "generic" in m.class_names_source
    coco = tmp_path / "ann.json"
    coco.write_text('{"images": [], "categories": [{"id": 3, "name": "z"}, {"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}')
    assert load_model(TINY_CONFIG, tiny_weights, device="cpu", class_names=coco).class_names == ["x", "y", "z"]
    with pytest.raises(D2DebugError, match="NUM_CLASSES=3"):
        load_model(TINY_CONFIG, tiny_weights, device="cpu", class_names=["only", "two"])


def test_cuda_request_without_gpu_is_clear(tiny_weights):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(D2DebugError, match="no CUDA GPU"):
        load_model(TINY_CONFIG, tiny_weights, device="cuda")


def test_demo_model_loads_with_plain_detectron2():
    """A user can check our claims with detectron2 alone: stock keys, normal fp32 checkpoint, no d2debug import."""
    import subprocess
    import sys

    from helpers import SAMPLES

    code = f"""
import sys
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
from detectron2.data.detection_utils import read_image
cfg = get_cfg(); cfg.merge_from_file({str(SAMPLES / 'demo_config.yaml')!r})
cfg.MODEL.WEIGHTS = {str(SAMPLES / 'demo_model.pth')!r}; cfg.MODEL.DEVICE = "cpu"
out = DefaultPredictor(cfg)(read_image({str(SAMPLES / 'images' / 'val_000.jpg')!r}, "BGR"))["instances"]
assert not any(m.startswith("d2debug") for m in sys.modules)
print(len(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip().splitlines()[-1]) >= 2  # val_000 holds a red and a blue disc
    assert (SAMPLES / "demo_model.pth").stat().st_size <= 20 * 1024 * 1024
