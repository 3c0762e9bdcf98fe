"""AppTest for the Pipeline doctor page on the real demo model: widgets by key, no exceptions, a refused
pickle and a broken fingerprint are one st.error each and the page keeps working."""
from __future__ import annotations

import pickle

import pytest
import torch
from streamlit.testing.v1 import AppTest

from d2debug.ui.state import Keys

from helpers import ROOT, SAMPLE_IMAGES
from helpers import app_errors as errors
from helpers import app_run as run

PAGE = str(ROOT / "app_pages" / "doctor.py")
TIMEOUT = 300
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_doctor_page_diagnoses_refuses_pickles_and_recovers(tmp_path):
    from d2debug.config import load_cfg
    from d2debug.doctor import make_fingerprint, make_user_input, save_fingerprint
    from d2debug.samples import DEMO_CONFIG
    from d2debug.stages import PipelineSpec

    cfg = load_cfg(DEMO_CONFIG)
    image = SAMPLE_IMAGES[0]  # the sidebar's default sample image
    torch.save(make_user_input(cfg, image, PipelineSpec(channel_order="swapped", resize="fixed")), tmp_path / "bad.pt")
    torch.save(make_user_input(cfg, image), tmp_path / "ok.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"image": _Evil(tmp_path / "ran")}))
    save_fingerprint(make_fingerprint(cfg, SAMPLE_IMAGES[:3]), tmp_path / "fp.json")
    (tmp_path / "broken.json").write_text("{not json")

    at = run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    assert not errors(at)  # it opens on a diagnosed example (tests/test_page_tools.py)
    at.radio(key="doctor_input_source").set_value("Path on this workstation")
    run(at)
    assert Keys.DOCTOR not in at.session_state, "no path typed yet: nothing diagnosed"

    # A pickle disguised as .pt: one error naming the file, never unpickled.
    at.text_input(key="doctor_input_path").set_value(str(tmp_path / "evil.pt"))
    run(at)
    assert len(errors(at)) == 1 and "evil.pt" in errors(at)[0] and "refused" in errors(at)[0]
    assert not (tmp_path / "ran").exists() and Keys.DOCTOR not in at.session_state

    # The page keeps working: a BGR, square-resized input gets both findings with their fixes.
    at.text_input(key="doctor_input_path").set_value(str(tmp_path / "bad.pt"))
    run(at)
    assert not errors(at)
    res = at.session_state[Keys.DOCTOR]
    assert [f["id"] for f in res["findings"]] == ["channel_order", "resize_aspect"]
    assert any("ResizeShortestEdge" in c.value for c in at.code)

    # The exact reference input is a match.
    at.text_input(key="doctor_input_path").set_value(str(tmp_path / "ok.pt"))
    run(at)
    assert [f["id"] for f in at.session_state[Keys.DOCTOR]["findings"]] == ["match"]
    assert at.success and "match" in at.success[0].value

    # A broken fingerprint: one error; a good one: still a match.
    at.checkbox(key="doctor_use_fp").check()
    run(at)
    at.radio(key="doctor_fp_source").set_value("Path on this workstation")
    run(at)
    at.text_input(key="doctor_fp_path").set_value(str(tmp_path / "broken.json"))
    run(at)
    assert len(errors(at)) == 1 and "broken.json" in errors(at)[0]
    at.text_input(key="doctor_fp_path").set_value(str(tmp_path / "fp.json"))
    run(at)
    assert not errors(at)
    assert [f["id"] for f in at.session_state[Keys.DOCTOR]["findings"]] == ["match"]


def test_doctor_page_runs_your_function_only_when_ticked(tmp_path):
    """The user's FILE.py:FUNCTION: refused in one st.error until "Run my function" is ticked; then diagnosed,
    findings ranked by the damage each does, and the file's side effect proves it ran only then."""
    marker = tmp_path / "ran"
    code = tmp_path / "infer.py"
    code.write_text(
        "import numpy as np, torch\n"
        "from PIL import Image\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "def preprocess(path):\n"
        "    img = np.asarray(Image.open(path).convert('RGB').resize((320, 320)), dtype=np.float32) / 255.0\n"
        "    return torch.from_numpy(img.transpose(2, 0, 1).copy())\n"
    )
    at = run(AppTest.from_file(PAGE, default_timeout=TIMEOUT))
    at.radio(key="doctor_input_source").set_value("Your preprocessing function")
    run(at)
    at.text_input(key="doctor_function").input(f"{code}:preprocess")
    run(at)
    assert any("Run my function" in e for e in errors(at)), errors(at)
    assert not marker.exists()
    at.checkbox(key="doctor_trust_code").check()
    run(at)
    assert not errors(at), errors(at)
    assert marker.exists()
    findings = at.session_state[Keys.DOCTOR]["findings"]
    ids = [f["id"] for f in findings]
    assert "value_range_0_1" in ids and "resize_aspect" in ids and all(f["recovers"] is not None for f in findings)
    gains = [round(f["recovers"], 2) for f in findings]
    assert gains == sorted(gains, reverse=True)  # most damaging first
