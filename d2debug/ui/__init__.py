"""Streamlit glue shared by the dashboard pages: the menu, cached loaders, the shared sidebar, widget groups that
return :class:`~d2debug.stages.PipelineSpec` changes, charts, and the stage-page layout. The only Streamlit code
besides ``app.py`` and ``app_pages/``; all computation lives in the library (``d2debug.session`` and below).
"""
from .nav import HOME, SECTIONS, STAGE_PAGES, TOOL_PAGES, navigation
from .sidebar import Selection, sidebar
from .stage_page import stage_page

__all__ = ["HOME", "SECTIONS", "STAGE_PAGES", "TOOL_PAGES", "Selection", "navigation", "sidebar", "stage_page"]
