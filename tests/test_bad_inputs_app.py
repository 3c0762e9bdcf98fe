"""The bad-image corpus through the dashboard: every broken file is ONE st.error naming it, the page keeps
working, and the next (good) image gives the reference again. Every page recovers the same way."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from d2debug.ui.nav import STAGE_PAGES
from d2debug.ui.state import Keys

from corpus import broken_corpus
from helpers import APP_TIMEOUT as TIMEOUT
from helpers import ROOT, set_radio
from helpers import app_errors as errors
from helpers import app_metrics as metrics
from helpers import app_run as run

PAGES = {stage: page.file for stage, page in STAGE_PAGES.items()}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _folder(tmp_path, names):
    for name in names:
        (tmp_path / name).write_bytes(broken_corpus()[name])
    # Sorted last; a link to a sample so cached reference results are reused.
    (tmp_path / "zz_good.jpg").symlink_to(ROOT / "sample_data/images/val_000.jpg")
    return tmp_path


def _open_folder(page: str, folder) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT * 3)
    run(at)
    set_radio(at, Keys.IMAGE_SOURCE, "Folder on this workstation")
    at.text_input(key=Keys.FOLDER).input(str(folder))
    return run(at)


def test_every_broken_image_is_one_error_and_the_page_keeps_working(tmp_path):
    names = sorted(broken_corpus())
    at = _open_folder(PAGES["channel_order"], _folder(tmp_path, names))
    for name in names:
        assert at.selectbox(key=Keys.FOLDER_IMAGE).value == name
        errs = errors(at)
        assert len(errs) == 1 and name in errs[0], (name, errs)
        assert "Traceback" not in errs[0]
        at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, 1)).click()
        run(at)
    assert at.selectbox(key=Keys.FOLDER_IMAGE).value == "zz_good.jpg"
    assert not errors(at) and metrics(at)["f1"] == 1.0


@pytest.mark.parametrize("page", [p for k, p in PAGES.items() if k != "channel_order"])
def test_each_stage_page_recovers_from_a_broken_image(tmp_path, page):
    at = _open_folder(page, _folder(tmp_path, ["truncated.png"]))
    assert any("truncated.png" in e for e in errors(at)), errors(at)
    at.button(key=Keys.browse_button(Keys.FOLDER_IMAGE, 1)).click()
    run(at)
    assert not errors(at), errors(at)
    assert metrics(at)["image"] == "zz_good.jpg"
