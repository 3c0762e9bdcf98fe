"""render: the reused Visualizer draws exactly what a new detectron2 Visualizer draws, picture after picture."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from detectron2.data import Metadata
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import Visualizer

from d2debug import render
from d2debug.compare import compare
from d2debug.run import reference_spec, run

from helpers import sample


def _fresh(rgb, boxes, scores, classes, names):
    inst = Instances(rgb.shape[:2])
    inst.pred_boxes = Boxes(torch.as_tensor(np.asarray(boxes, np.float32)))
    inst.scores = torch.as_tensor(np.asarray(scores, np.float32))
    inst.pred_classes = torch.as_tensor(np.asarray(classes, np.int64))
    return Visualizer(rgb, metadata=Metadata(thing_classes=list(names))).draw_instance_predictions(inst).get_image()


def _boxes_only(r, n=None):
    """``r`` with its first ``n`` detections (all by default) and no masks or keypoints: what ``_fresh`` draws."""
    n = len(r.boxes) if n is None else n
    return replace(r, boxes=r.boxes[:n], scores=r.scores[:n], classes=r.classes[:n], masks=None, keypoints=None)


def test_reused_visualizer_draws_the_pixels_of_a_new_one(demo):
    spec = reference_spec(demo.cfg, "cpu")
    a = run(demo, sample("val_016"), spec)
    b = run(demo, sample("val_016"), spec.replace(channel_order="swapped"))
    c = run(demo, sample("val_001"), spec)  # another size
    # Visualizer picks random colours: seed numpy alike for both sides.
    for r in (a, b, c, a, b):
        np.random.seed(7)
        got = render.draw_result(r.rgb_image(), _boxes_only(r))
        np.random.seed(7)
        want = _fresh(r.rgb_image(), r.boxes, r.scores, r.classes, r.class_names)
        assert got.shape == want.shape and np.array_equal(got, want)
    # The overlay shares the pool with another key: drawing it in between leaves nothing behind.
    first = render.draw_overlay(a.rgb_image(), a, b, compare(a, b))
    render.draw_result(a.rgb_image(), _boxes_only(a))
    assert np.array_equal(render.draw_overlay(a.rgb_image(), a, b, compare(a, b)), first)
    empty = render.draw_result(a.rgb_image(), _boxes_only(a, 0))
    assert np.array_equal(empty, _fresh(a.rgb_image(), a.boxes[:0], a.scores[:0], a.classes[:0], a.class_names))


def test_reused_visualizer_draws_masks_keypoints_and_maps_like_a_new_one(tmp_path):
    """draw_result on a Mask R-CNN, a Keypoint R-CNN and a Semantic FPN: the pooled Visualizer's pixels are a
    new Visualizer's, drawing after drawing, with masks and keypoints as detectron2 draws them."""
    from detectron2.utils.colormap import colormap

    from d2debug.model import load_model
    from d2debug.tools.seeded import seeded_model

    for name in ("mask_rcnn_fpn", "keypoint_rcnn", "semantic_fpn"):
        m = load_model(*seeded_model(name, tmp_path), device="cpu")
        r = run(m, sample("val_016"), reference_spec(m.cfg, "cpu"))
        rgb = r.rgb_image()
        assert max(rgb.shape[:2]) <= render.MAX_DISPLAY_SIDE  # drawn at full size: pixels comparable
        palette = colormap(rgb=True, maximum=255).astype(int).tolist()
        meta = Metadata(thing_classes=list(r.class_names))
        if r.sem_seg is not None:
            meta.set(stuff_classes=list(r.stuff_names), stuff_colors=palette[:len(r.stuff_names)])
        for _ in range(2):
            np.random.seed(3)
            got = render.draw_result(rgb, r)
            np.random.seed(3)
            vis = Visualizer(rgb, metadata=meta)
            if r.sem_seg is not None:
                want = vis.draw_sem_seg(torch.as_tensor(r.sem_seg), area_threshold=0, alpha=0.6).get_image()
            else:
                inst = Instances(rgb.shape[:2])
                inst.pred_boxes = Boxes(torch.as_tensor(r.boxes))
                inst.scores = torch.as_tensor(r.scores)
                inst.pred_classes = torch.as_tensor(r.classes)
                if r.masks is not None:
                    inst.pred_masks = torch.as_tensor(r.masks)
                if r.keypoints is not None:
                    inst.pred_keypoints = torch.as_tensor(r.keypoints)
                want = vis.draw_instance_predictions(inst).get_image()
            assert np.array_equal(got, want), name
