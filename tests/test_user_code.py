"""Configs and parts that are the user's code: a LazyConfig ``.py`` (needs --trust-config) and the modules that
register a custom ROI head (--import). Without the flag each is refused in one line naming it."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from d2debug.ui.state import Keys

from helpers import ROOT, TINY_CONFIG, page_with_model_files, sample
from helpers import app_errors as errors
from helpers import app_run as run

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IMAGES = [sample("val_003"), sample("exif8")]

def _lazy_text(zoo_model: str, body: str) -> str:
    """A LazyConfig on a model-zoo model narrowed to a ResNet-18 with a 64-channel FPN, then ``body``."""
    head = textwrap.dedent(f"""
        from detectron2.config import LazyCall as L
        from detectron2.data import transforms as T
        from detectron2.layers import ShapeSpec
        from detectron2.model_zoo import get_config

        model = get_config("{zoo_model}").model
        del model.backbone.bottom_up.stages.stride_in_1x1
        model.backbone.bottom_up.stages.depth = 18
        model.backbone.out_channels = 64
    """)
    return head + textwrap.dedent(body)


# A LazyConfig written the way detectron2's own new-style configs are: the model-zoo's common Mask R-CNN
# (narrowed, three classes), RGB input, its own test-time resize.
LAZY_CONFIG = _lazy_text("common/models/mask_rcnn_fpn.py", """
    model.proposal_generator.head.in_channels = 64
    model.roi_heads.num_classes = 3
    model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
    model.roi_heads.box_head.fc_dims = [128, 128]
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=128)
    model.roi_heads.mask_head.input_shape = ShapeSpec(channels=64, width=14, height=14)
    model.roi_heads.mask_head.conv_dims = [64, 64]
    model.input_format = "RGB"
    model.pixel_mean = [123.675, 116.28, 103.53]
    model.pixel_std = [58.395, 57.12, 57.375]

    dataloader = get_config("common/data/coco.py").dataloader
    dataloader.train.mapper.image_format = "RGB"
    dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=400)]
    train = get_config("common/train.py").train
""")

# FCOS, detectron2's other one-stage detector, exists only as a LazyConfig: the model-zoo's, narrowed likewise.
FCOS_CONFIG = _lazy_text("common/models/fcos.py", """
    model.backbone.top_block.in_channels = 64
    model.head.input_shape = [ShapeSpec(channels=64)] * 5
    model.head.conv_dims = [64, 64]
    model.head.prior_prob = 0.05
    model.num_classes = 3
    model.test_score_thresh = 0.05

    dataloader = get_config("common/data/coco.py").dataloader
    dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=400)]
""")


def _lazy(root, name: str, text: str):
    from detectron2.config import LazyConfig, instantiate

    path = root / f"{name}.py"
    path.write_text(text)
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(str(path)).model)
    weights = root / f"{name}.pth"
    torch.save({"model": model.state_dict()}, weights)
    return path, weights


@pytest.fixture(scope="module")
def lazy_files(tmp_path_factory):
    return _lazy(tmp_path_factory.mktemp("lazy"), "mask_rcnn_small", LAZY_CONFIG)


@pytest.fixture(scope="module")
def fcos_files(tmp_path_factory):
    return _lazy(tmp_path_factory.mktemp("fcos"), "fcos_small", FCOS_CONFIG)


def test_a_lazyconfig_is_refused_without_trust(lazy_files, capsys):
    from d2debug.cli import main

    path, weights = lazy_files
    assert main(["compare", "--config", str(path), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-config" in err and path.name in err


def _assert_lazy_parity(path, weights, loaded):
    """run(reference) == model([mapper({"file_name": path, "image_id": 0})]) with the LazyConfig's test mapper."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    from d2debug.run import reference_spec, run

    lazy = LazyConfig.load(str(path))
    mapper = instantiate(lazy.dataloader.test.mapper)
    model = instantiate(lazy.model).eval()
    DetectionCheckpointer(model).load(str(weights))
    n = 0
    for p in IMAGES:
        ours = run(loaded, p, reference_spec(loaded.cfg, "cpu"))
        fed = mapper({"file_name": str(p), "image_id": 0})
        with torch.no_grad():
            theirs = model([fed])[0]["instances"]
        assert torch.equal(ours.input_tensor, fed["image"].float())
        assert ours.original_size == (fed["height"], fed["width"])
        np.testing.assert_array_equal(ours.boxes, theirs.pred_boxes.tensor.numpy())
        np.testing.assert_array_equal(ours.scores, theirs.scores.numpy())
        if theirs.has("pred_masks"):
            np.testing.assert_array_equal(ours.masks, theirs.pred_masks.numpy())
        n += len(theirs)
    assert n > 0


def test_a_lazyconfig_reference_is_what_detectron2_evaluates_with(lazy_files):
    """Parity with the test mapper feeding the instantiated model, masks included."""
    from d2debug.model import load_model

    path, weights = lazy_files
    loaded = load_model(path, weights, device="cpu", trust_config=True)
    assert loaded.cfg.INPUT.FORMAT == "RGB" and loaded.cfg.INPUT.MIN_SIZE_TEST == 256
    assert loaded.cfg.INPUT.MAX_SIZE_TEST == 400 and loaded.arch.outputs == ("boxes", "masks")
    assert loaded.arch.score_key == "model.roi_heads.box_predictor.test_score_thresh"
    assert loaded.describe()["config_kind"] == "LazyConfig"
    _assert_lazy_parity(path, weights, loaded)


def test_fcos_runs_from_its_lazyconfig_and_its_own_thresholds_act(fcos_files):
    from d2debug.model import load_model
    from d2debug.run import reference_spec, run

    path, weights = fcos_files
    loaded = load_model(path, weights, device="cpu", trust_config=True)
    assert loaded.arch.meta == "FCOS" and loaded.arch.score_key == "model.test_score_thresh"
    assert loaded.arch.score_thresh == 0.05 and loaded.cfg.INPUT.FORMAT == "BGR"
    _assert_lazy_parity(path, weights, loaded)
    spec = reference_spec(loaded.cfg, "cpu")
    ref = run(loaded, IMAGES[0], spec)
    high = run(loaded, IMAGES[0], spec.replace(score_thresh=float(np.median(ref.scores))))
    assert 0 < len(high.boxes) < len(ref.boxes)


def test_a_test_augmentation_the_stages_cannot_express_is_named(tmp_path, lazy_files):
    from d2debug.errors import D2DebugError
    from d2debug.model import load_model

    path = tmp_path / "flip.py"
    path.write_text(LAZY_CONFIG + "dataloader.test.mapper.augmentations.append(L(T.RandomFlip)(prob=0.5))\n")
    with pytest.raises(D2DebugError, match="ResizeShortestEdge, RandomFlip.*not one the stage model can express"):
        load_model(path, lazy_files[1], device="cpu", trust_config=True)


def _registering_file(folder, class_name: str):
    path = folder / f"{class_name.lower()}.py"
    path.write_text(textwrap.dedent(f"""
        from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

        @ROI_HEADS_REGISTRY.register()
        class {class_name}(StandardROIHeads):
            '''A user's own ROI heads, registered the way training scripts register them.'''
    """))
    return path


def _custom_config(folder, tiny_weights, class_name: str):
    text = TINY_CONFIG.read_text().replace("NAME: StandardROIHeads", f"NAME: {class_name}")
    assert class_name in text
    config = folder / "config.yaml"
    config.write_text(text)
    return ["--config", str(config), "--weights", str(tiny_weights), "--classes", "a,b,c"]


def test_a_registered_part_needs_import_and_works_with_it(tmp_path, tiny_weights, capsys):
    from d2debug.cli import main

    code_file = _registering_file(tmp_path, "FileROIHeads")
    args = ["compare", *_custom_config(tmp_path, tiny_weights, "FileROIHeads"), "--image", str(IMAGES[0])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "FileROIHeads" in err and "--import" in err
    assert main(args + ["--import", str(code_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agreement"]["f1"] == 1.0


def test_import_by_module_name_from_the_working_directory(tmp_path, tiny_weights, capsys, monkeypatch):
    from d2debug.cli import main

    pkg = tmp_path / "my_project"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _registering_file(pkg, "ModuleROIHeads").rename(pkg / "heads.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    args = ["compare", *_custom_config(tmp_path, tiny_weights, "ModuleROIHeads"), "--image", str(IMAGES[0])]
    assert main(args + ["--import", "my_project.heads"]) == 0
    capsys.readouterr()
    assert main(args + ["--import", "no_such_module_here"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_module_here" in err


def test_the_dashboard_runs_code_only_when_ticked(lazy_files, tmp_path):
    at = page_with_model_files("app_pages/channel_order.py", *lazy_files)
    assert any("--trust-config" in e or "Trust this config" in e for e in errors(at)), errors(at)
    at.checkbox(key=Keys.TRUST_CONFIG).check()
    at.text_input(key=Keys.IMPORTS).input(str(_registering_file(tmp_path, "UnusedROIHeads")))
    run(at)
    assert any("Run this code" in e for e in errors(at)), errors(at)
    at.text_input(key=Keys.IMPORTS).input("")
    run(at)
    assert not errors(at), errors(at)
    assert any("a GeneralizedRCNN" in c.value or "GeneralizedRCNN (boxes, masks)" in c.value for c in at.sidebar.caption)
    m = at.session_state[Keys.METRICS]
    assert m["f1"] == 1.0 and m["mask_iou"] == 1.0
