"""Cached loaders: the model once per (files, options); the reference once per (model, image, device); each
variant once per (model, image, spec). Toggling a variant therefore never recomputes the reference.

Every cache is shared by all sessions and bounded. Models, artifacts and datasets by entries (a handful each).
What a view computes (references, comparisons, the sensitivity table's runs) by bytes, measured with
:func:`~d2debug.memory.deep_nbytes`: an entry holds decoded images, model inputs and masks, from 8 MB for the demo
model to well over 100 MB for a Mask R-CNN on a 1333x800 photo, so an entry count would bound nothing. The least
recently used entry goes first; a value larger than its whole cache is returned but not kept. Two sessions
asking for the same entry at once compute it once (the second waits for the first).
Cache keys are strings built from file paths, sizes and modification times, so replacing a file on disk (a new
checkpoint, an edited image) invalidates its entries. Arguments starting with ``_`` are not hashed.
"""
from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar, Union, cast

import cachetools
import streamlit as st
from cachetools.keys import hashkey

from ..audit import AuditDataset, load_dataset, load_summary
from ..deploy import (
    CONTRACT_FILE,
    Contract,
    DeployedComparison,
    DeployedModel,
    ExportReport,
    artifact_format,
    compare_deployed,
    contract_for,
    contract_from_json,
    export_model,
    load_deployed,
    read_contract,
)
from ..deploy.contract import Format, Method
from ..errors import D2DebugError
from ..memory import deep_nbytes
from ..model import LoadedModel, load_demo_model, load_model
from ..pitfalls import Pitfall
from ..run import RunResult
from ..samples import DEMO_AUDIT, DEMO_CONFIG, DEMO_WEIGHTS
from ..serving import PathCheck
from ..session import (
    ComparisonView,
    ReferenceView,
    SensitivityRow,
    compare_variant,
    prepare_reference,
    sensitivity_row,
)
from ..stages import PipelineSpec
from . import serving
from .state import Keys

__all__ = [
    "file_key",
    "demo_model",
    "demo_audit",
    "user_model",
    "reference",
    "comparison",
    "pitfall_row",
    "save_upload",
    "is_upload",
    "dataset",
    "session_folder",
    "deployed",
    "export",
    "deployed_comparison",
    "contract_from",
    "CACHE_MB",
    "cache_bytes",
]

# Byte bounds of the caches of what a view computes (MB); see the module docstring.
CACHE_MB = {"reference": 256, "comparison": 512, "runs": 256, "deployed_comparison": 256}
_SIZED: dict[str, cachetools.LRUCache] = {}
_F = TypeVar("_F", bound=Callable)


def _lru(name: str) -> cachetools.LRUCache:
    """An LRU of at most ``CACHE_MB[name]`` megabytes (sizes by :func:`deep_nbytes`), listed in :func:`cache_bytes`."""
    cache = _SIZED[name] = cachetools.LRUCache(maxsize=CACHE_MB[name] * 2**20, getsizeof=deep_nbytes)
    return cache


def _sized(name: str, nkeys: int) -> Callable[[_F], _F]:
    """Cache a function on its first ``nkeys`` arguments (strings; the rest are the values they stand for, not
    hashed) in an LRU of at most ``CACHE_MB[name]`` megabytes, shared by every session; one computation per key
    at a time."""
    cache = _lru(name)
    lock = threading.Lock()
    return cast(Callable[[_F], _F], cachetools.cached(cache, key=lambda *args: hashkey(*args[:nkeys]), lock=lock,
                                                      condition=threading.Condition(lock)))


def cache_bytes() -> dict[str, tuple[int, int]]:
    """Each byte-bounded cache's ``(entries, bytes held)``: what the memory benchmark and the tests read."""
    return {name: (len(c), int(c.currsize)) for name, c in _SIZED.items()}


def file_key(path: Union[str, Path, None]) -> str:
    """``path|size|mtime`` (or ``path|missing``): changes when the file changes."""
    if path is None:
        return "-"
    p = Path(str(path)).expanduser()
    try:
        s = p.stat()
        return f"{p.resolve()}|{s.st_size}|{s.st_mtime_ns}"
    except OSError:
        return f"{p}|missing"


@st.cache_resource(show_spinner=False, max_entries=2)
def _demo_model(key: str, device: Optional[str]) -> LoadedModel:
    return load_demo_model(device=device)


def demo_model(device: Optional[str] = None) -> tuple[LoadedModel, str]:
    """The shipped demo model and its cache key (which follows the files in ``sample_data/``)."""
    key = f"demo:{file_key(DEMO_CONFIG)}:{file_key(DEMO_WEIGHTS)}:{device}"
    return _demo_model(key, device), key


@st.cache_data(show_spinner=False, max_entries=2)
def _demo_audit(key: str) -> Optional[dict]:
    try:
        return load_summary(DEMO_AUDIT)
    except D2DebugError:
        return None  # the lessons go without the demo's measured numbers


def demo_audit() -> Optional[dict]:
    """The shipped audit of the demo model (``sample_data/demo_audit_summary.json``), or ``None``."""
    return _demo_audit(file_key(DEMO_AUDIT))


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(key: str, images: str, annotations: Optional[str], limit: Optional[int],
             _path_check: Optional[PathCheck]) -> AuditDataset:
    return load_dataset(images, annotations, limit, _path_check)


def dataset(images: str, annotations: Optional[str], limit: Optional[int]) -> AuditDataset:
    """The audit's images (a folder or a COCO json) and annotations, cached until either file changes.
    Raises ``D2DebugError`` naming a bad path."""
    return _dataset(f"{file_key(images)}:{file_key(annotations)}:{limit}", images, annotations, limit,
                    serving.path_check())


@st.cache_resource(show_spinner=False, max_entries=3)
def _user_model(key: str, config: str, weights: Optional[str], classes, trust: bool, allow_mismatch: bool,
                device: Optional[str], trust_config: bool, imports: tuple[str, ...],
                _path_check: Optional[PathCheck] = None) -> LoadedModel:
    return load_model(config, weights or None, device=device, class_names=classes,
                      trust_checkpoint=trust, allow_key_mismatch=allow_mismatch, trust_config=trust_config,
                      imports=imports, path_check=_path_check)


def user_model(config: str, weights: Optional[str], classes: Union[None, str, Sequence[str]], trust: bool,
               allow_mismatch: bool, device: Optional[str] = None, trust_config: bool = False,
               imports: Sequence[str] = ()) -> tuple[LoadedModel, str]:
    """A user's config + weights (paths on this machine); ``imports``: their registering code (run first),
    ``trust_config``: allow a LazyConfig ``.py``. Raises ``D2DebugError`` naming the bad file."""
    # The widgets already follow the server's policy; this holds whatever state the session arrives with.
    for asked, what in ((trust, "Trust this checkpoint"), (trust_config, "Trust this config"),
                        (bool(imports), "Run this code")):
        if asked:
            serving.require_code(what)
    cls = tuple(classes) if isinstance(classes, (list, tuple)) else classes
    code = ",".join(file_key(i) if i.endswith(".py") else i for i in imports)
    key = (f"user:{file_key(config)}:{file_key(weights)}:{cls if not isinstance(cls, str) else file_key(cls)}"
           f":{trust}:{allow_mismatch}:{device}:{trust_config}:{code}")
    return _user_model(key, str(config), weights, list(cls) if isinstance(cls, tuple) else cls, trust,
                       allow_mismatch, device, trust_config, tuple(imports), serving.path_check()), key


@_sized("reference", 3)
def _reference(model_key: str, image_key: str, spec_key: str, _loaded: LoadedModel, _image: str,
               _spec: PipelineSpec) -> ReferenceView:
    return prepare_reference(_loaded, _image, _spec)


def reference(loaded: LoadedModel, model_key: str, image: Path, spec: PipelineSpec) -> ReferenceView:
    """The reference run and drawing for (model, image, reference spec incl. device), cached."""
    return _reference(model_key, file_key(image), repr(spec), loaded, str(image), spec)


# Variant runs made for the home page's sensitivity table, reused when a stage page asks for the same spec.
_RUNS = _lru("runs")
_RUNS_LOCK = threading.Lock()


def _remember_run(key: tuple[str, str, str], result: RunResult) -> None:
    with _RUNS_LOCK:
        try:
            _RUNS[key] = result
        except ValueError:
            pass  # larger than the whole cache


@_sized("comparison", 4)
def _comparison(model_key: str, image_key: str, ref_key: str, spec_key: str, _loaded: LoadedModel, _image: str,
                _spec: PipelineSpec, _reference: ReferenceView) -> ComparisonView:
    with _RUNS_LOCK:
        known = _RUNS.get((model_key, image_key, spec_key))
    return compare_variant(_loaded, _image, _spec, _reference, variant_result=known)


def comparison(loaded: LoadedModel, model_key: str, image: Path, spec: PipelineSpec,
               ref: ReferenceView) -> ComparisonView:
    """Reference vs ``spec`` on ``image``, cached per (model, image, reference, spec)."""
    return _comparison(model_key, file_key(image), repr(ref.result.spec), repr(spec), loaded, str(image), spec, ref)


@st.cache_resource(show_spinner=False, max_entries=256)
def _pitfall_row(model_key: str, image_key: str, ref_key: str, changes_key: str, _loaded: LoadedModel,
                 _image: str, _pitfall: Pitfall, _reference: ReferenceView) -> SensitivityRow:
    row, result = sensitivity_row(_loaded, _image, _pitfall, _reference)
    if result is not None:
        _remember_run((model_key, image_key, repr(_pitfall.spec(_reference.result.spec))), result)
    return row


def pitfall_row(loaded: LoadedModel, model_key: str, image: Path, pitfall: Pitfall,
                ref: ReferenceView) -> SensitivityRow:
    """One row of the sensitivity table, cached per (model, image, reference, pitfall)."""
    return _pitfall_row(model_key, file_key(image), repr(ref.result.spec), repr(pitfall.changes), loaded, str(image),
                        pitfall, ref)


def session_folder() -> Path:
    """This browser session's private temporary folder (uploads, exports made here, uploaded artifacts): made
    once per session by ``tempfile.mkdtemp`` (mode 0700, an unguessable name), so no other session and no other
    user on the machine can read or replace what is in it; nothing of the user's is ever written to; removed
    when the server process exits."""
    path = st.session_state.get(Keys.SESSION_FOLDER)
    if path is None or not Path(path).is_dir():
        path = tempfile.mkdtemp(prefix="d2debug-session-")
        atexit.register(shutil.rmtree, path, True)
        st.session_state[Keys.SESSION_FOLDER] = path
    return Path(path)


def is_upload(path: Union[str, Path, None]) -> bool:
    """Whether ``path`` is a file this session uploaded (kept only while the server runs)."""
    return path is not None and Path(path).resolve().is_relative_to(session_folder().resolve())


def save_upload(uploaded, folder: Optional[Path] = None) -> Path:
    """Write an ``st.file_uploader`` file to ``folder`` (default: this session's folder) under a content-derived
    name (same bytes -> same path, so caches keyed by path hit) keeping its suffix, which the decoders and
    loaders go by. Written to a temporary name first, so a half-written file is never read."""
    data = uploaded.getvalue()
    suffix = Path(uploaded.name).suffix.lower()[:16]
    path = (folder or session_folder()) / (hashlib.sha256(data).hexdigest()[:24] + suffix)
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Deployed models: an artifact once per (file, contract), an export once per (model, format, folder), a
# deployment's comparison once per (model, artifact, image, reference, deployment spec).


@st.cache_resource(show_spinner=False, max_entries=4)
def _deployed(key: str, path: str, contract_path: Optional[str], _loaded: LoadedModel) -> DeployedModel:
    fmt = artifact_format(Path(path))  # checked first: a wrong suffix is its own one line
    # An export made by detectron2's own export_model.py carries no contract: derived from the config if needed.
    return load_deployed(path, Path(contract_path) if contract_path else None,
                         fallback=lambda: contract_for(_loaded, fmt))


def deployed(loaded: LoadedModel, model_key: str, path: Union[str, Path],
             contract_path: Union[str, Path, None] = None) -> tuple[DeployedModel, str]:
    """The artifact at ``path`` loaded with its contract (``contract_path``, else embedded, else beside it, else
    derived from ``loaded``'s config), and its cache key; cached until the artifact or a contract file changes.
    Raises ``D2DebugError`` in one line for a bad path or a damaged artifact."""
    p = Path(path).expanduser()
    artifact_format(p)  # a wrong suffix is refused before anything runs
    key = f"{file_key(p)}:{file_key(contract_path)}:{file_key(p.parent / CONTRACT_FILE)}:{model_key}"
    return _deployed(key, str(p), str(contract_path) if contract_path else None, loaded), key


@st.cache_resource(show_spinner=False, max_entries=4)
def _export(key: str, _loaded: LoadedModel, fmt: Format, method: Method, out_dir: str) -> ExportReport:
    # The folder is this session's own: replacing an earlier export there overwrites nothing of the user's.
    return export_model(_loaded, fmt, out_dir, method=method, force=True)


def export(loaded: LoadedModel, model_key: str, fmt: Format, method: Method, folder: Path) -> ExportReport:
    """Export ``loaded`` to ``fmt`` by ``method`` into a subfolder of ``folder`` (the session's), once per model
    and choice. Raises ``D2DebugError`` for a model detectron2 cannot export that way."""
    out = folder / f"{fmt}-{method}-{hashlib.sha256(model_key.encode()).hexdigest()[:12]}"
    key = f"{model_key}:{fmt}:{method}:{out}"
    report = _export(key, loaded, fmt, method, str(out))
    if not report.artifact.is_file():  # the folder was emptied since: export again
        _export.clear()
        report = _export(key, loaded, fmt, method, str(out))
    return report


@_sized("deployed_comparison", 5)
def _deployed_comparison(model_key: str, deployed_key: str, image_key: str, ref_key: str, spec_key: str,
                         _loaded: LoadedModel, _deployed: DeployedModel, _image: str, _spec: PipelineSpec,
                         _reference: ReferenceView) -> DeployedComparison:
    return compare_deployed(_loaded, _deployed, _image, _spec, _reference)


def deployed_comparison(loaded: LoadedModel, model_key: str, dep: DeployedModel, deployed_key: str, image: Path,
                        spec: PipelineSpec, ref: ReferenceView) -> DeployedComparison:
    """The reference vs the artifact fed the reference input and fed the deployment ``spec`` on ``image``,
    cached per (model, artifact, image, reference, spec)."""
    return _deployed_comparison(model_key, deployed_key, file_key(image), repr(ref.result.spec), repr(spec), loaded,
                                dep, str(image), spec, ref)
def contract_from(source: Union[bytes, str, Path], name: str) -> Contract:
    """An exported model's contract from an uploaded ``contract.json`` (its bytes) or a path (a contract.json or
    the ``.ts``/``.pt``/``.onnx`` artifact: its embedded contract, else the one beside it). A bad one raises
    :class:`~d2debug.errors.D2DebugError` in one line naming ``name``."""
    if isinstance(source, bytes):
        return contract_from_json(source, name)
    return read_contract(source)[0]
