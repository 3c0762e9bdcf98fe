"""The reference on a GPU: parity with DefaultPredictor on cuda:0, fp16, CPU vs GPU, the batched audit, a stage
page and the Doctor's damage measurement. Skipped on machines without a CUDA GPU (scripts/gpu_check.sh runs them
where one is lent)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import ROOT, SAMPLE_IMAGES, SAMPLES, app_run, default_predictor, sample

pytestmark = pytest.mark.gpu

ANNOTATIONS = SAMPLES / "annotations.json"


@pytest.fixture(scope="module")
def demo_gpu():
    from d2debug.model import load_demo_model

    loaded = load_demo_model(device="cuda")
    assert loaded.device.startswith("cuda")
    return loaded


@pytest.fixture(scope="module")
def keypoint_gpu(tmp_path_factory):
    from d2debug.model import load_model
    from d2debug.tools.seeded import seeded_model

    config, weights = seeded_model("keypoint_rcnn", tmp_path_factory.mktemp("kp"))
    return load_model(config, weights, device="cuda")


def _assert_same(ours, theirs, name):
    """Every output DefaultPredictor returns, bit for bit (boxes, scores, classes, masks, keypoints)."""
    np.testing.assert_array_equal(ours.boxes, theirs.pred_boxes.tensor.cpu().numpy(), err_msg=name)
    np.testing.assert_array_equal(ours.scores, theirs.scores.cpu().numpy(), err_msg=name)
    np.testing.assert_array_equal(ours.classes, theirs.pred_classes.cpu().numpy(), err_msg=name)
    if theirs.has("pred_masks"):
        np.testing.assert_array_equal(ours.masks, theirs.pred_masks.cpu().numpy(), err_msg=name)
    if theirs.has("pred_keypoints"):
        np.testing.assert_array_equal(ours.keypoints, theirs.pred_keypoints.cpu().numpy(), err_msg=name)


@pytest.mark.parametrize("which", ["demo_gpu", "keypoint_gpu"])
def test_reference_on_cuda_is_default_predictor_on_cuda(which, request):
    from detectron2.data.detection_utils import read_image

    from d2debug.run import reference_spec, run

    loaded = request.getfixturevalue(which)
    predictor = default_predictor(loaded, "cuda:0")
    total = 0
    for p in SAMPLE_IMAGES[::4]:
        ours = run(loaded, p, reference_spec(loaded.cfg, "cuda"))
        assert ours.device.startswith("cuda"), ours.device
        theirs = predictor(read_image(str(p), format="BGR"))["instances"]
        _assert_same(ours, theirs, p.name)
        total += len(ours.boxes)
    if which == "demo_gpu":
        assert total > len(SAMPLE_IMAGES[::4])  # real detections were compared, with their masks


def test_fp16_on_cuda_runs_and_stays_close_to_the_reference(demo_gpu):
    from d2debug.compare import compare
    from d2debug.run import reference_spec, run

    before = run(demo_gpu, SAMPLE_IMAGES[0], reference_spec(demo_gpu.cfg, "cuda"))
    scores, moved = [], 0.0
    for p in SAMPLE_IMAGES[::6]:
        ref = run(demo_gpu, p, reference_spec(demo_gpu.cfg, "cuda"))
        half = run(demo_gpu, p, reference_spec(demo_gpu.cfg, "cuda").replace(precision="fp16"))
        assert half.device.startswith("cuda"), half.device
        scores.append(compare(ref, half).score)
        if len(ref.boxes) == len(half.boxes):
            moved = max(moved, float(np.abs(ref.boxes - half.boxes).max(initial=0.0)))
    assert min(scores) >= 0.8, scores  # autocast moves boxes a little; it must not lose the objects
    assert moved > 0.0  # and it did run in half precision
    after = run(demo_gpu, SAMPLE_IMAGES[0], reference_spec(demo_gpu.cfg, "cuda"))
    np.testing.assert_array_equal(after.boxes, before.boxes)  # fp16 left the fp32 model as it was


def test_cpu_and_gpu_references_agree(demo, demo_gpu):
    from d2debug.compare import compare
    from d2debug.run import reference_spec, run

    worst = 0.0
    for p in SAMPLE_IMAGES[::3]:
        cpu = run(demo, p, reference_spec(demo.cfg, "cpu"))
        gpu = run(demo_gpu, p, reference_spec(demo_gpu.cfg, "cuda"))
        assert cpu.device == "cpu" and gpu.device.startswith("cuda"), (cpu.device, gpu.device)
        assert torch.equal(cpu.input_tensor, gpu.input_tensor), p.name  # the same preprocessing, on the host
        c = compare(cpu, gpu)
        assert c.score >= 0.99, (p.name, c.score)
        if len(cpu.boxes) == len(gpu.boxes):
            worst = max(worst, float(np.abs(cpu.boxes - gpu.boxes).max(initial=0.0)))
    assert worst < 1.0, worst  # float sums in another order: sub-pixel


def test_batched_audit_equals_unbatched_on_cuda(demo_gpu, tmp_path):
    from d2debug.audit import load_dataset, run_audit

    dataset = load_dataset(ANNOTATIONS, limit=4)
    single = run_audit(demo_gpu, dataset, tmp_path / "one", write_report=False, batch=False)
    batched = run_audit(demo_gpu, dataset, tmp_path / "batch", write_report=False, batch=True)
    for a, b in zip(single.records, batched.records):
        assert a["variants"]["reference"] == b["variants"]["reference"]
        for name, va in a["variants"].items():
            vb = b["variants"][name]
            assert va["classes"] == vb["classes"], name
            assert np.allclose(va["boxes"], vb["boxes"], atol=0.05), name
            assert np.allclose(va["scores"], vb["scores"], atol=1e-3), name


def test_stage_page_runs_its_reference_on_cuda():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app_pages" / "channel_order.py"), default_timeout=300)
    app_run(at)
    caption = " ".join(str(c.value) for c in at.caption)
    assert "reference on cuda:0" in caption, caption[:500]
    assert any("Reference on cuda:0" in str(m.value) for m in at.sidebar.markdown)
    assert not at.error, [e.value for e in at.error]


def test_doctor_measures_damage_on_the_gpu_as_on_the_cpu(demo, demo_gpu):
    from d2debug.doctor import diagnose, make_user_input
    from d2debug.stages import PipelineSpec

    img = sample("val_000")
    user = make_user_input(demo.cfg, img, PipelineSpec(channel_order="swapped", value_range="0_1"))
    calls = []
    hook = demo_gpu.model.register_forward_pre_hook(lambda _m, _args: calls.append(1))  # the model on cuda:0
    try:
        on_cpu, on_gpu = diagnose(demo, img, user), diagnose(demo_gpu, img, user)
    finally:
        hook.remove()
    assert len(calls) >= 3  # the reference, the input as given and each finding's fix ran on the GPU
    assert on_gpu.ids == on_cpu.ids
    for fc, fg in zip(on_cpu.findings, on_gpu.findings):
        assert (fc.recovers is None) == (fg.recovers is None), fc.id
        if fc.recovers is not None:
            assert abs(fc.recovers - fg.recovers) < 0.05, (fc.id, fc.recovers, fg.recovers)


def test_audit_under_torchrun_on_nccl_equals_one_process(demo_gpu, tmp_path):
    """One rank per GPU under torchrun: the nccl group, cuda:LOCAL_RANK, the shard and rank 0's merge give what
    one process gives on the same GPU."""
    import json
    import subprocess
    import sys

    from d2debug.audit import load_dataset, run_audit

    out = tmp_path / "ranked"
    proc = subprocess.run([sys.executable, "-m", "d2debug", "audit", "--nproc", "1", "--device", "cuda",
                           "--images", str(ANNOTATIONS), "--limit", "3", "--out", str(out), "--no-progress", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranked = json.loads((out / "summary.json").read_text())
    assert ranked["dataset"]["world_size"] == 1
    alone = run_audit(demo_gpu, load_dataset(ANNOTATIONS, limit=3), tmp_path / "alone", write_report=False)
    by_name = {row["name"]: row for row in ranked["rows"]}
    assert [row["name"] for row in alone.summary["rows"]] == list(by_name)
    for row in alone.summary["rows"]:
        assert abs(row["f1"] - by_name[row["name"]]["f1"]) < 1e-6, row["name"]
        assert row["detections"] == by_name[row["name"]]["detections"], row["name"]
