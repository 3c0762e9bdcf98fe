"""d2debug dashboard, home page: the reference pipeline at a glance and every pitfall's damage on this image.

Run with ``streamlit run app.py`` (``make run``). The stage pages live in ``pages/``; shared code in
``d2debug/ui/``; all computation in the library (``d2debug.session``).
"""
import pandas as pd
import streamlit as st

from d2debug.errors import D2DebugError
from d2debug.pitfalls import PITFALLS, STAGES, pitfall_stage
from d2debug.session import pipeline_at_a_glance
from d2debug.ui import PAGE_FILES, loaders, sidebar

SENSITIVITY_KEY = "d2debug_sensitivity"

st.set_page_config(page_title="d2debug", layout="wide")
sel = sidebar()
st.title("d2debug: what your preprocessing does to your Detectron2 model")
st.markdown(
    "Every page runs the **reference** pipeline (exactly what `DefaultPredictor` does for the loaded config) "
    "and a **variant** with one stage changed, on the same image, and shows how the detections change."
)

st.subheader("Stage pages")
cols = st.columns(3)
for k, (stage, page) in enumerate(PAGE_FILES.items()):
    with cols[k % 3]:
        st.page_link(page, label=f"{k + 1}\\. {STAGES[stage][0]}")  # escaped: not a Markdown list

ref = None
if sel.image is None:
    st.info("Choose an image in the sidebar.")
else:
    try:
        with st.spinner("Running the reference pipeline (once per image and model)..."):
            ref = loaders.reference(sel.loaded, sel.model_key, sel.image, sel.reference_spec)
    except D2DebugError as exc:
        st.error(str(exc))

if ref is not None:
    st.subheader(f"Your pipeline at a glance: {sel.image_label}")
    glance = pipeline_at_a_glance(sel.loaded, ref)
    left, right = st.columns([3, 1])
    left.table(pd.DataFrame([{"stage": g.stage, "reference setting": g.setting, "on this image": g.value}
                             for g in glance]).set_index("stage"))
    right.image(ref.drawing, caption=f"Reference: {len(ref.result.boxes)} detections", use_container_width=True)

    st.subheader("Sensitivity: every single pitfall on this image")
    st.caption("Each pitfall alone, all other stages at the reference, sorted by damage. Agreement F1 is 1.0 "
               "when the variant reproduces every reference detection (box IoU >= 0.5, same class) and nothing "
               "else. Lost = missed + class-flipped reference detections.")
    bar = st.progress(0.0, text="Running the pitfalls...")
    rows = []
    for k, pitfall in enumerate(PITFALLS):
        bar.progress(k / len(PITFALLS), text=f"Running pitfall {k + 1}/{len(PITFALLS)}: {pitfall.label}")
        rows.append(loaders.pitfall_row(sel.loaded, sel.model_key, sel.image, pitfall, ref))
    bar.empty()
    rows.sort(key=lambda r: r.damage_key())
    st.session_state[SENSITIVITY_KEY] = [r.to_dict() for r in rows]

    head = st.columns([4, 1, 1, 1, 1, 2])
    for c, h in zip(head, ["Pitfall", "Agreement F1", "Lost", "Extra", "Class flips", "Page"]):
        c.markdown(f"**{h}**")
    for r in rows:
        c = st.columns([4, 1, 1, 1, 1, 2])
        c[0].markdown(f"{r.pitfall.label}  \n`{r.pitfall.change_text()}`")
        if r.agreement is None:
            c[1].markdown("could not run")
            c[2].caption(r.error)
        else:
            a = r.agreement
            c[1].markdown(f"**{a.f1:.3f}**")
            c[2].markdown(str(r.lost))
            c[3].markdown(str(a.extra))
            c[4].markdown(str(a.class_flips))
        with c[5]:
            stage = pitfall_stage(r.pitfall)
            st.page_link(PAGE_FILES[stage], label=STAGES[stage][0])
