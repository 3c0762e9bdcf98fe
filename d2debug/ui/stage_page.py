"""The layout every stage page shares: widgets -> variant spec -> cached comparison -> pictures, numbers,
histograms, downloads and the teaching panel."""
from __future__ import annotations

import re
from typing import Literal, Optional

import streamlit as st

from ..errors import D2DebugError
from ..lessons import lesson
from ..pitfalls import PITFALLS, STAGES, pitfall_stage
from ..render import MAX_DISPLAY_SIDE
from ..session import ComparisonView, outputs_text
from . import charts, loaders
from .nav import STAGE_PAGES
from .sidebar import Selection, as_uploaded, sidebar
from .state import Keys
from .widgets import WIDGETS, preset

__all__ = ["stage_page", "show_comparison"]

# st.metric delta colours: for these counts an increase is bad.
_INVERSE = {"missed", "extra", "class_flips", "keypoint_distance"}
_PER_ROW = 6  # metrics per row: boxes give seven numbers, masks, keypoints and maps one more each


def _metrics(view: ComparisonView, stage: str, image_label: str) -> None:
    m = view.metrics()
    items = list(m.items())
    cols = [c for k in range(0, len(items), _PER_ROW) for c in st.columns(min(_PER_ROW, len(items)))][:len(items)]
    for col, (name, d) in zip(cols, items):
        colour: Literal["inverse", "off", "normal"] = (
            "inverse" if name in _INVERSE else ("off" if name == "detections" else "normal"))
        value = "n/a" if d["value"] is None else f"{d['value']:.3f}" if isinstance(d["value"], float) else str(d["value"])
        # No arrow when nothing changed; the reference shows clean numbers.
        delta = None if not d["delta"] else (
            f"{d['delta']:+.3f}" if isinstance(d["delta"], float) else f"{d['delta']:+d}")
        col.metric(d["label"], value, delta, delta_color=colour)
    st.session_state[Keys.METRICS] = {
        "stage": stage,
        "image": image_label,
        "differences": {k: b for k, (_a, b) in view.differences.items()},
        "n_reference": view.agreement.n_reference,
        **{name: d["value"] for name, d in m.items()},
    }


def show_comparison(view: ComparisonView, stage: str, image_label: str, name: str = "Variant") -> None:
    """Numbers, side-by-side drawings, the overlay with its legend, histograms and downloads; ``name``: what
    the variant is called on this page."""
    diffs = ", ".join(f"`{k}={b}`" for k, (_a, b) in view.differences.items())
    st.markdown(f"**{name}:** {diffs}" if diffs else f"**{name}:** identical to the reference")
    _metrics(view, stage, image_label)
    for note in view.variant.notes:
        if note not in view.reference.notes:
            st.warning(f"{name} decoding: {note}")
    if view.reference.notes:
        st.caption("Reference decoding: " + "; ".join(view.reference.notes))
    if view.variant.frame == "resized":
        h, w = view.variant.input_size
        st.warning(f"height/width not passed: the {name.lower()} boxes are in the resized {w}x{h} frame, drawn here on "
                   f"the original {view.reference.original_size[1]}x{view.reference.original_size[0]} image.")

    h0, w0 = view.reference.original_size
    if max(h0, w0) > MAX_DISPLAY_SIDE:
        st.caption(f"The {w0}x{h0} image is shown downscaled to a long side of {MAX_DISPLAY_SIDE} px (boxes scaled "
                   "with it); the models ran on the full image.")
    a = view.agreement
    c_ref, c_var, c_ovl = st.columns(3)
    c_ref.markdown(f"**Reference**: {outputs_text(view.reference)}")
    c_ref.image(view.jpeg("reference"), width="stretch")
    c_var.markdown(f"**{name}**: {outputs_text(view.variant)}")
    c_var.image(view.jpeg("variant"), width="stretch")
    c_ovl.markdown("**Both in one picture**")
    c_ovl.image(view.jpeg("overlay"), width="stretch")
    charts.legend({"matched": a.matched, "missed": a.missed, "extra": a.extra, "class_flip": a.class_flips})

    st.subheader(f"Pixel values, reference vs {name.lower()}")
    t1, t2 = st.tabs(["Model input (fed as \"image\")", "What the backbone sees ((x - PIXEL_MEAN) / PIXEL_STD)"])
    with t1:
        charts.histograms(view.input_hist, "model input")
        charts.stats_table(view.input_stats)
    with t2:
        charts.histograms(view.backbone_hist, "backbone input")
        charts.stats_table(view.backbone_stats)

    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{image_label.rsplit('.', 1)[0]}_{stage}")
    # Deferred: the PNG and the JSON are made only when a button is clicked, not on every toggle.
    d1, d2 = st.columns(2)
    d1.download_button("Download side-by-side PNG", view.png, file_name=f"d2debug_{stem}.png", mime="image/png",
                       key=f"btn_dl_png_{stage}", width="stretch")
    d2.download_button("Download numbers (JSON)", view.to_json, file_name=f"d2debug_{stem}.json",
                       mime="application/json", key=f"btn_dl_json_{stage}", width="stretch")


def _teaching(stage: str, sel: Selection, view: Optional[ComparisonView]) -> None:
    les = lesson(stage, sel.loaded.cfg, view, sel.loaded.class_names, sel.loaded.arch,
                 loaders.demo_audit() if sel.model_key.startswith("demo:") else None)
    with st.container(border=True):
        st.subheader("Learn: " + les.title)
        st.markdown("**What Detectron2 does.** " + les.what)
        st.markdown("**Why the variant hurts on this model.** " + les.why)
        st.markdown("**Correct code for your own inference script:**")
        st.code(les.code, language="python")


def _preset_from_link(stage: str) -> Optional[str]:
    """Apply ``?pitfall=NAME`` once: the stage's widgets show that pitfall (every other widget of the stage at
    the reference), and the parameter is dropped so the user's own toggles are not overridden. Returns the
    pitfall's label when one was set."""
    name = st.query_params.get(Keys.PITFALL_PARAM)
    if name is None:
        return None
    del st.query_params[Keys.PITFALL_PARAM]
    pitfall = next((p for p in PITFALLS if p.name == name), None)
    if pitfall is None or pitfall_stage(pitfall) != stage:
        st.warning(f"?{Keys.PITFALL_PARAM}={name}: not a pitfall of this page; showing the page as it was.")
        return None
    preset(stage, pitfall.changes)
    return pitfall.label


@st.fragment
def _panel(stage: str, sel: Selection) -> None:
    """The stage's widgets, the comparison and the lesson: a toggle reruns only this, not the sidebar."""
    label = _preset_from_link(stage)
    with st.container(border=True):
        if label:
            st.info(f"Opened with the pitfall **{label}** set.")
        if stage == "device":
            changes = WIDGETS[stage](sel.loaded.cfg, sel.reference_spec.device)
        elif stage == "output":
            changes = WIDGETS[stage](sel.loaded.cfg, sel.loaded.arch)
        else:
            changes = WIDGETS[stage](sel.loaded.cfg)
    view = None
    try:
        variant = sel.reference_spec.replace(**changes)
    except D2DebugError as exc:
        st.error(str(exc))
        variant = None
    if sel.image is None:
        st.info("Choose an image in the sidebar.")
    elif variant is not None:
        try:
            with st.spinner("Running the reference pipeline (once per image and model)..."):
                ref = loaders.reference(sel.loaded, sel.model_key, sel.image, sel.reference_spec)
            with st.spinner("Running the variant..."):
                view = loaders.comparison(sel.loaded, sel.model_key, sel.image, variant, ref)
        except D2DebugError as exc:
            st.error(as_uploaded(str(exc)))
            st.session_state.pop(Keys.METRICS, None)
        except Exception as exc:  # noqa: BLE001 - a bug; show it and keep the rest of the page working
            st.error(as_uploaded(f"Unexpected error running this comparison ({type(exc).__name__}: {exc})"))
            st.session_state.pop(Keys.METRICS, None)
    if view is not None:
        show_comparison(view, stage, sel.image_label)
    _teaching(stage, sel, view)


def stage_page(stage: str) -> None:
    """Draw a whole stage page for ``stage`` (a :data:`d2debug.pitfalls.STAGES` id)."""
    title = STAGES[stage][0]
    number = list(STAGE_PAGES).index(stage) + 1
    sel = sidebar()
    st.title(f"{number}. {title}")
    st.caption(f"Image **{sel.image_label or '-'}** · {sel.model_label} · reference on "
               f"{'cuda:0' if sel.reference_spec.device == 'cuda' else 'cpu'}. This page changes ONE stage; "
               "every other stage stays at the reference (what DefaultPredictor does).")
    _panel(stage, sel)
