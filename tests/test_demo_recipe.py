"""The demo data generator and the training recipe (a few iterations on a handful of images)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from d2debug.demo.data import CLASS_NAMES, random_scene, render_scene, write_split

from helpers import SAMPLES


def test_scenes_are_seeded_and_objects_do_not_overlap():
    a, b = random_scene(7, 640, 480), random_scene(7, 640, 480)
    assert a == b and np.array_equal(render_scene(a), render_scene(b))
    for seed in range(30):
        s = random_scene(seed, 500, 300)
        for i, o in enumerate(s.objects):
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= 500 and 0 <= y0 < y1 <= 300
            for p in s.objects[i + 1:]:
                assert x1 <= p.box[0] or p.box[2] <= x0 or y1 <= p.box[1] or p.box[3] <= y0


def test_class_properties_hold_in_pixels():
    """Each class differs from its partner in exactly the property its pitfall destroys."""
    img = render_scene(random_scene(3, 800, 600))
    scene = random_scene(3, 800, 600)
    for o in scene.objects:
        x0, y0, x1, y1 = (int(v) for v in o.box)
        patch = img[(y0 + y1) // 2 - 2:(y0 + y1) // 2 + 3, (x0 + x1) // 2 - 2:(x0 + x1) // 2 + 3].reshape(-1, 3)
        name = CLASS_NAMES[o.cls]
        if name == "red_disc":
            assert patch[:, 0].mean() > 150 and patch[:, 2].mean() < 80
        if name == "blue_disc":
            assert patch[:, 2].mean() > 150 and patch[:, 0].mean() < 80
        if name == "green_wide_rect":
            assert abs((x1 - x0) / (y1 - y0) - 2.0) < 0.1


def test_sample_split_matches_its_annotations():
    from detectron2.data.detection_utils import read_image

    coco = json.loads((SAMPLES / "annotations.json").read_text())
    assert len(coco["images"]) >= 40
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    kinds = {k: 0 for k in ("exif", "gray", "rgba", "large")}
    for im in coco["images"]:
        path = SAMPLES / im["file_name"]
        shown = read_image(str(path), "BGR")  # EXIF applied, as the annotations are
        assert shown.shape[:2] == (im["height"], im["width"]), im["file_name"]
        for k in kinds:
            kinds[k] += k in path.name
        if "exif" in path.name:
            with Image.open(path) as raw:
                assert raw.getexif().get(0x0112) in (3, 5, 6, 8)
        if "large" in path.name:
            assert max(im["height"], im["width"]) > 533  # above MAX_SIZE_TEST: the clamp matters
    assert kinds["exif"] >= 4 and kinds["gray"] >= 1 and kinds["rgba"] >= 1 and kinds["large"] >= 4


def test_training_recipe_runs_a_few_iterations(tmp_path):
    from d2debug.demo.train import train
    from d2debug.model import load_model

    val = tmp_path / "val"
    write_split(val, 3, seed=5, large_fraction=0.0)
    metrics = train(tmp_path / "run", iters=3, train_images=6, val_dir=val, seed=1)
    assert set(metrics) >= {"AP", "AP50", "AP75", "train_seconds"} and metrics["iterations"] == 3
    run = tmp_path / "run"
    assert json.loads((run / "classes.json").read_text()) == list(CLASS_NAMES)
    # The dumped config uses stock keys only: plain get_cfg() merges it, and the exported weights load.
    m = load_model(run / "config.yaml", run / "model.pth", device="cpu", class_names=list(CLASS_NAMES))
    assert m.cfg.INPUT.FORMAT == "RGB" and list(m.cfg.MODEL.PIXEL_STD) == [127.5] * 3
    assert (run / "model.pth").stat().st_size < 20 * 1024 * 1024


@pytest.mark.parametrize("split", ["train"])
def test_write_split_is_deterministic(tmp_path, split):
    a = write_split(tmp_path / "a", 3, seed=9)
    b = write_split(tmp_path / "b", 3, seed=9)
    assert a.read_text() == b.read_text()


def test_the_shipped_demo_model_is_a_mask_rcnn_within_budget(demo):
    """Stock keys, masks predicted, <= 20 MB, box AP kept (the box model scored 0.934), mask AP >= 0.85."""
    metrics = json.loads((SAMPLES / "demo_metrics.json").read_text())
    assert demo.arch.outputs == ("boxes", "masks") and demo.cfg.MODEL.MASK_ON
    assert (SAMPLES / "demo_model.pth").stat().st_size <= 20 * 1024 * 1024
    assert metrics["AP"] >= 0.934 - 0.03 and metrics["mask_AP"] >= 0.85


def test_mask_annotations_outline_the_painted_shapes():
    """Each annotation's polygon, rasterized by pycocotools, covers the pixels the generator paints (a disc's
    circle, a rectangle's box): IoU >= 0.97 against the analytic shape."""
    from pycocotools import mask as mask_util

    from d2debug.demo.data import outline

    scene = random_scene(11, 640, 480)
    yy, xx = np.mgrid[0:480, 0:640] + 0.5
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        if CLASS_NAMES[o.cls] in ("green_square", "green_wide_rect"):
            want = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        else:
            want = (xx - (x0 + x1) / 2) ** 2 + (yy - (y0 + y1) / 2) ** 2 <= ((x1 - x0) / 2) ** 2
        got = mask_util.decode(mask_util.merge(mask_util.frPyObjects([outline(o)], 480, 640))).astype(bool)
        assert (got & want).sum() / (got | want).sum() >= 0.97, CLASS_NAMES[o.cls]
