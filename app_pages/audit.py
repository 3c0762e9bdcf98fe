"""Dashboard page: the dataset audit. Every single-stage pitfall over a set of images, with agreement and COCO
AP per pitfall, the damage chart, the worst images, and the same report the CLI writes. All work is done by
``d2debug.audit.run_audit``; this page reads widgets, calls it with a progress callback, and shows the result.
"""
import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from d2debug.audit import (
    STANDARD_PITFALLS,
    auto_out_dir,
    damage_chart_svg,
    load_summary,
    parse_variants,
    run_audit,
    summary_rows,
    table_records,
)
from d2debug.audit.command import audit_args, audit_commands, default_host, default_processes
from d2debug.errors import D2DebugError
from d2debug.samples import DEMO_AUDIT, SAMPLE_ANNOTATIONS
from d2debug.ui import loaders, serving, sidebar
from d2debug.ui.state import Keys

AUDIT_ROOT = Path(tempfile.gettempdir()) / "d2debug-audits"
SOURCES = ("Sample images (demo set, with annotations)", "Folder or COCO json on this workstation")
LABELS = {p.name: f"{p.label} ({p.change_text()})" for p in STANDARD_PITFALLS}

sel = sidebar()
st.title("Dataset audit: what each pitfall costs on your data")
st.markdown(
    "Runs the **reference** pipeline (exactly `DefaultPredictor`) and each pitfall (one stage changed) on every "
    "image, compares each with the reference, and with COCO annotations scores each with pycocotools. "
    "Uses the model chosen in the sidebar. Finished images are saved as they complete, so an interrupted "
    "audit (a click elsewhere, a closed tab) resumes where it stopped when you press **Run** again."
)

left, right = st.columns(2)
with left:
    source = st.radio("Images", SOURCES, key="audit_source")
    if source == SOURCES[0]:
        images, annotations = str(SAMPLE_ANNOTATIONS), ""
        st.caption(f"`{images}`: 48 images with COCO boxes.")
    else:
        images = st.text_input("Image folder, or a COCO json listing the images", key="audit_images",
                               placeholder="/path/to/val/images or /path/to/val.json").strip()
        annotations = st.text_input("COCO annotations json (optional; gives AP)", key="audit_annotations",
                                    placeholder="/path/to/val.json").strip()
    limit = st.number_input("Audit the first N images (0 = all)", min_value=0, value=0, step=1, key="audit_limit")
with right:
    chosen = st.multiselect("Pitfalls (the reference always runs)", list(LABELS), default=list(LABELS),
                            format_func=LABELS.get, key="audit_variants")
    out_text = st.text_input("Results folder (empty: one under the temporary folder, named after the settings)",
                             key="audit_out").strip()
go = st.button("Run audit", key="audit_run", type="primary")


def chosen_settings():
    """The dataset, pitfalls and results folder the widgets name; raises D2DebugError for a bad one."""
    if not images:
        raise D2DebugError("type an image folder or a COCO json path")
    typed = source != SOURCES[0]  # the sample set is the dashboard's own, not a typed path
    imgs = str(serving.path(images, "images")) if typed else images
    ann = str(serving.path(annotations, "annotations")) if typed and annotations else None
    dataset = loaders.dataset(imgs, ann, int(limit) or None)
    pitfalls = parse_variants(chosen) if chosen else []
    out_dir = (serving.path(out_text, "results folder") if out_text
               else auto_out_dir(AUDIT_ROOT, sel.loaded, dataset, pitfalls))
    return dataset, pitfalls, out_dir


with st.expander("On several GPUs or machines: the same audit under torchrun", expanded=False):
    try:
        _dataset, _pitfalls, cmd_out = chosen_settings()
    except D2DebugError as exc:
        st.info(f"The commands appear once the settings above are complete ({exc}).")
    else:
        c1, c2, c3 = st.columns(3)
        nproc = c1.number_input("Processes per machine (one per GPU)", min_value=1, max_value=64,
                                value=default_processes(), key="audit_nproc")
        nnodes = c2.number_input("Machines", min_value=1, max_value=64, value=1, key="audit_nnodes")
        host = c3.text_input("Rendezvous host (the first machine)", value=default_host(), key="audit_host")
        args = audit_args(sel.loaded, images, annotations or None, chosen, int(limit) or None, cmd_out)
        for label, cmd in audit_commands(args, int(nproc), int(nnodes), host.strip() or None).items():
            st.markdown(f"**{label}**")
            st.code(cmd, language="bash")
        st.caption(
            "Each process audits its share of the images and appends them to its own shard in the results folder "
            "(`results.rank<R>.jsonl`); process 0 merges them and writes the same summary, table and report as one "
            "process would. The folder is this page's: **Run audit** here and the command resume each other's work. "
            "On several machines, run the last command on each: the images (and the model files) must be at the "
            "same paths there."
        )
        if loaders.is_upload(sel.loaded.config_path) or loaders.is_upload(sel.loaded.weights_path):
            st.warning("The model was uploaded: its files are kept only while this dashboard runs. Use files on "
                       "this workstation for a command that outlives it.")

if go:
    try:
        dataset, pitfalls, out_dir = chosen_settings()
        bar = st.progress(0.0, text="Starting...")
        started = {"t": time.monotonic(), "done": 0}

        def progress(done: int, total: int, item) -> None:
            if item is None:
                started.update(t=time.monotonic(), done=done)
                text = f"{done} of {total} images already saved; running the rest..." if done else "Running..."
            else:
                per = (time.monotonic() - started["t"]) / max(1, done - started["done"])
                text = f"{done} of {total} images ({item.key}); about {per * (total - done):.0f} s left"
            bar.progress(done / total if total else 1.0, text=text)

        audit = run_audit(sel.loaded, dataset, out_dir, pitfalls, progress=progress)
        bar.empty()
        st.session_state[Keys.AUDIT] = {
            "summary": audit.summary,
            "figures": audit.figures,
            "outputs": {k: str(v) for k, v in audit.outputs.items()},
            "computed": audit.computed,
            "resumed": audit.resumed,
            "model": sel.model_label,
        }
    except D2DebugError as exc:
        st.error(str(exc))



def show_summary(summary: dict) -> list:
    """The damage chart and the pitfall table of a summary; returns its rows."""
    for note in summary["dataset"].get("notes", []):
        st.info(note)
    for failed in summary["dataset"].get("failed", []):
        st.warning(f"{failed['key']}: {failed['error']}")
    st.markdown("**Damage per pitfall** (most damaging first)")
    st.markdown(damage_chart_svg(summary), unsafe_allow_html=True)
    records, formats = table_records(summary)
    st.dataframe(pd.DataFrame(records), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format=f) for c, f in formats.items()})
    return summary_rows(summary)


result = st.session_state.get(Keys.AUDIT)
if result is None:
    st.subheader("The shipped demo audit: the demo model on its 48 validation images")
    st.caption("Measured with `python -m d2debug audit --images sample_data/annotations.json` and shipped with the "
               "demo model; press **Run audit** above to measure it yourself, or on your own images and model.")
    try:
        show_summary(load_summary(DEMO_AUDIT))
    except D2DebugError as exc:
        st.error(str(exc))
    st.stop()

summary = result["summary"]
ds = summary["dataset"]
st.subheader(f"Results: {ds['finished']} images from {Path(ds['source']).name}, model: {result['model']}")
st.caption(f"Computed {result['computed']} image(s) now, {result['resumed']} resumed from "
           f"`{Path(result['outputs']['results']).parent}`.")
rows = show_summary(summary)

cols = st.columns(4)
for col, (key, label, mime) in zip(cols, [("report", "report.html", "text/html"),
                                          ("markdown", "pitfalls.md", "text/markdown"),
                                          ("summary", "summary.json", "application/json"),
                                          ("results", "results.jsonl", "application/jsonl")]):
    path = Path(result["outputs"][key])
    if path.is_file():  # deferred: the file is read when the button is clicked
        col.download_button(f"Download {label}", path.read_bytes, file_name=label, mime=mime,
                            key=f"audit_dl_{key}", width="stretch")

st.subheader("Worst images per pitfall")
st.caption("Boxes: green matched, orange missed (reference only), blue extra (pitfall only), pink class flipped; "
           "drawn where each pipeline put them on the correctly decoded image.")
for r in rows[1:]:
    figs = result["figures"].get(r.name, [])
    with st.expander(f"{r.label}: {len(figs)} image(s) disagree most" if figs else
                     f"{r.label}: same detections as the reference everywhere", expanded=False):
        if r.explains:
            st.caption(r.explains)
        for (caption, png), col in zip(figs, st.columns(max(1, len(figs)))):
            col.image(png, caption=caption, width="stretch")
