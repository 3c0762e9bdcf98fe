"""Who may run code and read paths through the dashboard: the operator, by the server's address and d2debug's
environment variables (d2debug.serving); on a server others can reach, the code-running ticks are off, typed
paths are read only under the allowed folders, and each session's uploads are its own."""
from __future__ import annotations

import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from d2debug.errors import D2DebugError
from d2debug.samples import DEMO_CONFIG, DEMO_WEIGHTS
from d2debug.serving import ALLOW_CODE_VAR, ALLOWED_DIRS_VAR, is_loopback, serving_policy
from d2debug.ui.state import Keys

from corpus import evil_pickle
from helpers import ROOT, SAMPLE_IMAGES, TINY_CONFIG, app_errors, app_run, streamlit_config

TIMEOUT = 300
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CONFIG_DIFF = str(ROOT / "app_pages" / "config_diff.py")
MODEL_TICKS = (Keys.TRUST_CHECKPOINT, Keys.TRUST_CONFIG, Keys.RUN_IMPORTS)


@pytest.fixture(autouse=True)
def _no_operator_settings(monkeypatch):
    # The runner's own environment must not decide these tests.
    monkeypatch.delenv(ALLOW_CODE_VAR, raising=False)
    monkeypatch.delenv(ALLOWED_DIRS_VAR, raising=False)


@contextmanager
def listening_on(address):
    """Streamlit's ``server.address`` as if the server were started with ``--server.address address``."""
    with patch_config_options({"server.address": address}):
        yield


@pytest.fixture
def lan():
    with listening_on("0.0.0.0"):
        yield


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """An allowed folder (``D2DEBUG_ALLOWED_DIRS``) beside one that is not, and a file in each."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "in.yaml").write_text("MODEL: {}\n")
    (outside / "secret.yaml").write_text("MODEL: {}\n")
    monkeypatch.setenv(ALLOWED_DIRS_VAR, str(allowed))
    return allowed, outside


# ---------------------------------------------------------------------------------------------------------------
# The policy


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.2.1", "localhost", "LOCALHOST", "::1", "[::1]",
                                     "::ffff:127.0.0.1"])
def test_loopback_addresses(address):
    assert is_loopback(address)


@pytest.mark.parametrize("address", [None, "", "0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "fe80::1",
                                     "gpu-box.lan", "localhost.example.com", "unix:///tmp/d2debug.sock"])
def test_addresses_others_can_reach(address):
    assert not is_loopback(address)


def test_on_loopback_with_nothing_set_everything_works_as_on_a_workstation():
    pol = serving_policy("127.0.0.1", {})
    assert pol.code_allowed and pol.allowed_dirs is None
    assert pol.check_path("~/model.pth") == Path("~/model.pth").expanduser()  # as typed: any path
    pol.require_code("Trust this checkpoint")


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.168.1.20"])
def test_on_another_address_code_and_typed_paths_are_off_and_say_how_to_turn_them_on(address):
    pol = serving_policy(address, {})
    assert not pol.code_allowed and pol.allowed_dirs == ()
    with pytest.raises(D2DebugError) as exc:
        pol.require_code("Trust this checkpoint")
    line = str(exc.value)
    assert "\n" not in line and line.startswith("Trust this checkpoint") and f"{ALLOW_CODE_VAR}=1" in line
    with pytest.raises(D2DebugError) as exc:
        pol.check_path(str(TINY_CONFIG))
    assert "\n" not in str(exc.value) and str(TINY_CONFIG) in str(exc.value) and ALLOWED_DIRS_VAR in str(exc.value)


@pytest.mark.parametrize("value,address,allowed", [("1", "0.0.0.0", True), ("yes", "0.0.0.0", True),
                                                   ("0", "127.0.0.1", False), ("off", "localhost", False),
                                                   ("maybe", "127.0.0.1", False), ("", "0.0.0.0", False),
                                                   ("", "127.0.0.1", True)])
def test_the_operator_decides_code_with_the_variable(value, address, allowed):
    pol = serving_policy(address, {ALLOW_CODE_VAR: value})
    assert pol.code_allowed is allowed
    if not allowed:
        assert ALLOW_CODE_VAR in pol.code_refusal()


def test_allowed_folders_accept_what_is_inside_them(folders):
    allowed, _outside = folders
    (allowed / "sub").mkdir()
    (allowed / "sub" / "w.pth").write_bytes(b"x")
    (allowed / "link.yaml").symlink_to(allowed / "in.yaml")  # a link that stays inside
    for addr in ("0.0.0.0", "127.0.0.1"):  # set, the folders hold on loopback too
        pol = serving_policy(addr, os.environ)
        assert pol.allowed_dirs == (allowed.resolve(),)
        assert pol.check_path(allowed / "sub" / "w.pth") == (allowed / "sub" / "w.pth").resolve()
        assert pol.check_path(f"{allowed}/sub/../in.yaml") == (allowed / "in.yaml").resolve()
        assert pol.check_path(allowed / "link.yaml") == (allowed / "in.yaml").resolve(), "the real file is read"
        assert pol.check_path(allowed) == allowed.resolve()


def test_symlinks_dotdot_and_lookalike_folders_cannot_leave_the_allowed_folders(folders, tmp_path):
    allowed, outside = folders
    (allowed / "escape.yaml").symlink_to(outside / "secret.yaml")
    (allowed / "door").symlink_to(outside, target_is_directory=True)
    (tmp_path / "allowed2").mkdir()  # shares the allowed folder's name as a prefix
    (tmp_path / "allowed2" / "x.yaml").write_text("MODEL: {}\n")
    pol = serving_policy("0.0.0.0", os.environ)
    for bad in (allowed / "escape.yaml", allowed / "door" / "secret.yaml", allowed / "door",
                f"{allowed}/../outside/secret.yaml", f"{allowed}/nope/../../outside/secret.yaml",
                tmp_path / "allowed2" / "x.yaml", outside / "missing.yaml", "/etc/passwd"):
        with pytest.raises(D2DebugError) as exc:
            pol.check_path(bad, "config")
        line = str(exc.value)
        assert "\n" not in line and line.startswith(str(bad)) and "outside the folders" in line, line
        assert ALLOWED_DIRS_VAR in line


def test_home_is_expanded_before_the_check(folders, monkeypatch):
    allowed, _outside = folders
    monkeypatch.setenv("HOME", str(allowed.parent))
    pol = serving_policy("0.0.0.0", os.environ)
    assert pol.check_path("~/allowed/in.yaml") == (allowed / "in.yaml").resolve()
    with pytest.raises(D2DebugError):
        pol.check_path("~/outside/secret.yaml")


def test_files_named_inside_files_stay_inside_the_allowed_folders(folders):
    """A config's _BASE_ and a COCO json's images are paths too: outside the folders they are refused in one
    line naming them (a model-zoo base shipped with detectron2 stays readable); inside, they load."""
    from d2debug.audit import load_dataset
    from d2debug.config import load_cfg

    allowed, outside = folders
    check = serving_policy("0.0.0.0", os.environ).check_path
    (allowed / "leaky.yaml").write_text(f"_BASE_: {outside / 'secret.yaml'}\n")
    (allowed / "sneaky.yaml").write_text("_BASE_: ../outside/secret.yaml\n")
    for name in ("leaky.yaml", "sneaky.yaml"):
        with pytest.raises(D2DebugError) as err:
            load_cfg(allowed / name, (), check)
        assert "_BASE_ of" in str(err.value) and ALLOWED_DIRS_VAR in str(err.value) and "\n" not in str(err.value)
    import detectron2.model_zoo

    zoo = Path(detectron2.model_zoo.__file__).parent / "configs" / "Base-RCNN-FPN.yaml"
    (allowed / "zoo.yaml").write_text(f"_BASE_: {zoo}\n")
    assert load_cfg(allowed / "zoo.yaml", (), check).MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert load_cfg(allowed / "leaky.yaml").MODEL is not None  # unchecked (a workstation): read as named

    shutil.copy(SAMPLE_IMAGES[0], outside / "x.jpg")
    shutil.copy(SAMPLE_IMAGES[0], allowed / "y.jpg")
    coco = '{"images": [{"id": 1, "file_name": "%s", "width": 1, "height": 1}], "annotations": [], "categories": []}'
    (allowed / "out.json").write_text(coco % "../outside/x.jpg")
    (allowed / "in.json").write_text(coco % "y.jpg")
    with pytest.raises(D2DebugError) as err:
        load_dataset(allowed / "out.json", path_check=check)
    assert "image '../outside/x.jpg'" in str(err.value) and ALLOWED_DIRS_VAR in str(err.value)
    assert len(load_dataset(allowed / "in.json", path_check=check).images) == 1
    images = allowed / "images"
    images.mkdir()
    (images / "link.jpg").symlink_to(outside / "x.jpg")  # a folder's file that leads out
    with pytest.raises(D2DebugError):
        load_dataset(images, path_check=check)


def test_the_model_loader_refuses_code_however_it_is_reached(lan, tmp_path):
    from d2debug.ui import loaders

    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(evil_pickle(marker))
    for flags, what in (({"trust": True}, "Trust this checkpoint"), ({"trust_config": True}, "Trust this config"),
                        ({"imports": ["os"]}, "Run this code")):
        with pytest.raises(D2DebugError, match=f"{what}: refused.*{ALLOW_CODE_VAR}=1"):
            loaders.user_model(str(TINY_CONFIG), str(evil), None, **{"trust": False, "allow_mismatch": False,
                                                                     **flags})
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# The pages


def _files(at, config, weights):
    """Choose "Files on this workstation" in the sidebar and type the two paths."""
    at.radio(key=Keys.MODEL_SOURCE).set_value("Files on this workstation")
    app_run(at)
    at.text_input(key=Keys.CONFIG_PATH).input(str(config))
    at.text_input(key=Keys.WEIGHTS_PATH).input(str(weights))
    return app_run(at)


def _model_key(at) -> str:
    return at.session_state["_d2debug_model_key"]


def test_on_loopback_the_code_ticks_work_and_the_sidebar_says_nothing():
    with listening_on("127.0.0.1"):
        at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
        at.radio(key=Keys.MODEL_SOURCE).set_value("Files on this workstation")
        app_run(at)
    assert all(not at.checkbox(key=k).disabled for k in MODEL_TICKS)
    assert not [c.value for c in at.sidebar.caption if ALLOW_CODE_VAR in c.value or ALLOWED_DIRS_VAR in c.value]


def test_on_another_address_the_code_ticks_are_off_and_a_forged_tick_runs_nothing(lan, folders, tiny_weights):
    allowed, _outside = folders
    shutil.copy(TINY_CONFIG, allowed / "tiny.yaml")
    marker = allowed / "ran.txt"
    (allowed / "evil.pkl").write_bytes(evil_pickle(marker))
    at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
    notes = [c.value for c in at.sidebar.caption if ALLOW_CODE_VAR in c.value]
    assert len(notes) == 1 and f"{ALLOW_CODE_VAR}=1" in notes[0] and "0.0.0.0" in notes[0]
    assert any(str(allowed.resolve()) in c.value for c in at.sidebar.caption), "which folders are allowed"
    at.radio(key=Keys.MODEL_SOURCE).set_value("Files on this workstation")
    app_run(at)
    assert all(at.checkbox(key=k).disabled for k in MODEL_TICKS)
    for k in MODEL_TICKS:  # what a crafted client could send: the widgets' values, disabled or not
        at.session_state[k] = True
    _files(at, allowed / "tiny.yaml", allowed / "evil.pkl")
    (err,) = app_errors(at)
    assert "evil.pkl" in err and _model_key(at).startswith("demo:")
    assert not marker.exists()


def test_a_typed_path_outside_the_allowed_folders_is_one_error_and_nothing_is_loaded(lan, folders, tiny_weights):
    allowed, outside = folders
    shutil.copy(TINY_CONFIG, outside / "tiny.yaml")
    shutil.copy(tiny_weights, allowed / "tiny.pth")
    (allowed / "tiny.yaml").symlink_to(outside / "tiny.yaml")  # a link out of the allowed folder
    at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
    _files(at, allowed / "tiny.yaml", allowed / "tiny.pth")
    (err,) = app_errors(at)
    assert "outside the folders" in err and ALLOWED_DIRS_VAR in err and _model_key(at).startswith("demo:")
    # The same files inside the allowed folder load: the refusal was the folder's, not the files'.
    (allowed / "tiny.yaml").unlink()
    shutil.copy(TINY_CONFIG, allowed / "tiny.yaml")
    at.text_input(key=Keys.CONFIG_PATH).input(str(allowed / "tiny.yaml"))
    app_run(at)
    assert not app_errors(at) and _model_key(at).startswith("user:")


def test_an_image_folder_outside_the_allowed_folders_is_refused(lan, folders):
    allowed, _outside = folders
    at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
    at.radio(key=Keys.IMAGE_SOURCE).set_value("Folder on this workstation")
    app_run(at)
    at.text_input(key=Keys.FOLDER).input(f"{allowed}/{os.path.relpath(SAMPLE_IMAGES[0].parent, allowed)}")
    app_run(at)
    (err,) = app_errors(at)
    assert "outside the folders" in err
    assert not [s for s in at.selectbox if s.key == Keys.FOLDER_IMAGE], "no image of that folder is listed"


def test_with_no_allowed_folders_typed_paths_are_off_on_another_address(lan):
    at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
    at.radio(key="config_diff_deploy_source").set_value("Path on this workstation")
    app_run(at)
    at.text_input(key="config_diff_deploy_path").input(str(TINY_CONFIG))
    app_run(at)
    (err,) = app_errors(at)
    assert "Typed paths are off" in err and ALLOWED_DIRS_VAR in err
    assert Keys.CONFIG_DIFF not in at.session_state


def test_the_deployed_model_page_refuses_a_path_outside(lan, folders):
    allowed, outside = folders
    (outside / "model.ts").write_bytes(b"not read")
    at = app_run(AppTest.from_file(str(ROOT / "app_pages" / "deployed.py"), default_timeout=TIMEOUT))
    at.radio(key=Keys.DEPLOYED_SOURCE).set_value("Path on this workstation")
    app_run(at)
    at.text_input(key=Keys.DEPLOYED_PATH).input(str(outside / "model.ts"))
    app_run(at)
    (err,) = app_errors(at)
    assert "exported model refused" in err and Keys.DEPLOYED not in at.session_state
    (allowed / "model.ts").symlink_to(outside / "model.ts")
    at.text_input(key=Keys.DEPLOYED_PATH).input(str(allowed / "model.ts"))
    at.text_input(key=Keys.DEPLOYED_CONTRACT_PATH).input(str(outside / "contract.json"))
    app_run(at)
    (err,) = app_errors(at)
    assert "outside the folders" in err and Keys.DEPLOYED not in at.session_state


def _doctor(source: str, **widgets) -> AppTest:
    """The Doctor page opened with its input source (and other widgets) already chosen: no example runs."""
    at = AppTest.from_file(str(ROOT / "app_pages" / "doctor.py"), default_timeout=TIMEOUT)
    at.session_state["doctor_input_source"] = source
    for k, v in widgets.items():
        at.session_state[k] = v
    return app_run(at)


def test_the_doctor_does_not_run_a_function_on_another_address(lan, tmp_path):
    marker = tmp_path / "ran.txt"
    (tmp_path / "prep.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef preprocess(path):\n    return None\n")
    at = _doctor("Your preprocessing function", doctor_function=f"{tmp_path}/prep.py:preprocess",
                 **{Keys.DOCTOR_TRUST_CODE: True})
    assert at.checkbox(key=Keys.DOCTOR_TRUST_CODE).disabled
    assert any(f"{ALLOW_CODE_VAR}=1" in c.value for c in at.main.caption), "the line under the tick"
    (err,) = app_errors(at)
    assert err.startswith("Run my function: refused") and ALLOW_CODE_VAR in err
    assert not marker.exists() and Keys.DOCTOR not in at.session_state


def test_the_doctor_refuses_input_and_contract_paths_outside(lan, folders):
    allowed, outside = folders
    (outside / "input.pt").write_bytes(b"not read")
    at = _doctor("Path on this workstation", doctor_input_path=str(outside / "input.pt"))
    (err,) = app_errors(at)
    assert "model input refused" in err and Keys.DOCTOR not in at.session_state
    (allowed / "input.pt").write_bytes(b"x")
    at = _doctor("Path on this workstation", doctor_input_path=str(allowed / "input.pt"),
                 **{Keys.DOCTOR_USE_CONTRACT: True, f"{Keys.DOCTOR_CONTRACT}_source": "Path on this workstation",
                    f"{Keys.DOCTOR_CONTRACT}_path": f"{allowed}/../outside/contract.json"})
    (err,) = app_errors(at)
    assert "contract refused" in err and Keys.DOCTOR not in at.session_state


def test_each_session_uploads_into_its_own_private_folder(lan):
    image = SAMPLE_IMAGES[0]
    sessions = []
    for _ in range(2):  # two browser sessions upload the same bytes
        at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
        at.radio(key=Keys.IMAGE_SOURCE).set_value("Upload")
        app_run(at)
        at.file_uploader(key="up_image").upload(image.name, image.read_bytes())
        app_run(at)
        assert not app_errors(at)
        sessions.append((Path(at.session_state[Keys.SESSION_FOLDER]), Path(at.session_state["_saved_up_image"][0])))
    (folder_a, file_a), (folder_b, file_b) = sessions
    assert folder_a != folder_b and file_a != file_b
    for folder, file in sessions:
        assert file.parent == folder and file.read_bytes() == image.read_bytes()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, "no other user of the machine can list or read it"
        assert folder.name.startswith("d2debug-session-") and len(folder.name) > len("d2debug-session-") + 6


def test_an_uploaded_config_without_weights_is_one_error_naming_it_and_its_weights_are_not_read(lan):
    """Served, the config's own MODEL.WEIGHTS could name any file of the machine: only given weights are read,
    and the error names the config as the user uploaded it, never where the server keeps it."""
    at = app_run(AppTest.from_file(CONFIG_DIFF, default_timeout=TIMEOUT))
    at.radio(key=Keys.MODEL_SOURCE).set_value("Upload")
    app_run(at)
    # A config whose MODEL.WEIGHTS names real weights on the server: still only given weights are read.
    text = DEMO_CONFIG.read_text()
    assert text.count("\n  WEIGHTS: ''\n") == 1
    text = text.replace("\n  WEIGHTS: ''\n", f"\n  WEIGHTS: {DEMO_WEIGHTS}\n")
    at.file_uploader(key="up_config").upload("my_run.yaml", text.encode())
    app_run(at)
    (err,) = app_errors(at)
    assert err.startswith("my_run.yaml: give the weights too") and "Showing the demo model instead" in err
    assert str(at.session_state[Keys.SESSION_FOLDER]) not in err


def test_the_server_config_keeps_xsrf_cors_and_the_upload_cap_on():
    server = streamlit_config()["server"]
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 300
    assert server["address"] == "127.0.0.1"
