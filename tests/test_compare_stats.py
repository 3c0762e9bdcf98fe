from __future__ import annotations

import numpy as np
import torch

from d2debug.compare import compare_boxes
from d2debug.stats import tensor_stats


def test_identical_sets_agree_fully():
    b = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)
    a = compare_boxes(b, np.array([0.9, 0.8]), np.array([0, 1]), b, np.array([0.9, 0.8]), np.array([0, 1]))
    assert (a.matched, a.missed, a.extra, a.class_flips, a.f1, a.mean_iou) == (2, 0, 0, 0, 1.0, 1.0)


def test_missed_extra_and_flip():
    ref = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], np.float32)
    var = np.array([[1, 1, 10, 10], [20, 20, 40, 40], [100, 100, 120, 120]], np.float32)
    a = compare_boxes(ref, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2]),
                      var, np.array([0.7, 0.8, 0.6]), np.array([0, 2, 1]))
    assert (a.matched, a.class_flips, a.missed, a.extra) == (1, 1, 1, 1)
    assert a.flip_pairs == ((1, 1),) and a.missed_idx == (2,) and a.extra_idx == (2,)
    assert abs(a.f1 - 2 * 1 / 6) < 1e-9
    assert abs(a.mean_iou - (0.81 + 1.0) / 2) < 1e-6
    assert abs(a.mean_score_change - (-0.2 + 0.0) / 2) < 1e-6


def test_low_iou_is_not_a_match():
    a = compare_boxes(np.array([[0, 0, 10, 10]], np.float32), np.array([1.0]), np.array([0]),
                      np.array([[5, 0, 15, 10]], np.float32), np.array([1.0]), np.array([0]))
    assert a.matched == 0 and a.missed == 1 and a.extra == 1 and a.f1 == 0.0


def test_empty_sets():
    e = np.zeros((0, 4), np.float32)
    assert compare_boxes(e, [], [], e, [], []).f1 == 1.0
    assert compare_boxes(np.array([[0, 0, 1, 1]], np.float32), [1.0], [0], e, [], []).f1 == 0.0


def test_stats_share_bins():
    a = torch.zeros(3, 4, 4)
    b = torch.full((3, 4, 4), 255.0)
    b[1] = 10
    sa, sb = tensor_stats(a, b, ["R", "G", "B"], bins=8)
    assert np.array_equal(sa.edges, sb.edges) and sa.edges[0] == 0 and sa.edges[-1] == 255
    assert sa.counts[0][0] == 16 and sb.counts[0][-1] == 16
    assert sb.channels[1].mean == 10 and sb.channels[0].max == 255
    assert sa.to_dict()["R"]["std"] == 0


def test_coco_ap_refuses_class_ids_the_annotations_do_not_have():
    import pytest

    from d2debug.coco import coco_ap, load_coco
    from d2debug.errors import D2DebugError

    from helpers import SAMPLES

    coco = load_coco(SAMPLES / "annotations.json")
    with pytest.raises(D2DebugError, match="class id 57 but the annotations have 6 categories"):
        coco_ap(coco, {1: (np.array([[0, 0, 10, 10]], np.float32), np.array([0.9]), np.array([57]))})
