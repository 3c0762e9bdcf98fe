"""Doctor 3: pipelines from the wild (crops anywhere, padding in every border mode, decoders that scale or skip
EXIF, size rules from training or other libraries, tensor layouts and dtypes, transforms with no finding id,
code from public issues, correct pipelines written other ways), written without the Doctor's code, with their
damage order measured by running the model on each mistake alone. Run with ``-s`` to see the confusion table
(also: ``python -m d2debug doctor-suite --wild``)."""
from __future__ import annotations

import dataclasses

import pytest

from d2debug.evaluation import wild
from d2debug.evaluation.suite import changes_input, confusion_table, measure_alone, order_problems, run_wild
from d2debug.findings import FINDING_IDS
from d2debug.run import preprocess

from helpers import ROOT, SAMPLES, d2debug_imports

IMAGES = SAMPLES / "images"
CASES = wild.CASES


def test_the_cases_are_written_without_the_doctors_code():
    """No d2debug import (nor a relative one) in the suite but the scripts' shared helpers, which import nothing
    of d2debug themselves: the cases must not be rendered with the library's stage functions, which is what the
    suite guards against."""
    evaluation = ROOT / "d2debug" / "evaluation"
    assert not d2debug_imports(evaluation / "wild.py")
    assert not d2debug_imports(evaluation / "scripts.py")


def test_the_suite_covers_the_families_with_labels_of_the_vocabulary():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 36
    assert sum(not c.mistakes for c in CASES) >= 8
    assert {"correct", "crop", "padding", "decoder", "size", "tensor", "unexplained", "issue"} <= {c.family for c in CASES}
    families = {f: [c for c in CASES if c.family == f] for f in {c.family for c in CASES}}
    assert all(len(v) >= 4 for f, v in families.items()), {f: len(v) for f, v in families.items()}
    assert sum("github.com" in c.note for c in CASES if c.family == "issue") >= 2
    assert len({c.image for c in CASES}) >= 40  # spread over the sample images
    for c in CASES:
        assert (IMAGES / c.image).is_file(), c.image
        assert set(c.mistakes) <= set(FINDING_IDS) - {"match"} and len(set(c.mistakes)) == len(c.mistakes), c.name
        assert 1 <= c.tied <= max(1, len(c.mistakes)), c.name
        # the damage order is measured on one function per mistake: the correct pipeline with only that one
        assert set(c.alone) == (set(c.mistakes) if len(c.mistakes) >= 2 else set()), c.name
    labels = {m for c in CASES for m in c.mistakes}
    assert {"crop", "padding", "exif_orientation", "resize_interpolation", "missing_original_size", "resize_size",
            "channels_last", "dtype", "unexplained"} <= labels


@pytest.fixture(scope="module")
def reference_inputs(demo):
    """Per sample image the reference model input (DefaultPredictor's) and the original size."""
    return {c.image: preprocess(demo.cfg, IMAGES / c.image) for c in CASES}


@pytest.mark.slow
def test_the_correct_pipelines_are_the_reference_input(reference_inputs):
    """The labels of the correct pipelines (and the baseline the alone variants are built on) are checked, not
    assumed: each gives the reference input exactly (same container contents, dtype, size and values)."""
    for c in CASES:
        ref, original = reference_inputs[c.image]
        path = str(IMAGES / c.image)
        if not c.mistakes:
            assert not changes_input(c.fn(path), ref, original), c.name
        if c.alone:
            assert not changes_input(wild._correct(path), ref, original), c.name


@pytest.mark.slow
def test_every_labelled_mistake_changes_the_input_on_its_image(reference_inputs):
    """A mistake that changes nothing on the case's image (a channel swap on a grey photo, a clamp that does not
    apply) is no mistake there: every alone variant, and every single-mistake pipeline, differs from the
    reference input."""
    ref, original = reference_inputs["val_001.jpg"]
    assert changes_input({"image": ref}, ref, original)  # resized without height/width: the resized frame
    assert not changes_input({"image": ref}, ref, tuple(ref.shape[1:]))  # at the original size: the same frame
    unchanged = []
    for c in CASES:
        ref, original = reference_inputs[c.image]
        path = str(IMAGES / c.image)
        variants = c.alone if len(c.mistakes) >= 2 else ({c.mistakes[0]: c.fn} if c.mistakes else {})
        unchanged += [f"{c.name}: {m}" for m, fn in variants.items() if not changes_input(fn(path), ref, original)]
    assert not unchanged, unchanged


@pytest.fixture(scope="module")
def measured(demo):
    return measure_alone(demo, IMAGES)


@pytest.mark.slow
def test_the_declared_damage_order_is_the_measured_one(measured):
    """Each multi-mistake case lists its mistakes by the agreement the model keeps with each one alone, lowest
    first; the leading (``tied``) ones are no better than any other by more than 0.02."""
    multi = [c for c in CASES if len(c.mistakes) >= 2]
    assert set(measured) == {c.name for c in multi} and len(multi) >= 10
    problems = {}
    for c in multi:
        a = measured[c.name]
        lead = c.mistakes[:c.tied]
        worse = [(m, o) for m in lead for o in c.mistakes if o not in lead and a[m] > a[o] + 0.02]
        if worse or order_problems(c, a):
            problems[c.name] = (a, worse, order_problems(c, a))
    assert not problems, problems


@pytest.mark.slow
def test_the_wild_suite_top_finding_is_the_most_damaging(demo):
    results = run_wild(demo, IMAGES)
    table = confusion_table(results)
    print("\n" + table)
    n = len(results)
    assert n == len(CASES)
    assert sum(r.top_right for r in results) >= 0.95 * n, table
    assert all(r.top == "match" for r in results if not r.truth), table  # correct pipelines stay a match
    assert not [r for r in results if r.blamed], table  # no correct stage is blamed


def _case(name: str) -> wild.Case:
    return next(c for c in CASES if c.name == name)


def test_a_swapped_damage_order_is_caught():
    """The order check can fail: the letterbox's measured agreements with its mistakes listed the other way
    round, or with a tie declared where the numbers do not tie."""
    case = _case("letterbox_reflect_totensor")
    a = {"value_range_0_1": 0.0, "padding": 0.4615, "resize_interpolation": 1.0}
    assert order_problems(case, a) == []
    assert order_problems(dataclasses.replace(case, mistakes=case.mistakes[::-1]), a)
    assert order_problems(dataclasses.replace(case, tied=2), a)
    assert order_problems(dataclasses.replace(case, tied=1), {**a, "padding": 0.01})  # it ties: tied=1 is wrong


@pytest.mark.slow
def test_a_mislabelled_case_is_scored_wrong(demo, reference_inputs):
    """The scoring can fail: a correct pipeline labelled ``crop`` is scored wrong (the Doctor finds no crop in
    it), the table says WRONG, and the crop label is caught as changing nothing on the image."""
    case = _case("correct_pil_from_cv2")
    bad = dataclasses.replace(case, mistakes=("crop",))
    (r,) = run_wild(demo, IMAGES, cases=[bad])
    assert r.truth == ("crop",) and r.leading == ("crop",)
    assert not r.top_right and f"WRONG: {bad.name}" in confusion_table([r]), r
    assert not dataclasses.replace(r, top="match", found=("match",)).top_right
    ref, original = reference_inputs[case.image]
    assert not changes_input(bad.fn(str(IMAGES / bad.image)), ref, original)
