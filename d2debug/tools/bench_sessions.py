"""Row 8 (``sessions``): several people using one dashboard at once. Each person is a browser session of its own
(headless Chromium, one Playwright per thread) on a real ``streamlit run app.py``, opening a stage page, making
it theirs (a sample image, or an uploaded model and image) and toggling that stage a few times. Every scenario
runs alone first, on a fresh server, and then all of them together on another fresh server (so that neither run
finds the other's results in the caches); the row is the time from a toggle's click to its settled page when
together vs alone.

The same code drives ``tests/test_browser_team.py``, which asserts that every session shows, together, exactly
what it showed alone (the reference, the agreement numbers), no session shows another's image or uploads, and
nothing raised.
"""
from __future__ import annotations

import re
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional

from ..errors import D2DebugError
from ..pitfalls import STAGES
from ..samples import DEMO_CONFIG, DEMO_WEIGHTS, SAMPLE_IMAGES
from .bench_browser import model_answer, pick_file, settle
from .bench_report import Row
from .serve import CHROMIUM, CHROMIUM_ARGS, streamlit_server

__all__ = ["Toggle", "Scenario", "Seen", "SessionRun", "team_scenarios", "drive", "run_sessions",
           "solo_and_together", "differences", "latency_ratio", "bench_sessions"]

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

VIEWPORT: ViewportSize = {"width": 1500, "height": 1250}
# The variant line above the numbers once a comparison is shown ("Variant: channel_order=swapped"); the
# pictures' captions ("Variant: 5 detections") do not match.
_VARIANT = re.compile(r"^Variant: (identical to the reference|\S+=)")
_REFERENCE = re.compile(r"^Reference: \d")
_CAPTION = re.compile(r"^Image .* This page changes ONE stage")
IDENTICAL = "identical to the reference"


@dataclass(frozen=True)
class Toggle:
    """One change a person makes on a stage page: choose ``option`` (its label as shown) in the radio, or in
    the selectbox labelled ``select``; ``shows``: what the variant line then says (a ``key=value`` it contains,
    or :data:`IDENTICAL`)."""

    option: str
    shows: str
    select: str = ""


@dataclass(frozen=True)
class Scenario:
    """What one person does: open the page of ``stage`` (a :data:`d2debug.pitfalls.STAGES` id), choose the
    sample image ``sample`` in the sidebar's list, or upload ``image``; upload ``model`` (config, weights) or keep
    the demo model; then make each of ``toggles`` in turn."""

    name: str
    stage: str
    toggles: tuple[Toggle, ...]
    sample: Optional[str] = None
    image: Optional[Path] = None
    model: Optional[tuple[Path, Path]] = None

    @property
    def page(self) -> str:
        """The stage page's address, as ``d2debug.ui.nav`` makes it (not imported: the library stays free of
        streamlit)."""
        return self.stage.replace("_", "-")

    @property
    def heading(self) -> str:
        """The stage page's title as it draws it: its number in the stages' order and its name."""
        return f"{list(STAGES).index(self.stage) + 1}. {STAGES[self.stage][0]}"

    @property
    def image_name(self) -> str:
        return self.image.name if self.image is not None else (self.sample or "")

    @property
    def own_names(self) -> list[str]:
        """The file names only this person's page may show: their image and their uploads."""
        names = [self.image_name] + ([p.name for p in self.model] if self.model else [])
        return [n for n in names if n]


@dataclass
class Seen:
    """What a settled stage page showed: its caption (image, model), the variant line, the reference's line
    ("Reference: N detections") and every metric (label -> value as shown)."""

    caption: str
    variant: str
    reference: str
    metrics: dict[str, str]

    def numbers(self) -> tuple:
        """What must not depend on who else is using the server."""
        return self.caption, self.variant, self.reference, tuple(sorted(self.metrics.items()))


@dataclass
class SessionRun:
    """One person's run: what the page showed after the set-up and after each toggle, how long the set-up and
    each toggle took (click to settled page), the page's whole text at the end, and the ``st.exception`` and
    ``st.error`` boxes it showed."""

    scenario: Scenario
    seen: list[Seen] = field(default_factory=list)
    setup_s: float = 0.0
    toggle_s: list[float] = field(default_factory=list)
    text: str = ""
    exceptions: int = 0
    errors: list[str] = field(default_factory=list)


def team_scenarios(folder: Path, n: int = 3) -> list[Scenario]:
    """``n`` people (default 3), each on another stage: channel order on a sample image, the resize policy on
    another, and normalization on an uploaded model and image (copies of the demo's files written to
    ``folder`` under names no one else uses). Beyond three, the same again on other sample images."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(p.name for p in SAMPLE_IMAGES.iterdir() if p.name.startswith("val_0") and p.suffix == ".jpg")
    out = []
    for i in range(n):
        kind, round_ = i % 3, i // 3
        if kind == 0:
            out.append(Scenario(
                f"channel-order-{i}", "channel_order",
                (Toggle("BGR (swapped)", "channel_order=swapped"),
                 Toggle("RGB, as cfg.INPUT.FORMAT (reference)", IDENTICAL)),
                sample=samples[(6 + 3 * round_) % len(samples)]))
        elif kind == 1:
            out.append(Scenario(
                f"resize-{i}", "resize",
                (Toggle("Fixed size (stretch)", "resize=fixed", select="Policy"),
                 Toggle("No resize", "resize=none", select="Policy")),
                sample=samples[(2 + 3 * round_) % len(samples)]))
        else:
            image = folder / f"person{i}_photo.jpg"
            shutil.copyfile(SAMPLE_IMAGES / "val_044_exif6.jpg", image)
            model = (folder / f"person{i}_config.yaml", folder / f"person{i}_model.pth")
            shutil.copyfile(DEMO_CONFIG, model[0])
            shutil.copyfile(DEMO_WEIGHTS, model[1])
            out.append(Scenario(
                f"normalization-{i}", "normalization",
                (Toggle("ToTensor(): 0..1", "value_range=0_1"),
                 Toggle("ImageNet T.Normalize outside (double normalization)", "external_norm=imagenet")),
                image=image, model=model))
    return out


def _seen(page) -> Seen:
    metrics = page.get_by_test_id("stMetric").evaluate_all(
        """els => els.map(e => [e.querySelector('[data-testid=stMetricLabel]').innerText.trim(),
                                e.querySelector('[data-testid=stMetricValue]').innerText.trim()])""")
    return Seen(caption=page.get_by_text(_CAPTION).inner_text().split(" · reference on")[0],
                variant=page.get_by_text(_VARIANT).inner_text(),
                reference=page.get_by_text(_REFERENCE).inner_text(),
                metrics=dict(metrics))


def _settled(page, shows: str, wait_ms: int) -> None:
    """Wait until the variant line says ``shows`` and the page is done (no run, every picture loaded)."""
    from playwright.sync_api import expect

    expect(page.get_by_text(_VARIANT)).to_contain_text(shows, timeout=wait_ms)
    settle(page, wait_ms)


@contextmanager
def _step(page, scenario: Scenario, what: str) -> Iterator[None]:
    """A failed expectation inside says, on its first line, which person and step it was and what the page
    showed then: its error boxes, exceptions, the sidebar's model line and uploaded files, and Streamlit's own
    run and connection state."""
    try:
        yield
    except AssertionError as exc:
        bar = page.get_by_test_id("stSidebar")
        seen = {
            "errors": page.get_by_test_id("stAlertContentError").all_inner_texts(),
            "exceptions": [t.splitlines()[0] for t in page.get_by_test_id("stException").all_inner_texts() if t],
            "model": [c for c in bar.get_by_test_id("stCaptionContainer").all_inner_texts() if " classes, FORMAT " in c],
            "files": bar.get_by_test_id("stFileChipName").all_inner_texts(),
            "run": page.get_by_test_id("stApp").get_attribute("data-test-script-state"),
            "connection": page.get_by_test_id("stApp").get_attribute("data-test-connection-state"),
        }
        lines = str(exc).splitlines()
        shown = "; ".join(f"{k} {v or 'none'}" for k, v in seen.items())
        raise AssertionError(f"{scenario.name}, {what}: {lines[0] if lines else type(exc).__name__}; the page "
                             f"showed {shown}") from exc


def drive(page, url: str, scenario: Scenario, wait_ms: int,
          ready: Callable[[], None] = lambda: None) -> SessionRun:
    """Play ``scenario`` in ``page`` (a fresh browser context's page: a session of its own) against the server
    at ``url``; ``ready`` is called between the set-up and the first toggle (to start the toggles of several
    sessions together)."""
    from playwright.sync_api import expect

    run = SessionRun(scenario)
    t0 = time.perf_counter()
    with _step(page, scenario, "opening the page"):
        page.goto(f"{url}/{scenario.page}")
        expect(page.get_by_role("heading", name=scenario.heading)).to_be_visible(timeout=wait_ms)
    bar = page.get_by_test_id("stSidebar")
    uploaders = bar.get_by_test_id("stFileUploader")
    if scenario.model is not None:
        with _step(page, scenario, "uploading the model"):
            bar.get_by_test_id("stRadio").nth(0).get_by_text("Upload").click()
            expect(uploaders).to_have_count(2, timeout=wait_ms)
            for uploader, path in zip((uploaders.nth(0), uploaders.nth(1)), scenario.model):
                pick_file(page, uploader, path, wait_ms, model_answer(page, path.name))
            expect(bar.get_by_text(f"uploaded {scenario.model[1].name}")).to_be_visible(timeout=wait_ms)
    with _step(page, scenario, "choosing the image"):
        if scenario.image is not None:
            bar.get_by_test_id("stRadio").nth(1).get_by_text("Upload").click()
            expect(uploaders).to_have_count(3 if scenario.model is not None else 1, timeout=wait_ms)
            pick_file(page, uploaders.last, scenario.image, wait_ms,
                      page.get_by_text(_CAPTION).filter(has_text=f"Image {scenario.image.name}"))
        elif scenario.sample is not None:
            bar.get_by_test_id("stSelectbox").first.click()
            page.keyboard.type(scenario.sample.rsplit(".", 1)[0])
            page.keyboard.press("Enter")
        expect(page.get_by_text(_CAPTION)).to_contain_text(f"Image {scenario.image_name}", timeout=wait_ms)
        _settled(page, IDENTICAL, wait_ms)
    run.seen.append(_seen(page))
    run.setup_s = time.perf_counter() - t0
    ready()
    main = page.get_by_test_id("stMain")
    for toggle in scenario.toggles:
        t0 = time.perf_counter()
        with _step(page, scenario, f"toggling {toggle.option!r}"):
            if toggle.select:
                main.get_by_test_id("stSelectbox").filter(has_text=toggle.select).click()
                page.get_by_role("option", name=toggle.option, exact=True).click()
            else:
                main.get_by_text(toggle.option, exact=True).click()
            _settled(page, toggle.shows, wait_ms)
        run.toggle_s.append(time.perf_counter() - t0)
        run.seen.append(_seen(page))
    run.text = page.inner_text("body")
    run.exceptions = page.get_by_test_id("stException").count()
    run.errors = page.get_by_test_id("stAlertContentError").all_inner_texts()
    return run


def _session(url: str, scenario: Scenario, wait_ms: int, ready: Callable[[], None]) -> SessionRun:
    """One person in a Playwright and a Chromium of their own (Playwright's sync API is per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            return drive(context.new_page(), url, scenario, wait_ms, ready)
        finally:
            browser.close()


def run_sessions(url: str, scenarios: list[Scenario], wait_ms: int, together: bool) -> list[SessionRun]:
    """Play every scenario against the server at ``url``, each in a thread of its own: one after another
    (``together=False``), or all at once, their toggles started together once every set-up is done. Raises
    :class:`D2DebugError` naming the sessions that failed (with the first failure's message)."""
    runs: list[Optional[SessionRun]] = [None] * len(scenarios)
    failed: dict[str, BaseException] = {}
    barrier = threading.Barrier(len(scenarios) if together else 1)

    def ready() -> None:
        barrier.wait(timeout=wait_ms / 1000)

    def work(i: int) -> None:
        try:
            runs[i] = _session(url, scenarios[i], wait_ms, ready)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the calling thread
            failed[scenarios[i].name] = exc
            barrier.abort()  # the others stop waiting for this one

    threads = [threading.Thread(target=work, args=(i,), name=s.name) for i, s in enumerate(scenarios)]
    for t in threads:
        t.start()
        if not together:
            t.join()
    for t in threads:
        t.join()
    if failed:
        first = next((e for e in failed.values() if not isinstance(e, threading.BrokenBarrierError)),
                     next(iter(failed.values())))
        raise D2DebugError(f"sessions {', '.join(failed)} failed; first: {type(first).__name__}: "
                           f"{str(first).splitlines()[0] if str(first) else ''}")
    return [r for r in runs if r is not None]


def solo_and_together(scenarios: list[Scenario], folder: Path, wait_ms: int,
                      env: Optional[Mapping[str, str]] = None,
                      log: Callable[[str], None] = lambda s: None) -> tuple[list[SessionRun], list[SessionRun]]:
    """Every scenario alone (one after another) on a fresh server, then all together on another fresh one;
    the servers' logs go to ``folder``, ``env`` is added to their environment."""
    log(f"sessions: {len(scenarios)} scenarios, one at a time")
    with streamlit_server(folder / "solo.log", env=env) as (url, _proc):
        solo = run_sessions(url, scenarios, wait_ms, together=False)
    log(f"sessions: {len(scenarios)} scenarios at once")
    with streamlit_server(folder / "together.log", env=env) as (url, _proc):
        together = run_sessions(url, scenarios, wait_ms, together=True)
    return solo, together


def differences(solo: list[SessionRun], together: list[SessionRun]) -> list[str]:
    """Whatever the sessions run together showed differently from the same sessions alone, any exception or
    error box, and any other session's image or upload named on a page: one line each (none: all well)."""
    out = []
    for alone, with_others in zip(solo, together):
        s = alone.scenario
        for r, when in ((alone, "alone"), (with_others, "together")):
            if r.exceptions or r.errors:
                out.append(f"{s.name} {when}: {r.exceptions} exception(s), errors {r.errors}")
        a = [x.numbers() for x in alone.seen]
        b = [x.numbers() for x in with_others.seen]
        if a != b:
            out.append(f"{s.name}: together it showed {b}, alone {a}")
        others = {n for o in solo if o.scenario is not s for n in o.scenario.own_names} - set(s.own_names)
        leaked = sorted(n for n in others if n in with_others.text)
        if leaked:
            out.append(f"{s.name}: its page shows another session's {', '.join(leaked)}")
    return out


def latency_ratio(solo: list[SessionRun], together: list[SessionRun]) -> float:
    """Time from a toggle's click to its settled page, all sessions together over each alone: the sum over
    every toggle of every session."""
    return sum(t for r in together for t in r.toggle_s) / sum(t for r in solo for t in r.toggle_s)


def bench_sessions(log: Callable[[str], None] = lambda s: None, n: int = 3,
                   wait_s: float = 600.0) -> tuple[list[Row], dict]:
    """Row 8: ``n`` sessions (default 3) toggling stages on one server at once vs each alone (see the module)."""
    if not CHROMIUM.exists():
        raise D2DebugError(f"{CHROMIUM}: not installed; the sessions row drives a real browser")
    with tempfile.TemporaryDirectory(prefix="d2debug-bench-sessions-") as tmp:
        scenarios = team_scenarios(Path(tmp) / "uploads", n)
        solo, together = solo_and_together(scenarios, Path(tmp), int(wait_s * 1000), log=log)
    problems = differences(solo, together)
    if problems:
        raise D2DebugError("sessions run together did not show what they showed alone: " + "; ".join(problems))
    ratio = latency_ratio(solo, together)
    per_toggle = statistics.median(t for r in together for t in r.toggle_s)
    detail = {r.scenario.name: {"solo_toggle_s": [round(t, 2) for t in r.toggle_s],
                                "together_toggle_s": [round(t, 2) for t in w.toggle_s],
                                "solo_setup_s": round(r.setup_s, 1), "together_setup_s": round(w.setup_s, 1)}
              for r, w in zip(solo, together)}
    note = "; ".join(f"{k}: alone {v['solo_toggle_s']} s, together {v['together_toggle_s']} s"
                     for k, v in detail.items())
    rows = [Row("demo", "cpu", "8", f"stage-page toggle, settled, {n} sessions at once on one server vs alone",
                per_toggle, "s/toggle", ratio, "each session alone", None, note)]
    return rows, {"sessions": {"n": n, "ratio": round(ratio, 3), "runs": detail}}
