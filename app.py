"""d2debug dashboard: ``streamlit run app.py`` (``make run``). This file only sets up the page and the menu;
the pages are ``app_pages/*.py`` (Home first), their shared code ``d2debug/ui/``, all computation the library."""
import streamlit as st

from d2debug.compat import silence_library_noise
from d2debug.memory import trim_if_grown
from d2debug.ui.nav import navigation

silence_library_noise()
st.set_page_config(page_title="d2debug", layout="wide")
try:
    navigation().run()
finally:
    trim_if_grown()  # a page's images and forward passes are freed: hand the pages back (d2debug.memory)
