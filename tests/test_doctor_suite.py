"""The Doctor's accuracy bar: generated user pipelines (single pitfalls and pairs) on the sample images.

Each pipeline is built with the library's stage functions, saved like a user would save it (torch.save /
numpy.save), loaded back safely and diagnosed with the real demo model's config and weights. The top finding
must be one of the true pitfalls in at least 95% of the cases, and the exact reference pipeline must give
``match`` on every sample image. Run with ``-s`` to see the confusion table (also:
``python -m d2debug doctor-suite``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from d2debug.doctor import diagnose, make_user_input, preprocess
from d2debug.evaluation.suite import SUITE, confusion_table, pick_images, run_case, run_suite
from d2debug.stages import PipelineSpec

from helpers import SAMPLE_IMAGES

pytestmark = pytest.mark.slow


def test_suite_has_enough_distinct_pipelines():
    singles = [c for c in SUITE if len(c.finding_ids) == 1]
    pairs = [c for c in SUITE if len(c.finding_ids) == 2]
    assert len(SUITE) >= 30 and len(singles) >= 15 and len(pairs) >= 10
    covered = {p for c in SUITE for p in c.finding_ids}
    assert covered == {"channel_order", "value_range_0_1", "external_normalization", "double_normalization",
                       "pixel_mean_std", "resize_size", "resize_aspect", "resize_interpolation", "exif_orientation",
                       "missing_original_size", "dtype", "batch_contract"}


def test_doctor_accuracy_suite(demo, tmp_path):
    results = run_suite(demo, SAMPLE_IMAGES, per_case=2, tmpdir=tmp_path)
    table = confusion_table(results)
    print("\n" + table)
    n = len(results)
    assert n >= 60
    top_right = sum(r.top_right for r in results)
    assert top_right >= 0.95 * n, table
    refs = [r for r in results if r.case.startswith("reference")]
    assert refs and all(r.found == ("match",) for r in refs), table
    # no pitfall pipeline is ever called a match
    assert not [r for r in results if r.truth and "match" in r.found], table


def test_reference_is_match_on_every_sample_image(demo):
    wrong = []
    for img in SAMPLE_IMAGES:
        d = diagnose(demo, img, make_user_input(demo.cfg, img, PipelineSpec()))
        if d.ids != ["match"]:
            wrong.append((img.name, d.ids))
    assert not wrong


def test_suite_scores_a_wrong_answer_as_wrong(demo, tmp_path):
    # The scoring must be able to fail: a case whose truth is deliberately mislabelled is counted wrong.
    from dataclasses import replace

    case = next(c for c in SUITE if c.name == "BGR fed to an RGB model")
    img = pick_images(SAMPLE_IMAGES, "all", demo.cfg, 1, 0)[0]
    good = run_case(demo, case, img, tmp_path)
    bad = run_case(demo, replace(case, finding_ids=("value_range_0_1",)), img, tmp_path)
    assert good.top_right and not bad.top_right
    assert "WRONG" in confusion_table([good, bad])


# --- pipelines written the way users write them (not by the library's stage functions) -----------------------


def _torchvision_classic(path):
    import torchvision.transforms as T
    from PIL import Image

    im = Image.open(path).convert("RGB")  # no exif_transpose
    t = T.Compose([T.Resize(320), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(im)
    return {"image": t, "height": im.height, "width": im.width}


def _cvtcolor_then_predictor(path):
    import cv2
    from detectron2.data import transforms as T

    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)  # RGB handed to DefaultPredictor...
    img = img[:, :, ::-1]  # ...which flips it for an RGB model, thinking it is BGR
    out = T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


def _cv2_area_right_size(path):
    import cv2
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image

    img = read_image(str(path), "RGB")
    h, w = img.shape[:2]
    nh, nw = T.ResizeShortestEdge.get_output_shape(h, w, 320, 533)
    out = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": h, "width": w}


def _jpeg_reencoded(path):
    import io

    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image
    from PIL import Image

    img = read_image(str(path), "RGB")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    img = np.asarray(Image.open(buf))
    out = T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(img)
    return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": img.shape[0],
            "width": img.shape[1]}


@pytest.mark.parametrize("fn, image, expected", [
    (_torchvision_classic, "val_000", {"resize_size", "external_normalization"}),
    (_torchvision_classic, "val_043_exif5", {"exif_orientation", "resize_size", "external_normalization"}),
    (_cvtcolor_then_predictor, "val_021", {"channel_order"}),
    (_cv2_area_right_size, "val_040_large", {"resize_interpolation"}),
])
def test_hand_written_pipelines(demo, fn, image, expected):
    from helpers import sample

    img = sample(image)
    d = diagnose(demo, img, fn(img))
    assert set(d.ids) == expected, d.report()
    if fn is _torchvision_classic:
        assert "ImageNet" in next(f.evidence for f in d.findings if f.id == "external_normalization")


def test_a_jpeg_reencoding_is_named_with_its_quality_and_nothing_else(demo):
    # An upload path re-encoding the image (quality 90) before the user's correct code: `recompression`, with
    # the quality estimated, and no other stage invented for its pixel changes.
    from helpers import sample

    for name in ("val_000", "val_037_large"):
        img = sample(name)
        d = diagnose(demo, img, _jpeg_reencoded(img))
        assert d.ids == ["recompression"], d.report()
        assert "quality ~90" in d.findings[0].evidence


def test_a_difference_no_stage_explains_is_not_called_a_stage(demo):
    # A blur changes pixels but no preprocessing stage: no invented stage, not a match, but unexplained.
    from PIL import ImageFilter

    from helpers import sample

    img = sample("val_000")
    tensor, (h, w) = preprocess(demo.cfg, img)
    arr = tensor.numpy().transpose(1, 2, 0).round().astype(np.uint8)
    blurred = np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.8))).astype(np.float32)
    d = diagnose(demo, img, {"image": torch.as_tensor(blurred.transpose(2, 0, 1).copy()), "height": h, "width": w})
    assert d.ids == ["unexplained"], d.report()
    assert "a blur" in d.findings[0].evidence
