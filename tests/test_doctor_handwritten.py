"""Doctor 2: the hand-written suite (pipelines written like real scripts, independent of the Doctor's stage
functions), damage-first ranking with ``recovers``, the grown vocabulary, and the user's own function as input."""
from __future__ import annotations

import json
import textwrap

import pytest

from d2debug.evaluation.handwritten import CASES
from d2debug.evaluation.suite import confusion_table, run_handwritten

from helpers import ROOT, SAMPLES, d2debug_imports, sample


def test_the_cases_are_written_without_the_doctors_code():
    """The suite must not render its cases with d2debug's own stage functions (that is what it guards against)."""
    evaluation = ROOT / "d2debug" / "evaluation"
    assert not d2debug_imports(evaluation / "handwritten.py")
    # the scripts' shared helpers, the one module allowed, import nothing of d2debug themselves
    assert not d2debug_imports(evaluation / "scripts.py")
    families = {c.family for c in CASES}
    assert len(CASES) >= 25 and sum(not c.mistakes for c in CASES) >= 6
    assert sum(len(c.mistakes) >= 3 for c in CASES) >= 3
    assert {"torchvision_v1", "torchvision_v2", "cv2_dnn", "letterbox", "pad_to_size", "float_resize",
            "web_upload", "grayscale", "caffe", "transposed", "crop", "alpha", "correct", "combo"} <= families


@pytest.fixture(scope="module")
def results(demo):
    return run_handwritten(demo, SAMPLES / "images")


def test_the_handwritten_suite_top_finding_is_the_most_damaging(results):
    table = confusion_table(results)
    n = len(results)
    top = sum(r.top_right for r in results)
    assert top >= 0.95 * n, table
    assert all(r.top == "match" for r in results if not r.truth), table  # correct pipelines stay a match
    assert not [r for r in results if r.blamed], table  # no correct stage is blamed
    print(table)


def _diagnose(demo, name):
    from d2debug.doctor import diagnose, parse_user_input

    case = next(c for c in CASES if c.name == name)
    path = SAMPLES / "images" / case.image
    return diagnose(demo, path, parse_user_input(case.fn(str(path)), name))


def test_damage_first_ranking_puts_double_normalization_above_a_one_pixel_size(demo):
    """torchvision Resize(320) truncates the long side by a pixel; Normalize(0.5, 0.5) removes every detection:
    the measured recovery ranks the normalization first, whatever the confidences say."""
    d = _diagnose(demo, "tv2_half_normalize")
    by = {f.id: f for f in d.findings}
    assert d.ids[0] == "double_normalization"
    assert by["double_normalization"].recovers > 0.9 and abs(by["resize_size"].recovers) < 0.05
    assert by["resize_size"].confidence >= by["double_normalization"].confidence  # confidence alone would flip it
    out = d.to_dict()["findings"]
    assert all({"id", "confidence", "evidence", "fix", "recovers", "costs_alone"} <= set(f) for f in out)


@pytest.mark.parametrize("name,expected,words", [
    ("letterbox_320_pil", "padding", ["padded with a constant", "top"]),
    ("centre_crop_after_resize", "crop", ["centre crop"]),
    ("transposed_permute_210", "transposed_hw", ["exchanged"]),
    ("web_upload_jpeg75", "recompression", ["quality ~75"]),
    ("rgba_on_white", "alpha_channel", ["composited on (255, 255, 255)"]),
    ("caffe_mean_127", "external_normalization", ["not divided"]),
    ("skimage_style_float_resize", "resize_interpolation", ["not PIL bilinear"]),
])
def test_the_new_vocabulary_with_its_evidence(demo, name, expected, words):
    d = _diagnose(demo, name)
    f = next(f for f in d.findings if f.id == expected)
    assert all(w in f.evidence for w in words), f.evidence
    # geometry is registered before colour is judged: a crop, a pad or a transposition is no channel problem
    if expected in ("padding", "crop", "transposed_hw"):
        assert "channel_order" not in d.ids


def test_a_one_channel_input_is_diagnosed_as_the_input_it_is(demo):
    d = _diagnose(demo, "grayscale_totensor")
    assert d.ids == ["value_range_0_1"] and any("1-channel" in n for n in d.notes)


def _user_file(tmp_path):
    path = tmp_path / "my_infer.py"
    path.write_text(textwrap.dedent("""
        import torch
        from PIL import Image
        import numpy as np

        def preprocess(path):
            img = np.asarray(Image.open(path).convert("RGB").resize((320, 320)), dtype=np.float32) / 255.0
            return {"image": torch.from_numpy(img.transpose(2, 0, 1).copy()), "height": 320, "width": 320}

        def broken(path):
            raise ValueError("no such camera")
    """))
    return path


def test_doctor_preprocess_runs_the_users_function_only_with_trust(tmp_path, capsys):
    from d2debug.cli import main

    path = _user_file(tmp_path)
    args = ["doctor", "--image", str(sample("val_003")), "--preprocess", f"{path}:preprocess", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-code" in err
    assert main(args + ["--trust-code"]) == 1
    out = json.loads(capsys.readouterr().out)
    ids = [f["id"] for f in out["findings"]]
    assert ids[0] in ("value_range_0_1", "missing_original_size") and "resize_aspect" in ids
    assert all(f["recovers"] is not None for f in out["findings"])
    assert main(["doctor", "--image", str(sample("val_003")), "--preprocess", f"{path}:broken", "--trust-code"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ValueError" in err and "no such camera" in err
    assert main(["doctor", "--image", str(sample("val_003")), "--preprocess", f"{path}:nope", "--trust-code"]) == 2
    assert "no function 'nope'" in capsys.readouterr().err


def test_assert_matches_reference_reports_the_ranked_findings(demo):
    from d2debug.testing import assert_matches_reference

    case = next(c for c in CASES if c.name == "tv1_seed_article")
    with pytest.raises(AssertionError) as err:
        assert_matches_reference(case.fn, demo, [SAMPLES / "images" / case.image])
    text = str(err.value)
    first = text.index("double_normalization (confidence")
    assert first < text.index("resize_size (confidence") and "recovers" in text
