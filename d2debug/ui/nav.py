"""The dashboard's pages and its menu: which file each page is, its title and address, and the section it
sits in. ``app.py`` hands :func:`navigation` to Streamlit, which runs the page chosen.

The menu is exactly :data:`SECTIONS` (titles, never file names). The page files live in ``app_pages/``, not
``pages/``: Streamlit (1.65) decides once per server process, before ``app.py`` runs, whether a ``pages/`` folder
sits beside it, and then serves that process's first request through its old folder-based menu (the file
names; an address that is no file stem shows "Page not found"). ``tests/test_browser.py`` checks both in a real
browser."""
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


HOME = PageInfo("app_pages/home.py", "Home", "")
# Stage id -> its page; the order is the stages' (and the menu's).
STAGE_PAGES: dict[str, PageInfo] = {
    stage: PageInfo(f"app_pages/{stage}.py", title, stage.replace("_", "-")) for stage, (title, _f) in STAGES.items()
}
TOOL_PAGES: dict[str, PageInfo] = {
    "doctor": PageInfo("app_pages/doctor.py", "Pipeline doctor", "doctor"),
    "audit": PageInfo("app_pages/audit.py", "Dataset audit", "audit"),
    "config_diff": PageInfo("app_pages/config_diff.py", "Config diff", "config-diff"),
    "deployed": PageInfo("app_pages/deployed.py", "Deployed model", "deployed"),
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
