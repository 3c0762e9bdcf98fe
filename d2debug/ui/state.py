"""Choices that persist across pages.

Every persistent widget has an explicit key (a :class:`Keys` constant: ``sb_`` in the sidebar, ``stage_`` on the
stage pages, ``deployed_`` on the Deployed model page) and is
created with ``persist_state=PERSIST``: Streamlit keeps its value for the whole session, across page switches and
while a page does not draw it. :func:`default` seeds a key once instead of passing ``value=`` to the widget.
"""
from __future__ import annotations

from typing import Any, Final

import streamlit as st

__all__ = ["PERSIST", "Keys", "STAGE_KEYS", "MODEL_DEPENDENT", "default", "reset_model_dependent"]

PERSIST: Final = "session"  # st.* widgets' persist_state: keep the value across page switches


class Keys:
    """Every stage widget's and every page result's session-state key, spelled once: the widgets, the pitfall
    presets (the Home page's links), the pages and the tests all name a key through this table."""

    CHANNEL_ORDER = "stage_channel_order"
    RESIZE_POLICY = "stage_resize_policy"
    RESIZE_SHORT = "stage_resize_short"
    RESIZE_W = "stage_resize_w"
    RESIZE_H = "stage_resize_h"
    RESIZE_INTERP = "stage_resize_interp"
    RESIZE_BACKEND = "stage_resize_backend"
    NORM = "stage_norm"
    NORM_CUSTOM_WHERE = "stage_norm_custom_where"
    NORM_CUSTOM_MEAN = "stage_norm_custom_mean"
    NORM_CUSTOM_STD = "stage_norm_custom_std"
    NORM_EXT_MEAN = "stage_norm_ext_mean"
    NORM_EXT_STD = "stage_norm_ext_std"
    DECODER = "stage_decoder"
    OUT_SIZE = "stage_out_size"
    OUT_SCORE = "stage_out_score"
    OUT_NMS = "stage_out_nms"
    DEVICE = "stage_device"
    PRECISION = "stage_precision"
    # The sidebar's choices (the model, its loading flags, the image), kept across pages.
    MODEL_SOURCE = "sb_model_source"
    CONFIG_PATH = "sb_config_path"
    WEIGHTS_PATH = "sb_weights_path"
    CLASSES = "sb_classes"
    TRUST_CHECKPOINT = "sb_trust_checkpoint"
    ALLOW_MISMATCH = "sb_allow_mismatch"
    TRUST_CONFIG = "sb_trust_config"
    IMPORTS = "sb_imports"
    RUN_IMPORTS = "sb_run_imports"
    IMAGE_SOURCE = "sb_image_source"
    SAMPLE = "sb_sample"
    FOLDER_IMAGE = "sb_folder_image"
    FOLDER = "sb_folder"
    # The Deployed model page: where the artifact comes from, and its buttons.
    DEPLOYED_SOURCE = "deployed_source"
    DEPLOYED_PATH = "deployed_path"
    DEPLOYED_CONTRACT_PATH = "deployed_contract_path"
    DEPLOYED_UPLOAD = "deployed_upload"
    DEPLOYED_CONTRACT_UPLOAD = "deployed_contract_upload"
    DEPLOYED_EXPORT_AS = "deployed_export_as"
    DEPLOYED_EXPORT = "deployed_export"
    DEPLOYED_RESET = "deployed_reset"
    DEPLOYED_DL_CODE = "deployed_dl_code"
    DEPLOYED_DL_CONTRACT = "deployed_dl_contract"
    # This session's private temporary folder (exports, uploaded artifacts), and what it holds.
    SESSION_FOLDER = "d2debug_session_folder"
    DEPLOYED_EXPORTED = "d2debug_deployed_exported"
    DEPLOYED_UPLOADED = "d2debug_deployed_uploaded"
    # The Doctor page's optional contract of an exported model (a checkbox; the file picker's keys start with it).
    DOCTOR_USE_CONTRACT = "doctor_use_contract"
    DOCTOR_CONTRACT = "doctor_contract"
    # The Doctor page's "Run my function" tick: the user's FILE.py:FUNCTION runs only when it is ticked.
    DOCTOR_TRUST_CODE = "doctor_trust_code"
    # What a page computed, for the tests and the next rerun.
    METRICS = "d2debug_metrics"
    SENSITIVITY = "d2debug_sensitivity"
    CONFIG_DIFF = "d2debug_config_diff"
    DOCTOR = "d2debug_doctor"
    AUDIT = "d2debug_audit"
    DEPLOYED = "d2debug_deployed"

    @staticmethod
    def browse_button(list_key: str, step: int) -> str:
        """The key of the previous (``step`` -1) / next (+1) button beside the image list ``list_key``."""
        return f"btn_{list_key}_{'next' if step > 0 else 'prev'}"

    # The query parameter of a link that opens a stage page with a pitfall preset (``?pitfall=channel_swap``).
    PITFALL_PARAM = "pitfall"


# Stage id -> the keys of its widgets (what a preset resets before setting a pitfall).
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "channel_order": (Keys.CHANNEL_ORDER,),
    "resize": (Keys.RESIZE_POLICY, Keys.RESIZE_SHORT, Keys.RESIZE_W, Keys.RESIZE_H, Keys.RESIZE_INTERP,
               Keys.RESIZE_BACKEND),
    "normalization": (Keys.NORM, Keys.NORM_CUSTOM_WHERE, Keys.NORM_CUSTOM_MEAN, Keys.NORM_CUSTOM_STD,
                      Keys.NORM_EXT_MEAN, Keys.NORM_EXT_STD),
    "decoding": (Keys.DECODER,),
    "output": (Keys.OUT_SIZE, Keys.OUT_SCORE, Keys.OUT_NMS),
    "device": (Keys.DEVICE, Keys.PRECISION),
}
# Stage widgets whose defaults come from the loaded config; reset when another model is loaded.
MODEL_DEPENDENT = (Keys.RESIZE_SHORT, Keys.RESIZE_W, Keys.RESIZE_H, Keys.OUT_SCORE, Keys.OUT_NMS,
                   Keys.NORM_CUSTOM_MEAN, Keys.NORM_CUSTOM_STD)


def default(key: str, value: Any) -> None:
    """Seed ``key`` once; the widget with that key then takes its value from session state."""
    if key not in st.session_state:
        st.session_state[key] = value


def reset_model_dependent(model_key: str) -> None:
    """Forget config-derived widget values when the loaded model changes."""
    if st.session_state.get("_d2debug_model_key") != model_key:
        for k in MODEL_DEPENDENT:
            st.session_state.pop(k, None)
        st.session_state["_d2debug_model_key"] = model_key
