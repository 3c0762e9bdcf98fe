"""What differs between the tested stacks: configs dumped by another detectron2, the detectron2 build script, the
package metadata. Runs on both stacks (make test, make test STACK=modern)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from d2debug.compat import NEWER_CFG_KEYS, cfg_node, check_newer_keys, get_cfg, portable_dump
from d2debug.config import load_cfg
from d2debug.errors import D2DebugError

from helpers import ROOT, SAMPLES


def _has_key(cfg, key: str) -> bool:
    node, leaf = cfg_node(cfg, key)
    return leaf in node


def test_the_shipped_configs_load_on_plain_detectron2_of_this_stack():
    from detectron2.config import get_cfg as d2_get_cfg

    for name in ("demo_config.yaml", "deploy_config_example.yaml"):
        text = (SAMPLES / name).read_text()
        assert not [k for k in NEWER_CFG_KEYS if f" {k.rsplit('.', 1)[1]}:" in text], name  # what 0.6 lacks
        cfg = d2_get_cfg()
        cfg.merge_from_file(str(SAMPLES / name))  # no KeyError on 0.6 nor on 0.7
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES >= 1


def test_a_config_dumped_by_a_newer_detectron2_loads_when_its_new_keys_hold_defaults(tmp_path):
    cfg = get_cfg()
    assert all(_has_key(cfg, k) for k in NEWER_CFG_KEYS)
    path = tmp_path / "newer.yaml"
    path.write_text(cfg.dump())  # every newer key, at its default, as detectron2 0.7 dumps them
    loaded = load_cfg(path)
    assert loaded.DATALOADER.REPEAT_SQRT is True and loaded.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE is False


def test_a_newer_key_set_otherwise_is_one_line_where_this_detectron2_lacks_it(tmp_path):
    from detectron2.config import get_cfg as d2_get_cfg

    path = tmp_path / "sigmoid.yaml"
    path.write_text("MODEL:\n  ROI_BOX_HEAD:\n    USE_SIGMOID_CE: true\n")
    if _has_key(d2_get_cfg(), "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE"):  # detectron2 0.7: its own key, it acts
        assert load_cfg(path).MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE is True
        check_newer_keys(load_cfg(path), str(path))
    else:  # detectron2 0.6 would ignore it and run a softmax head: refused, naming the key and the file
        with pytest.raises(D2DebugError) as err:
            load_cfg(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and "USE_SIGMOID_CE=True" in msg and "newer detectron2" in msg


def test_portable_dump_leaves_out_only_the_newer_keys_at_their_defaults():
    from detectron2.config import CfgNode

    cfg = get_cfg()
    cfg.SOLVER.NUM_DECAYS = 5  # not its default: kept
    text = portable_dump(cfg)
    back = CfgNode.load_cfg(text)
    assert "REPEAT_SQRT" not in text and "USE_SIGMOID_CE" not in text
    assert back.SOLVER.NUM_DECAYS == 5 and back.MODEL.PIXEL_MEAN == cfg.MODEL.PIXEL_MEAN


def _build_script():
    spec = importlib.util.spec_from_file_location("build_detectron2", ROOT / "scripts" / "build_detectron2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_the_build_script_makes_an_old_sdist_fit_todays_libraries(tmp_path):
    """A tree laid out like the registry's detectron2 0.6 sdists: no csrc, configs inside the package."""
    src = tmp_path / "pb1-detectron2-0.6"
    _write(src / "detectron2" / "data" / "transform.py", """
        import numpy as np
        from PIL import Image
        def f(interp=Image.LINEAR):
            return np.zeros(3).astype(np.bool), np.int64(1), np.bool_(True), np.float(2)
    """)
    _write(src / "detectron2" / "model_zoo" / "model_zoo.py", """
        import os
        import pkg_resources
        def get_config_file(p):
            return pkg_resources.resource_filename("detectron2.model_zoo", os.path.join("configs", p))
    """)
    _write(src / "detectron2" / "model_zoo" / "configs" / "Base.yaml", "MODEL: {}\n")
    _write(src / "detectron2" / "modeling" / "retinanet.py", "norm_name = str(type(get_norm(norm, 1)))\n")
    _write(src / "projects" / "x.py", "import numpy as np\nY = np.object\n")
    _write(src / "setup.py", """
        install_requires=["black==21.4b2", "yacs"],
        extras_require={"all": [
            "shapely",
            "panopticapi @ https://example.invalid/master.zip",
        ]},
        ext_modules=get_extensions(),
    """)
    done = _build_script().prepare(src)
    assert len(done) == 7, done
    code = (src / "detectron2" / "data" / "transform.py").read_text()
    assert "Image.BILINEAR" in code and "astype(bool)" in code and "float(2)" in code
    assert "np.int64(1)" in code and "np.bool_(True)" in code  # sized types and np.bool_ are left alone
    assert (src / "projects" / "x.py").read_text().endswith("Y = object\n")
    zoo = (src / "detectron2" / "model_zoo" / "model_zoo.py").read_text()
    assert "import pkg_resources" not in zoo and "pkg_resources.resource_filename(" not in zoo
    assert "return _resource_filename(" in zoo
    assert "get_norm(norm, 32)" in (src / "detectron2" / "modeling" / "retinanet.py").read_text()
    setup = (src / "setup.py").read_text()
    assert "black" not in setup and "panopticapi" not in setup and "ext_modules=[]" in setup
    assert (src / "configs" / "Base.yaml").is_file() and not (src / "detectron2" / "model_zoo" / "configs").exists()
    stub = src / "detectron2" / "_C.py"
    namespace: dict = {}
    exec(stub.read_text(), namespace)
    with pytest.raises(RuntimeError, match="built without its compiled ops.*nms_rotated"):
        namespace["__getattr__"]("nms_rotated")
    assert _build_script().prepare(src) == [], "a second pass must find nothing left to change"


def test_the_build_script_refuses_a_missing_source_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_detectron2.py"), str(tmp_path / "nope.tar.gz"),
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'nope.tar.gz'}: no such file or folder"


def test_the_installed_metadata_declares_what_d2debug_imports():
    """``pip install -e .`` gives d2debug its dependencies: every third-party top-level module the package
    imports is declared (by its distribution's name) or is detectron2, which the user brings."""
    from importlib.metadata import requires

    declared = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for r in requires("d2debug") if "extra ==" not in r}
    module_to_dist = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml"}
    needed = {"torch", "torchvision", "numpy", "cv2", "PIL", "pycocotools", "safetensors", "streamlit", "altair",
              "pandas", "yaml", "tqdm", "fvcore", "iopath"}
    assert {module_to_dist.get(m, m).lower() for m in needed} <= declared, declared


def test_requires_python_is_the_version_the_checkers_hold_the_code_to():
    """``requires-python`` names the oldest Python d2debug supports; the type checker and the linter read the
    code as that version (so syntax or library calls newer than it fail `make test` on every stack), and the
    default stack runs it."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    oldest = re.search(r'^requires-python = ">=(3\.\d+)"$', text, re.M).group(1)
    assert re.search(rf'^python_version = "{re.escape(oldest)}"$', text, re.M), "mypy reads another version"
    assert re.search(rf'^target-version = "py{oldest.replace(".", "")}"$', text, re.M), "ruff reads another version"
    setup = (ROOT / "scripts" / "setup_venv.sh").read_text()
    assert f"default) VENV=.venv; PYVER={oldest};" in setup, "the default stack runs another Python"
