"""Each tool page shows something useful the moment it opens on the demo model: the Doctor diagnoses an example
input made like a real script, the Dataset audit shows the shipped demo audit as a chart and a table, the
Config diff compares the demo training config with a typical deployment config."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from d2debug.pitfalls import STANDARD_PITFALLS
from d2debug.samples import DEMO_AUDIT, DEMO_METRICS
from d2debug.ui.state import Keys

from helpers import ROOT
from helpers import app_errors as errors
from helpers import app_run as run

TIMEOUT = 300
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_doctor_page_diagnoses_an_example_on_open():
    at = run(AppTest.from_file(str(ROOT / "app_pages" / "doctor.py"), default_timeout=TIMEOUT))
    assert not errors(at)
    res = at.session_state[Keys.DOCTOR]
    ids = [f["id"] for f in res["findings"]]
    # The seed article's own "correct" example: it still double-normalizes and resizes unlike detectron2.
    assert "double_normalization" in ids and "resize_interpolation" in ids and "batch_contract" in ids
    assert len(at.image) >= 3, "reference, the example's input and the difference heat map"
    assert any("T.Normalize" in c.value for c in at.code), "the example's own code is shown"


@pytest.mark.parametrize("example,finding", [("imagenet_normalize", "external_normalization"),
                                             ("cv2_bgr", "channel_order"), ("pil_no_exif", "exif_orientation")])
def test_doctor_page_examples(example, finding):
    at = run(AppTest.from_file(str(ROOT / "app_pages" / "doctor.py"), default_timeout=TIMEOUT))
    at.selectbox(key="doctor_example").set_value(example)
    run(at)
    assert not errors(at)
    assert finding in [f["id"] for f in at.session_state[Keys.DOCTOR]["findings"]]


def test_audit_page_shows_the_shipped_demo_audit_on_open():
    at = run(AppTest.from_file(str(ROOT / "app_pages" / "audit.py"), default_timeout=TIMEOUT))
    assert not errors(at)
    assert any("<svg" in m.value and "damage per pitfall" in m.value for m in at.markdown), "the damage chart"
    table = at.dataframe[0].value
    assert list(table["pitfall"])[0].startswith("reference")
    metrics = json.loads(DEMO_METRICS.read_text())
    assert round(float(table["AP"].iloc[0]), 1) == round(metrics["AP"] * 100, 1)
    assert round(float(table["mask AP"].iloc[0]), 1) == round(metrics["mask_AP"] * 100, 1)  # a Mask R-CNN


def test_the_shipped_demo_audit_is_of_the_shipped_model():
    summary = json.loads(DEMO_AUDIT.read_text())
    metrics = json.loads(DEMO_METRICS.read_text())
    ref = summary["rows"][0]
    assert ref["name"] == "reference" and ref["AP"] == pytest.approx(metrics["AP"], abs=1e-9)
    # The audit's pycocotools segm AP of the reference is the training run's own evaluation of the masks.
    assert ref["mask_AP"] == pytest.approx(metrics["mask_AP"], abs=1e-9)
    assert {r["name"] for r in summary["rows"][1:]} == {p.name for p in STANDARD_PITFALLS}
    assert summary["dataset"]["finished"] == metrics["val_images"]


def test_config_diff_page_compares_the_demo_with_a_typical_deploy_config_on_open():
    at = run(AppTest.from_file(str(ROOT / "app_pages" / "config_diff.py"), default_timeout=TIMEOUT))
    assert not errors(at)
    keys = [d["key"] for d in at.session_state[Keys.CONFIG_DIFF]["differences"]]
    assert keys[:3] == ["INPUT.FORMAT", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD"]
    assert "MODEL.ROI_HEADS.SCORE_THRESH_TEST" in keys
    assert [m.value for m in at.metric if m.label == "Change inference"] != ["0"]
