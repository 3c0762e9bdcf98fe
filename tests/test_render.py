"""render: the reused Visualizer draws exactly what a new detectron2 Visualizer draws, picture after picture."""
from __future__ import annotations

import numpy as np
import torch
from detectron2.data import Metadata
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import Visualizer

from d2debug import render
from d2debug.compare import compare
from d2debug.run import reference_spec, run

from conftest import sample


def _fresh(rgb, boxes, scores, classes, names):
    inst = Instances(rgb.shape[:2])
    inst.pred_boxes = Boxes(torch.as_tensor(np.asarray(boxes, np.float32)))
    inst.scores = torch.as_tensor(np.asarray(scores, np.float32))
    inst.pred_classes = torch.as_tensor(np.asarray(classes, np.int64))
    return Visualizer(rgb, metadata=Metadata(thing_classes=list(names))).draw_instance_predictions(inst).get_image()


def test_reused_visualizer_draws_the_pixels_of_a_new_one(demo):
    spec = reference_spec(demo.cfg, "cpu")
    a = run(demo, sample("val_016"), spec)
    b = run(demo, sample("val_016"), spec.replace(channel_order="swapped"))
    c = run(demo, sample("val_001"), spec)  # another size
    # Visualizer picks random colours: seed numpy alike for both sides.
    for r in (a, b, c, a, b):
        np.random.seed(7)
        got = render.draw_detections(r.rgb_image(), r.boxes, r.scores, r.classes, r.class_names)
        np.random.seed(7)
        want = _fresh(r.rgb_image(), r.boxes, r.scores, r.classes, r.class_names)
        assert got.shape == want.shape and np.array_equal(got, want)
    # The overlay shares the pool with another key: drawing it in between leaves nothing behind.
    first = render.draw_overlay(a.rgb_image(), a, b, compare(a, b))
    render.draw_detections(a.rgb_image(), a.boxes, a.scores, a.classes, a.class_names)
    assert np.array_equal(render.draw_overlay(a.rgb_image(), a, b, compare(a, b)), first)
    empty = render.draw_detections(a.rgb_image(), a.boxes[:0], a.scores[:0], a.classes[:0], a.class_names)
    assert np.array_equal(empty, _fresh(a.rgb_image(), a.boxes[:0], a.scores[:0], a.classes[:0], a.class_names))
