"""Dashboard page: training vs deployment config. Both merged onto detectron2's get_cfg() by
``d2debug.config_diff.diff_configs``; this page picks the two files and shows the differences, inference-relevant
first, each with what it changes at inference. It opens on the demo model's training config against a typical
hand-written deployment config."""
import json

import pandas as pd
import streamlit as st

from d2debug.config_diff import DEFAULTS_LABEL, GROUPS, diff_configs
from d2debug.errors import D2DebugError
from d2debug.samples import DEPLOY_EXAMPLE
from d2debug.ui import serving, sidebar
from d2debug.ui.loaders import save_upload
from d2debug.ui.state import Keys

TRAIN_SOURCES = ("The sidebar model's config", "Path on this workstation", "Upload")
EXAMPLE_DEPLOY = "A typical hand-written deployment config (example)"
DEPLOY_SOURCES = (EXAMPLE_DEPLOY, "Path on this workstation", "Upload", DEFAULTS_LABEL)

sel = sidebar()
st.title("Config diff: training vs deployment")
st.markdown(
    "Deployments often rebuild the config from a model-zoo file or from `get_cfg()` instead of the training "
    "run's dumped `config.yaml`, and lose custom `PIXEL_MEAN/STD`, `INPUT.FORMAT`, test sizes or thresholds. "
    "Both files are merged onto detectron2's defaults (a key a file leaves out counts with its default, as "
    "detectron2 would use it); the keys that change inference come first."
)


def pick(label: str, sources, key: str):
    """A file chosen by path, upload, or a fixed choice. Returns (path or None for defaults, display name)."""
    choice = st.radio(label, sources, key=f"{key}_source")
    if choice == TRAIN_SOURCES[0]:
        return str(sel.loaded.config_path), f"{sel.model_label}: {sel.loaded.config_path}"
    if choice == DEFAULTS_LABEL:
        return None, DEFAULTS_LABEL
    if choice == EXAMPLE_DEPLOY:
        st.caption(f"`{DEPLOY_EXAMPLE.name}`: the demo's MODEL section copied by hand, the input settings left to "
                   "get_cfg()'s defaults.")
        return str(DEPLOY_EXAMPLE), DEPLOY_EXAMPLE.name
    if choice == "Upload":
        up = st.file_uploader(f"{label} (.yaml)", type=["yaml", "yml"], key=f"{key}_upload")
        if up is None:
            return "", ""
        return str(save_upload(up)), up.name
    path = st.text_input(f"{label}: path", key=f"{key}_path", placeholder="/path/to/config.yaml").strip()
    if not path:
        return "", ""
    try:
        return str(serving.path(path, label.lower())), path
    except D2DebugError as exc:
        st.error(str(exc))
        return "", ""


left, right = st.columns(2)
with left:
    train, train_name = pick("Training config", TRAIN_SOURCES, "config_diff_train")
with right:
    deploy, deploy_name = pick("Deployment config", DEPLOY_SOURCES, "config_diff_deploy")

if train == "" or deploy == "":
    st.session_state.pop(Keys.CONFIG_DIFF, None)  # what is recorded is always the diff of the files chosen now
    st.info("Choose both configs.")
    st.stop()

try:
    diff = diff_configs(train, deploy, serving.path_check())
except D2DebugError as exc:
    st.session_state.pop(Keys.CONFIG_DIFF, None)
    st.error(str(exc))
    st.stop()

st.session_state[Keys.CONFIG_DIFF] = diff.to_dict()
c1, c2, c3 = st.columns(3)
c1.metric("Keys compared", diff.n_keys)
c2.metric("Keys that differ", len(diff.differences))
c3.metric("Change inference", len(diff.inference_differences))
if not diff.differences:
    st.success(f"No differences between {train_name} and {deploy_name}.")
    st.stop()
if not diff.inference_differences:
    st.success("Only training settings differ: inference is the same.")

for group in GROUPS:
    items = [d for d in diff.differences if d.group == group]
    if not items:
        continue
    if group == "training only":
        with st.expander(f"Training only ({len(items)} keys, no effect at inference)"):
            st.dataframe(pd.DataFrame([{"key": d.key, "training": str(d.train), "deployment": str(d.deploy)}
                                       for d in items]), hide_index=True, width="stretch")
        continue
    st.subheader(group.capitalize())
    st.markdown("\n".join(f"- **{d.key}**: `{d.train!s}` → `{d.deploy!s}`  \n  {d.effect}" for d in items))

st.download_button("Download as JSON", json.dumps(diff.to_dict(), indent=1, default=str),
                   file_name="config_diff.json", mime="application/json", key="config_diff_download")
