"""Dataset audit: resumable results file, AP parity with DefaultPredictor + pycocotools, measured pitfall effects,
and the self-contained report. Small subsets only: the CPU is shared."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from d2debug.audit import (
    RESULTS_NAME,
    STANDARD_PITFALLS,
    load_dataset,
    load_summary,
    parse_variants,
    pitfalls_markdown,
    read_results,
    run_audit,
    table_records,
)
from d2debug.errors import D2DebugError

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
ANNOTATIONS = SAMPLES / "annotations.json"


def subset_json(tmp_path: Path, names: list[str]) -> Path:
    """A COCO json of a few sample images (paths made absolute-relative to the copy's folder)."""
    data = json.loads(ANNOTATIONS.read_text())
    keep = [im for im in data["images"] if Path(im["file_name"]).name in names]
    assert len(keep) == len(names)
    ids = {im["id"] for im in keep}
    for im in keep:
        im["file_name"] = os.path.relpath(SAMPLES / im["file_name"], tmp_path)
    data["images"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Inputs and the results file (no model)


def test_variant_names_and_custom_variants():
    assert [p.name for p in parse_variants(None)] == [p.name for p in STANDARD_PITFALLS]
    assert len(STANDARD_PITFALLS) == 10
    (p,) = parse_variants(["swapfix:channel_order=swapped+resize=fixed"])
    assert dict(p.changes) == {"channel_order": "swapped", "resize": "fixed"}
    with pytest.raises(D2DebugError, match="unknown pitfall"):
        parse_variants(["chanel_swap"])
    with pytest.raises(D2DebugError, match="resize_size"):
        parse_variants(["x:resize_size=0"])
    with pytest.raises(D2DebugError, match="twice"):
        parse_variants(["channel_swap", "channel_swap"])


def test_dataset_from_dir_with_annotations_gets_coco_ids(tmp_path):
    ds = load_dataset(SAMPLES / "images", ANNOTATIONS, limit=3)
    coco_ids = {Path(im["file_name"]).name: im["id"] for im in json.loads(ANNOTATIONS.read_text())["images"]}
    assert [i.image_id for i in ds.images] == [coco_ids[i.key] for i in ds.images]
    from_json = load_dataset(ANNOTATIONS, limit=3)
    assert [i.path for i in from_json.images] == [i.path for i in ds.images]
    assert from_json.coco is not None


@pytest.mark.parametrize("case", ["missing", "empty_dir", "not_coco", "missing_image", "bad_limit"])
def test_bad_dataset_input_names_the_path(tmp_path, case):
    if case == "missing":
        arg, needle = tmp_path / "nope", "nope"
    elif case == "empty_dir":
        (tmp_path / "d").mkdir()
        arg, needle = tmp_path / "d", "no image files"
    elif case == "not_coco":
        arg, needle = tmp_path / "x.json", "x.json"
        arg.write_text("[1, 2]")
    elif case == "missing_image":
        arg, needle = tmp_path / "c.json", "gone.jpg"
        arg.write_text(json.dumps({"images": [{"id": 1, "file_name": "gone.jpg"}], "categories": []}))
    else:
        with pytest.raises(D2DebugError, match="--limit 0"):
            load_dataset(ANNOTATIONS, limit=0)
        return
    with pytest.raises(D2DebugError, match=needle):
        load_dataset(arg)


def test_torn_last_line_is_dropped_and_a_damaged_middle_line_refused(tmp_path):
    f = tmp_path / RESULTS_NAME
    header = json.dumps({"kind": "header", "settings": {"a": 1}})
    rec = json.dumps({"kind": "image", "index": 0, "key": "a.jpg"})
    f.write_text(header + "\n" + rec + "\n" + '{"kind":"image","index":1,"ke')
    state = read_results(f)
    assert state.settings == {"a": 1} and len(state.records) == 1 and state.dropped_tail
    assert state.good_bytes == len(header) + len(rec) + 2
    f.write_text(header + "\n" + "{garbage\n" + rec + "\n")
    with pytest.raises(D2DebugError, match="line 2 is damaged"):
        read_results(f)


# ---------------------------------------------------------------------------------------------------------------
# Interrupted audits resume (real subprocesses, real signals)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def _start(cmd):
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(proc, results: Path, n: int) -> None:
    while len([ln for ln in _lines(results) if ln.endswith(b"\n")]) < n:
        assert proc.poll() is None, f"audit ended before {n} lines: {proc.communicate()}"
        time.sleep(0.02)


def test_interrupted_audit_resumes_without_redoing_images(tmp_path):
    """SIGTERM after the first image, kill -9 midway, a torn last line: the third run computes only the
    images not yet on disk, keeps the finished lines byte for byte, and ends equal to a clean run."""
    subset = subset_json(tmp_path, ["val_000.jpg", "val_001.jpg", "val_002.jpg", "val_003.jpg", "val_004.jpg"])
    out = tmp_path / "audit"
    cmd = [sys.executable, "-m", "d2debug", "audit", "--images", str(subset), "--out", str(out),
           "--variants", "channel_swap", "range_0_1", "--no-progress"]
    results = out / RESULTS_NAME

    # 1. SIGTERM once one image is saved: a clean stop with the resume hint.
    proc = _start(cmd)
    _wait_for_lines(proc, results, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert all(ln.endswith(b"\n") for ln in _lines(results))
    after_term = len(_lines(results)) - 1
    assert 1 <= after_term < 5

    # 2. kill -9 once at least two more images are saved.
    proc = _start(cmd)
    _wait_for_lines(proc, results, after_term + 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kept = _lines(results)
    k = len(kept) - 1
    assert k < 5, "the audit finished before it could be killed; the test needs a slower subset"
    # A write torn by a crash leaves half a line at the end.
    with open(results, "ab") as f:
        f.write(b'{"kind":"image","index":4,"key":"images/val_0')

    # 3. Resume: only the missing images are computed; finished lines are untouched.
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed {k} image(s), computed {5 - k}" in done.stdout
    assert "torn last line" in done.stderr
    final = _lines(results)
    assert final[: k + 1] == kept
    assert len(final) == 6 and all(ln.endswith(b"\n") for ln in final)
    records = [json.loads(ln) for ln in final[1:]]
    assert [r["index"] for r in records] == list(range(5))
    assert len({r["run_id"] for r in records[:after_term]}) == 1
    assert {r["run_id"] for r in records[k:]}.isdisjoint(r["run_id"] for r in records[:k])

    # 4. A clean run gives the same results and summary.
    clean_out = tmp_path / "clean"
    clean_cmd = [str(clean_out) if c == str(out) else c for c in cmd] + ["--json"]
    clean = subprocess.run(clean_cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr
    clean_records = [json.loads(ln) for ln in _lines(clean_out / RESULTS_NAME)[1:]]
    strip = ("run_id", "finished_at", "seconds")
    assert [{k: v for k, v in r.items() if k not in strip} for r in records] == \
           [{k: v for k, v in r.items() if k not in strip} for r in clean_records]
    resumed_summary = json.loads((out / "summary.json").read_text())
    clean_summary = json.loads(clean.stdout)
    assert resumed_summary["rows"] == clean_summary["rows"]
    assert clean_summary["run"]["computed"] == 5 and clean_summary["run"]["resumed"] == 0

    # 5. Other settings on the same results file: refused with one line, file untouched.
    before = results.read_bytes()
    other = subprocess.run(cmd[:-3] + ["channel_swap", "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2
    err = [ln for ln in other.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "variants differ" in err[0] and str(results) in err[0]
    assert results.read_bytes() == before


# ---------------------------------------------------------------------------------------------------------------
# Measured on the real demo model


AUDIT_IMAGES = ["val_000.jpg", "val_001.jpg", "val_005.jpg", "val_044_exif6.jpg", "val_034_large.png"]


@pytest.fixture(scope="module")
def audited(demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    ds = load_dataset(subset_json(tmp, AUDIT_IMAGES))
    pitfalls = list(STANDARD_PITFALLS) + parse_variants(["same:decoder=detectron2+resize_backend=pil"])
    audit = run_audit(demo, ds, tmp / "out", pitfalls)
    return audit, ds


def row(audit, name):
    return next(r for r in audit.summary["rows"] if r["name"] == name)


def per_image(audit, key_part, name):
    rec = next(r for r in audit.records if key_part in r["key"])
    return rec["agreement"][name]


def test_reference_ap_equals_pycocotools_on_default_predictor(demo, audited):
    import contextlib
    import io

    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    audit, ds = audited
    cfg = demo.cfg.clone()
    predictor = DefaultPredictor(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ANNOTATIONS))
    cat_ids = sorted(gt.getCatIds())
    dets = []
    for item in ds.images:
        inst = predictor(read_image(str(item.path), format="BGR"))["instances"].to("cpu")
        for b, s, c in zip(inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()):
            dets.append({"image_id": item.image_id, "category_id": cat_ids[int(c)], "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    assert dets, "DefaultPredictor found nothing on the subset: the check would be vacuous"
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = [i.image_id for i in ds.images]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ref = row(audit, "reference")
    assert ref["AP"] == max(0.0, float(ev.stats[0]))
    assert ref["AP50"] == max(0.0, float(ev.stats[1]))
    assert ref["detections"] == len(dets)


def test_reference_agrees_exactly_and_a_noop_variant_too(audited):
    audit, _ = audited
    ref = row(audit, "reference")
    assert ref["f1"] == 1.0 and ref["dAP"] == 0.0
    assert ref["matched"] == ref["detections"] and ref["missed"] == ref["extra"] == ref["class_flips"] == 0
    same = row(audit, "same")
    assert same["f1"] == 1.0 and same["AP"] == ref["AP"]
    for rec in audit.records:
        assert rec["variants"]["same"]["boxes"] == rec["variants"]["reference"]["boxes"]


def test_pitfalls_do_what_the_data_predicts(audited):
    audit, _ = audited
    ref = row(audit, "reference")
    assert ref["AP"] > 0.5, ref
    # Colour is the only cue between red_disc and blue_disc: swapping channels flips them.
    swap = row(audit, "channel_swap")
    assert swap["AP"] < ref["AP"] - 0.05 and swap["f1"] < 0.9 and swap["class_flips"] > 0
    # 0..1 input: after the model's own (x - 127.5) / 127.5 the backbone sees a near-constant image; the
    # model-zoo mean/std and a second (ImageNet) normalization push it just as far from what it learned.
    for name in ("range_0_1", "model_zoo_norm", "imagenet_double_norm"):
        assert row(audit, name)["AP"] < 0.02, name
    # green_square vs green_wide_rect differ only in aspect: a square stretch turns one into the other.
    assert row(audit, "fixed_square")["class_flips"] >= 1
    # The halftone-printed large image aliases under nearest and non-antialiased cv2 downscaling.
    for name in ("nearest", "cv2_bilinear"):
        assert per_image(audit, "large", name)["f1"] < 1.0, name
    # Without height/width the boxes come back in the resized frame: AP collapses although the model sees
    # exactly the reference input.
    assert row(audit, "boxes_resized_frame")["AP"] < ref["AP"] - 0.3
    # PIL without exif_transpose differs only on the image with an EXIF rotation.
    assert per_image(audit, "exif6", "pil_no_exif")["f1"] < 1.0
    for key in ("val_000", "val_001", "val_005", "large"):
        assert per_image(audit, key, "pil_no_exif")["f1"] == 1.0
    # Rows are sorted by damage (AP lost), the reference first.
    d = [r["dAP"] for r in audit.summary["rows"][1:]]
    assert d == sorted(d)


def test_outputs_markdown_and_self_contained_report(audited):
    audit, _ = audited
    md = audit.outputs["markdown"].read_text()
    assert md.splitlines()[0].startswith("| pitfall | stage change | AP | dAP | AP50 |")
    assert md.splitlines()[2].startswith("| reference")
    html = audit.outputs["report"].read_text()
    assert "<svg" in html and "<table>" in html
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert html.count("data:image/png;base64,") == sum(len(v) for v in audit.summary["worst"].values()) > 0
    summary = json.loads(audit.outputs["summary"].read_text())
    assert summary["rows"] == json.loads(json.dumps(audit.summary["rows"]))


def test_other_settings_are_refused_or_set_aside(demo, audited, tmp_path):
    audit, ds = audited
    out = tmp_path / "copy"
    shutil.copytree(audit.out_dir, out)
    before = (out / RESULTS_NAME).read_bytes()
    with pytest.raises(D2DebugError, match="variants differ"):
        run_audit(demo, ds, out, parse_variants(["channel_swap"]), write_report=False)
    assert (out / RESULTS_NAME).read_bytes() == before
    one = load_dataset(ANNOTATIONS, limit=1)
    again = run_audit(demo, one, out, [], restart=True, write_report=False)
    assert len(again.set_aside) == 1 and again.set_aside[0].read_bytes() == before
    assert again.computed == 1 and again.resumed == 0
    # A second restart in the same second never overwrites the first one's file.
    third = run_audit(demo, one, out, [], restart=True, write_report=False)
    assert third.set_aside[0] != again.set_aside[0] and again.set_aside[0].read_bytes() == before


def test_cli_audits_a_user_model_by_path(tiny_weights, tmp_path, capsys):
    """A second real model (BGR, other classes) given by path; one image, one pitfall; JSON on stdout."""
    from d2debug.cli import main

    cfg = ROOT / "tests" / "configs" / "tiny_bgr.yaml"
    out = tmp_path / "tiny"
    code = main(["audit", "--config", str(cfg), "--weights", str(tiny_weights), "--classes", "a,b,c",
                 "--images", str(SAMPLES / "images"), "--limit", "1", "--variants", "channel_swap",
                 "--out", str(out), "--no-progress", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in summary["rows"]] == ["reference", "channel_swap"]
    assert summary["rows"][0]["AP"] is None  # a folder without annotations: agreement only
    assert summary["model"]["input_format"] == "BGR"
    assert (out / "report.html").is_file()
    # Bad input: one line naming the value, exit 2.
    assert main(["audit", "--images", str(SAMPLES / "images"), "--variants", "bogus", "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_a_pitfall_that_feeds_the_reference_input_reuses_its_forward_pass(demo):
    from d2debug.run import ForwardCache, reference_spec, run
    from d2debug.stages import decode

    ref_spec = reference_spec(demo.cfg, "cpu")
    no_exif = ref_spec.replace(decoder="pil")
    for name, reused in (("val_000.jpg", 1), ("val_044_exif6.jpg", 0)):
        path = SAMPLES / "images" / name
        cache = ForwardCache()
        ref = run(demo, decode(path, "detectron2"), ref_spec, cache)
        var = run(demo, decode(path, "pil"), no_exif, cache)
        assert cache.hits == reused
        plain = run(demo, path, no_exif)  # what the pipeline gives on its own, with no cache
        assert np.array_equal(var.boxes, plain.boxes) and np.array_equal(var.scores, plain.scores)
        assert np.array_equal(var.classes, plain.classes) and var.spec == no_exif
        assert torch.equal(var.backbone_input, plain.backbone_input)
        if reused:
            assert np.array_equal(var.boxes, ref.boxes)


def test_omitting_height_width_reuses_the_forward_pass_and_equals_a_plain_run(demo):
    from d2debug.run import ForwardCache, reference_spec, run
    from d2debug.stages import decode

    ref_spec = reference_spec(demo.cfg, "cpu")
    omit = ref_spec.replace(original_size="omit")
    path = SAMPLES / "images" / "val_001.jpg"  # 841x473 -> 569x320: the frames differ
    cache = ForwardCache()
    dec = decode(path, "detectron2")
    ref = run(demo, dec, ref_spec, cache)
    var = run(demo, dec, omit, cache)
    plain = run(demo, path, omit)
    assert cache.hits == 1 and var.raw is ref.raw, "post-processed from the reference's own forward pass"
    assert var.frame == "resized" and var.spec == omit
    assert np.array_equal(var.boxes, plain.boxes) and np.array_equal(var.scores, plain.scores)
    assert np.array_equal(var.classes, plain.classes)
    assert not np.array_equal(var.boxes, ref.boxes), "another frame: the boxes move"
    again = run(demo, dec, ref_spec, cache)  # the cached instances were not changed by post-processing
    assert np.array_equal(again.boxes, ref.boxes)


def test_every_table_prints_ap_like_numbers_alike():
    """The dashboard's pitfall table, the Markdown table and the HTML report print each number the same way:
    every AP-like column (box, mask, keypoint) in percent with one decimal, next to each other."""
    import re

    from d2debug.audit.summary import table_cells
    from d2debug.samples import DEMO_AUDIT

    summary = load_summary(DEMO_AUDIT)
    head, rows = table_cells(summary)
    records, formats = table_records(summary)
    assert all(list(r) == head for r in records)
    # The dashboard's numbers, shown with their formats, are the cells the other tables print ...
    shown = [[v if c not in formats else "n/a" if v is None else formats[c] % v for c, v in r.items()]
             for r in records]
    assert shown == rows
    # ... and stay numbers, so its columns sort by value.
    assert all(isinstance(r["AP"], float) and isinstance(r["matched"], int) for r in records)
    ap_like = [c for c in head if c.endswith("AP") or c.endswith("AP50")]
    assert {"AP", "mask AP"} <= set(ap_like)
    for cells in rows:
        for c, cell in zip(head, cells):
            if c in ap_like:
                assert re.fullmatch(r"[+-]?\d+\.\d", cell), (c, cell)
    ref = dict(zip(head, rows[0]))
    assert (ref["AP"], ref["mask AP"]) == ("96.9", "97.1")
    assert (records[0]["AP"], records[0]["mask AP"]) == (96.9, 97.1)
    assert ref["AP"] in pitfalls_markdown(summary) and ref["mask AP"] in pitfalls_markdown(summary)
