"""The Doctor against an exported model's contract: the demo model exported to TorchScript, the tensors a
deployment feeds it saved like a user saves them, and the findings relative to the contract (the library, the
CLI's --contract and the dashboard page)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch

from d2debug.cli import main
from d2debug.deploy import Contract, cfg_with_contract, export_model, load_deployed, read_contract
from d2debug.doctor import diagnose, load_user_input
from d2debug.errors import D2DebugError
from d2debug.run import preprocess, reference_spec, run
from d2debug.stages import PipelineSpec
from d2debug.ui.state import Keys

from helpers import ROOT, SAMPLE_IMAGES, app_errors, app_run, sample

IMAGE = "val_000"  # 524x393: the contract's resize gives 427x320, the size the demo export is traced on
CONTRACT_IDS = {"traced_size", "graph_double_normalization", "rescale_boxes"}


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    """``(folder, contract)``: the demo model exported to ``folder/model.ts`` with its ``contract.json``, and the
    inputs a deployment feeds it for the sample image, saved as ``.pt`` files (3xHxW float32 tensors)."""
    out = tmp_path_factory.mktemp("exported")
    report = export_model(demo, "torchscript", out)
    assert report.contract.agreement["f1"] == 1.0  # the artifact is the model: what differs below is the input
    img = sample(IMAGE)
    ref, _ = preprocess(demo.cfg, img)
    c = report.contract
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (c.pixel_mean, c.pixel_std))
    tensors = {
        "ok": ref,
        "twice": (ref - mean) / std,  # normalized outside a graph that normalizes
        "imagenet": preprocess(demo.cfg, img, PipelineSpec(external_norm="imagenet"))[0],
        "small": preprocess(demo.cfg, img, PipelineSpec(resize_size=240))[0],  # 320x240: another resize
    }
    for name, t in tensors.items():
        torch.save(t, out / f"{name}.pt")
    return out, c


def _diag(demo, exported, name, contract=None, image=IMAGE):
    out, c = exported
    return diagnose(demo, sample(image), load_user_input(out / f"{name}.pt"), contract=contract or c)


def _by_id(d, fid):
    found = [f for f in d.findings if f.id == fid]
    assert found, f"expected {fid}, got {d.ids}"
    return found[0]


def test_the_correct_deployment_input_matches_and_the_reminder_rescales_the_graphs_boxes(demo, exported):
    out, c = exported
    d = _diag(demo, exported, "ok")
    assert d.ids == ["match", "rescale_boxes"] and d.is_match and d.top == "match"
    assert not CONTRACT_IDS - {"rescale_boxes"} & set(d.ids)
    f = _by_id(d, "rescale_boxes")
    assert "393/320 = 1.22812" in f.evidence and "524/427 = 1.22717" in f.evidence
    assert "*= 393 / 320" in f.fix and "*= 524 / 427" in f.fix
    # The fix's factors put the artifact's boxes on the Python model's (the reference's) to within a pixel.
    sx, sy = (int(n) / int(m) for n, m in re.findall(r"boxes\[:, [01]::2\] \*= (\d+) / (\d+)", f.fix))
    ref_in, _ = preprocess(demo.cfg, sample(IMAGE))
    boxes = load_deployed(out / "model.ts").infer(ref_in)["pred_boxes"].numpy().copy()
    boxes[:, 0::2] *= sx
    boxes[:, 1::2] *= sy
    reference = run(demo, sample(IMAGE), reference_spec(demo.cfg, "cpu")).boxes
    assert len(boxes) == len(reference) > 0
    assert np.abs(np.sort(boxes, 0) - np.sort(reference, 0)).max() < 1.0
    # Without the contract the same tensor is a plain match: the reminder is the contract's.
    assert diagnose(demo, sample(IMAGE), ref_in).ids == ["match"]


def test_normalizing_outside_a_graph_that_normalizes_is_the_normalization_done_twice(demo, exported):
    out, c = exported
    d = _diag(demo, exported, "twice")
    assert d.ids == ["graph_double_normalization", "rescale_boxes"] and not d.is_match
    f = d.findings[0]
    assert "normalizes itself" in f.evidence and "127.5" in f.evidence and "done twice" in f.evidence
    assert "model(x)" in f.fix and "0..255" in f.fix and "'height'" not in f.fix  # the graph takes a bare tensor
    assert f.recovers is not None and f.recovers > 0.9  # measured: it destroys the detections
    # ... and on the artifact itself: fed the normalized tensor it no longer finds what it finds on the right one
    dep = load_deployed(out / "model.ts")
    right, wrong = dep.infer(torch.load(out / "ok.pt")), dep.infer(torch.load(out / "twice.pt"))
    assert len(right["scores"]) > 0
    assert len(wrong["scores"]) != len(right["scores"]) or not torch.allclose(wrong["pred_boxes"], right["pred_boxes"],
                                                                               atol=5.0)
    d = _diag(demo, exported, "imagenet")  # another mean/std: still done twice, with the estimated values
    assert d.ids[0] == "graph_double_normalization" and "ImageNet" in d.findings[0].evidence
    assert "external_normalization" not in d.ids and "double_normalization" not in d.ids


def test_another_size_is_the_contracts_resize_and_a_traced_only_graph_refuses_it(demo, exported):
    out, c = exported
    d = _diag(demo, exported, "small")
    assert d.ids == ["resize_size", "rescale_boxes"]  # the export measured any_size: the size is only a resize
    assert "427x320" in d.findings[0].evidence and "OUTSIDE the graph" in d.findings[0].evidence
    assert "393/240 = 1.6375" in _by_id(d, "rescale_boxes").evidence
    traced_only = dataclasses.replace(c, any_size=False)
    d = _diag(demo, exported, "small", traced_only)
    assert d.ids[0] == "traced_size" and "resize_size" in d.ids
    f = d.findings[0]
    assert "320x240" in f.evidence and "traced on 427x320" in f.evidence and "427x320" in f.fix
    # the traced size itself is fine; an image whose correct size is another cannot be fed to this artifact
    assert _diag(demo, exported, "ok", traced_only).ids == ["match", "rescale_boxes"]
    wide = sample("val_033")
    torch.save(preprocess(demo.cfg, wide)[0], out / "wide.pt")
    d = _diag(demo, exported, "wide", traced_only, image="val_033")
    assert d.ids[0] == "traced_size" and "no correct input for it fits this artifact" in d.findings[0].evidence


def test_the_contract_not_the_config_says_what_the_graph_wants(demo, exported):
    out, c = exported
    other = dataclasses.replace(c, channel_order="BGR", min_size=240, max_size=400)
    d = _diag(demo, exported, "ok", other)  # the config's input (RGB, 320) against a BGR, 240 contract
    assert {"channel_order", "resize_size"} <= set(d.ids)
    assert "contract channel_order" in _by_id(d, "channel_order").fix
    assert any("contract's INPUT.FORMAT BGR differs from the config's RGB" in n for n in d.notes)
    torch.save(preprocess(cfg_with_contract(demo.cfg, other), sample(IMAGE))[0], out / "by_contract.pt")
    assert _diag(demo, exported, "by_contract", other).is_match
    with pytest.raises(D2DebugError, match="normalizes: false"):
        _diag(demo, exported, "ok", dataclasses.replace(c, normalizes=False))


def test_read_contract_from_a_json_an_artifact_or_beside_it(exported, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    out, c = exported
    assert read_contract(out / "contract.json")[0] == c
    assert read_contract(out / "model.ts") == (c, "embedded in the artifact")
    # An ONNX file: the contract in its metadata, read without a runtime session; else the one beside it.
    node = helper.make_node("Identity", ["image"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, None, None])])
    proto = helper.make_model(graph)
    onnx_c = dataclasses.replace(c, format="onnx")
    entry = proto.metadata_props.add()
    entry.key, entry.value = "d2debug_contract.json", onnx_c.to_json()
    onnx.save(proto, str(tmp_path / "model.onnx"))
    assert read_contract(tmp_path / "model.onnx")[0] == onnx_c
    bare = tmp_path / "bare"
    bare.mkdir()
    del proto.metadata_props[:]
    onnx.save(proto, str(bare / "model.onnx"))
    with pytest.raises(D2DebugError, match="no contract in it or beside it"):
        read_contract(bare / "model.onnx")
    (bare / "contract.json").write_text(onnx_c.to_json())
    assert read_contract(bare / "model.onnx") == (onnx_c, str(bare / "contract.json"))
    shutil.copy(out / "contract.json", bare / "contract.json")  # a TorchScript contract beside an ONNX model
    with pytest.raises(D2DebugError, match="a contract for torchscript"):
        read_contract(bare / "model.onnx")
    assert isinstance(c, Contract)


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["doctor", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_doctor_contract(demo, exported, capsys, tmp_path):
    out, _ = exported
    img = sample(IMAGE)
    code, stdout, _ = _cli(capsys, "--image", img, "--input", out / "ok.pt", "--contract", out / "model.ts", "--json")
    assert code == 0
    res = json.loads(stdout)
    assert [f["id"] for f in res["findings"]] == ["match", "rescale_boxes"]
    assert res["analysis"]["contract"]["traced_size"] == [427, 320]
    code, stdout, _ = _cli(capsys, "--image", img, "--input", out / "twice.pt", "--contract", out / "contract.json")
    assert code == 1 and "finding 1   graph_double_normalization" in stdout and "contract    torchscript" in stdout
    # Bad contracts are one line, exit 2, before any model loads.
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "fake.ts").write_bytes(b"not a zip")
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "plain.ts"))  # no contract in or beside it
    for bad, says in (("broken.json", "not a d2debug contract"), ("fake.ts", "not a readable TorchScript"),
                      ("plain.ts", "no contract in it or beside it"), ("missing.json", "cannot read the contract"),
                      ("weights.pth", "expected a contract (.json) or an exported model")):
        code, _, err = _cli(capsys, "--image", img, "--input", out / "ok.pt", "--contract", tmp_path / bad)
        assert code == 2 and err.startswith("error: ") and says in err and len(err.strip().splitlines()) == 1, err


def test_doctor_page_takes_a_contract_by_path(exported):
    from streamlit.testing.v1 import AppTest

    out, _ = exported
    assert sample(IMAGE) == SAMPLE_IMAGES[0]  # the sidebar's default image
    at = app_run(AppTest.from_file(str(ROOT / "app_pages" / "doctor.py"), default_timeout=300))
    at.radio(key="doctor_input_source").set_value("Path on this workstation")
    app_run(at)
    at.text_input(key="doctor_input_path").set_value(str(out / "twice.pt"))
    app_run(at)
    assert [f["id"] for f in at.session_state[Keys.DOCTOR]["findings"]] == ["double_normalization"]
    at.checkbox(key=Keys.DOCTOR_USE_CONTRACT).check()
    app_run(at)
    at.radio(key=f"{Keys.DOCTOR_CONTRACT}_source").set_value("Path on this workstation")
    app_run(at)
    at.text_input(key=f"{Keys.DOCTOR_CONTRACT}_path").set_value(str(out / "nothing.ts"))
    app_run(at)
    assert len(app_errors(at)) == 1 and "nothing.ts" in app_errors(at)[0]
    at.text_input(key=f"{Keys.DOCTOR_CONTRACT}_path").set_value(str(out / "model.ts"))
    app_run(at)
    assert not app_errors(at)
    ids = [f["id"] for f in at.session_state[Keys.DOCTOR]["findings"]]
    assert ids == ["graph_double_normalization", "rescale_boxes"]
    assert any("contract" in c.value for c in at.caption)
    at.text_input(key="doctor_input_path").set_value(str(out / "ok.pt"))
    app_run(at)
    assert at.success and "match" in at.success[0].value
    assert any("393 / 320" in c.value for c in at.code)  # the reminder is shown with a match
