"""The Deployed model page on the real demo model, through Streamlit's AppTest: an artifact exported here or
given by path runs as a deployment runs it; the contract's own pipeline agrees with the reference in every
part of the gap split, a deployment stage toggle moves the deployment's part and leaves the export's alone, and
every expected failure is one error line on a page that keeps working. And the deployment code the page
teaches: it names the contract's values and, run as written, reproduces the reference."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from helpers import APP_TIMEOUT as TIMEOUT
from helpers import ROOT, sample, set_radio
from helpers import app_errors as errors
from helpers import app_metrics as metrics
from helpers import app_run as run

if str(ROOT) not in sys.path:  # the pages import d2debug from the checkout, as `streamlit run app.py` does
    sys.path.insert(0, str(ROOT))

from d2debug.deploy import (  # noqa: E402
    Contract,
    check_same_model,
    deployment_code,
    deployment_lines,
    export_model,
    load_deployed,
)
from d2debug.errors import D2DebugError  # noqa: E402
from d2debug.run import reference_spec  # noqa: E402
from d2debug.run import run as run_pipeline  # noqa: E402
from d2debug.ui.deployed_page import SOURCES  # noqa: E402
from d2debug.ui.nav import TOOL_PAGES  # noqa: E402
from d2debug.ui.state import Keys  # noqa: E402

PAGE = ROOT / TOOL_PAGES["deployed"].file
IMAGE = "val_000.jpg"  # a red and a blue disc: the channel swap trades or loses them

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    """The demo model exported to TorchScript by tracing, as `d2debug export` writes it."""
    return export_model(demo, "torchscript", tmp_path_factory.mktemp("deployed") / "ts")


def open_page() -> AppTest:
    at = run(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT))
    at.selectbox(key=Keys.SAMPLE).set_value(IMAGE)
    return run(at)


def open_path(path) -> AppTest:
    """The page pointed at ``path`` through its path input."""
    at = open_page()
    set_radio(at, Keys.DEPLOYED_SOURCE, SOURCES[1])
    at.text_input(key=Keys.DEPLOYED_PATH).input(str(path))
    return run(at)


def gap(at: AppTest) -> dict[str, dict]:
    """The gap split rows by their first word: export, deployment, total."""
    assert Keys.DEPLOYED in at.session_state, errors(at)
    return {row["part"].split()[0]: row for row in at.session_state[Keys.DEPLOYED]["gap"]}


def assert_no_gap(at: AppTest) -> None:
    rows = gap(at)
    assert set(rows) == {"export", "deployment", "total"}
    for part, row in rows.items():
        assert (row["f1"], row["missed"], row["extra"], row["class_flips"]) == (1.0, 0, 0, 0), (part, row)
    assert metrics(at)["differences"] == {}
    assert at.session_state[Keys.DEPLOYED]["verdict"].startswith("No gap")


def one_error(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    errs = errors(at)
    assert len(errs) == 1 and "\n" not in errs[0].strip(), errs
    assert Keys.DEPLOYED not in at.session_state
    return errs[0]


# ---------------------------------------------------------------------------------------------------------------
# The page


def test_the_reference_setting_agrees_in_all_three_parts_of_the_gap(exported):
    at = open_path(exported.artifact)
    assert not errors(at)
    assert_no_gap(at)
    assert metrics(at)["n_reference"] > 0, "the demo model finds the discs of val_000"
    contract = at.dataframe[0].value
    assert list(contract["what"])[:2] == ["artifact", "input"] and "torchscript" in contract["value"].iloc[0]
    table = at.dataframe[1].value
    assert list(table["f1"]) == [1.0, 1.0, 1.0]
    assert any("torch.jit.load" in c.value and "detector_postprocess" in c.value for c in at.code)
    assert len(at.image) >= 3, "reference, deployed and the overlay"


@pytest.mark.parametrize("key,value,field", [(Keys.NORM, "imagenet", "external_norm"),
                                             (Keys.CHANNEL_ORDER, "swapped", "channel_order")])
def test_a_deployment_stage_lowers_the_deployment_and_total_parts_only(exported, key, value, field):
    at = open_path(exported.artifact)
    set_radio(at, key, value)
    assert not errors(at)
    rows = gap(at)
    assert rows["export"]["f1"] == 1.0, "the artifact fed the reference input is still the Python model"
    assert rows["deployment"]["f1"] < 1.0 and rows["total"]["f1"] < 1.0
    assert rows["total"]["f1"] == pytest.approx(metrics(at)["f1"], abs=1e-4)
    assert at.session_state[Keys.DEPLOYED]["differences"] == {field: value}
    verdict = at.session_state[Keys.DEPLOYED]["verdict"]
    assert verdict.startswith("Most of the gap comes from your deployment's preprocessing") and field in verdict
    assert any(s.value.startswith("Learn:") for s in at.subheader), "the changed stage's lesson"
    at.button(key=Keys.DEPLOYED_RESET).click()
    run(at)
    assert_no_gap(at)


def test_the_page_exports_the_loaded_model_with_no_files_at_all():
    at = open_page()
    assert not errors(at) and Keys.DEPLOYED not in at.session_state
    assert any("Export the loaded model now" in i.value for i in at.info)
    at.button(key=Keys.DEPLOYED_EXPORT).click()
    run(at)
    assert not errors(at)
    assert_no_gap(at)
    folder = Path(at.session_state[Keys.SESSION_FOLDER])
    assert Path(at.session_state[Keys.DEPLOYED]["artifact"]).is_relative_to(folder), "the session's own folder"


def test_an_uploaded_artifact_and_contract_are_kept_in_the_session_folder(exported):
    at = open_page()
    set_radio(at, Keys.DEPLOYED_SOURCE, SOURCES[2])
    at.file_uploader(key=Keys.DEPLOYED_UPLOAD).upload("model.ts", exported.artifact.read_bytes())
    run(at)
    assert not errors(at)
    assert_no_gap(at)
    result = at.session_state[Keys.DEPLOYED]
    folder = Path(at.session_state[Keys.SESSION_FOLDER])
    assert Path(result["artifact"]).is_relative_to(folder) and result["contract_source"] == "embedded in the artifact"
    at.file_uploader(key=Keys.DEPLOYED_CONTRACT_UPLOAD).upload("contract.json", exported.contract_path.read_bytes())
    run(at)
    assert not errors(at)
    assert Path(at.session_state[Keys.DEPLOYED]["contract_source"]).is_relative_to(folder), "the uploaded contract"


def test_a_truncated_artifact_is_one_error_line_and_the_page_keeps_working(exported, tmp_path):
    data = exported.artifact.read_bytes()
    bad = tmp_path / "model.ts"  # no contract.json beside it either
    bad.write_bytes(data[: len(data) // 2])
    at = open_path(bad)
    assert "not a readable TorchScript archive" in one_error(at)
    at.text_input(key=Keys.DEPLOYED_PATH).input(str(exported.artifact))
    run(at)
    assert not errors(at)
    assert_no_gap(at)


@pytest.mark.parametrize("name,expected", [("missing.ts", "no such file"), ("model.txt", "not an exported model")])
def test_a_bad_path_is_one_error_line(tmp_path, name, expected):
    assert expected in one_error(open_path(tmp_path / name))


def test_a_baked_field_is_refused_in_one_line(exported):
    at = open_path(exported.artifact)
    set_radio(at, Keys.NORM, "d2_default")
    assert "model_norm" in one_error(at) and "baked" in errors(at)[0]
    set_radio(at, Keys.NORM, "cfg")
    assert not errors(at)
    assert_no_gap(at)


def test_an_artifact_of_another_model_is_refused_in_one_line(tiny, tmp_path):
    report = export_model(tiny, "torchscript", tmp_path / "tiny")
    assert "load the model it was exported from" in one_error(open_path(report.artifact))


# ---------------------------------------------------------------------------------------------------------------
# The library behind it


def test_check_same_model_refuses_another_architecture_or_class_count(demo, exported):
    dep = load_deployed(exported.artifact)
    check_same_model(demo, dep)
    other = dataclasses.replace(dep, contract=dataclasses.replace(dep.contract, architecture="RetinaNet (boxes)"))
    with pytest.raises(D2DebugError, match="RetinaNet"):
        check_same_model(demo, other)
    fewer = dataclasses.replace(dep, contract=dataclasses.replace(dep.contract, class_names=("a",)))
    with pytest.raises(D2DebugError, match="1 classes"):
        check_same_model(demo, fewer)


CONTRACT = Contract(format="onnx", method="tracing", architecture="GeneralizedRCNN (boxes)", channel_order="RGB",
                    pixel_mean=(101.5, 102.5, 103.5), pixel_std=(11.0, 12.0, 13.0), min_size=123, max_size=456,
                    outputs=("pred_boxes", "pred_classes", "scores", "image_size"), score_thresh=0.33,
                    nms_thresh=0.44)


def test_deployment_code_names_the_contract_values():
    code = deployment_code(CONTRACT)
    compile(code, "deploy.py", "exec")
    assert 'ort.InferenceSession("model.onnx"' in code and 'session.run(None, {"image": x})' in code
    assert "read_image(path, format=\"BGR\")" in code and "bgr[:, :, ::-1]" in code
    assert "T.ResizeShortestEdge([123, 123], 456)" in code
    assert "[101.5, 102.5, 103.5]" in code and "[11, 12, 13]" in code and "No /255 and no mean/std" in code
    assert "(x - mean)" not in code, "the graph normalizes: the deployment must not"
    assert repr(CONTRACT.outputs) in code and "score 0.33, NMS 0.44" in code
    assert "detector_postprocess(inst, h, w)" in code
    assert deployment_lines(code, "resize_size").startswith("aug = T.ResizeShortestEdge([123, 123], 456)")
    assert deployment_lines(code, "model_norm") == "", "a baked field has no host line"


def test_deployment_code_follows_each_contract_field():
    bgr = deployment_code(dataclasses.replace(CONTRACT, channel_order="BGR"))
    assert "::-1" not in bgr and "img = bgr" in bgr
    own = deployment_code(dataclasses.replace(CONTRACT, normalizes=False))
    assert "x = (x - mean) / std" in own and "No /255" not in own
    scripted = deployment_code(dataclasses.replace(CONTRACT, format="torchscript", method="scripting"), "my.ts")
    assert 'torch.jit.load("my.ts"' in scripted and 'model(({"image": torch.from_numpy(x)},))[0]' in scripted
    traced = deployment_code(dataclasses.replace(CONTRACT, format="torchscript", any_size=False, traced_size=(123, 164)))
    assert "outs = model(torch.from_numpy(x))" in traced and "traced at 123x164" in traced
    for code in (bgr, own, scripted, traced):
        compile(code, "deploy.py", "exec")


def test_deployment_code_run_as_written_reproduces_the_reference(demo, exported, tmp_path):
    image = sample(IMAGE)
    ref = run_pipeline(demo, image, reference_spec(demo.cfg, "cpu"))
    onnx = export_model(demo, "onnx", tmp_path / "onnx")
    for report in (exported, onnx):
        namespace: dict = {}
        exec(compile(deployment_code(report.contract, str(report.artifact)), "deploy.py", "exec"), namespace)
        inst = namespace["predict"](str(image))
        assert len(inst) == len(ref.boxes) > 0
        assert np.abs(inst.pred_boxes.tensor.numpy() - ref.boxes).max() < 1e-2, report.contract.format
        assert (inst.pred_classes.numpy() == ref.classes).all()
        assert tuple(inst.pred_masks.shape[1:]) == tuple(ref.original_size), "masks pasted into the original frame"
