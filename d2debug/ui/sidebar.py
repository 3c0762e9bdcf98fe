"""The sidebar every page shares: which model, which image, and where the reference runs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

from ..checkpoint import key_mismatches
from ..errors import D2DebugError
from ..files import IMAGE_SUFFIXES, list_images
from ..model import LoadedModel, parse_class_names
from ..run import reference_spec
from ..samples import SAMPLE_IMAGES
from ..stages import PipelineSpec
from . import loaders, serving, state
from .state import Keys

__all__ = ["Selection", "sidebar", "as_uploaded", "MODEL_SOURCES", "IMAGE_SOURCES"]

MODEL_SOURCES = ("Demo model", "Files on this workstation", "Upload")
IMAGE_SOURCES = ("Sample images", "Upload", "Folder on this workstation")
_UPLOAD_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES]
_UPLOADERS = ("up_config", "up_weights", "up_image")


@dataclass
class Selection:
    """What the sidebar chose. ``image`` is ``None`` when no usable image is selected (an error was shown)."""

    loaded: LoadedModel
    model_key: str
    model_label: str
    image: Optional[Path]
    image_label: str
    reference_spec: PipelineSpec


def _step(list_key: str, names: list[str], step: int) -> None:
    """Button callback: move the selectbox ``list_key`` to the previous/next of ``names`` (wrapping)."""
    cur = st.session_state.get(list_key)
    i = names.index(cur) if cur in names else 0
    st.session_state[list_key] = names[(i + step) % len(names)]


def _browse(paths: list[Path], list_key: str) -> Path:
    """A selectbox over ``paths`` (by file name) with previous/next buttons. Returns the chosen path."""
    names = [p.name for p in paths]
    if list_key in st.session_state and st.session_state[list_key] not in names:
        st.session_state[list_key] = names[0]  # a name from another folder
    choice = st.selectbox(f"Image ({len(names)} in folder)", names, key=list_key, persist_state=state.PERSIST)
    left, right = st.columns(2)
    left.button("◀ Previous", key=Keys.browse_button(list_key, -1), on_click=_step, args=(list_key, names, -1),
                width="stretch")
    right.button("Next ▶", key=Keys.browse_button(list_key, 1), on_click=_step, args=(list_key, names, 1),
                 width="stretch")
    # The widget's own value: on a page switch its persisted value is restored when the widget is drawn.
    return paths[names.index(choice)] if choice is not None and choice in names else paths[0]


def _forget_upload(key: str) -> None:
    """Uploader callback: a removed file is forgotten (a new one is saved on the next run)."""
    if st.session_state.get(key) is None:
        st.session_state.pop(f"_saved_{key}", None)


def _uploaded(label: str, types: list[str], key: str) -> tuple[Optional[Path], str]:
    """An uploader whose file survives page switches: Streamlit empties the widget on another page, so the saved
    path is kept in session state until the user removes the file. Returns (path, original name)."""
    up = st.file_uploader(label, type=types, key=key, on_change=_forget_upload, args=(key,))
    if up is not None:
        st.session_state[f"_saved_{key}"] = (str(loaders.save_upload(up)), up.name)
    saved = st.session_state.get(f"_saved_{key}")
    if saved is None or not Path(saved[0]).is_file():
        return None, ""
    if up is None:
        st.caption(f"Using {saved[1]}, uploaded earlier.")
    return Path(saved[0]), saved[1]


def as_uploaded(message: str) -> str:
    """``message`` (an error about a file) as the page shows it: each of this session's sidebar uploads named as
    the user uploaded it (``evil.pth``), not by the content-hash name it is saved under, and anything else in the
    session's private folder as ``uploads/...``. The page then names the user's own files, and never where the
    server keeps them."""
    folder = st.session_state.get(Keys.SESSION_FOLDER)
    if not folder:
        return message
    for key in _UPLOADERS:
        saved = st.session_state.get(f"_saved_{key}")
        if saved is not None:
            for path in dict.fromkeys((saved[0], os.path.realpath(saved[0]))):
                message = message.replace(path, saved[1])
    for path in dict.fromkeys((str(folder), os.path.realpath(folder))):
        message = message.replace(path + os.sep, "uploads/")
    return message


def _model_section() -> tuple[LoadedModel, str, str]:
    st.subheader("Model")
    state.default(Keys.MODEL_SOURCE, MODEL_SOURCES[0])
    source = st.radio("Model", MODEL_SOURCES, key=Keys.MODEL_SOURCE, persist_state=state.PERSIST,
                      label_visibility="collapsed")
    problem = None
    if source != MODEL_SOURCES[0]:
        try:
            if source == MODEL_SOURCES[1]:
                state.default(Keys.CONFIG_PATH, "")
                state.default(Keys.WEIGHTS_PATH, "")
                config = st.text_input("config (the training run's config.yaml, or a LazyConfig .py)",
                                       key=Keys.CONFIG_PATH, persist_state=state.PERSIST,
                                       placeholder="/path/to/output/config.yaml").strip()
                weights = st.text_input("weights (.pth / .pt / .safetensors / .pkl)", key=Keys.WEIGHTS_PATH,
                                        persist_state=state.PERSIST,
                                        placeholder="/path/to/output/model_final.pth").strip()
                label = Path(weights or config).name
            else:
                cfg_path, cfg_name = _uploaded("config (.yaml, or a LazyConfig .py)", ["yaml", "yml", "py"],
                                               "up_config")
                w_path, w_name = _uploaded("weights", ["pth", "pt", "safetensors", "pkl"], "up_weights")
                label = f"uploaded {w_name or cfg_name}"
                config = str(cfg_path) if cfg_path else ""
                weights = str(w_path) if w_path else ""
            opts = _model_options()
            if source == MODEL_SOURCES[1]:  # typed paths; uploads are this session's own files
                config = str(serving.path(config, "config")) if config else ""
                weights = str(serving.path(weights, "weights")) if weights else ""
            if not config:
                st.info("Give the training run's config (its config.yaml, or a LazyConfig .py) and weights to load "
                        "your model; showing the demo model meanwhile.")
            else:
                if not weights and serving.policy().allowed_dirs is not None:
                    # The config's own MODEL.WEIGHTS could name any file; only typed or uploaded ones are read here.
                    raise D2DebugError(f"{config}: give the weights too: this server reads only the files given "
                                       "here, not the config's MODEL.WEIGHTS")
                with st.spinner("Loading the model..."):
                    loaded, key = loaders.user_model(config, weights or None, **opts)
                return loaded, key, label
        except D2DebugError as exc:
            problem = as_uploaded(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug, but the dashboard must stay usable; say what happened
            problem = as_uploaded(f"unexpected error while loading the model ({type(exc).__name__}: {exc})")
    with st.spinner("Loading the demo model..."):
        try:
            loaded, key = loaders.demo_model()
        except D2DebugError as exc:
            st.error(str(exc))
            st.stop()
    if problem:
        st.error(f"{problem}. Showing the demo model instead.")
    return loaded, key, "demo model"


def _model_options() -> dict:
    """Class names, and each thing that runs code or trusts a file, behind its own explicit tick."""
    state.default(Keys.CLASSES, "")
    classes_text = st.text_input("class names (.json path: COCO or a list; or comma-separated; optional)",
                                 key=Keys.CLASSES, persist_state=state.PERSIST).strip()
    state.default(Keys.ALLOW_MISMATCH, False)
    state.default(Keys.IMPORTS, "")
    trust = serving.code_tick("Trust this checkpoint (allow pickle .pkl files)", Keys.TRUST_CHECKPOINT,
                              help="Pickle checkpoints can run arbitrary code when loaded.")
    if trust:
        st.warning("Pickle checkpoints can run code on this machine when loaded. Only tick this for files you trust.")
    trust_config = serving.code_tick("Trust this config (a LazyConfig .py is Python code and runs when loaded)",
                                     Keys.TRUST_CONFIG)
    imports_text = st.text_input("Your code: modules or .py files that register your parts (comma-separated)",
                                 key=Keys.IMPORTS, persist_state=state.PERSIST,
                                 placeholder="my_project.modeling, /path/to/my_heads.py",
                                 help="What your training script imports before build_model: a custom ROI head, "
                                      "backbone or meta-architecture registered with detectron2's registries.")
    run_imports = serving.code_tick("Run this code (it is imported into the dashboard's process)", Keys.RUN_IMPORTS)
    allow = st.checkbox("Load even if checkpoint keys do not match", key=Keys.ALLOW_MISMATCH,
                        persist_state=state.PERSIST,
                        help="Layers without weights stay random; the mismatch is shown as an error.")
    imports = tuple(i.strip() for i in imports_text.split(",") if i.strip())
    if imports and not run_imports:
        serving.require_code("'Your code'")
        raise D2DebugError(f"'Your code' names {', '.join(imports)}: importing runs that code; refused until "
                           "'Run this code' is ticked")
    # A file is read like any typed path; a module name is found on the import path.
    imports = tuple(str(serving.path(i, "'Your code' file")) if i.endswith(".py") or "/" in i or i.startswith("~")
                    else i for i in imports)
    if classes_text.lower().endswith(".json"):  # a path: read only where this server allows
        classes_text = str(serving.path(classes_text, "class names file"))
    return {"classes": parse_class_names(classes_text), "trust": trust, "allow_mismatch": allow,
            "trust_config": trust_config, "imports": imports}


def _describe(loaded: LoadedModel, label: str) -> None:
    d = loaded.describe()
    st.caption(f"**{label}**: {d['architecture']}, {d['num_classes']} classes, FORMAT {d['input_format']}")
    with st.expander("What was loaded"):
        st.markdown(
            f"- config: `{d['config']}`\n- weights: `{d['weights']}`\n- architecture: {d['architecture']}\n"
            f"- classes ({d['class_names_source']}): {', '.join(d['class_names'])}\n"
            f"- INPUT.FORMAT: **{d['input_format']}**\n- PIXEL_MEAN: {d['pixel_mean']}\n"
            f"- PIXEL_STD: {d['pixel_std']}\n- MIN/MAX_SIZE_TEST: {d['min_size_test']} / {d['max_size_test']}\n"
            f"- predicts: {', '.join(d['outputs'])}\n"
            f"- score / NMS threshold: {d['score_thresh_test']} / {d['nms_thresh_test']}\n- device: {d['device']}"
        )
    mismatches = key_mismatches(loaded.load_report or {}, 5)
    if mismatches:
        st.error("Checkpoint does not match the model; these layers are random:\n\n- " + "\n- ".join(mismatches))


def _image_section() -> tuple[Optional[Path], str]:
    st.subheader("Image")
    state.default(Keys.IMAGE_SOURCE, IMAGE_SOURCES[0])
    source = st.radio("Image", IMAGE_SOURCES, key=Keys.IMAGE_SOURCE, persist_state=state.PERSIST,
                      label_visibility="collapsed")
    try:
        if source == IMAGE_SOURCES[0]:
            path = _browse(list_images(SAMPLE_IMAGES), Keys.SAMPLE)
            return path, path.name
        if source == IMAGE_SOURCES[1]:
            uploaded, name = _uploaded("Image file", _UPLOAD_TYPES, "up_image")
            if uploaded is None:
                st.info("Upload an image to analyse it.")
                return None, ""
            return uploaded, name
        state.default(Keys.FOLDER, "")
        folder = st.text_input("Folder", key=Keys.FOLDER, persist_state=state.PERSIST,
                               placeholder="/path/to/images").strip()
        if not folder:
            st.info("Type a folder path to browse its images.")
            return None, ""
        with st.spinner("Listing images..."):
            paths = list_images(serving.path(folder, "folder"))
        path = _browse(paths, Keys.FOLDER_IMAGE)
        return path, path.name
    except D2DebugError as exc:
        st.error(as_uploaded(str(exc)))
        return None, ""


def sidebar() -> Selection:
    """Draw the shared sidebar and return the selection. Call first on every page."""
    with st.sidebar:
        serving.note()
        loaded, key, label = _model_section()
        state.reset_model_dependent(key)
        _describe(loaded, label)
        ref_spec = reference_spec(loaded.cfg, device=loaded.device)
        where = "cuda:0" if ref_spec.device == "cuda" else "cpu"
        st.markdown(f"**Reference on {where}**" + ("" if where != "cpu" else " (no CUDA GPU on this machine)"))
        image, image_label = _image_section()
    return Selection(loaded, key, label, image, image_label, ref_spec)
