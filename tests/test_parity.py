"""Reference parity: run(reference_spec) == DefaultPredictor(cfg)(read_image(path, "BGR")), exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import SAMPLE_IMAGES, default_predictor


def _captured_predictor_input(predictor, bgr):
    """The exact "image" tensor DefaultPredictor hands to its model (captured by wrapping the model call)."""
    seen = {}
    model = predictor.model
    original = model.forward

    def spy(batched_inputs, *args, **kwargs):
        seen["image"] = batched_inputs[0]["image"].clone()
        seen["hw"] = (batched_inputs[0]["height"], batched_inputs[0]["width"])
        return original(batched_inputs, *args, **kwargs)

    model.forward = spy
    try:
        out = predictor(bgr)["instances"]
    finally:
        del model.forward
    return out, seen


def _assert_parity(loaded, paths):
    from detectron2.data.detection_utils import read_image

    from d2debug.run import reference_spec, run

    predictor = default_predictor(loaded)
    total = 0
    for p in paths:
        ours = run(loaded, p, reference_spec(loaded.cfg, "cpu"))
        theirs, seen = _captured_predictor_input(predictor, read_image(str(p), format="BGR"))
        assert torch.equal(ours.input_tensor, seen["image"]), p.name
        assert ours.original_size == seen["hw"], p.name
        np.testing.assert_array_equal(ours.boxes, theirs.pred_boxes.tensor.numpy(), err_msg=p.name)
        np.testing.assert_array_equal(ours.scores, theirs.scores.numpy(), err_msg=p.name)
        np.testing.assert_array_equal(ours.classes, theirs.pred_classes.numpy(), err_msg=p.name)
        total += len(ours.boxes)
    return total


def test_parity_on_every_sample_image_demo_model(demo):
    total = _assert_parity(demo, SAMPLE_IMAGES)
    assert total > len(SAMPLE_IMAGES)  # the comparison covered real detections, not empty outputs


def test_parity_bgr_model(tiny):
    total = _assert_parity(tiny, SAMPLE_IMAGES[::8])
    assert total > 0


def test_backbone_input_is_the_models_own_normalization(demo):
    from d2debug.run import reference_spec, run

    r = run(demo, SAMPLE_IMAGES[0], reference_spec(demo.cfg, "cpu"))
    images = demo.model.preprocess_image([{"image": r.input_tensor}])
    h, w = r.input_size
    assert torch.equal(images.tensor[0, :, :h, :w], r.backbone_input)
    # RGB model with mean = std = 127.5: the backbone sees roughly -1..1
    assert r.backbone_input.min() >= -1.0 and r.backbone_input.max() <= 1.0


@pytest.mark.parametrize("change", [
    {"channel_order": "swapped"}, {"value_range": "0_1"}, {"resize": "fixed"}, {"interpolation": "nearest"},
    {"model_norm": "d2_default"}, {"external_norm": "imagenet"}, {"resize_backend": "cv2"},
])
def test_each_stage_changes_the_model_input_or_backbone_input(demo, change):
    from d2debug.run import reference_spec, run

    path = next(p for p in SAMPLE_IMAGES if "large" in p.name)
    ref = run(demo, path, reference_spec(demo.cfg, "cpu"))
    var = run(demo, path, reference_spec(demo.cfg, "cpu").replace(**change))
    same_shape = ref.backbone_input.shape == var.backbone_input.shape
    assert not (same_shape and torch.equal(ref.backbone_input, var.backbone_input)), change


def test_model_settings_are_restored_after_a_variant(demo):
    from d2debug.run import reference_spec, run

    mean = demo.model.pixel_mean.clone()
    thresh = demo.model.roi_heads.box_predictor.test_score_thresh
    run(demo, SAMPLE_IMAGES[1], reference_spec(demo.cfg, "cpu").replace(model_norm="d2_default", score_thresh=0.05))
    assert torch.equal(demo.model.pixel_mean, mean)
    assert demo.model.roi_heads.box_predictor.test_score_thresh == thresh


def test_omitted_original_size_returns_resized_frame(demo):
    from d2debug.run import reference_spec, run

    path = next(p for p in SAMPLE_IMAGES if "large" in p.name)
    ref = run(demo, path, reference_spec(demo.cfg, "cpu"))
    var = run(demo, path, reference_spec(demo.cfg, "cpu").replace(original_size="omit"))
    assert var.frame == "resized" and ref.frame == "original"
    # Same detections, boxes scaled by the resize factor (detector_postprocess is the only difference).
    assert len(ref.boxes) == len(var.boxes) > 0
    sx, sy = ref.scale
    np.testing.assert_allclose(var.boxes[:, 0], ref.boxes[:, 0] * sx, rtol=1e-3, atol=0.5)
    np.testing.assert_allclose(var.boxes[:, 3], ref.boxes[:, 3] * sy, rtol=1e-3, atol=0.5)


def test_prepared_and_batched_results_carry_the_order_actually_fed(demo):
    """A channel-swap variant fed through run_prepared / run_batch (the audit's path) says it fed the swapped
    order, as run() does; the reference says cfg.INPUT.FORMAT."""
    from d2debug.run import prepare, reference_spec, run, run_batch, run_prepared
    from d2debug.stages import decode

    fmt = demo.cfg.INPUT.FORMAT
    other = "BGR" if fmt == "RGB" else "RGB"
    ref_spec = reference_spec(demo.cfg, "cpu")
    swap = ref_spec.replace(channel_order="swapped")
    dec = decode(SAMPLE_IMAGES[0], ref_spec.decoder)
    tensor, size = prepare(demo.cfg, dec, swap)
    assert run_prepared(demo, tensor, size, swap).fed_order == other
    assert run_prepared(demo, *prepare(demo.cfg, dec, ref_spec), ref_spec).fed_order == fmt
    (batched,) = run_batch(demo, [(tensor, size, swap)])
    assert batched.fed_order == other
    assert run(demo, dec, swap).fed_order == other
