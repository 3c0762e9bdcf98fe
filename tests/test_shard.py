"""The audit sharded under torchrun: real processes, gloo on the CPU, the demo model. Two ranks give the
one-process audit exactly; a rank killed with SIGKILL, then the same command, gives a clean run; a rerun with
another number of ranks neither loses nor repeats an image."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from d2debug.audit import assign, load_dataset, read_results, results_files, run_audit
from d2debug.audit.command import audit_args, audit_commands, torchrun_command
from d2debug.pitfalls import STANDARD_PITFALLS

from helpers import ROOT, SAMPLES

TORCHRUN = Path(sys.executable).with_name("torchrun")
ANNOTATIONS = SAMPLES / "annotations.json"
LIMIT = 12  # images: about a second each with every pitfall on one thread, so a kill lands mid-run
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # every process on one intra-op thread, as torchrun sets


def _audit_argv(out: Path, progress: bool = False) -> list[str]:
    return ["-m", "d2debug", "audit", "--images", str(ANNOTATIONS), "--limit", str(LIMIT), "--out", str(out),
            *([] if progress else ["--no-progress"])]


def _torchrun(out: Path, nproc: int, progress: bool = False) -> subprocess.Popen:
    return subprocess.Popen([str(TORCHRUN), "--nproc-per-node", str(nproc), *_audit_argv(out, progress)], cwd=ROOT,
                            env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _comparable(summary: dict) -> dict:
    """A summary without what differs between runs by design: the run's own counts and id, the rank count."""
    s = json.loads(json.dumps(summary))
    s.pop("run")
    s["dataset"].pop("world_size")
    return s


def _lines(out: Path) -> list[dict]:
    """Every complete image line of every shard (a torn last line is not one)."""
    return [rec for path in results_files(out) for rec in read_results(path).records]


def _rank_pid(parent: int, rank: int, wait: float = 120) -> int:
    """The pid of torchrun's worker process with ``RANK=rank``."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under torchrun {parent}")


def _kill_after_first_image(proc: subprocess.Popen, out: Path, rank: int) -> None:
    """SIGKILL rank ``rank`` as soon as its shard holds one finished image, then wait for torchrun to stop."""
    pid = _rank_pid(proc.pid, rank)
    shard = out / ("results.jsonl" if rank == 0 else f"results.rank{rank}.jsonl")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if shard.exists() and len(read_results(shard).records) >= 1:
            break
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    code, _, err = _finish(proc)
    assert code != 0, err


@pytest.fixture(scope="module")
def single(demo, tmp_path_factory):
    """The one-process audit of the same images, on one thread like each rank."""
    dataset = load_dataset(ANNOTATIONS, limit=LIMIT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        audit = run_audit(demo, dataset, tmp_path_factory.mktemp("single"), write_report=False)
    finally:
        torch.set_num_threads(threads)
    return audit


def _assert_same_as_single(out: Path, single) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert _comparable(summary) == _comparable(single.summary)
    records = {r["index"]: r for r in _lines(out)}
    assert sorted(records) == list(range(LIMIT))
    for ref in single.records:
        got = records[ref["index"]]
        assert (got["key"], got["variants"], got["agreement"]) == (ref["key"], ref["variants"], ref["agreement"])


def test_assign_deals_out_the_unfinished_images_in_turn():
    shares = [assign(10, [1, 4], r, 3) for r in range(3)]
    assert shares == [[0, 5, 8], [2, 6, 9], [3, 7]]  # 0 2 3 5 6 7 8 9 dealt out in turn
    assert sorted(sum(shares, [])) == [i for i in range(10) if i not in (1, 4)]
    assert assign(3, [0, 1, 2], 0, 2) == [] and assign(5, [], 0, 1) == list(range(5))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch")
def test_two_ranks_under_torchrun_equal_one_process(single, tmp_path):
    out = tmp_path / "two"
    code, stdout, err = _finish(_torchrun(out, 2))
    assert code == 0, err[-2000:]
    _assert_same_as_single(out, single)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["world_size"] == 2 and single.summary["dataset"]["world_size"] == 1
    assert summary["run"]["computed"] == LIMIT and sorted(summary["run"]["computed_per_rank"]) == [LIMIT // 2] * 2
    lines = _lines(out)
    assert {r["rank"] for r in lines} == {0, 1} and len(lines) == LIMIT
    assert [p.name for p in results_files(out)] == ["results.jsonl", "results.rank1.jsonl"]
    # Only rank 0 reports: one table, and the images of every rank in it.
    assert stdout.count("| reference (DefaultPredictor) |") == 1
    assert f"computed {LIMIT} on 2 ranks" in stdout
    assert (out / "report.html").stat().st_size > 0 and (out / "pitfalls.md").exists()


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch")
def test_a_rank_killed_then_the_same_command_equals_a_clean_run(single, tmp_path):
    out = tmp_path / "killed"
    _kill_after_first_image(_torchrun(out, 2), out, rank=1)
    before = _lines(out)
    assert 1 <= len(before) < LIMIT and not (out / "summary.json").exists()
    code, stdout, err = _finish(_torchrun(out, 2, progress=True))
    assert code == 0, err[-2000:]
    _assert_same_as_single(out, single)
    lines = _lines(out)
    assert len(lines) == LIMIT  # nothing computed twice
    # One progress bar, rank 0's, counting every rank's images from where the killed run stopped.
    bars = [b for b in err.replace("\r", "\n").splitlines() if "pipelines/img, 2 ranks" in b]
    assert bars and f"{len(before)}/{LIMIT}" in bars[0] and f"{LIMIT}/{LIMIT}" in bars[-1], err[-1500:]
    assert f"resumed {len(before)} image(s), computed {LIMIT - len(before)} on 2 ranks" in stdout


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch")
def test_another_number_of_ranks_neither_loses_nor_repeats_an_image(demo, single, tmp_path):
    out = tmp_path / "reshard"
    _kill_after_first_image(_torchrun(out, 2), out, rank=0)
    before = {r["index"] for r in _lines(out)}
    assert 1 <= len(before) < LIMIT
    # Three ranks now, started by `audit --nproc 3` (torch's launcher); rank 2 has no shard yet.
    code = subprocess.run([sys.executable, *_audit_argv(out), "--nproc", "3"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert code.returncode == 0, code.stderr[-2000:]
    lines = _lines(out)
    assert sorted(r["index"] for r in lines) == list(range(LIMIT))  # each image exactly once over the shards
    assert {r["index"] for r in lines if r["rank"] == 2} and before <= {r["index"] for r in lines}
    _assert_same_as_single(out, single)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["world_size"] == 3 and summary["run"]["resumed"] == len(before)
    # And one process alone on the sharded folder: everything is done, nothing is run again.
    torch_threads = torch.get_num_threads()
    alone = run_audit(demo, load_dataset(ANNOTATIONS, limit=LIMIT), out, write_report=False)
    torch.set_num_threads(torch_threads)
    assert (alone.computed, alone.resumed, len(_lines(out))) == (0, LIMIT, LIMIT)
    assert _comparable(alone.summary) == _comparable(single.summary)


def test_the_command_for_the_settings_on_screen(demo, tiny_weights):
    from d2debug.model import load_model

    args = audit_args(demo, ANNOTATIONS, None, ["channel_swap", "no_resize"], 5, "/tmp/a b")
    assert args == ["audit", "--images", str(ANNOTATIONS), "--variants", "channel_swap", "no_resize", "--limit", "5",
                    "--out", "/tmp/a b"]
    assert audit_args(demo, ANNOTATIONS, variants=[p.name for p in STANDARD_PITFALLS]) == [
        "audit", "--images", str(ANNOTATIONS)]
    cmds = audit_commands(args, 8, 2, host="node1")
    assert cmds["this machine"] == torchrun_command(args, 8) == (
        f"torchrun --nproc-per-node 8 -m d2debug audit --images {ANNOTATIONS} --variants channel_swap no_resize "
        "--limit 5 --out '/tmp/a b'")
    assert cmds["every machine"].startswith("torchrun --nproc-per-node 8 --nnodes 2 --rdzv-backend c10d "
                                            "--rdzv-endpoint node1:29400 --rdzv-id d2debug-audit -m d2debug audit")
    assert cmds["one process"].startswith("python -m d2debug audit --images")
    user = load_model(ROOT / "tests" / "configs" / "tiny_bgr.yaml", tiny_weights, device="cpu", class_names=["a", "b", "c"])
    assert audit_args(user, ANNOTATIONS)[:8] == ["audit", "--config", str(user.config_path), "--weights",
                                                 str(user.weights_path), "--classes", "a,b,c", "--images"]


def test_dataloader_workers_give_the_records_of_no_workers(demo, tmp_path):
    dataset = load_dataset(ANNOTATIONS, limit=3)
    plain = run_audit(demo, dataset, tmp_path / "w0", write_report=False, workers=0)
    ahead = run_audit(demo, dataset, tmp_path / "w2", write_report=False, workers=2)
    assert [(r["key"], r["variants"], r["agreement"]) for r in ahead.records] == [
        (r["key"], r["variants"], r["agreement"]) for r in plain.records]
    assert _comparable(ahead.summary) == _comparable(plain.summary)


def test_batched_forward_passes_group_same_shape_inputs(demo, tmp_path):
    """What the audit does on a GPU, forced on the CPU: fewer model calls, the same detections (to float noise);
    the reference never in a batch, so it stays exactly DefaultPredictor's."""
    dataset = load_dataset(ANNOTATIONS, limit=2)
    calls = []
    hook = demo.model.register_forward_pre_hook(lambda _m, args: calls.append(len(args[0])))
    try:
        single = run_audit(demo, dataset, tmp_path / "one", write_report=False, batch=False)
        n_single, calls[:] = list(calls), []
        batched = run_audit(demo, dataset, tmp_path / "batch", write_report=False, batch=True)
    finally:
        hook.remove()
    assert max(n_single) == 1 and max(calls) > 1 and len(calls) < len(n_single)
    for a, b in zip(single.records, batched.records):
        assert a["variants"]["reference"] == b["variants"]["reference"]
        for name, va in a["variants"].items():
            vb = b["variants"][name]
            assert va["classes"] == vb["classes"], name
            assert np.allclose(va["boxes"], vb["boxes"], atol=0.05) and np.allclose(va["scores"], vb["scores"], atol=1e-3)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch")
def test_ranks_without_shared_storage_send_rank_0_what_it_cannot_see(single, tmp_path):
    proc = subprocess.run([str(TORCHRUN), "--nproc-per-node", "2", str(ROOT / "tests" / "shard_private_disks.py"),
                           str(tmp_path), str(ANNOTATIONS), str(LIMIT)], cwd=ROOT, env={**ENV, "PYTHONPATH": str(ROOT)},
                          capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [p.name for p in results_files(tmp_path / "disk0")] == ["results.jsonl"]
    assert [p.name for p in results_files(tmp_path / "disk1")] == ["results.rank1.jsonl"]
    assert _comparable(got["summary"]) == _comparable(single.summary)
    assert [(r["index"], r["variants"]) for r in got["records"]] == [(r["index"], r["variants"]) for r in single.records]
    assert {r["rank"] for r in got["records"]} == {0, 1}


def test_a_bad_path_under_nproc_is_one_line_from_rank_0(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "d2debug", "audit", "--images", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "out"), "--nproc", "2"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "nope" in errors[0], errors
