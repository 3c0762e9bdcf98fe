"""The Deployed model page: an exported artifact (exported here, a path, or an upload) run the way a deployment
runs it, beside the reference run of the sidebar's model, with the gap split into what the export changed and
what the deployment's preprocessing changed, the lessons of each stage the deployment changes, and the correct
deployment code for the artifact's contract."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
import streamlit as st

from ..deploy import (
    CONTRACT_FILE,
    DeployedComparison,
    DeployedModel,
    check_deployment_spec,
    check_same_model,
    contract_differences,
    deployment_code,
    deployment_lines,
)
from ..deploy.artifact import SUFFIXES
from ..deploy.contract import Format, Method
from ..deploy.runner import contract_cfg
from ..errors import D2DebugError
from ..lessons import lesson
from ..pitfalls import STAGES, stage_of
from . import loaders, serving, state
from .sidebar import Selection, as_uploaded, sidebar
from .stage_page import show_comparison
from .state import Keys
from .widgets import deployment_ui, reset_deployment

__all__ = ["deployed_page", "SOURCES", "EXPORTS"]

SOURCES = ("Export the loaded model now", "Path on this workstation", "Upload")
# Export choice -> (format, method); scripting is TorchScript-only and R-CNN-only (export_model says so).
EXPORTS: dict[str, tuple[Format, Method]] = {"TorchScript (tracing)": ("torchscript", "tracing"), "ONNX (tracing)": ("onnx", "tracing"),
           "TorchScript (scripting)": ("torchscript", "scripting")}
_ARTIFACT_TYPES = sorted(s.lstrip(".") for s in SUFFIXES)


@dataclass(frozen=True)
class _Artifact:
    """The artifact chosen: its file, an explicit contract file (or ``None``), and the name to show and to
    write into the deployment code."""

    path: Path
    contract: Optional[Path]
    name: str


def _exported(sel: Selection) -> Optional[_Artifact]:
    """The export-now source: a format choice and a button; the export lands in this session's folder."""
    c1, c2 = st.columns([2, 1])
    state.default(Keys.DEPLOYED_EXPORT_AS, next(iter(EXPORTS)))
    choice = c1.radio("Export as", list(EXPORTS), key=Keys.DEPLOYED_EXPORT_AS, persist_state=state.PERSIST,
                      horizontal=True)
    fmt, method = EXPORTS[choice or next(iter(EXPORTS))]
    if c2.button("Export the loaded model now", key=Keys.DEPLOYED_EXPORT, width="stretch"):
        try:
            with st.spinner(f"Exporting {sel.model_label} to {fmt} ({method}) and checking it..."):
                report = loaders.export(sel.loaded, sel.model_key, fmt, method, loaders.session_folder())
        except D2DebugError as exc:
            st.error(str(exc))
            return None
        st.session_state[Keys.DEPLOYED_EXPORTED] = {"model_key": sel.model_key, "path": str(report.artifact),
                                                   "choice": choice, "seconds": sum(report.seconds.values()),
                                                   "at": time.strftime("%H:%M:%S")}
    saved = st.session_state.get(Keys.DEPLOYED_EXPORTED)
    if saved is None or saved["model_key"] != sel.model_key or not Path(saved["path"]).is_file():
        st.info(f"Click **Export the loaded model now** to export {sel.model_label} into a temporary folder of this "
                "session (a few seconds for the demo model), or choose an artifact of your own above.")
        return None
    st.caption(f"{saved['choice']} export of {sel.model_label} made at {saved['at']} in {saved['seconds']:.1f} s "
               f"(`{saved['path']}`)." + ("" if saved["choice"] == choice else " Click the button to export as "
                                          f"{choice}."))
    return _Artifact(Path(saved["path"]), None, Path(saved["path"]).name)


def _forget_upload(key: str, what: str) -> None:
    """Uploader callback: a removed file is forgotten."""
    if st.session_state.get(key) is None:
        st.session_state.get(Keys.DEPLOYED_UPLOADED, {}).pop(what, None)


def _kept_upload(label: str, types: list[str], key: str, what: str) -> Optional[tuple[Path, str]]:
    """An uploader whose file is saved in this session's folder and kept across page switches (Streamlit
    empties the widget on another page). Returns (saved path, original name)."""
    up = st.file_uploader(label, type=types, key=key, on_change=_forget_upload, args=(key, what))
    kept = st.session_state.setdefault(Keys.DEPLOYED_UPLOADED, {})
    if up is not None:
        kept[what] = (str(loaders.save_upload(up, loaders.session_folder())), up.name)
    saved = kept.get(what)
    if saved is None or not Path(saved[0]).is_file():
        return None
    if up is None:
        st.caption(f"Using {saved[1]}, uploaded earlier.")
    return Path(saved[0]), saved[1]


def _choose_artifact(sel: Selection) -> Optional[_Artifact]:
    """The artifact source radio and its inputs; ``None`` (with an info line) until an artifact is given."""
    state.default(Keys.DEPLOYED_SOURCE, SOURCES[0])
    source = st.radio("Exported model", SOURCES, key=Keys.DEPLOYED_SOURCE, persist_state=state.PERSIST,
                      horizontal=True)
    if source == SOURCES[0]:
        return _exported(sel)
    if source == SOURCES[1]:
        for key in (Keys.DEPLOYED_PATH, Keys.DEPLOYED_CONTRACT_PATH):
            state.default(key, "")
        c1, c2 = st.columns(2)
        path = c1.text_input("Exported model (.ts / .pt / .onnx)", key=Keys.DEPLOYED_PATH, persist_state=state.PERSIST,
                             placeholder="/path/to/model.ts").strip()
        contract = c2.text_input(f"Contract (optional; else the one embedded, else {CONTRACT_FILE} beside it, else "
                                 "derived from the config)", key=Keys.DEPLOYED_CONTRACT_PATH,
                                 persist_state=state.PERSIST, placeholder="/path/to/contract.json").strip()
        if not path:
            st.info("Type the path of your exported model.")
            return None
        try:
            return _Artifact(serving.path(path, "exported model"),
                             serving.path(contract, "contract") if contract else None, path)
        except D2DebugError as exc:
            st.error(str(exc))
            return None
    c1, c2 = st.columns(2)
    with c1:
        artifact = _kept_upload("Exported model", _ARTIFACT_TYPES, Keys.DEPLOYED_UPLOAD, "artifact")
    with c2:
        upload = _kept_upload("Contract (optional)", ["json"], Keys.DEPLOYED_CONTRACT_UPLOAD, "contract")
    if artifact is None:
        st.info(f"Upload your exported model (and its {CONTRACT_FILE}, unless `d2debug export` embedded it).")
        return None
    return _Artifact(artifact[0], upload[0] if upload else None, artifact[1])


def _contract(sel: Selection, dep: DeployedModel, name: str) -> None:
    """What the artifact takes and returns, where its contract came from, and what the export measured."""
    c = dep.contract
    st.subheader("The artifact's contract")
    st.caption(f"`{name}` · runs on {dep.runtime} · contract {dep.contract_source}")
    st.dataframe(pd.DataFrame(c.describe(), columns=["what", "value"]), hide_index=True, width="stretch")
    a = c.agreement
    if a:
        st.caption(f"Measured at export on {a.get('image')}: agreement F1 {a.get('f1')} with the Python model, largest "
                   f"box difference {a.get('max_box_diff_px')} px, score difference {a.get('max_score_diff')}.")
    diffs = contract_differences(sel.loaded, dep)
    if diffs:
        st.warning("Exported with another config than the loaded model's: " + "; ".join(diffs) + ". The export's "
                   "part of the gap below measures what that changes.")


def _gap(comp: DeployedComparison) -> None:
    """The gap split as a table, and the one sentence naming its bigger part."""
    st.subheader("Where the gap comes from")
    st.dataframe(pd.DataFrame(comp.gap_rows()), hide_index=True, width="stretch",
                 column_config={"f1": st.column_config.NumberColumn("agreement F1", format="%.3f"),
                                "mean_iou": st.column_config.NumberColumn("box IoU of pairs", format="%.3f")})
    verdict = comp.verdict()
    (st.success if verdict.startswith("No gap") else st.warning)(verdict)


def _teaching(sel: Selection, dep: DeployedModel, comp: Optional[DeployedComparison], changes: dict,
              name: str) -> None:
    """The lesson of each stage the deployment changes, then the correct deployment code for the contract."""
    cfg = contract_cfg(sel.loaded, dep)
    code = deployment_code(dep.contract, name)
    audit = loaders.demo_audit() if sel.model_key.startswith("demo:") else None
    with st.container(border=True):
        for stage in [s for s in STAGES if s in {stage_of(f) for f in changes}]:
            les = lesson(stage, cfg, comp.view if comp else None, sel.loaded.class_names, sel.loaded.arch, audit)
            st.subheader("Learn: " + les.title)
            st.markdown("**What Detectron2 does.** " + les.what)
            st.markdown("**Why your deployment's choice hurts on this model.** " + les.why)
            lines = "\n".join(dict.fromkeys(deployment_lines(code, f) for f in changes if stage_of(f) == stage))
            if lines.strip():
                st.markdown("**The line of your deployment that differs; the contract's is:**")
                st.code(lines, language="python")
        st.subheader("Correct deployment code for this contract")
        runtime = "onnxruntime" if dep.contract.format == "onnx" else "torch.jit"
        st.markdown(f"Feeds `{name}` exactly what its contract says, with {runtime}, and maps the outputs back to "
                    "`Instances` in the original image, as `DefaultPredictor` returns them.")
        st.code(code, language="python")
        c1, c2 = st.columns(2)
        c1.download_button("Download deploy.py", code, file_name="deploy.py", mime="text/x-python",
                           key=Keys.DEPLOYED_DL_CODE, width="stretch")
        c2.download_button(f"Download {CONTRACT_FILE}", dep.contract.to_json(), file_name=CONTRACT_FILE,
                           mime="application/json", key=Keys.DEPLOYED_DL_CONTRACT, width="stretch")


def _run(sel: Selection, dep: DeployedModel, dep_key: str, changes: dict) -> Optional[DeployedComparison]:
    """The deployment spec from the widgets, run against the reference; ``None`` with one error line when a
    choice is refused (a baked field) or the artifact fails on the input."""
    if sel.image is None:
        st.info("Choose an image in the sidebar.")
        return None
    try:
        spec = sel.reference_spec.replace(**changes)
        check_deployment_spec(spec)
        with st.spinner("Running the reference pipeline (once per image and model)..."):
            ref = loaders.reference(sel.loaded, sel.model_key, sel.image, sel.reference_spec)
        with st.spinner("Running the deployed model..."):
            return loaders.deployed_comparison(sel.loaded, sel.model_key, dep, dep_key, sel.image, spec, ref)
    except D2DebugError as exc:
        st.error(as_uploaded(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a bug; show it and keep the rest of the page working
        st.error(as_uploaded(f"Unexpected error running the deployed model ({type(exc).__name__}: {exc})"))
    return None


@st.fragment
def _panel(sel: Selection, dep: DeployedModel, dep_key: str, name: str) -> None:
    """The gap split, the deployment's stage choices, the comparison and the lessons: a toggle reruns only this."""
    gap_box = st.container()
    with st.container(border=True):
        st.subheader("Your deployment's preprocessing")
        st.caption("Set each stage as your deployment code does it. The reference is the contract's pipeline "
                   "(what DefaultPredictor does around the exported graph); the stage pages share these choices.")
        st.button("Back to the contract's pipeline", key=Keys.DEPLOYED_RESET, on_click=reset_deployment)
        changes = deployment_ui(contract_cfg(sel.loaded, dep))
    comp = _run(sel, dep, dep_key, changes)
    if comp is None:
        st.session_state.pop(Keys.DEPLOYED, None)
        st.session_state.pop(Keys.METRICS, None)
    else:
        with gap_box:
            _gap(comp)
        st.session_state[Keys.DEPLOYED] = {"artifact": str(dep.path), "runtime": dep.runtime,
                                           "contract_source": dep.contract_source,
                                           "gap": comp.gap_rows(), "verdict": comp.verdict(),
                                           "differences": {k: b for k, (_a, b) in comp.view.differences.items()}}
        show_comparison(comp.view, "deployed", sel.image_label, name="Deployed")
    _teaching(sel, dep, comp, changes, name)


def deployed_page() -> None:
    """Draw the whole Deployed model page."""
    sel = sidebar()
    st.title("Deployed model")
    st.markdown(
        "An exported model (TorchScript or ONNX) drops everything `DefaultPredictor` does around the model: "
        "decoding, the channel flip, the resize and mapping the outputs back to the image. Your deployment code "
        "does those. Give the artifact, set the stages as your deployment does them, and see its predictions "
        f"beside the reference run of **{sel.model_label}**, with which part of the gap the export itself makes "
        "and which your preprocessing makes.")
    artifact = _choose_artifact(sel)
    if artifact is None:
        st.session_state.pop(Keys.DEPLOYED, None)
        return
    try:
        with st.spinner("Loading the exported model..."):
            dep, dep_key = loaders.deployed(sel.loaded, sel.model_key, artifact.path, artifact.contract)
        check_same_model(sel.loaded, dep)
    except D2DebugError as exc:
        st.error(str(exc))
        st.session_state.pop(Keys.DEPLOYED, None)
        return
    except Exception as exc:  # noqa: BLE001 - a bug; say what happened and keep the dashboard usable
        st.error(f"Unexpected error loading {artifact.name} ({type(exc).__name__}: {exc})")
        st.session_state.pop(Keys.DEPLOYED, None)
        return
    _contract(sel, dep, artifact.name)
    _panel(sel, dep, dep_key, artifact.name)
