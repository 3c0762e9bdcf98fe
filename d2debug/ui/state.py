"""Choices that persist across pages.

Every persistent widget has an explicit key starting with ``sb_`` (sidebar) or ``stage_`` (stage pages) and is
created with ``persist_state=PERSIST``: Streamlit keeps its value for the whole session, across page switches and
while a page does not draw it. :func:`default` seeds a key once instead of passing ``value=`` to the widget.
"""
from __future__ import annotations

from typing import Any, Final

import streamlit as st

__all__ = ["PERSIST", "default", "reset_model_dependent"]

PERSIST: Final = "session"  # st.* widgets' persist_state: keep the value across page switches
# Stage widgets whose defaults come from the loaded config; reset when another model is loaded.
MODEL_DEPENDENT = ("stage_resize_short", "stage_resize_w", "stage_resize_h", "stage_out_score", "stage_out_nms",
                   "stage_norm_custom_mean", "stage_norm_custom_std")


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
