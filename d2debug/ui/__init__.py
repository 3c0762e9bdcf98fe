"""Streamlit glue shared by the dashboard pages: cached loaders, the shared sidebar, widget groups that return
:class:`~d2debug.stages.PipelineSpec` changes, charts, and the stage-page layout. The only Streamlit code besides
``app.py`` and ``pages/``; all computation lives in the library (``d2debug.session`` and below).
"""
from .sidebar import Selection, sidebar
from .stage_page import PAGE_FILES, stage_page

__all__ = ["PAGE_FILES", "Selection", "sidebar", "stage_page"]
