"""Registration (``d2debug.doctor.register``): padding of every mode and crops anywhere, recognised on inputs
built the way scripts build them (cv2, numpy, torch, PIL), not with d2debug's own stage functions."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import transforms as T
from PIL import Image

from d2debug.compat import get_cfg
from d2debug.doctor import register
from d2debug.doctor.register import find_crop, pad_like, unpad

from helpers import sample

IMAGES = ("val_000", "val_004", "val_016")  # portrait 524x393, landscape 685x1027, landscape 565x847
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255  # ImageNet Normalize on 0..255 pixels
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
SIDES = ("top", "bottom", "left", "right")


@pytest.fixture(scope="module")
def cfg():
    c = get_cfg()
    c.INPUT.MIN_SIZE_TEST = 320
    c.INPUT.MAX_SIZE_TEST = 533
    c.INPUT.FORMAT = "RGB"
    return c


def _read(name: str) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(sample(name)))[:, :, ::-1])


def _reference(img: np.ndarray) -> np.ndarray:
    return T.ResizeShortestEdge([320, 320], 533).get_transform(img).apply_image(img)


def _pil(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))


def _tensor(hwc: np.ndarray, values: str) -> torch.Tensor:
    """``HxWx3`` pixels as the ``3xHxW`` float32 a script feeds: 0..255, or ImageNet-normalized."""
    a = hwc.astype(np.float32)
    if values == "imagenet":
        a = (a - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _U(hwc: np.ndarray, values: str = "0..255") -> np.ndarray:
    return _tensor(hwc, values).numpy().reshape(3, -1).astype(np.float64)


# ------------------------------------------------------------------------------------------------------------
# Padding
# ------------------------------------------------------------------------------------------------------------

LAYOUTS = {"centred": (16, 16, 24, 24), "bottom_right": (0, 13, 0, 21), "one_side": (0, 0, 37, 0),
           "uneven": (5, 0, 0, 2)}
CV2_FLAGS = {"constant": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "symmetric": cv2.BORDER_REFLECT,
             "reflect": cv2.BORDER_REFLECT_101, "wrap": cv2.BORDER_WRAP}
TORCH_MODES = {"constant": "constant", "edge": "replicate", "reflect": "reflect", "wrap": "circular"}
WORDS = {"constant": "padded with a constant", "edge": "np.pad mode='edge'", "symmetric": "cv2.BORDER_REFLECT ",
         "reflect": "np.pad mode='reflect'", "wrap": "F.pad mode='circular'"}


def _padded(img: np.ndarray, mode: str, layout: tuple[int, int, int, int], values: str, how: str) -> torch.Tensor:
    """The reference resize of ``img`` padded by ``how``: ``cv2`` (copyMakeBorder on the uint8 image, then the
    values), ``numpy`` (np.pad on the uint8 image) or ``torch`` (F.pad on the float tensor, after the values)."""
    r = _reference(img)
    t, b, left, right = layout
    if how == "cv2":
        return _tensor(cv2.copyMakeBorder(r, t, b, left, right, CV2_FLAGS[mode], value=(114, 114, 114)), values)
    if how == "numpy":
        kw = {"constant_values": 114} if mode == "constant" else {}
        return _tensor(np.pad(r, ((t, b), (left, right), (0, 0)), mode=mode, **kw), values)
    x = _tensor(r, values)[None]
    kw = {"value": float(x.min())} if mode == "constant" else {}
    return F.pad(x, (left, right, t, b), mode=TORCH_MODES[mode], **kw)[0]


CASES = [(name, mode, layout, values, how)
         for name in IMAGES
         for mode in CV2_FLAGS
         for layout in LAYOUTS
         for values, how in (("0..255", "cv2"), ("imagenet", "cv2"), ("0..255", "numpy"),
                             ("imagenet", "torch" if mode in TORCH_MODES else "numpy"))]


@pytest.mark.parametrize("name,mode,layout,values,how", CASES)
def test_every_padding_mode_is_recognised_with_its_sides_and_amounts(cfg, name, mode, layout, values, how):
    img = _read(name)
    x = _padded(img, mode, LAYOUTS[layout], values, how)
    g = unpad(x, img, cfg)
    want = {s: n for s, n in zip(SIDES, LAYOUTS[layout]) if n}
    assert g.finding is not None and g.finding.id == "padding", g.info
    assert g.info["padding"] == want and g.info["padding_mode"] == mode, g.info
    assert WORDS[mode] in g.finding.evidence, g.finding.evidence
    assert all(f"{s} {n} px" in g.finding.evidence for s, n in want.items()), g.finding.evidence
    r = _reference(img)
    assert g.info["content_size"] == list(r.shape[:2]) and tuple(g.tensor.shape) == (3, *r.shape[:2])
    assert torch.equal(g.tensor, _tensor(r, values) if how != "torch" else _tensor(r, values))
    assert ("padding_fill" in g.info) == (mode == "constant")
    assert torch.equal(pad_like(g.tensor, g.info), x)  # a rebuilt input can be padded the way the user padded


def test_the_padding_fix_is_todays_text(cfg):
    img = _read("val_004")
    g = unpad(_padded(img, "reflect", LAYOUTS["centred"], "0..255", "cv2"), img, cfg)
    assert g.finding is not None and g.finding.fix.startswith("no padding: detectron2 pads inside the model")
    assert "cv2.BORDER_REFLECT_101 / np.pad mode='reflect' / F.pad mode='reflect'" in g.finding.evidence


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("values", ["0..255", "imagenet"])
def test_a_correct_input_is_not_padded(cfg, name, values):
    img = _read(name)
    x = _tensor(_reference(img), values)
    g = unpad(x, img, cfg)
    assert g.finding is None and g.tensor is x


def test_an_image_that_is_itself_mirrored_at_its_edge_is_not_padded(cfg):
    """Its own first rows mirror the next ones (reflect), and its last columns repeat (edge): the tensor is
    the image itself, so removing those lines leaves content that no longer fits the image."""
    r = _reference(_read("val_004"))
    img = np.ascontiguousarray(np.pad(r, ((6, 0), (0, 9), (0, 0)), mode="reflect")[:, :-9])
    img = np.ascontiguousarray(np.pad(img[:, :-9], ((0, 0), (0, 9), (0, 0)), mode="edge"))
    for x in (_tensor(img, "0..255"), _tensor(img, "imagenet")):
        g = unpad(x, img, cfg)
        assert g.finding is None, g.info


def test_an_image_with_its_own_flat_border_keeps_the_constant_rule(cfg):
    """An image that starts with flat rows: its letterbox is not called padding (the flat rows could be
    either), and neither is it called replicate padding."""
    r = _reference(_read("val_016")).copy()
    r[:5] = 0
    x = _tensor(cv2.copyMakeBorder(r, 12, 12, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)), "0..255")
    assert unpad(x, r, cfg).finding is None
    assert unpad(_tensor(r, "0..255"), r, cfg).finding is None


def test_reflect_padding_of_an_image_not_turned_upright_is_still_found(cfg):
    """A missing EXIF transpose: the tensor is the image rotated; its content fits a turned render."""
    img = _read("val_004")
    r = np.ascontiguousarray(np.rot90(_reference(img)))
    x = _tensor(np.pad(r, ((8, 8), (0, 0), (0, 0)), mode="reflect"), "0..255")
    g = unpad(x, img, cfg)
    assert g.finding is not None and g.info["padding"] == {"top": 8, "bottom": 8}, g.info


def test_pad_like_constant_uses_the_per_channel_fill():
    t = torch.arange(24, dtype=torch.float32).reshape(3, 2, 4)
    out = pad_like(t, {"padding": {"top": 1, "right": 2}, "padding_mode": "constant",
                       "padding_fill": [-1.0, 0.5, 7.0]})
    assert tuple(out.shape) == (3, 3, 6) and out.dtype == torch.float32
    assert torch.equal(out[:, 1:, :4], t)
    assert [float(out[c, 0, 0]) for c in range(3)] == [-1.0, 0.5, 7.0]
    assert torch.equal(pad_like(t, {"padding": {"left": 2}, "padding_mode": "wrap"})[:, :, :2], t[:, :, 2:])


# ------------------------------------------------------------------------------------------------------------
# Crops
# ------------------------------------------------------------------------------------------------------------

def _crop_check(m, box, resized_to=None, where=None):
    assert m is not None and m.finding.id == "crop"
    got = m.info["crop"]
    assert all(abs(a - b) <= 1 for a, b in zip(got["box_xyxy"], box)), (got, box)
    if resized_to is not None:
        assert all(abs(a - b) <= 1 for a, b in zip(got["resized_to"], resized_to)), (got, resized_to)
    if where is not None:
        assert got["where"] == where and where in m.finding.evidence, m.finding.evidence
    assert f"{got['scale']:.3f}" in m.finding.evidence or "scale" in m.finding.evidence


@pytest.mark.parametrize("values", ["0..255", "imagenet"])
@pytest.mark.parametrize("where,box", [
    ("top-left corner", (0, 0, 300, 256)),
    ("bottom-right corner", (210, 70, 480, 320)),
    ("offset (111, 37)", (111, 37, 371, 237)),
    ("centre", (80, 0, 400, 320)),
])
def test_a_crop_of_the_reference_resize_is_found_where_it_sits(cfg, values, where, box):
    img = _read("val_004")
    r = _reference(img)  # 320x480
    x0, y0, x1, y1 = box
    crop = r[y0:y1, x0:x1]
    m = find_crop(_U(crop, values), crop.shape[:2], img, cfg)
    _crop_check(m, box, (320, 480), where)
    assert m.size_finding is None  # cut from the reference's own resize
    if where == "centre":
        assert "the centre crop" in m.finding.evidence


def test_a_crop_with_the_images_aspect_is_found(cfg):
    """A 200x300 box of the image at 400x600: the same shape as the 685x1027 image."""
    img = _read("val_004")
    big = _pil(img, 400, 600)
    crop = big[60:260, 170:470]
    m = find_crop(_U(crop), crop.shape[:2], img, cfg)
    _crop_check(m, (170, 60, 470, 260), (400, 600), "offset (170, 60)")
    assert m.size_finding is not None and "400x600" in m.size_finding.evidence


@pytest.mark.parametrize("seed", range(8))
def test_random_crops_at_random_scales_are_found_with_their_box(cfg, seed):
    rng = np.random.default_rng(seed)
    name = IMAGES[seed % len(IMAGES)]
    img = _read(name)
    H, W = img.shape[:2]
    scale = float(rng.uniform(0.35, 0.9))
    rh, rw = round(H * scale), round(W * scale)
    big = _pil(img, rh, rw) if seed % 2 else cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA)
    h, w = int(rng.integers(rh // 2, rh - 8)), int(rng.integers(rw // 2, rw - 8))
    y0, x0 = int(rng.integers(0, rh - h + 1)), int(rng.integers(0, rw - w + 1))
    crop = big[y0:y0 + h, x0:x0 + w]
    m = find_crop(_U(crop, "imagenet" if seed % 3 == 0 else "0..255"), (h, w), img, cfg)
    _crop_check(m, (x0, y0, x0 + w, y0 + h), (rh, rw))


@pytest.mark.parametrize("name,interpolation", [("val_035_large", cv2.INTER_LINEAR), ("val_004", cv2.INTER_CUBIC)])
def test_a_crop_of_a_frame_resized_by_cv2_is_found_with_its_resampler(cfg, name, interpolation):
    """cv2.resize without antialiasing (5.5x down for the 1657x2949 image: aliased) to the reference size,
    then a crop: the box is confirmed in a cv2 render of the frame, named in the evidence."""
    img = _read(name)
    rh, rw = _reference(img).shape[:2]
    frame = cv2.resize(img, (rw, rh), interpolation=interpolation)
    crop = frame[20:260, 30:300]
    m = find_crop(_U(crop), crop.shape[:2], img, cfg)
    _crop_check(m, (30, 20, 300, 260), (rh, rw), "offset (30, 20)")
    assert m.info["crop"]["resampler"].startswith("cv2/") and "cv2.resize" in m.finding.evidence, m.info


@pytest.mark.parametrize("name,box", [("val_004", (300, 100, 900, 500)), ("val_000", (20, 60, 380, 500)),
                                      ("val_016", (0, 0, 560, 420)), ("val_000", (40, 120, 360, 480))])
def test_a_crop_of_the_original_before_a_correct_resize_is_found(cfg, name, box):
    img = _read(name)
    x0, y0, x1, y1 = box
    cut = np.ascontiguousarray(img[y0:y1, x0:x1])
    crop = _reference(cut)
    m = find_crop(_U(crop), crop.shape[:2], img, cfg)
    assert m is not None, box
    got = m.info["crop"]
    # a 360x320 box is already at the reference size: it is a crop of the image at scale 1 (cut after no resize)
    assert got["cut"] == ("before_resize" if crop.shape[:2] != cut.shape[:2] else "after_resize"), m.info
    assert m.info["crop_residuals"]["crop"] < 1.0, m.info
    assert all(abs(a - b) <= 1 for a, b in zip(got["box_in_image_xyxy"], box)), (got, box)
    assert m.size_finding is None  # the crop itself was resized by the reference rule


@pytest.mark.parametrize("name", IMAGES)
def test_no_crop_in_a_correct_input_nor_in_a_stretch(cfg, name, monkeypatch):
    img = _read(name)
    r = _reference(img)
    # Neither is searched at all (the whole image explains it; it stays fast): the search would raise here.
    monkeypatch.setattr(register, "_coarse", lambda *a: (_ for _ in ()).throw(AssertionError("searched")))
    assert find_crop(_U(_pil(img, 320, 320)), (320, 320), img, cfg) is None
    assert find_crop(_U(r), r.shape[:2], img, cfg) is None
    assert find_crop(_U(r, "imagenet"), r.shape[:2], img, cfg) is None


def test_the_whole_image_is_no_crop(cfg):
    """A 320x320 image fed whole at 320x320 is no crop, even though it is the search's best box."""
    img = _pil(_read("val_016"), 320, 320)
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(np.int16) + rng.integers(-30, 31, img.shape), 0, 255).astype(np.uint8)
    assert find_crop(_U(noisy), (320, 320), img, cfg) is None


def test_the_crop_search_costs_about_what_the_centre_search_did(cfg):
    """A 320x320 crop of a 685x1027 image: the search over every position and scale stays within a few
    seconds (the centre-only search it replaced took ~0.6-0.8 s here)."""
    img = _read("val_004")
    crop = _reference(img)[0:320, 80:400]
    t0 = time.perf_counter()
    assert find_crop(_U(crop), (320, 320), img, cfg) is not None
    assert time.perf_counter() - t0 < 5.0
