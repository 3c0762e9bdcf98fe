"""Build a detectron2 wheel from a source distribution or checkout, for the torch already installed.

Usage: python scripts/build_detectron2.py SOURCE OUT_DIR
  SOURCE   an sdist (.tar.gz) or a source folder (e.g. a clone of facebookresearch/detectron2)
  OUT_DIR  where the wheel is written

Registry sdists of detectron2 0.6 (pb1-detectron2 0.6, detectron2-cdo 0.5) were cut in 2021-2022 and need these
changes before they run on today's libraries:
  - Pillow 10 removed ``Image.LINEAR`` (a default argument, so ``import detectron2.data`` fails) -> BILINEAR;
  - numpy 1.24 removed the aliases ``np.bool``/``np.int``/``np.float``/``np.object`` -> the builtins;
  - current setuptools (84 here) no longer ships ``pkg_resources`` (the model zoo finds its configs with it) ->
    the package's own folder;
  - torch 2.2 removed caffe2, and ``detectron2/export/__init__.py`` imports its Caffe2 exporter first, so
    ``detectron2.export`` (``TracingAdapter``, the TorchScript/ONNX export d2debug runs) fails to import -> the
    Caffe2 exporter only where caffe2 imports, as detectron2's own repository does since;
  - RetinaNetHead probes the type of its norm with ``get_norm(norm, 1)``, a GroupNorm of 32 groups over one
    channel that today's torch refuses, so a GN head (FCOS) does not build -> 32 channels;
  - pip 25 refuses a registry package whose extras name a URL (``panopticapi @ https://...``), and
    ``black==21.4b2`` does not import with a current click: both dropped from the metadata (detectron2 imports
    black only in ``LazyConfig.to_py``, which d2debug does not call).
They ship without ``detectron2/layers/csrc`` (the C++/CUDA sources) and with the model-zoo configs moved
inside the package. Without csrc the wheel is built without compiled ops: ``detectron2._C`` becomes a module that
imports (``detectron2.layers`` imports it at the top) and names what is missing when used. Every architecture
d2debug tests runs without it (ROIAlign and NMS come from torchvision); rotated boxes, deformable convolution and
detectron2's fast COCOeval need a build from the full source, which this script builds as it is (CUDA ops when
``FORCE_CUDA=1`` or a GPU and nvcc are present). Each fix applies only where its pattern is found, so a current
checkout builds unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NUMPY_ALIASES = re.compile(r"\bnp\.(bool|int|float|object|str|complex)\b")

CAFFE2_API = re.compile(r"(?m)^from \.api import \*\n")
CAFFE2_OPTIONAL = """try:
    from caffe2.proto import caffe2_pb2 as _tmp  # noqa: F401  the Caffe2 exporter needs caffe2 (gone from torch)
except ImportError:
    pass
else:
    from .api import *
"""

PKG_RESOURCES_FREE = '''

def _resource_filename(package, name):
    """Where ``name`` lies inside ``package`` (what pkg_resources.resource_filename gave for a plain install)."""
    import importlib
    import os

    return os.path.join(os.path.dirname(importlib.import_module(package).__file__), name)

'''

STUB_C = '''"""detectron2 was built without its compiled ops (its source distribution has no layers/csrc).

Importing this module works, so that ``detectron2.layers`` imports; using an op it would hold raises.
"""

__d2_compiled_ops__ = False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise RuntimeError(
        f"detectron2 was built without its compiled ops, so detectron2._C.{name} is missing: rotated boxes, "
        "deformable convolution and detectron2's fast COCOeval need detectron2 built from its full source"
    )
'''


def _unpack(source: Path, work: Path) -> Path:
    if source.is_dir():
        dest = work / source.name
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "*.so"))
        return dest
    with tarfile.open(source) as tar:
        tar.extractall(work, filter="data")
    (top,) = [p for p in work.iterdir() if p.is_dir()]
    return top


def _sub_in_tree(root: Path, pattern: re.Pattern[str] | str, repl) -> int:
    count = 0
    for path in sorted((root / "detectron2").rglob("*.py")) + sorted((root / "projects").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new, n = re.subn(pattern, repl, text)
        if n:
            path.write_text(new, encoding="utf-8")
            count += n
    return count


def prepare(src: Path) -> list[str]:
    """Apply the fixes above to the unpacked tree; returns what was done, one line each."""
    done = []
    n = _sub_in_tree(src, r"\bImage\.LINEAR\b", "Image.BILINEAR")
    if n:
        done.append(f"Image.LINEAR -> Image.BILINEAR ({n}x, Pillow >= 10)")
    n = _sub_in_tree(src, NUMPY_ALIASES, lambda m: m.group(1))
    if n:
        done.append(f"np.bool/int/float/object -> builtins ({n}x, numpy >= 1.24)")
    n = _sub_in_tree(src, r"(?m)^import pkg_resources\n", PKG_RESOURCES_FREE)
    if n:
        _sub_in_tree(src, r"\bpkg_resources\.resource_filename\(", "_resource_filename(")
        done.append(f"pkg_resources -> the package's own folder ({n}x, current setuptools has no pkg_resources)")
    n = _sub_in_tree(src, CAFFE2_API, lambda m: CAFFE2_OPTIONAL)
    if n:
        done.append(f"detectron2.export imports its Caffe2 exporter only where caffe2 exists ({n}x, torch >= 2.2)")
    n = _sub_in_tree(src, r"str\(type\(get_norm\(norm, 1\)\)\)", "str(type(get_norm(norm, 32)))")
    if n:
        done.append(f"RetinaNetHead probes its norm with 32 channels, not 1 ({n}x, torch refuses GroupNorm(32, 1))")
    setup_py = src / "setup.py"
    text = setup_py.read_text(encoding="utf-8")
    new = re.sub(r'\n\s*"panopticapi @ [^"]*",', "", text)
    new = new.replace('"black==21.4b2",', "")
    if new != text:
        done.append("setup.py: dropped the URL extra and the black==21.4b2 pin")
    inner_configs, root_configs = src / "detectron2" / "model_zoo" / "configs", src / "configs"
    if inner_configs.is_dir() and not inner_configs.is_symlink() and not root_configs.exists():
        # setup.py packages the model-zoo configs from ./configs (the repository's layout) and would delete an
        # inner folder it finds in their place.
        inner_configs.rename(root_configs)
        done.append("model-zoo configs moved back to ./configs so setup.py packages them")
    if not (src / "detectron2" / "layers" / "csrc").is_dir() and "ext_modules=get_extensions()," in new:
        new = new.replace("ext_modules=get_extensions(),", "ext_modules=[],")
        (src / "detectron2" / "_C.py").write_text(STUB_C, encoding="utf-8")
        done.append("no layers/csrc in the source: built without compiled ops (detectron2._C names what is missing)")
    setup_py.write_text(new, encoding="utf-8")
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    if not source.exists():
        print(f"error: {source}: no such file or folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2build-") as tmp:
        src = _unpack(source, Path(tmp))
        for line in prepare(src):
            print(f"build_detectron2: {line}")
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
               "--wheel-dir", str(out.resolve()), str(src)]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
