"""The Doctor's accuracy bar: generated user pipelines (single pitfalls and pairs) on the sample images.

Each pipeline is built with the library's stage functions, saved like a user would save it (torch.save /
numpy.save), loaded back safely and diagnosed with the real demo model's config and weights. The top finding
must be one of the true pitfalls in at least 95% of the cases, and the exact reference pipeline must give
``match`` on every sample image. Run with ``-s`` to see the confusion table (also:
``python -m d2debug doctor-suite``).
"""
from __future__ import annotations

import pytest

from conftest import SAMPLE_IMAGES
from d2debug.doctor import diagnose, make_user_input
from d2debug.stages import PipelineSpec
from d2debug.testing import SUITE, _pick_images, confusion_table, run_case, run_suite

pytestmark = pytest.mark.slow


def test_suite_has_enough_distinct_pipelines():
    singles = [c for c in SUITE if len(c.pitfalls) == 1]
    pairs = [c for c in SUITE if len(c.pitfalls) == 2]
    assert len(SUITE) >= 30 and len(singles) >= 15 and len(pairs) >= 10
    covered = {p for c in SUITE for p in c.pitfalls}
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
    img = _pick_images(SAMPLE_IMAGES, "all", demo.cfg, 1, 0)[0]
    good = run_case(demo, case, img, tmp_path)
    bad = run_case(demo, replace(case, pitfalls=("value_range_0_1",)), img, tmp_path)
    assert good.top_right and not bad.top_right
    assert "WRONG" in confusion_table([good, bad])
