"""The benchmark command: behaviour only (it runs, prints every row with its ratio and target, measures what it
says it measures). No timed assertions: times on a shared machine are noise."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from d2debug.cli import main
from d2debug.errors import D2DebugError
from d2debug.memory import peak_rss_mb, release_heap, rss_mb
from d2debug.run import reference_spec, run
from d2debug.tools.bench import CLOCKS, TARGETS, Stopwatch, shared_default_predictor, toggle
from d2debug.tools.bench_browser import make_large_image
from d2debug.tools.bench_report import BenchResult, to_markdown, to_text
from d2debug.tools.serve import CHROMIUM

from helpers import ROOT, SAMPLES, sample

TIMED_ROWS = ["1", "2", "3", "4", "4b"]


@pytest.fixture(scope="module")
def two_images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bench_images")
    for name in ("val_000.jpg", "val_006.jpg"):
        shutil.copy(SAMPLES / "images" / name, d / name)
    return d


def _bench(capsys, two_images, *extra) -> tuple[int, str, str]:
    code = main(["bench", "--models", "demo", "--images", str(two_images), "--repeats", "1", "--threads", "1",
                 "--rows", "predictor,reference,toggle,audit", "--variants", "channel_swap", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_command_prints_every_row_with_a_ratio_and_its_target(capsys, two_images):
    code, out, err = _bench(capsys, two_images)
    assert code == 0, err
    table = [line for line in out.splitlines() if line.startswith("demo ")]
    assert [line.split()[2] for line in table] == TIMED_ROWS, out
    for line in table:
        ratio = next(tok for tok in line.split() if tok.endswith("x") and tok[:-1].replace(".", "").isdigit())
        assert float(ratio[:-1]) > 0, line
    assert "1.00x row 1" in table[0]
    assert "<= 1.05" in table[1] and "<= 1.5" in table[2] and "<= 1.1" in table[3]  # the demo model's targets
    assert "2 pipelines x 2 images" in table[3]
    assert "the GPU rows are skipped" in out or "cuda" in out


def test_json_has_the_rows_ratios_and_the_toggle_breakdown(capsys, two_images):
    code, out, err = _bench(capsys, two_images, "--json", "--clock", "cpu")
    assert code == 0, err
    res = json.loads(out)
    rows = {r["row"]: r for r in res["rows"] if r["device"] == "cpu"}
    assert sorted(rows) == TIMED_ROWS
    assert rows["1"]["ratio"] == 1.0
    for key in TIMED_ROWS:
        assert math.isfinite(rows[key]["ratio"]) and rows[key]["ratio"] > 0 and rows[key]["value"] > 0
    assert rows["2"]["target"] == TARGETS["reference"][0] and rows["3"]["target"] == TARGETS["toggle"][0]
    assert rows["2"]["met"] == (rows["2"]["ratio"] <= rows["2"]["target"])
    assert len(res["images"]) == 2 and res["repeats"] == 1
    assert res["environment"]["clock"] == "cpu" and res["environment"]["torch_threads"] == 1
    parts = res["details"]["demo/cpu/toggle_breakdown_s"]
    assert set(parts) == {"variant_run", "compare_stats_drawing", "encoding"}
    assert all(v > 0 for v in parts.values())
    audit = res["details"]["demo/cpu/audit"]
    assert audit["pipelines"] == ["reference", "channel_swap"] and audit["images"] == 2
    # The printers show every row with its ratio.
    result = BenchResult.from_dict(res)
    assert result.to_dict() == res
    text, md = to_text(result), to_markdown(result)
    for r in result.rows:
        assert f"{r.ratio:.2f}x" in text and f"{r.ratio:.2f}x" in md
    assert md.splitlines()[0].startswith("| model |")


def test_bad_arguments_fail_in_one_line(capsys):
    for args in (["--rows", "predictor,nonsense"], ["--repeats", "0"], ["--models", "r101"],
                 ["--variants", "no_such_pitfall"], ["--threads", "0"]):
        code = main(["bench", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (args, err)


def test_the_floor_is_defaultpredictor_and_equals_the_reference(demo):
    """Row 1's predictor is detectron2's own DefaultPredictor.__call__ on the loaded model: same detections as
    d2debug's reference, exactly (so rows 1 and 2 time the same work)."""
    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor

    path = sample("val_006")
    pred = shared_default_predictor(demo)
    assert isinstance(pred, DefaultPredictor) and type(pred).__call__ is DefaultPredictor.__call__
    inst = pred(read_image(str(path), format="BGR"))["instances"].to("cpu")
    ref = run(demo, path, reference_spec(demo.cfg, "cpu"))
    assert len(ref.boxes) > 0
    np.testing.assert_array_equal(inst.pred_boxes.tensor.numpy(), ref.boxes)
    np.testing.assert_array_equal(inst.scores.numpy(), ref.scores)


def test_toggle_is_the_page_computation(demo):
    from d2debug.session import prepare_reference

    path = sample("val_006")
    ref_spec = reference_spec(demo.cfg, "cpu")
    ref = prepare_reference(demo, path, ref_spec)
    same, parts = toggle(demo, path, ref_spec, ref)
    assert same.agreement.f1 == 1.0 and same.differences == {}
    assert set(parts) == {"variant_run", "compare_stats_drawing", "encoding"}
    swapped, _ = toggle(demo, path, ref_spec.replace(channel_order="swapped"), ref)
    assert swapped.agreement.f1 < 1.0, "val_006's red and blue discs flip when the channels are swapped"
    assert swapped.png().startswith(b"\x89PNG")


def test_toggle_parts_are_read_from_the_clock_it_is_given(demo):
    """No clock of the module's own: a toggle reads the one its run hands it (here, one tick per reading)."""
    from d2debug.session import prepare_reference

    path = sample("val_006")
    ref_spec = reference_spec(demo.cfg, "cpu")
    ticks = iter(range(100))
    _view, parts = toggle(demo, path, ref_spec.replace(channel_order="swapped"),
                          prepare_reference(demo, path, ref_spec), lambda: float(next(ticks)))
    assert parts == {"variant_run": 1.0, "compare_stats_drawing": 1.0, "encoding": 1.0}


def test_stopwatch_times_with_the_named_clock():
    assert Stopwatch.named("cpu", "cpu").now is CLOCKS["cpu"] is time.process_time
    assert Stopwatch.named("wall", "cpu").now is time.perf_counter
    ticks = iter([10.0, 12.5])
    assert Stopwatch("cpu", lambda: next(ticks)).timed(lambda: None) == 2.5
    with pytest.raises(D2DebugError, match="--clock 'sundial'"):
        Stopwatch.named("sundial", "cpu")


def test_large_image_is_twelve_megapixels(tmp_path):
    from PIL import Image

    path = make_large_image(tmp_path / "big.jpg")
    with Image.open(path) as im:
        assert im.size[0] * im.size[1] >= 12_000_000


def test_peak_rss_of_this_process_is_read():
    import os

    assert peak_rss_mb(os.getpid()) >= rss_mb() > 50


def test_release_heap_gives_freed_heap_pages_back():
    # 160 MB in 64 KB blocks (under malloc's mmap threshold: they live in the heap), all freed but the last one,
    # which pins the top of the heap: without a trim the pages stay resident.
    blocks = [bytearray(64 * 1024) for _ in range(2560)]
    last = blocks[-1]
    del blocks
    before = rss_mb()
    assert release_heap() is True
    assert before - rss_mb() > 100
    assert len(last) == 64 * 1024


def test_trim_if_grown_trims_only_past_its_margin():
    """In a fresh process: after a long test session the heap's free pages make how much a new allocation adds to
    the resident size depend on what ran before."""
    code = """
from d2debug.memory import rss_mb, trim_if_grown
trim_if_grown(0)  # sets the floor at what is resident now
assert trim_if_grown(10_000) is False  # nowhere near grown by 10 GB
blocks = [bytearray(64 * 1024) for _ in range(2560)]  # 160 MB of heap, then freed but the top block
last = blocks[-1]
del blocks
grown = rss_mb()
assert trim_if_grown(100) is True and grown - rss_mb() > 100, (grown, rss_mb())
assert trim_if_grown(100) is False  # the floor moved to what was left
assert len(last) == 64 * 1024
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="the memory row drives Debian's chromium at /usr/bin/chromium")
def test_memory_row_measures_a_real_dashboard(capsys):
    code = main(["bench", "--rows", "memory", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads(out.out)
    rows = {r["row"]: r for r in res["rows"]}
    assert sorted(rows) == ["5", "5b"]
    mem = res["details"]["memory_mb"]
    assert mem["dashboard_after_sample_page"] >= mem["dashboard_idle"] > 0
    assert mem["dashboard_after_12mp_toggle"] >= mem["dashboard_after_12mp_page"] >= mem["dashboard_after_sample_page"]
    assert rows["5b"]["value"] == mem["dashboard_after_12mp_toggle"] or abs(
        rows["5b"]["value"] - mem["dashboard_after_12mp_toggle"]) < 0.1
    assert all(r["ratio"] > 0 for r in rows.values())


def test_long_run_rows_measure_real_audits(tmp_path):
    """The audit memory and ranks rows on a few images: real audits in their own processes, every number read
    from them (no timing asserted)."""
    from d2debug.tools.bench_long import bench_audit_memory, bench_ranks, copies

    folder = copies(tmp_path / "c", 50)
    assert len(list(folder.iterdir())) == 50 and (folder / "00048.jpg").read_bytes() == (folder / "00000.jpg").read_bytes()
    rows, details = bench_audit_memory(small=2, large=4, threads=1)
    assert [r.row for r in rows] == ["6", "6b", "6c"]
    got = details["audit_memory"]
    assert all(got[k]["peak_mb"] > 100 and got[k]["seconds_per_image"] > 0.01 for k in ("small", "large", "small_kept", "small_every"))
    assert rows[0].ratio == got["large"]["peak_mb"] / got["small"]["peak_mb"]
    rows, details = bench_ranks(n=4)
    assert [r.row for r in rows] == ["7", "7b"]
    runs = details["ranks"]
    assert {k: v["images"] for k, v in runs.items()} == {"one_process": 4, "two_ranks": 4, "one_process_worker": 4}
    assert all(r.ratio > 0 for r in rows)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="the dashboard row drives Debian's chromium at /usr/bin/chromium")
def test_views_row_pages_through_images_on_a_real_dashboard():
    from d2debug.tools.bench_long import bench_dashboard_images

    rows, details = bench_dashboard_images(views=3, marks_at=(2, 3))
    marks = details["dashboard_views"]["marks"]
    assert [m[0] for m in marks] == [1, 2, 3] and all(m[1] > 100 for m in marks)
    assert rows[0].value == marks[-1][1] and rows[0].ratio == marks[-1][1] / marks[1][1]
    assert details["dashboard_views"]["seconds_per_image_last"] > 0
