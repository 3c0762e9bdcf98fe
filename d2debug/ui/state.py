"""Choices that persist across pages.

Streamlit forgets a widget's value when a run does not draw that widget (for example after switching to a page
without it). Every persistent widget here has an explicit key starting with ``sb_`` (sidebar) or ``stage_``
(stage pages); :func:`keep` re-assigns those keys at the top of every page so they survive page switches, and
:func:`default` seeds a key once instead of passing ``value=`` to the widget.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

__all__ = ["PERSISTENT_PREFIXES", "keep", "default", "reset_model_dependent"]

PERSISTENT_PREFIXES = ("sb_", "stage_")
# Stage widgets whose defaults come from the loaded config; reset when another model is loaded.
MODEL_DEPENDENT = ("stage_resize_short", "stage_resize_w", "stage_resize_h", "stage_out_score", "stage_out_nms",
                   "stage_norm_custom_mean", "stage_norm_custom_std")


def keep() -> None:
    """Make persistent widget values survive a page switch (call before drawing any widget)."""
    for k in list(st.session_state.keys()):
        if isinstance(k, str) and k.startswith(PERSISTENT_PREFIXES):
            st.session_state[k] = st.session_state[k]


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
