"""Stage page: resize (all other stages at the reference). Layout and logic: d2debug.ui.stage_page."""
from d2debug.ui import stage_page

stage_page("resize")
