"""The dashboard as a team uses it, end to end: real ``streamlit run app.py`` servers driven by Debian's headless
Chromium, one browser context per person (each its own Streamlit session).

- Served on 0.0.0.0 (the tests still talk to it on 127.0.0.1 only), with one allowed folder: the sidebar says code
  is off and how to turn it on, the code ticks are disabled and a hostile pickle runs nothing, typed paths outside
  the allowed folder (plain, ``..``, a symlink out) are one error each and load nothing, the allowed folder's
  images are browsable, and one person's upload is invisible to another, even by its folder's path.
- Several people at once on one server: each shows exactly what it showed alone (d2debug.tools.bench_sessions,
  also the benchmark's ``sessions`` row); the added latency is printed, not asserted.
- The hostile corpus through the sidebar's uploaders: one error each naming the file, no exception, the page
  usable afterwards, nothing run, nothing written outside the sessions' private folders nor into the checkout.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from d2debug.samples import DEMO_CONFIG, DEMO_WEIGHTS, SAMPLE_IMAGES
from d2debug.serving import ALLOW_CODE_VAR, ALLOWED_DIRS_VAR
from d2debug.tools.bench_browser import model_answer, pick_file, settle
from d2debug.tools.bench_sessions import VIEWPORT, differences, latency_ratio, solo_and_together, team_scenarios
from d2debug.tools.serve import CHROMIUM, CHROMIUM_ARGS, ROOT, streamlit_server

from corpus import BAD_CONFIGS, broken_corpus, evil_pickle

# Model runs on a shared CPU can take seconds each; expect() waits up to this long (it returns as soon as met).
WAIT_MS = 240_000
SESSION_PREFIX = "d2debug-session-"
ERROR = "stAlertContentError"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                                                     "(apt-get install chromium; scripts/ensure_chromium.sh)"),
]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; each person is a context of their own in it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def person(browser) -> Iterator:
    """``person()``: a new page in a new browser context, i.e. a new Streamlit session; closed after the test."""
    contexts = []

    def new():
        contexts.append(browser.new_context(viewport=VIEWPORT))
        return contexts[-1].new_page()

    yield new
    for c in contexts:
        c.close()


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def _outside_sessions(tmp: Path) -> list[str]:
    """Every file under a server's TMPDIR that is not inside one of its sessions' private folders."""
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")
                  if not p.is_dir() and not p.relative_to(tmp).parts[0].startswith(SESSION_PREFIX))


def _open(page, url: str, address: str = "channel-order", heading: str = "1. Channel order"):
    from playwright.sync_api import expect

    page.goto(f"{url}/{address}")
    expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=WAIT_MS)
    return page.get_by_test_id("stSidebar")


def _f1(page):
    return page.get_by_test_id("stMetric").filter(has_text="Agreement F1").get_by_test_id("stMetricValue")


def _one_error(page, starts: str, *needles: str) -> str:
    """Wait for the error that starts with ``starts`` (this step's: a file's or a path's name), let the page
    settle, and check it is the page's only error, says each of ``needles``, and nothing raised."""
    from playwright.sync_api import expect

    errors = page.get_by_test_id(ERROR)
    expect(errors.filter(has_text=re.compile("^" + re.escape(starts)))).to_have_count(1, timeout=WAIT_MS)
    settle(page, WAIT_MS)
    texts = errors.all_inner_texts()
    assert len(texts) == 1, texts
    for n in (starts, *needles):
        assert n in texts[0], (n, texts[0])
    assert "Traceback" not in texts[0]
    assert page.get_by_test_id("stException").count() == 0
    return texts[0]


def _type(bar, label: str, text: str) -> None:
    """Type ``text`` into the sidebar's text input whose label starts with ``label`` and press Enter."""
    field = bar.get_by_test_id("stTextInput").filter(has_text=re.compile("^" + re.escape(label))).locator("input")
    field.fill(text)
    field.press("Enter")


# ---------------------------------------------------------------------------------------------------------------
# Served to a team: 0.0.0.0, one allowed folder


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A server listening on 0.0.0.0 (reached on 127.0.0.1) with ``D2DEBUG_ALLOWED_DIRS`` one folder holding two
    sample images, the demo config, a symlink to a config outside and one to a folder outside, and its own TMPDIR;
    code is not allowed (the variable set empty, whatever the runner's environment says)."""
    root = tmp_path_factory.mktemp("team")
    allowed, tmp = root / "allowed", root / "server_tmp"
    (allowed / "images").mkdir(parents=True)
    tmp.mkdir()
    for name in ("val_001.jpg", "val_003.jpg"):
        shutil.copyfile(SAMPLE_IMAGES / name, allowed / "images" / f"team_{name}")
    shutil.copyfile(DEMO_CONFIG, allowed / "demo_config.yaml")
    (allowed / "config_link.yaml").symlink_to(DEMO_CONFIG)
    (allowed / "images_link").symlink_to(SAMPLE_IMAGES, target_is_directory=True)
    (allowed / "prep.py").write_text(f"open({str(root / 'function_ran.txt')!r}, 'w').close()\n"
                                     "def preprocess(path):\n    return None\n")
    env = {ALLOWED_DIRS_VAR: str(allowed), ALLOW_CODE_VAR: "", "TMPDIR": str(tmp)}
    with streamlit_server(root / "server.log", address="0.0.0.0", env=env) as (url, _proc):
        yield {"url": url, "root": root, "allowed": allowed, "tmp": tmp}


def test_served_to_a_team_code_is_off_paths_stay_inside_and_uploads_stay_private(team, person, tmp_path):
    from playwright.sync_api import expect

    url, root, allowed, tmp = team["url"], team["root"], team["allowed"], team["tmp"]
    assert url.startswith("http://127.0.0.1:")

    # The first person uploads a photo of their own.
    photo = tmp_path / "first_persons_photo.jpg"
    shutil.copyfile(SAMPLE_IMAGES / "val_005.jpg", photo)
    first = person()
    bar1 = _open(first, url)
    bar1.get_by_test_id("stRadio").nth(1).get_by_text("Upload").click()
    expect(bar1.locator("input[type=file]")).to_have_count(1, timeout=WAIT_MS)
    bar1.locator("input[type=file]").set_input_files(str(photo))
    expect(first.get_by_text(f"Image {photo.name}")).to_be_visible(timeout=WAIT_MS)
    expect(_f1(first)).to_have_text("1.000", timeout=WAIT_MS)
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    (first_folder,) = [p for p in tmp.iterdir() if p.name.startswith(SESSION_PREFIX)]
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in first_folder.iterdir()] == [digest]

    # A second person, while the first is still there.
    second = person()
    bar = _open(second, url)
    note = bar.get_by_text(re.compile(r"^Running your code .* is off"))
    expect(note).to_contain_text(f"the operator allows it by starting the dashboard with {ALLOW_CODE_VAR}=1")
    expect(note).to_contain_text("0.0.0.0")
    expect(bar.get_by_text(f"Typed paths: only under {allowed}")).to_be_visible()

    # Their "Upload" image source is empty: nothing of the first person's shows.
    bar.get_by_test_id("stRadio").nth(1).get_by_text("Upload").click()
    expect(second.get_by_text("Upload an image to analyse it.")).to_be_visible(timeout=WAIT_MS)
    settle(second, WAIT_MS)
    assert photo.name not in second.inner_text("body")
    assert bar.get_by_text("uploaded earlier").count() == 0

    # Typed folders outside the allowed one, the first person's private folder among them: one error each.
    bar.get_by_test_id("stRadio").nth(1).get_by_text("Folder on this workstation").click()
    # (An error box is Markdown: a path is matched up to where its random part could start to read as emphasis.)
    outside = {SAMPLE_IMAGES: f"{SAMPLE_IMAGES}:", f"{allowed}/../server_tmp": f"{allowed}/../server_tmp:",
               allowed / "images_link": f"{allowed / 'images_link'}:", first_folder: f"{tmp}/"}
    for folder, starts in outside.items():
        _type(bar, "Folder", str(folder))
        _one_error(second, starts, "folder refused, outside the folders", ALLOWED_DIRS_VAR)
        assert bar.get_by_test_id("stSelectbox").count() == 0, "no image of that folder is listed"
    assert photo.name not in second.inner_text("body")
    # The allowed folder's images are browsable.
    _type(bar, "Folder", str(allowed / "images"))
    expect(bar.get_by_text("Image (2 in folder)")).to_be_visible(timeout=WAIT_MS)
    expect(second.get_by_text("Image team_val_001.jpg")).to_be_visible(timeout=WAIT_MS)
    expect(_f1(second)).to_have_text("1.000", timeout=WAIT_MS)
    bar.get_by_role("button", name="Next ▶").click()
    expect(second.get_by_text("Image team_val_003.jpg")).to_be_visible(timeout=WAIT_MS)
    settle(second, WAIT_MS)
    assert second.get_by_test_id(ERROR).count() == 0

    # Typed model files outside the allowed folder: one error each, the demo model stays.
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Files on this workstation").click()
    for tick in ("Trust this checkpoint", "Trust this config", "Run this code"):
        expect(bar.get_by_test_id("stCheckbox").filter(has_text=tick).locator("input")).to_be_disabled(
            timeout=WAIT_MS)
    _type(bar, "weights", str(DEMO_WEIGHTS))
    for config in (DEMO_CONFIG, f"{allowed}/../elsewhere/config.yaml", allowed / "config_link.yaml"):
        _type(bar, "config", str(config))
        _one_error(second, f"{config}:", "config refused, outside the folders", "Showing the demo model instead")
        expect(bar.get_by_text(re.compile(r"^demo model: "))).to_be_visible()
    _type(bar, "config", str(allowed / "demo_config.yaml"))  # allowed, but the weights are not
    _one_error(second, f"{DEMO_WEIGHTS}:", "weights refused, outside the folders", "Showing the demo model instead")
    expect(bar.get_by_text(re.compile(r"^demo model: "))).to_be_visible()

    # A hostile pickle uploaded as weights, its trust tick tried: refused, nothing ran.
    marker = tmp_path / "pickle_ran.txt"
    evil = tmp_path / "team_evil.pkl"
    evil.write_bytes(evil_pickle(marker))
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Upload").click()
    files = bar.locator("input[type=file]")
    expect(files).to_have_count(2, timeout=WAIT_MS)
    tick = bar.get_by_test_id("stCheckbox").filter(has_text="Trust this checkpoint")
    expect(tick.locator("input")).to_be_disabled()
    tick.click(force=True)  # what a user can do to a disabled tick: nothing happens
    pick_file(second, bar.get_by_test_id("stFileUploader").nth(0), DEMO_CONFIG, WAIT_MS,
              model_answer(second, DEMO_CONFIG.name))
    files.nth(1).set_input_files(str(evil))
    _one_error(second, f"{evil.name}:", "refused")
    expect(tick.locator("input")).not_to_be_checked()
    assert not marker.exists()
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Demo model").click()
    expect(second.get_by_test_id(ERROR)).to_have_count(0, timeout=WAIT_MS)

    # The Doctor's "Run my function" is off too, and a function typed anyway is not run.
    _open(second, url, "doctor", "Pipeline doctor")
    main = second.get_by_test_id("stMain")
    main.get_by_text("Your preprocessing function", exact=True).click()
    run_tick = main.get_by_test_id("stCheckbox").filter(has_text="Run my function")
    expect(run_tick.locator("input")).to_be_disabled(timeout=WAIT_MS)
    expect(main.get_by_text(re.compile(rf"{ALLOW_CODE_VAR}=1")).first).to_be_visible()
    field = main.get_by_test_id("stTextInput").filter(has_text="FILE.py:FUNCTION").locator("input")
    field.fill(f"{allowed}/prep.py:preprocess")
    field.press("Enter")
    _one_error(second, "Run my function: refused", ALLOW_CODE_VAR)
    assert not (root / "function_ran.txt").exists()

    # The first person's page never showed anything of the second's.
    assert evil.name not in first.inner_text("body")
    assert first.get_by_test_id("stException").count() == 0
    assert _outside_sessions(tmp) == []


# ---------------------------------------------------------------------------------------------------------------
# Several people at once


def test_several_people_at_once_see_exactly_what_each_saw_alone(tmp_path, capsys):
    """Three people on one server (channel order on a sample image; resize policy on another; normalization on
    an uploaded model and photo), each played alone on a fresh server first, then all at once on another: the
    same reference, the same numbers after every toggle, no exception, no one else's file names."""
    scenarios = team_scenarios(tmp_path / "uploads", 3)
    assert {s.stage for s in scenarios} == {"channel_order", "resize", "normalization"}
    assert any(s.model is not None for s in scenarios)
    solo, together = solo_and_together(scenarios, tmp_path, WAIT_MS, env={"TMPDIR": str(tmp_path)})
    for run in solo:
        assert len(run.seen) == len(run.scenario.toggles) + 1
        assert run.seen[0].metrics["Agreement F1"] == "1.000" and run.seen[0].reference.startswith("Reference: ")
        assert run.scenario.image_name in run.seen[0].caption
    assert any(s.metrics["Agreement F1"] != "1.000" for run in solo for s in run.seen), "a toggle changed something"
    assert differences(solo, together) == []
    with capsys.disabled():
        print(f"\n[sessions] {len(scenarios)} people at once vs alone: {latency_ratio(solo, together):.2f}x the time "
              "from a toggle's click to its settled page; per toggle, alone -> together: "
              + "; ".join(f"{a.scenario.name} {[round(t, 1) for t in a.toggle_s]} -> "
                          f"{[round(t, 1) for t in b.toggle_s]} s" for a, b in zip(solo, together)))


# ---------------------------------------------------------------------------------------------------------------
# The hostile corpus through the uploaders


@pytest.fixture(scope="module")
def workstation(tmp_path_factory):
    """A server on loopback (code allowed, as on a personal workstation) with its own TMPDIR."""
    root = tmp_path_factory.mktemp("workstation")
    tmp = root / "server_tmp"
    tmp.mkdir()
    with streamlit_server(root / "server.log", env={"TMPDIR": str(tmp)}) as (url, _proc):
        yield {"url": url, "tmp": tmp}


def test_hostile_files_through_the_uploaders_are_one_error_each(workstation, person, tmp_path):
    from playwright.sync_api import expect

    url, tmp = workstation["url"], workstation["tmp"]
    before = _git_status()
    bad = tmp_path / "files"
    bad.mkdir()
    markers = []
    weights = {}
    # .pth/.pt: torch's weights_only loader refuses the pickle; .pkl: refused without "Trust this checkpoint"
    # (never ticked here: on loopback the tick works, and a ticked .pkl is really unpickled).
    for suffix, needle in ((".pth", "refused by the safe loader"), (".pt", "refused by the safe loader"),
                           (".pkl", "refused")):
        markers.append(tmp_path / f"ran_{suffix[1:]}.txt")
        (bad / f"evil{suffix}").write_bytes(evil_pickle(markers[-1]))
        weights[f"evil{suffix}"] = needle
    data = DEMO_WEIGHTS.read_bytes()
    (bad / "truncated_demo.pth").write_bytes(data[: len(data) // 3])
    weights["truncated_demo.pth"] = "not a readable PyTorch checkpoint"
    configs = ("list.yaml", "section.yaml", "base_missing.yaml", "empty.yaml")
    for name in configs:
        (bad / name).write_text(BAD_CONFIGS[name][0])
    images = broken_corpus()
    assert "bomb.png" in images
    for name, blob in images.items():
        (bad / name).write_bytes(blob)
    good = tmp_path / "good_again.jpg"
    shutil.copyfile(SAMPLE_IMAGES / "val_000.jpg", good)

    page = person()
    bar = _open(page, url)
    expect(_f1(page)).to_have_text("1.000", timeout=WAIT_MS)
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Upload").click()
    files = bar.locator("input[type=file]")
    expect(files).to_have_count(2, timeout=WAIT_MS)
    pick_file(page, bar.get_by_test_id("stFileUploader").nth(0), DEMO_CONFIG, WAIT_MS,
              model_answer(page, DEMO_CONFIG.name))
    for name, needle in weights.items():
        files.nth(1).set_input_files(str(bad / name))
        _one_error(page, f"{name}:", needle, "Showing the demo model instead")
        expect(bar.get_by_text(re.compile(r"^demo model: "))).to_be_visible()
    files.nth(1).set_input_files(str(DEMO_WEIGHTS))
    expect(bar.get_by_text(f"uploaded {DEMO_WEIGHTS.name}")).to_be_visible(timeout=WAIT_MS)
    expect(_f1(page)).to_have_text("1.000", timeout=WAIT_MS)
    settle(page, WAIT_MS)
    assert page.get_by_test_id(ERROR).count() == 0

    for name in configs:
        files.nth(0).set_input_files(str(bad / name))
        # Markdown shows "_BASE_" in an error box as an emphasised "BASE".
        _one_error(page, f"{name}:", BAD_CONFIGS[name][1].replace("_BASE_", "BASE"), "Showing the demo model instead")
    files.nth(0).set_input_files(str(DEMO_CONFIG))
    expect(bar.get_by_text(f"uploaded {DEMO_WEIGHTS.name}")).to_be_visible(timeout=WAIT_MS)
    expect(_f1(page)).to_have_text("1.000", timeout=WAIT_MS)

    bar.get_by_test_id("stRadio").nth(1).get_by_text("Upload").click()
    expect(files).to_have_count(3, timeout=WAIT_MS)
    for name in images:
        files.nth(2).set_input_files(str(bad / name))
        _one_error(page, f"{name}:")
        assert _f1(page).count() == 0, "no numbers for an image that was not read"
    files.nth(2).set_input_files(str(good))
    expect(page.get_by_text(f"Image {good.name}")).to_be_visible(timeout=WAIT_MS)
    expect(_f1(page)).to_have_text("1.000", timeout=WAIT_MS)

    # Back to the sample images and the demo model: the page works as before.
    bar.get_by_test_id("stRadio").nth(1).get_by_text("Sample images").click()
    expect(page.get_by_text("Image val_000.jpg")).to_be_visible(timeout=WAIT_MS)
    bar.get_by_test_id("stRadio").nth(0).get_by_text("Demo model").click()
    expect(bar.get_by_text(re.compile(r"^demo model: "))).to_be_visible(timeout=WAIT_MS)
    expect(_f1(page)).to_have_text("1.000", timeout=WAIT_MS)
    settle(page, WAIT_MS)
    assert page.get_by_test_id(ERROR).count() == 0 and page.get_by_test_id("stException").count() == 0

    assert not [m for m in markers if m.exists()], "a pickle ran"
    assert _git_status() == before
    assert _outside_sessions(tmp) == []
    assert [p.name for p in tmp.iterdir() if p.name.startswith(SESSION_PREFIX)], "the uploads went to TMPDIR"
