"""The dashboard through Streamlit's AppTest, on the real demo model: every page, every toggle by key.

Each toggle asserts no exception and that the numbers move the way the pitfall predicts; the reference
setting must give agreement F1 exactly 1.0. Model-dependent effects use sample images chosen for them (a red
and a blue disc for the channel swap, an EXIF-rotated photo for decoding, ...).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers import APP_TIMEOUT as TIMEOUT
from helpers import app_errors as errors
from helpers import app_metrics as metrics
from helpers import app_run as run
from helpers import set_radio

ROOT = Path(__file__).resolve().parent.parent
# The pages import d2debug from the checkout, as `streamlit run app.py` does (it puts app.py's folder on the path).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from d2debug.pitfalls import PITFALLS  # noqa: E402
from d2debug.ui.nav import STAGE_PAGES  # noqa: E402
from d2debug.ui.state import Keys  # noqa: E402

PAGES = {stage: page.file for stage, page in STAGE_PAGES.items()}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def open_page(page: str, image: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    run(at)
    if image is not None:
        at.selectbox(key=Keys.SAMPLE).set_value(image)
        run(at)
    return at


def assert_reference(at: AppTest) -> dict:
    m = metrics(at)
    assert m["differences"] == {}
    assert m["f1"] == 1.0 and m["missed"] == 0 and m["extra"] == 0 and m["class_flips"] == 0
    return m


def test_every_stage_page_renders_the_reference_by_default():
    for stage, page in PAGES.items():
        at = open_page(page, "val_000.jpg")
        assert not errors(at), (stage, errors(at))
        m = assert_reference(at)
        assert m["stage"] == stage
        assert m["n_reference"] > 0, "the demo model finds the discs of val_000"
        labels = [x.label for x in at.metric]
        assert "Agreement F1" in labels and "Class flips" in labels
        # The teaching panel with the real Detectron2 contract, and the downloads.
        code = "\n".join(c.value for c in at.code)
        assert '"height": h, "width": w' in code and "predictor.model(" not in code
        assert any("Learn:" in s.value for s in at.subheader)


def test_channel_swap_lowers_agreement_on_red_and_blue_discs():
    at = open_page(PAGES["channel_order"], "val_000.jpg")
    ref = assert_reference(at)
    set_radio(at, Keys.CHANNEL_ORDER, "swapped")
    m = metrics(at)
    assert m["differences"] == {"channel_order": "swapped"}
    assert m["f1"] < 1.0
    assert m["class_flips"] + m["missed"] >= 1, "red and blue discs trade classes or vanish"
    assert m["n_reference"] == ref["n_reference"]
    f1_metric = next(x for x in at.metric if x.label == "Agreement F1")
    assert float(f1_metric.value) == pytest.approx(m["f1"], abs=1e-3) and f1_metric.delta.startswith("-")
    set_radio(at, Keys.CHANNEL_ORDER, "cfg")
    assert_reference(at)


def test_resize_toggles():
    at = open_page(PAGES["resize"], "val_014.jpg")  # tall image with green squares
    assert_reference(at)
    at.selectbox(key=Keys.RESIZE_POLICY).set_value("fixed")
    run(at)
    m = metrics(at)
    assert m["differences"] == {"resize": "fixed", "resize_size": "320x320"}
    assert m["f1"] < 1.0, "stretching to a square turns squares into wide rectangles"
    for policy in ("none", "shortest_edge_noclamp"):
        at.selectbox(key=Keys.RESIZE_POLICY).set_value(policy)
        run(at)
        assert metrics(at)["differences"]["resize"] == policy
    at.selectbox(key=Keys.RESIZE_POLICY).set_value("shortest_edge")
    run(at)
    at.number_input(key=Keys.RESIZE_SHORT).set_value(160)
    run(at)
    assert metrics(at)["differences"] == {"resize_size": "160"}
    at.number_input(key=Keys.RESIZE_SHORT).set_value(320)
    run(at)
    assert_reference(at)
    for backend in ("cv2", "torch", "torch_antialias"):
        at.selectbox(key=Keys.RESIZE_BACKEND).set_value(backend)
        run(at)
        assert metrics(at)["differences"] == {"resize_backend": backend}
    # An impossible combination is one clear error, and the page keeps working.
    at.selectbox(key=Keys.RESIZE_INTERP).set_value("lanczos")
    run(at)
    assert any("lanczos" in e for e in errors(at))
    at.selectbox(key=Keys.RESIZE_BACKEND).set_value("pil")
    at.selectbox(key=Keys.RESIZE_INTERP).set_value("bilinear")
    run(at)
    assert not errors(at)
    assert_reference(at)


def test_nearest_downscaling_of_a_halftone_image_changes_detections():
    at = open_page(PAGES["resize"], "val_036_large.png")
    assert_reference(at)
    at.selectbox(key=Keys.RESIZE_INTERP).set_value("nearest")
    run(at)
    m = metrics(at)
    assert m["differences"] == {"interpolation": "nearest"}
    assert m["f1"] < 1.0


def test_normalization_toggles():
    at = open_page(PAGES["normalization"], "val_000.jpg")
    ref = assert_reference(at)
    set_radio(at, Keys.NORM, "0_1")
    m = metrics(at)
    assert m["differences"] == {"value_range": "0_1"}
    assert m["f1"] < 1.0 and m["missed"] + m["class_flips"] >= 1
    set_radio(at, Keys.NORM, "imagenet")
    m = metrics(at)
    assert m["differences"] == {"external_norm": "imagenet"}
    assert m["f1"] < 1.0
    set_radio(at, Keys.NORM, "d2_default")
    assert metrics(at)["differences"] == {"model_norm": "d2_default"}
    # Custom values equal to the config's are the reference in other words: exactly the same detections.
    set_radio(at, Keys.NORM, "custom")
    m = metrics(at)
    assert m["differences"] == {"model_norm": "custom:127.5,127.5,127.5/127.5,127.5,127.5"}
    assert m["f1"] == 1.0 and m["detections"] == ref["n_reference"]
    at.text_input(key=Keys.NORM_CUSTOM_STD).input("1,2")
    run(at)
    assert any("three" in e for e in errors(at))
    set_radio(at, Keys.NORM_CUSTOM_WHERE, "external")
    assert metrics(at)["differences"] == {"external_norm": "custom:0.5,0.5,0.5/0.5,0.5,0.5"}
    set_radio(at, Keys.NORM, "cfg")
    assert_reference(at)


def test_decoding_toggles_on_an_exif_rotated_photo():
    at = open_page(PAGES["decoding"], "val_044_exif6.jpg")
    assert_reference(at)
    set_radio(at, Keys.DECODER, "pil")
    m = metrics(at)
    assert m["differences"] == {"decoder": "pil"}
    assert m["f1"] < 1.0, "the model sees the photo sideways"
    assert any("EXIF orientation 6 IGNORED" in w.value for w in at.warning)
    set_radio(at, Keys.DECODER, "pil_exif")
    m = metrics(at)
    assert m["f1"] == 1.0 and m["missed"] == 0, "PIL + exif_transpose decodes exactly like read_image"
    set_radio(at, Keys.DECODER, "cv2")
    assert metrics(at)["differences"] == {"decoder": "cv2"}
    for image in ("val_046_gray.jpg", "val_047_rgba.png"):
        at.selectbox(key=Keys.SAMPLE).set_value(image)
        run(at)
        assert not errors(at)
        assert metrics(at)["image"] == image


def test_output_frame_and_thresholds():
    at = open_page(PAGES["output"], "val_001.jpg")  # 841x473 -> 569x320: a frame mismatch moves boxes
    ref = assert_reference(at)
    set_radio(at, Keys.OUT_SIZE, "omit")
    m = metrics(at)
    assert m["differences"] == {"original_size": "omit"}
    assert m["f1"] < 1.0 and m["missed"] >= 1
    assert any("height/width not passed" in w.value for w in at.warning)
    set_radio(at, Keys.OUT_SIZE, "pass")
    assert_reference(at)
    at.slider(key=Keys.OUT_SCORE).set_value(0.05)
    run(at)
    m = metrics(at)
    assert m["differences"] == {"score_thresh": "0.05"}
    assert m["detections"] >= ref["n_reference"] and m["missed"] == 0, "a lower threshold only adds boxes"
    at.slider(key=Keys.OUT_SCORE).set_value(1.0)
    run(at)
    m = metrics(at)
    assert m["detections"] == 0 and m["missed"] == ref["n_reference"]
    at.slider(key=Keys.OUT_SCORE).set_value(0.5)
    at.slider(key=Keys.OUT_NMS).set_value(0.95)
    run(at)
    m = metrics(at)
    assert m["differences"] == {"nms_thresh": "0.95"}
    assert m["detections"] >= ref["n_reference"] and m["missed"] == 0, "looser NMS keeps at least as many boxes"


def test_device_and_precision_page():
    at = open_page(PAGES["device"], "val_000.jpg")
    assert_reference(at)
    assert any("No CUDA GPU" in i.value for i in at.info) or at.radio(key=Keys.DEVICE) is not None
    set_radio(at, Keys.PRECISION, "fp16")
    if errors(at):  # fp16 unsupported by this model on this CPU: said clearly, page keeps working
        assert any("fp16" in e for e in errors(at))
    else:
        m = metrics(at)
        assert m["differences"] == {"precision": "fp16"}
        assert 0.0 <= m["f1"] <= 1.0
    set_radio(at, Keys.PRECISION, "fp32")
    assert_reference(at)


def test_home_glance_and_sensitivity_table():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT * 3)
    run(at)
    assert not errors(at)
    glance = at.table[0].value
    assert "393x524 -> 320x427" in glance.loc["Resize", "on this image"]
    assert glance.loc["Channel order", "reference setting"] == "cfg.INPUT.FORMAT = RGB"
    rows = at.session_state[Keys.SENSITIVITY]
    assert sorted(r["id"] for r in rows) == sorted(p.name for p in PITFALLS)
    f1s = [r["agreement"]["f1"] for r in rows if r["agreement"] is not None]
    assert f1s == sorted(f1s), "sorted by damage"
    by_id = {r["id"]: r for r in rows}
    assert by_id["channel_swap"]["agreement"]["f1"] < 1.0
    assert by_id["range_0_1"]["agreement"]["f1"] < 1.0
    assert by_id["pil_no_exif"]["agreement"]["f1"] == 1.0, "val_000 has no EXIF orientation"


def test_user_model_by_path(tiny_weights):
    at = open_page(PAGES["channel_order"])
    set_radio(at, Keys.MODEL_SOURCE, "Files on this workstation")
    assert any("config.yaml" in i.value for i in at.sidebar.info), "asks for a config, shows the demo model meanwhile"
    assert not errors(at)
    at.text_input(key=Keys.CONFIG_PATH).input(str(ROOT / "tests/configs/tiny_bgr.yaml"))
    at.text_input(key=Keys.WEIGHTS_PATH).input(str(tiny_weights))
    at.text_input(key=Keys.CLASSES).input("a, b, c")
    run(at)
    assert not errors(at), errors(at)
    assert any("3 classes, FORMAT BGR" in c.value for c in at.sidebar.caption)
    assert_reference(at)
    set_radio(at, Keys.CHANNEL_ORDER, "swapped")
    assert metrics(at)["differences"] == {"channel_order": "swapped"}


def test_checkpoint_key_mismatch_is_an_error(tiny_weights):
    at = open_page(PAGES["channel_order"])
    set_radio(at, Keys.MODEL_SOURCE, "Files on this workstation")
    at.text_input(key=Keys.CONFIG_PATH).input(str(ROOT / "sample_data/demo_config.yaml"))
    at.text_input(key=Keys.WEIGHTS_PATH).input(str(tiny_weights))
    run(at)
    assert any("does not match" in e and "demo model instead" in e for e in errors(at)), errors(at)
    assert_reference(at)  # the page keeps working on the demo model
    at.checkbox(key=Keys.ALLOW_MISMATCH).check()
    run(at)
    assert any("these layers are random" in e for e in errors(at)), errors(at)
    at.text_input(key=Keys.WEIGHTS_PATH).input(str(ROOT / "no_such_weights.pth"))
    run(at)
    assert any("no_such_weights.pth" in e and "not found" in e for e in errors(at)), errors(at)


def test_folder_browsing_and_bad_folder(tmp_path):
    at = open_page(PAGES["channel_order"])
    set_radio(at, Keys.IMAGE_SOURCE, "Folder on this workstation")
    at.text_input(key=Keys.FOLDER).input(str(tmp_path / "missing"))
    run(at)
    assert any("no such folder" in e for e in errors(at))
    assert any("Choose an image" in i.value for i in at.info)
    at.text_input(key=Keys.FOLDER).input(str(ROOT / "sample_data/images"))
    run(at)
    assert at.selectbox(key=Keys.FOLDER_IMAGE).value == "val_000.jpg"
    at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, 1)).click()
    run(at)
    assert at.selectbox(key=Keys.FOLDER_IMAGE).value == "val_001.jpg"
    assert metrics(at)["image"] == "val_001.jpg"
    at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, -1)).click()
    run(at)
    at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, -1)).click()
    run(at)
    assert at.selectbox(key=Keys.FOLDER_IMAGE).value == "val_047_rgba.png", "wraps around"


def test_choices_persist_across_pages():
    # switch_page needs the app's main script, and the menu it registers: run it once (Home), then page 1.
    # AppTest hands a page its persisted widget values from the second run after a switch (a real browser has
    # them on the first: tests/test_browser.py), so each switch is followed by two runs here.
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT * 3)
    run(at)
    at.switch_page(PAGES["channel_order"])
    run(at)
    at.selectbox(key=Keys.SAMPLE).set_value("val_003.jpg")
    run(at)
    set_radio(at, Keys.CHANNEL_ORDER, "swapped")
    at.switch_page(PAGES["resize"])
    run(run(at))
    assert at.selectbox(key=Keys.SAMPLE).value == "val_003.jpg"
    assert metrics(at)["stage"] == "resize" and metrics(at)["image"] == "val_003.jpg"
    assert_reference(at)  # other pages keep every other stage at the reference
    at.switch_page(PAGES["channel_order"])
    run(run(at))
    assert at.radio(key=Keys.CHANNEL_ORDER).value == "swapped"
    assert metrics(at)["differences"] == {"channel_order": "swapped"}


def test_measure_toggle_rerender_time():
    """Not an assertion on time: prints what a toggle costs on this machine (run with -s)."""
    at = open_page(PAGES["channel_order"], "val_006.jpg")
    timings = {}
    for value in ("swapped", "cfg", "swapped"):
        t0 = time.perf_counter()
        set_radio(at, Keys.CHANNEL_ORDER, value)
        timings.setdefault(value, []).append(time.perf_counter() - t0)
    at2 = AppTest.from_file(str(ROOT / PAGES["channel_order"]), default_timeout=TIMEOUT)
    run(at2)  # a cached reference: the page without any new model run
    t0 = time.perf_counter()
    run(at2)
    cached = time.perf_counter() - t0
    print(f"\ntoggle re-render on the demo model (CPU): first swap {timings['swapped'][0]:.2f} s, back to the "
          f"reference {timings['cfg'][0]:.2f} s, swap again (cached) {timings['swapped'][1]:.2f} s, "
          f"re-render with nothing new {cached:.2f} s")
    assert metrics(at)["differences"] == {"channel_order": "swapped"}


def test_a_broken_image_is_one_error_and_the_next_image_works(tmp_path):
    (tmp_path / "a_broken.jpg").write_text("not a jpeg")
    # A link to a sample: same file, so the cached results of val_000 are reused (keys follow the real file).
    (tmp_path / "b_good.jpg").symlink_to(ROOT / "sample_data/images/val_000.jpg")
    for page in (PAGES["channel_order"], "app.py"):
        at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT * 3)
        run(at)
        set_radio(at, Keys.IMAGE_SOURCE, "Folder on this workstation")
        at.text_input(key=Keys.FOLDER).input(str(tmp_path))
        run(at)
        assert at.selectbox(key=Keys.FOLDER_IMAGE).value == "a_broken.jpg"
        assert any("a_broken.jpg" in e for e in errors(at)), errors(at)
        at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, 1)).click()
        run(at)
        assert not errors(at), errors(at)


@pytest.mark.parametrize("pitfall", [p.name for p in PITFALLS])
def test_a_sensitivity_link_opens_its_stage_page_with_the_pitfall_set(pitfall):
    from d2debug.pitfalls import pitfall_stage
    from d2debug.stages import PipelineSpec

    p = next(q for q in PITFALLS if q.name == pitfall)
    at = AppTest.from_file(str(ROOT / PAGES[pitfall_stage(p)]), default_timeout=TIMEOUT)
    at.query_params[Keys.PITFALL_PARAM] = pitfall
    run(at)
    assert any("Opened with the pitfall" in i.value for i in at.info)
    want = {k: b for k, (_a, b) in PipelineSpec().differences(p.spec(PipelineSpec())).items()}
    if want.get("resize") == "fixed" and "resize_size" not in want:
        want["resize_size"] = "320x320"  # the page states the square it stretches to: MIN_SIZE_TEST of the demo
    if Keys.METRICS in at.session_state:
        assert metrics(at)["differences"] == want
    else:  # a variant this machine cannot run (fp16 on a CPU): its error, and the page still works
        assert errors(at) and pitfall == "fp16"
    assert Keys.PITFALL_PARAM not in at.query_params, "applied once, so the user's own toggles are not overridden"


def test_home_links_each_pitfall_to_its_stage_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT * 3)
    run(at)
    links = [(link.proto.page, link.proto.query_string) for link in at.get("page_link")]
    for p in PITFALLS:
        assert any(f"pitfall={p.name}" in q for _page, q in links), p.name
