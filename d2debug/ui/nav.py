"""The dashboard's pages and its menu: which file each page is, its title and address, and the section it
sits in. ``app.py`` hands :func:`navigation` to Streamlit, which runs the page chosen.

The page files live in ``pages/``, the folder Streamlit's own multipage layout uses; once ``st.navigation`` is
called Streamlit ignores that folder for its automatic menu, so the menu is exactly :data:`SECTIONS` (titles,
never file names; ``tests/test_browser.py`` checks it in a real browser)."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ..pitfalls import STAGES

__all__ = ["PageInfo", "HOME", "STAGE_PAGES", "TOOL_PAGES", "SECTIONS", "navigation"]


@dataclass(frozen=True)
class PageInfo:
    """``file``: relative to the checkout (where ``app.py`` is); ``url_path``: the page's address."""

    file: str
    title: str
    url_path: str


HOME = PageInfo("pages/home.py", "Home", "")
# Stage id -> its page; the order is the stages' (and the menu's).
STAGE_PAGES: dict[str, PageInfo] = {
    stage: PageInfo(f"pages/{stage}.py", title, stage.replace("_", "-")) for stage, (title, _f) in STAGES.items()
}
TOOL_PAGES: dict[str, PageInfo] = {
    "doctor": PageInfo("pages/doctor.py", "Pipeline doctor", "doctor"),
    "audit": PageInfo("pages/audit.py", "Dataset audit", "audit"),
    "config_diff": PageInfo("pages/config_diff.py", "Config diff", "config-diff"),
}
SECTIONS: dict[str, list[PageInfo]] = {
    "Start": [HOME],
    "One stage at a time": list(STAGE_PAGES.values()),
    "Tools": list(TOOL_PAGES.values()),
}


def navigation():
    """The menu (sections of titled pages, Home the default) as ``st.navigation``; call ``.run()`` on it."""
    return st.navigation({
        section: [st.Page(p.file, title=p.title, url_path=p.url_path or None, default=p is HOME) for p in pages]
        for section, pages in SECTIONS.items()
    })
