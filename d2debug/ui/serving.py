"""The one place the dashboard decides who may run code and which typed paths it reads: the
:class:`~d2debug.serving.ServingPolicy` of this server (its ``server.address`` and d2debug's environment
variables, both the operator's), and the widgets that follow it. Pages and the sidebar ask here; they never read
the address or the variables themselves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import streamlit as st
from streamlit import config as st_config

from ..serving import PathCheck, ServingPolicy, serving_policy
from . import state

__all__ = ["policy", "note", "code_tick", "require_code", "path"]


def policy() -> ServingPolicy:
    """This server's policy, read on every call: the address as Streamlit was started with it (``None`` when
    unset: all interfaces) and the process's environment."""
    return serving_policy(st_config.get_option("server.address"))


def note() -> None:
    """The sidebar's lines on what the operator has turned off or limited; nothing on a personal workstation
    (loopback, nothing set)."""
    pol = policy()
    if not pol.code_allowed:
        st.caption(pol.code_refusal() + ".")
    if pol.allowed_dirs is not None:
        st.caption(pol.paths_note())


def code_tick(label: str, key: str, help: Optional[str] = None, explain: bool = False) -> bool:
    """A tick that lets the user's own code run. Disabled, and read as unticked whatever its state says, unless
    the operator allows code on this server; ``explain`` adds the one line of how the operator turns it on
    under it (the sidebar says it once for all its ticks)."""
    pol = policy()
    state.default(key, False)
    ticked = st.checkbox(label, key=key, persist_state=state.PERSIST, disabled=not pol.code_allowed,
                         help=help if pol.code_allowed else pol.code_refusal())
    if not pol.code_allowed and explain:
        st.caption(pol.code_refusal() + ".")
    return bool(ticked) and pol.code_allowed


def require_code(what: str) -> None:
    """Raise ``D2DebugError`` in one line naming ``what`` and the variable unless code may run on this server:
    the check right before a call that runs the user's code, whatever the widgets said."""
    policy().require_code(what)


def path(typed: Union[str, Path], what: str = "path") -> Path:
    """The file or folder to read for a typed path (resolved when this server limits paths); raises
    ``D2DebugError`` in one line for a path outside the folders the operator allows."""
    return policy().check_path(typed, what)


def path_check() -> Optional[PathCheck]:
    """What the library's loaders check the paths files name with (a config's ``_BASE_``, a COCO json's
    images): ``None`` when this server reads any path."""
    pol = policy()
    return None if pol.allowed_dirs is None else pol.check_path
