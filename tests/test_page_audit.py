"""AppTest for the dataset-audit and config-diff pages on the real demo model: widgets by key, no exceptions,
bad input shows st.error and the page keeps working."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from d2debug.ui.state import Keys

from helpers import app_errors as errors
from helpers import app_run as run

ROOT = Path(__file__).resolve().parent.parent
AUDIT_PAGE = str(ROOT / "app_pages" / "audit.py")
DIFF_PAGE = str(ROOT / "app_pages" / "config_diff.py")
TIMEOUT = 600  # the CPU is shared; an audit of a few images runs many forward passes
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_audit_page_runs_resumes_and_survives_bad_input(tmp_path):
    at = run(AppTest.from_file(AUDIT_PAGE, default_timeout=TIMEOUT))
    assert not errors(at)
    assert Keys.AUDIT not in at.session_state

    # A folder that does not exist: one error naming it, nothing else breaks.
    at.radio(key="audit_source").set_value("Folder or COCO json on this workstation")
    run(at)
    at.text_input(key="audit_images").set_value(str(tmp_path / "nope"))
    at.button(key="audit_run").click()
    run(at)
    assert any("nope" in e for e in errors(at)), errors(at)
    assert Keys.AUDIT not in at.session_state

    # Two sample images, two pitfalls, into a known folder.
    at.text_input(key="audit_images").set_value(str(ROOT / "sample_data" / "annotations.json"))
    at.number_input(key="audit_limit").set_value(2)
    at.multiselect(key="audit_variants").set_value(["channel_swap", "range_0_1"])
    out = tmp_path / "out"
    at.text_input(key="audit_out").set_value(str(out))
    at.button(key="audit_run").click()
    run(at)
    assert not errors(at), errors(at)
    res = at.session_state[Keys.AUDIT]
    assert res["computed"] == 2 and res["resumed"] == 0
    rows = {r["name"]: r for r in res["summary"]["rows"]}
    assert set(rows) == {"reference", "channel_swap", "range_0_1"}
    assert rows["reference"]["f1"] == 1.0 and rows["reference"]["dAP"] == 0.0
    assert (out / "report.html").is_file() and (out / "results.jsonl").is_file()
    assert len(at.dataframe) >= 1

    # The torchrun command the page shows for these settings runs as shown, and resumes the page's own folder.
    commands = [c.value for c in at.code]
    machine = next(c for c in commands if c.startswith("torchrun --nproc-per-node 2 -m d2debug audit"))
    assert f"--images {ROOT / 'sample_data' / 'annotations.json'} --variants channel_swap range_0_1 --limit 2" in machine
    assert machine.endswith(f"--out {out}")
    argv = shlex.split(machine)
    proc = subprocess.run([str(Path(sys.executable).with_name("torchrun")), *argv[1:], "--json", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sharded = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert sharded["run"]["computed"] == 0 and sharded["run"]["resumed"] == 2
    assert sharded["rows"] == res["summary"]["rows"] and sharded["dataset"]["world_size"] == 2
    at.number_input(key="audit_nnodes").set_value(2)
    at.text_input(key="audit_host").set_value("node-a")
    run(at)
    every = [c.value for c in at.code if "--nnodes 2" in c.value]
    assert len(every) == 1 and "--rdzv-endpoint node-a:29400" in every[0] and every[0].endswith(f"--out {out}")

    # Run again: everything is resumed from the results file, nothing recomputed.
    at.button(key="audit_run").click()
    run(at)
    res2 = at.session_state[Keys.AUDIT]
    assert res2["computed"] == 0 and res2["resumed"] == 2
    assert res2["summary"]["rows"] == res["summary"]["rows"]

    # Other settings into the same folder: refused with one error, the earlier result still shown.
    at.multiselect(key="audit_variants").set_value(["channel_swap"])
    at.button(key="audit_run").click()
    run(at)
    assert any("other settings" in e for e in errors(at)), errors(at)
    assert at.session_state[Keys.AUDIT]["summary"]["rows"] == res["summary"]["rows"]


def test_config_diff_page_default_bad_file_and_recovery(tmp_path):
    at = run(AppTest.from_file(DIFF_PAGE, default_timeout=TIMEOUT))
    # Default: path input empty -> asks for both.
    assert not errors(at)
    at.radio(key="config_diff_deploy_source").set_value("detectron2 defaults (get_cfg())")
    run(at)
    diff = at.session_state[Keys.CONFIG_DIFF]
    assert diff["differences"][0]["key"] == "INPUT.FORMAT"
    assert "red and blue swap" in diff["differences"][0]["effect"]
    assert not errors(at)

    bad = tmp_path / "broken.yaml"
    bad.write_text("MODEL: [unclosed\n")
    at.radio(key="config_diff_deploy_source").set_value("Path on this workstation")
    run(at)
    at.text_input(key="config_diff_deploy_path").set_value(str(bad))
    run(at)
    assert any("broken.yaml" in e and "YAML" in e for e in errors(at)), errors(at)
    assert Keys.CONFIG_DIFF not in at.session_state

    good = tmp_path / "deploy.yaml"
    good.write_text((ROOT / "sample_data" / "demo_config.yaml").read_text()
                    .replace("SCORE_THRESH_TEST: 0.5", "SCORE_THRESH_TEST: 0.9"))
    at.text_input(key="config_diff_deploy_path").set_value(str(good))
    run(at)
    assert not errors(at)
    diff = at.session_state[Keys.CONFIG_DIFF]
    keys = [d["key"] for d in diff["differences"]]
    assert "MODEL.ROI_HEADS.SCORE_THRESH_TEST" in keys
    json.dumps(diff, default=str)
