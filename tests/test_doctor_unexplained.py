"""Doctor 3: transforms with no stage of their own are ``unexplained`` (never a match, never a right stage blamed),
an HxWxC tensor and other dtypes are diagnosed, a decoder's reduced decode is named, and with the user's own
function each finding is measured on what that function returns."""
from __future__ import annotations

import json
import textwrap

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image

from d2debug.doctor import diagnose

from helpers import sample

pytestmark = pytest.mark.slow


def _right(path, change=lambda img: img):
    """The reference pipeline written out, with ``change`` applied to the resized HxWx3 uint8 RGB image."""
    img = read_image(str(path), "RGB")
    out = T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(img)
    out = np.asarray(change(out), dtype=np.float32)
    return {"image": torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))), "height": img.shape[0],
            "width": img.shape[1]}


def _gamma(img):
    return 255.0 * (img / 255.0) ** (1 / 2.2)


def _equalize(img):
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def _sharpen(img):
    f = img.astype(np.float32)
    return np.clip(1.5 * f - 0.5 * cv2.GaussianBlur(f, (0, 0), 2.0), 0, 255)


def _grey_world(img):
    f = img.astype(np.float32)
    return np.clip(f * (f.mean() / f.reshape(-1, 3).mean(0)), 0, 255)


@pytest.mark.parametrize("change, words", [
    (_gamma, ["value curve", "gamma of 0.4"]),
    (_equalize, ["value curve"]),
    (lambda img: cv2.GaussianBlur(img, (5, 5), 0), ["a blur", "sigma"]),
    (_sharpen, ["sharpening", "unsharp mask"]),
    (_grey_world, ["colour change", "gain"]),
])
def test_a_transform_with_no_stage_is_unexplained_with_what_it_resembles(demo, change, words):
    img = sample("val_012")
    d = diagnose(demo, img, _right(img, change))
    assert d.ids == ["unexplained"], d.report()  # no stage that is right is blamed, and it is not a match
    f = d.findings[0]
    assert all(w in f.evidence for w in words), f.evidence
    assert f.recovers is not None and f.costs_alone is not None  # ranked by the damage it does
    # its damage is what fixing it recovers: the rebuilt input is the reference itself here
    assert d.analysis["damage_scores"]["unexplained"] == pytest.approx(1.0, abs=0.02)


def test_an_unexplained_transform_beside_a_named_mistake_keeps_both(demo):
    img = sample("val_012")
    x = _right(img, _gamma)
    x["image"] = x["image"] / 255.0  # ToTensor after the gamma
    d = diagnose(demo, img, x)
    assert set(d.ids) == {"value_range_0_1", "unexplained"}, d.report()
    assert d.ids[0] == "value_range_0_1"  # the 0..1 range removes the detections; the curve costs far less


def test_the_reference_stays_a_match(demo):
    img = sample("val_012")
    assert diagnose(demo, img, _right(img)).ids == ["match"]


def test_an_hwc_tensor_is_channels_last_and_blocks_the_model(demo):
    img = sample("val_000")
    x = _right(img)
    x["image"] = x["image"].permute(1, 2, 0)
    d = diagnose(demo, img, x)
    assert d.ids == ["channels_last"], d.report()
    assert d.findings[0].recovers == pytest.approx(1.0) and "3x1x1" in d.findings[0].evidence
    assert d.user_input.describe().startswith("dict: image 427x320x3")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_other_dtypes_run_and_are_named(demo, dtype):
    img = sample("val_000")
    x = _right(img)
    x["image"] = x["image"].to(dtype)
    d = diagnose(demo, img, x)
    assert d.ids == ["dtype"] and "promotes" in d.findings[0].evidence
    assert abs(d.findings[0].recovers) < 0.05  # the model promotes integral 0..255 values without loss


def test_a_reduced_decode_is_a_resampler_of_its_own(demo):
    path = sample("val_012")
    img = np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)[:, :, ::-1])
    full = read_image(str(path), "RGB")
    out = T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(img)
    x = {"image": torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float(),
         "height": full.shape[0], "width": full.shape[1]}
    d = diagnose(demo, path, x)
    assert d.ids == ["resize_interpolation"], d.report()
    assert "IMREAD_REDUCED_COLOR_2" in d.findings[0].evidence


def test_recovers_is_measured_on_the_users_own_function(tmp_path, capsys):
    """An EXIF photo decoded without the turn, kept BGR and cut at the top: the rebuilt-input estimate of fixing
    the turn loses the user's cut, their function called on an upright copy keeps it; stages inside the function
    say so."""
    from d2debug.cli import main

    code = tmp_path / "infer.py"
    code.write_text(textwrap.dedent("""
        import numpy as np, torch
        from PIL import Image
        from detectron2.data import transforms as T

        def preprocess(path):
            im = Image.open(path).convert("RGB")  # no exif_transpose
            img = np.asarray(im)[:, :, ::-1]  # BGR for an RGB model
            out = T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(np.ascontiguousarray(img))
            out = out[10:]  # the top rows cut off
            return {"image": torch.as_tensor(out.astype("float32").transpose(2, 0, 1)), "height": im.height,
                    "width": im.width}

        def square(path):
            im = Image.open(path).convert("RGB")
            out = np.asarray(im.resize((320, 320), Image.BILINEAR), dtype=np.float32)
            return {"image": torch.from_numpy(out.transpose(2, 0, 1).copy()), "height": im.height, "width": im.width}
    """))
    args = ["doctor", "--image", str(sample("val_044_exif6")), "--preprocess", f"{code}:preprocess", "--trust-code",
            "--json"]
    assert main(args) == 1
    out = {f["id"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert set(out) == {"exif_orientation", "channel_order", "crop"}
    exif, bgr, crop = out["exif_orientation"], out["channel_order"], out["crop"]
    assert "upright copy" in exif["own"] and exif["recovers_own"] is not None
    # the rebuilt input cannot carry the user's cut with the turn fixed; their own function, given an upright
    # file, does: fixing the decode recovers far more there
    assert exif["recovers_own"] > exif["recovers"] + 0.3, (exif["recovers"], exif["recovers_own"])
    assert bgr["own"] == "set on your function's output" and bgr["recovers_own"] == bgr["recovers"]
    assert crop["recovers_own"] is None and "inside your function" in crop["own"]
    # a stage inside the function cannot be set from outside it: said, and only the rebuilt estimate given
    args = ["doctor", "--image", str(sample("val_000")), "--preprocess", f"{code}:square", "--trust-code", "--json"]
    assert main(args) == 1
    out = {f["id"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert set(out) == {"resize_aspect"} and out["resize_aspect"]["recovers_own"] is None
    assert "inside your function" in out["resize_aspect"]["own"] and out["resize_aspect"]["recovers"] is not None
