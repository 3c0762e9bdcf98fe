"""Home: the reference pipeline at a glance and every pitfall's damage on this image, each row linking to its
stage page with that pitfall set. All computation is the library's (``d2debug.session``)."""
import pandas as pd
import streamlit as st

from d2debug.errors import D2DebugError
from d2debug.pitfalls import PITFALLS, STAGES, pitfall_stage
from d2debug.session import outputs_text, pipeline_at_a_glance
from d2debug.ui import loaders, sidebar
from d2debug.ui.nav import STAGE_PAGES
from d2debug.ui.sidebar import as_uploaded
from d2debug.ui.state import Keys

sel = sidebar()
st.title("d2debug: what your preprocessing does to your Detectron2 model")
st.markdown(
    "Every page runs the **reference** pipeline (exactly what `DefaultPredictor` does for the loaded config) "
    "and a **variant** with one stage changed, on the same image, and shows how the detections change."
)

st.subheader("Stage pages")
cols = st.columns(3)
for k, page in enumerate(STAGE_PAGES.values()):
    with cols[k % 3]:
        st.page_link(page.file, label=f"{k + 1}\\. {page.title}")  # escaped: not a Markdown list

ref = None
if sel.image is None:
    st.info("Choose an image in the sidebar.")
else:
    try:
        with st.spinner("Running the reference pipeline (once per image and model)..."):
            ref = loaders.reference(sel.loaded, sel.model_key, sel.image, sel.reference_spec)
    except D2DebugError as exc:
        st.error(as_uploaded(str(exc)))

if ref is not None:
    st.subheader(f"Your pipeline at a glance: {sel.image_label}")
    glance = pipeline_at_a_glance(sel.loaded, ref)
    left, right = st.columns([3, 1])
    left.table(pd.DataFrame([{"stage": g.stage, "reference setting": g.setting, "on this image": g.value}
                             for g in glance]).set_index("stage"))
    right.image(ref.jpeg(), caption=f"Reference: {outputs_text(ref.result)}", width="stretch")

    st.subheader("Sensitivity: every single pitfall on this image")
    score_name = "Agreement F1" if sel.loaded.arch.instances else "Semantic mIoU"
    st.caption("Each pitfall alone, all other stages at the reference, sorted by damage. Agreement F1 is 1.0 "
               "when the variant reproduces every reference detection (box IoU >= 0.5, same class) and nothing "
               "else; a semantic segmentor is ranked by the mean IoU of its class map instead. Lost = missed + "
               "class-flipped reference detections.")
    bar = st.progress(0.0, text="Running the pitfalls...")
    rows = []
    for k, pitfall in enumerate(PITFALLS):
        bar.progress(k / len(PITFALLS), text=f"Running pitfall {k + 1}/{len(PITFALLS)}: {pitfall.label}")
        rows.append(loaders.pitfall_row(sel.loaded, sel.model_key, sel.image, pitfall, ref))
    bar.empty()
    rows.sort(key=lambda r: r.damage_key())
    st.session_state[Keys.SENSITIVITY] = [r.to_dict() for r in rows]

    head = st.columns([4, 1, 1, 1, 1, 2])
    for c, h in zip(head, ["Pitfall", score_name, "Lost", "Extra", "Class flips", "Page"]):
        c.markdown(f"**{h}**")
    for r in rows:
        c = st.columns([4, 1, 1, 1, 1, 2])
        c[0].markdown(f"{r.pitfall.label}  \n`{r.pitfall.change_text()}`")
        if r.agreement is None:
            c[1].markdown("could not run")
            c[2].caption(r.error)
        else:
            a = r.agreement
            c[1].markdown(f"**{a.score:.3f}**")
            c[2].markdown(str(r.lost))
            c[3].markdown(str(a.extra))
            c[4].markdown(str(a.class_flips))
        with c[5]:
            stage = pitfall_stage(r.pitfall)
            # Opens the stage page with this pitfall already set.
            st.page_link(STAGE_PAGES[stage].file, label=STAGES[stage][0], query_params={Keys.PITFALL_PARAM: r.pitfall.name})
