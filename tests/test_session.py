"""d2debug.session: what a dashboard view computes, without Streamlit, on the real demo model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from d2debug.errors import D2DebugError
from d2debug.files import list_images
from d2debug.lessons import correct_code, lesson
from d2debug.model import parse_class_names
from d2debug.pitfalls import PITFALLS, STAGES, pitfall_stage
from d2debug.run import reference_spec
from d2debug.session import (
    SensitivityRow,
    compare_variant,
    pipeline_at_a_glance,
    prepare_reference,
    run_variant,
    sensitivity_row,
)

from helpers import SAMPLES, sample


@pytest.fixture(scope="module")
def ref_view(demo):
    return prepare_reference(demo, sample("val_000"), reference_spec(demo.cfg, "cpu"))


def test_reference_spec_as_variant_is_exactly_the_reference(demo, ref_view):
    image = sample("val_000")
    view = compare_variant(demo, image, ref_view.result.spec, ref_view)
    assert view.differences == {}
    assert view.agreement.f1 == 1.0 and view.agreement.missed == 0 and view.agreement.extra == 0
    np.testing.assert_array_equal(view.variant.boxes, ref_view.result.boxes)
    np.testing.assert_array_equal(view.variant.scores, ref_view.result.scores)
    assert all(m["delta"] == 0 for m in view.metrics().values())
    # Same bins for both, so the histograms overlay; identical inputs give identical counts.
    for a, b in (view.input_stats, view.backbone_stats):
        np.testing.assert_array_equal(a.edges, b.edges)
        for ca, cb in zip(a.counts, b.counts):
            np.testing.assert_array_equal(ca, cb)


def test_a_variant_reuses_the_reference_decode_only_with_the_same_decoder(demo, ref_view):
    image = sample("val_000")
    same = run_variant(demo, image, ref_view.result.spec.replace(channel_order="swapped"), ref_view.result)
    assert same.decoded is ref_view.result.decoded
    other = run_variant(demo, image, ref_view.result.spec.replace(decoder="pil"), ref_view.result)
    assert other.decoded is not ref_view.result.decoded and other.decoded.order == "RGB"


def test_channel_swap_view_has_pictures_numbers_and_downloads(demo, ref_view):
    image = sample("val_000")
    view = compare_variant(demo, image, ref_view.result.spec.replace(channel_order="swapped"), ref_view)
    assert view.differences == {"channel_order": ("cfg", "swapped")}
    assert view.channel_labels[0] == "ch0 ref R / variant B" and view.channel_labels[1] == "ch1 G"
    # The swap exchanges channels 0 and 2 of the model input exactly.
    assert view.input_stats[1].channels[0].mean == pytest.approx(view.input_stats[0].channels[2].mean, rel=1e-6)
    h, w = ref_view.result.original_size
    assert view.overlay.shape[:2] == (h, w) and view.overlay.dtype == np.uint8
    assert view.side_by_side.shape[1] > 3 * w
    assert view.png()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(view.to_json())
    assert data["changed"] == {"channel_order": {"reference": "cfg", "variant": "swapped"}}
    assert data["agreement"]["f1"] == round(view.agreement.f1, 4)
    assert set(data["stats"]["model_input"]) == {"reference", "variant"}
    rows = view.input_hist
    assert {r["pipeline"] for r in rows} == {"reference", "variant"} and len(rows) == 2 * 3 * 64


def test_sensitivity_sorted_by_damage_and_pitfalls_map_to_stages(demo, ref_view):
    assert {pitfall_stage(p) for p in PITFALLS} == set(STAGES)
    some = [p for p in PITFALLS if p.name in ("pil_no_exif", "channel_swap", "range_0_1")]
    # One row per pitfall, sorted by damage_key: what the home page's sensitivity table does.
    runs = [sensitivity_row(demo, sample("val_000"), p, ref_view) for p in some]
    assert all(var is not None and var.spec == p.spec(ref_view.result.spec) for p, (_row, var) in zip(some, runs))
    rows = sorted((row for row, _var in runs), key=SensitivityRow.damage_key)
    by = {r.pitfall.name: r for r in rows}
    assert by["pil_no_exif"].agreement.f1 == 1.0, "no EXIF tag in val_000: PIL decodes the same pixels"
    assert by["channel_swap"].agreement.f1 < 1.0 and by["range_0_1"].agreement.f1 < 1.0
    assert rows[-1].pitfall.name == "pil_no_exif"  # the harmless one last


def test_pipeline_at_a_glance_has_the_real_values(demo, ref_view):
    rows = {r.stage: r for r in pipeline_at_a_glance(demo, ref_view)}
    assert rows["Resize"].value.startswith("393x524 -> 320x427")
    assert "FORMAT = RGB" in rows["Channel order"].setting
    assert "127.5" in rows["Normalization (inside the model)"].value
    assert "score 0.5" in rows["Thresholds"].value


def test_lessons_use_the_detectron2_contract(demo):
    code = correct_code(demo.cfg)
    assert '"height": h, "width": w' in code and "DefaultPredictor(cfg)" in code
    assert "ResizeShortestEdge([320, 320], 533)" in code and 'format="RGB"' in code
    assert "predictor.model(" not in code and "/ 255" not in code
    for stage in STAGES:
        les = lesson(stage, demo.cfg, None, demo.class_names)
        assert les.what and les.why and les.code
    assert "red_disc" in lesson("channel_order", demo.cfg, None, demo.class_names).why


def test_inputs_from_the_sidebar(tmp_path):
    assert len(list_images(SAMPLES / "images")) == 48
    with pytest.raises(D2DebugError, match="no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(D2DebugError, match="no image files"):
        list_images(tmp_path)
    with pytest.raises(D2DebugError, match="not a folder"):
        list_images(tmp_path / "notes.txt")
    assert parse_class_names("") is None
    assert parse_class_names(" a, b ,c ") == ["a", "b", "c"]
    assert parse_class_names(str(SAMPLES / "annotations.json")) == str(SAMPLES / "annotations.json")
    with pytest.raises(D2DebugError, match="not found"):
        parse_class_names(str(tmp_path / "missing.json"))


def test_lessons_quote_where_masks_suffer_more_than_boxes(demo):
    """From the shipped audit: a stage whose pitfall costs masks more AP than boxes says so with both numbers;
    a stage where masks do not suffer more says nothing about it."""
    from d2debug.audit import load_summary
    from d2debug.lessons import MASKS_MORE, lesson
    from d2debug.samples import DEMO_AUDIT
    from d2debug.text import pct

    audit = load_summary(DEMO_AUDIT)
    rows = {r["name"]: r for r in audit["rows"]}
    swap = rows["channel_swap"]
    assert swap["dmask_AP"] <= swap["dAP"] - MASKS_MORE  # measured: masks lose more
    text = lesson("channel_order", demo.cfg, audit=audit).why
    assert "Masks suffer more" in text and pct(swap["dAP"], True) in text and pct(swap["dmask_AP"], True) in text
    fixed = rows["fixed_square"]
    assert fixed["dmask_AP"] > fixed["dAP"] - MASKS_MORE  # masks lose less here
    assert "Masks suffer more" not in lesson("resize", demo.cfg, audit=audit).why
    assert "Masks suffer more" not in lesson("channel_order", demo.cfg).why  # no audit, no claim


def _shape(value):
    """The keys of a JSON value, recursively (lists by their first item), without the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_page_download_and_compare_json_are_one_shape(demo, ref_view, capsys):
    """The stage pages' JSON download and ``compare --json`` are the same record, key for key and number for
    number (the page adds nothing the CLI lacks, and the CLI's keys are kept)."""
    from d2debug.cli import main

    image = sample("val_000")
    view = compare_variant(demo, image, ref_view.result.spec.replace(channel_order="swapped"), ref_view)
    assert main(["compare", "--image", str(image), "--set", "channel_order=swapped", "--json", "--device", "cpu"]) == 0
    cli = json.loads(capsys.readouterr().out)
    page = json.loads(view.to_json())
    assert _shape(page) == _shape(cli)
    assert {"image", "model", "variant_spec", "changed", "reference", "variant", "agreement", "stats",
            "reference_spec", "channels"} == set(cli)
    for key in ("changed", "agreement", "stats", "channels", "reference_spec", "variant_spec", "model"):
        assert page[key] == cli[key], key
    assert page["variant"]["detections"] == cli["variant"]["detections"]
    assert set(cli["stats"]["model_input"]["reference"]) == set(demo.cfg.INPUT.FORMAT)
