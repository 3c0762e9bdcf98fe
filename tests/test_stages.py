"""Each stage against a tiny reference function; each switch changes the output; inputs are never modified."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from d2debug.errors import D2DebugError
from d2debug.pitfalls import parse_variants
from d2debug.stages import (
    FIELD_CHOICES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PipelineSpec,
    StageValueError,
    decode,
    parse_assignment,
    resize_image,
    resize_shape,
    to_input_tensor,
    to_model_order,
)

from helpers import sample


def check_not_modified(fn, arr, *args):
    before = arr.copy()
    out = fn(arr, *args)
    np.testing.assert_array_equal(arr, before)
    return out


@pytest.fixture
def noise():
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)


class TestDecode:
    def test_exif_orientation(self):
        p = sample("exif6")  # stored 640 wide x 480 high, displayed 480 x 640
        d2 = decode(p, "detectron2")
        pil = decode(p, "pil")
        pil_exif = decode(p, "pil_exif")
        cv = decode(p, "cv2")
        assert d2.image.shape[:2] == (640, 480) and d2.order == "BGR"
        assert pil.image.shape[:2] == (480, 640) and pil.order == "RGB"
        assert cv.image.shape[:2] == (640, 480)
        # Same PIL decode + same transpose: detectron2's BGR is exactly PIL+exif_transpose RGB flipped.
        np.testing.assert_array_equal(d2.image, pil_exif.image[:, :, ::-1])
        assert any("IGNORED" in n for n in pil.notes)
        assert any("applied" in n for n in d2.notes)

    def test_tiny_reference(self):
        p = sample("val_000")
        ref = np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1]
        np.testing.assert_array_equal(decode(p, "detectron2").image, ref)

    def test_grayscale_and_alpha_are_converted_and_reported(self):
        g = decode(sample("gray"), "detectron2")
        assert g.image.shape[2] == 3 and np.array_equal(g.image[..., 0], g.image[..., 1])
        assert any("grayscale" in n for n in g.notes)
        a = decode(sample("rgba"), "pil")
        assert a.image.shape[2] == 3 and any("alpha" in n for n in a.notes)

    @pytest.mark.parametrize("content", [b"", b"not an image at all"])
    def test_bad_file(self, tmp_path, content):
        p = tmp_path / "bad.jpg"
        p.write_bytes(content)
        with pytest.raises(D2DebugError, match="bad.jpg"):
            decode(p, "detectron2")

    def test_missing_file(self, tmp_path):
        with pytest.raises(D2DebugError, match="no such file"):
            decode(tmp_path / "nope.png", "cv2")


class TestChannelOrder:
    @pytest.mark.parametrize("order,fmt,swap,flip", [
        ("BGR", "RGB", "cfg", True), ("BGR", "BGR", "cfg", False),
        ("BGR", "RGB", "swapped", False), ("RGB", "RGB", "swapped", True),
    ])
    def test_against_tiny_reference(self, noise, order, fmt, swap, flip):
        out = check_not_modified(to_model_order, noise, order, fmt, swap)
        np.testing.assert_array_equal(out, noise[:, :, ::-1] if flip else noise)


class TestResize:
    @staticmethod
    def d2_shape(h, w, short, max_size):
        scale = short / min(h, w)
        nh, nw = (short, scale * w) if h < w else (scale * h, short)
        if max(nh, nw) > max_size:
            s = max_size / max(nh, nw)
            nh, nw = nh * s, nw * s
        return int(nh + 0.5), int(nw + 0.5)

    @pytest.mark.parametrize("h,w", [(480, 640), (640, 480), (300, 1000), (1657, 2949), (320, 320), (100, 90)])
    def test_shapes(self, h, w):
        s = PipelineSpec()
        assert resize_shape(h, w, s, 320, 533) == self.d2_shape(h, w, 320, 533)
        scale = 320 / min(h, w)
        assert resize_shape(h, w, s.replace(resize="shortest_edge_noclamp"), 320, 533) == (int(h * scale), int(w * scale))
        assert resize_shape(h, w, s.replace(resize="fixed"), 320, 533) == (320, 320)
        assert resize_shape(h, w, s.replace(resize="fixed", resize_size=(400, 300)), 320, 533) == (300, 400)
        assert resize_shape(h, w, s.replace(resize="none"), 320, 533) == (h, w)

    def test_backends_against_their_libraries(self, noise):
        import cv2

        pil = check_not_modified(resize_image, noise, 320, 427, "bilinear", "pil")
        np.testing.assert_array_equal(pil, np.asarray(Image.fromarray(noise).resize((427, 320), Image.BILINEAR)))
        cv = resize_image(noise, 320, 427, "bilinear", "cv2")
        np.testing.assert_array_equal(cv, cv2.resize(noise, (427, 320), interpolation=cv2.INTER_LINEAR))
        t = resize_image(noise, 320, 427, "bilinear", "torch")
        ref_t = torch.nn.functional.interpolate(
            torch.from_numpy(noise).permute(2, 0, 1)[None].float(), (320, 427), mode="bilinear", align_corners=False
        )[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(t, ref_t)
        assert t.dtype == np.float32 and pil.dtype == np.uint8

    def test_every_interpolation_and_backend_differs_from_reference(self, noise):
        ref = resize_image(noise, 320, 427, "bilinear", "pil").astype(np.float32)
        for interp, backend in [("nearest", "pil"), ("bicubic", "pil"), ("area", "pil"), ("lanczos", "pil"),
                                ("bilinear", "cv2"), ("area", "cv2"), ("bilinear", "torch")]:
            out = resize_image(noise, 320, 427, interp, backend).astype(np.float32)
            assert out.shape == ref.shape
            assert np.abs(out - ref).mean() > 0.5, (interp, backend)
        # torch's antialiased bilinear is PIL's filter without the rounding to uint8: different, but barely.
        aa = resize_image(noise, 320, 427, "bilinear", "torch_antialias")
        assert not np.array_equal(aa, ref) and np.abs(aa - ref).max() < 1.5
        # PITFALLS.md: PIL bilinear vs cv2 INTER_LINEAR at 640x480 -> 427x320 on noise differ by ~18 levels.
        cv = resize_image(noise, 320, 427, "bilinear", "cv2").astype(np.float32)
        assert 10 < np.abs(cv - ref).mean() < 30


class TestTensor:
    def test_reference_and_variants(self, noise):
        ref = check_not_modified(to_input_tensor, noise, "0_255", "none")
        tiny = torch.as_tensor(noise.astype("float32").transpose(2, 0, 1))
        assert torch.equal(ref, tiny) and ref.dtype == torch.float32
        assert torch.allclose(to_input_tensor(noise, "0_1", "none"), tiny / 255)
        m = torch.tensor(IMAGENET_MEAN)[:, None, None]
        s = torch.tensor(IMAGENET_STD)[:, None, None]
        assert torch.allclose(to_input_tensor(noise, "0_255", "imagenet"), (tiny / 255 - m) / s)
        assert torch.allclose(to_input_tensor(noise, "0_255", "half"), (tiny / 255 - 0.5) / 0.5)
        assert torch.allclose(to_input_tensor(noise, "0_255", "custom:0.1,0.2,0.3/0.5,0.5,0.5"),
                              (tiny / 255 - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) / 0.5)


class TestSpec:
    def test_set_parsing(self):
        s = PipelineSpec()
        assert s.with_assignment("channel_order=swapped").channel_order == "swapped"
        assert s.with_assignment("score_thresh=0.3").score_thresh == 0.3
        assert s.with_assignment("resize=fixed").with_assignment("resize_size=640x480").resize_size == (640, 480)
        assert parse_assignment("resize_size=cfg") == ("resize_size", None)

    @pytest.mark.parametrize("text,needle", [
        ("colour=rgb", "unknown key 'colour'"),
        ("channel_order=bgr", "'bgr'"),
        ("score_thresh=high", "score_thresh"),
        ("score_thresh=1.5", "between 0 and 1"),
        ("resize_size=0", "out of range"),
        ("resize_size=99999", "out of range"),
        ("external_norm=custom:1,2/3", "custom:1,2/3"),
        ("noequals", "KEY=VALUE"),
        ("interpolation=lanczos2", "lanczos2"),
    ])
    def test_bad_values_name_the_value(self, text, needle):
        with pytest.raises(D2DebugError, match=needle.replace("(", r"\(")):
            PipelineSpec().with_assignment(text)

    @pytest.mark.parametrize("field,text,value", [
        ("score_thresh", "1.5", 1.5), ("nms_thresh", "-0.1", -0.1), ("resize_size", "0", 0),
        ("resize_size", "9000", 9000), ("channel_order", "bgr", "bgr"), ("model_norm", "imagenet", "imagenet"),
    ])
    def test_one_check_for_the_cli_and_the_spec(self, field, text, value):
        """``--set`` and the constructor reject a value with the same error, carrying field/value as data."""
        with pytest.raises(StageValueError) as from_text:
            parse_assignment(f"{field}={text}")
        with pytest.raises(StageValueError) as from_spec:
            PipelineSpec(**{field: value})
        assert (from_text.value.field, from_text.value.value) == (field, value)
        assert str(from_text.value) == str(from_spec.value) == f"{field}={value!r}: {from_spec.value.reason}"
        # --variants words its message from the fields (naming the refused value), not by cutting the text apart.
        with pytest.raises(D2DebugError) as from_variants:
            parse_variants([f"x:{field}={text}"])
        assert str(from_variants.value) == f"--variants 'x:{field}={text}': {field}={value!r} {from_text.value.reason}"

    def test_field_choices_are_the_values_the_spec_accepts(self):
        free = {"external_norm", "model_norm", "score_thresh", "nms_thresh", "resize_size"}
        for field, values in FIELD_CHOICES.items():
            if field in free:
                continue
            for v in values:
                assert getattr(PipelineSpec(**{field: v}), field) == v
            with pytest.raises(StageValueError, match=f"is not one of {', '.join(values)}"):
                PipelineSpec(**{field: "nonsense"})
        assert FIELD_CHOICES["interpolation"] == ("nearest", "bilinear", "bicubic", "area", "lanczos")
        assert set(FIELD_CHOICES) == set(PipelineSpec().to_dict())

    def test_round_trip(self):
        s = PipelineSpec(resize="fixed", resize_size=(640, 480), score_thresh=0.25, external_norm="imagenet")
        t = PipelineSpec()
        for k, v in s.to_dict().items():
            t = t.with_assignment(f"{k}={v}")
        assert t == s
