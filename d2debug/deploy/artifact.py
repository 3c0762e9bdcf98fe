"""Load an exported model (TorchScript ``.ts``/``.pt`` or ONNX ``.onnx``) as data and run it on one tensor.

A TorchScript archive holds a graph of TorchScript operators and its constants; ``torch.jit.load`` runs no
Python and imports nothing, but the graph may call any operator registered in this process (torch's,
torchvision's, detectron2's). An ONNX file holds ONNX operators that onnxruntime executes; no custom-op library
is loaded. Both are opened on the CPU (ONNX: the CUDA provider when onnxruntime has one and a GPU is present).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..errors import D2DebugError, first_line
from .contract import CONTRACT_FILE, EMBEDDED_NAME, Contract, Format, contract_from_json, read_contract_file

__all__ = ["DeployedModel", "load_deployed", "read_contract", "SUFFIXES", "artifact_format"]

SUFFIXES: dict[str, Format] = {".ts": "torchscript", ".pt": "torchscript", ".torchscript": "torchscript",
                               ".onnx": "onnx"}


def artifact_format(path: Path) -> Format:
    """``torchscript`` or ``onnx`` by the file name; one line for anything else."""
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise D2DebugError(f"{path}: not an exported model (expected .ts/.pt for TorchScript or .onnx)")
    return fmt


@dataclass
class DeployedModel:
    """An exported model, loaded, with its :class:`Contract`. ``runtime``: what runs it (``torch.jit cpu``,
    ``onnxruntime CPUExecutionProvider``...); ``contract_source``: where the contract came from."""

    path: Path
    contract: Contract
    contract_source: str
    runtime: str
    _module: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)

    def infer(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feed one ``3xHxW`` float32 tensor (the deployment's input) and return the outputs by the contract's
        names, as CPU tensors in the frame of ``tensor``. A model that fails on it, or returns other outputs
        than the contract names, is one line naming the file."""
        try:
            if self._session is not None:
                name = self._session.get_inputs()[0].name
                outs = [torch.from_numpy(o) for o in self._session.run(None, {name: tensor.numpy()})]
            elif self.contract.method == "scripting":
                # A scripted R-CNN takes a tuple of image dicts and returns each image's fields by name.
                with torch.no_grad():
                    got = self._module(({self.contract.input_name: tensor},))
                fields = got[0] if isinstance(got, list) and got and isinstance(got[0], dict) else {}
                outs = [fields[n] for n in self.contract.outputs if n in fields]
            else:
                with torch.no_grad():
                    got = self._module(tensor)
                outs = list(got) if isinstance(got, (tuple, list)) else [got]
        except Exception as exc:  # a graph failing on its input raises whatever its runtime raises
            raise D2DebugError(f"{self.path}: fails on a 3x{tensor.shape[1]}x{tensor.shape[2]} float32 input "
                               f"({_cause(exc)})") from None
        names = self.contract.outputs
        if len(outs) != len(names) or not all(isinstance(o, torch.Tensor) for o in outs):
            raise D2DebugError(f"{self.path}: returns {len(outs)} outputs, its contract names {len(names)} "
                               f"({', '.join(names)}): not an export of this model?")
        return {n: o.detach().cpu() for n, o in zip(names, outs)}


def _cause(exc: BaseException) -> str:
    """The line that says what failed: TorchScript's interpreter puts its own traceback first and the error
    last."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        return lines[-1][:200]
    return first_line(exc)


def _embedded_ts(path: Path) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as z:
            hits = [n for n in z.namelist() if n.endswith("/extra/" + EMBEDDED_NAME)]
            return z.read(hits[0]).decode("utf-8") if hits else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError):
        return None


def _load_ts(path: Path) -> tuple[Any, Optional[str], str]:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError/ValueError/... for a damaged or foreign archive
        raise D2DebugError(f"{path}: not a readable TorchScript archive ({first_line(exc)})") from None
    return module, _embedded_ts(path), "torch.jit cpu"  # saved in eval mode (a scripted one cannot switch)


def _load_onnx(path: Path) -> tuple[Any, Optional[str], str]:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
        raise D2DebugError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 3 or "float" not in inputs[0].type:
        got = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
        raise D2DebugError(f"{path}: takes {got}; an exported detectron2 model takes one 3xHxW float tensor")
    meta = session.get_modelmeta().custom_metadata_map.get(EMBEDDED_NAME)
    return session, meta, f"onnxruntime {session.get_providers()[0]}"


def _onnx_embedded(path: Path) -> Optional[str]:
    """The contract in an ONNX file's metadata, read without building a runtime session."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, onnx's own errors: whatever a foreign file raises
        raise D2DebugError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    return next((p.value for p in proto.metadata_props if p.key == EMBEDDED_NAME), None)


def _found_contract(path: Path, fmt: str, embedded: Optional[str], contract_path: Optional[Path],
                    fallback: Optional[Callable[[], Contract]]) -> tuple[Contract, str]:
    """The contract of the artifact ``path`` by precedence: ``contract_path``, ``embedded``, ``contract.json``
    beside it, ``fallback()``; with where it came from. One line when none is found or it is another format's."""
    beside = path.parent / CONTRACT_FILE
    if contract_path is not None:
        found, source = read_contract_file(contract_path), str(contract_path)
    elif embedded is not None:
        found, source = contract_from_json(embedded, f"{path} (embedded contract)"), "embedded in the artifact"
    elif beside.is_file():
        found, source = read_contract_file(beside), str(beside)
    elif fallback is not None:
        found, source = fallback(), "derived from the model's config (no contract in or beside the artifact)"
    else:
        raise D2DebugError(f"{path}: no contract in it or beside it ({CONTRACT_FILE}); export with "
                           "`python -m d2debug export` or give its contract.json (--contract)")
    if found.format != fmt:
        raise D2DebugError(f"{source}: a contract for {found.format}, but {path.name} is {fmt}")
    return found, source


def read_contract(path: str | Path) -> tuple[Contract, str]:
    """The contract ``path`` names, without loading a model: a ``contract.json`` (any ``.json``), or an
    artifact (``.ts``/``.pt``/``.onnx``) whose embedded contract, else the ``contract.json`` beside it, is read.
    Returns ``(contract, where it came from)``; one line for a missing, foreign or contract-less file."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_contract_file(path), str(path)
    if path.suffix.lower() not in SUFFIXES:
        raise D2DebugError(f"{path}: expected a contract (.json) or an exported model (.ts/.pt/.onnx)")
    fmt = artifact_format(path)
    if not path.is_file():
        raise D2DebugError(f"{path}: no such file")
    if fmt == "torchscript" and not zipfile.is_zipfile(path):
        raise D2DebugError(f"{path}: not a readable TorchScript archive (not a zip file)")
    embedded = _embedded_ts(path) if fmt == "torchscript" else _onnx_embedded(path)
    return _found_contract(path, fmt, embedded, None, None)


def load_deployed(path: str | Path, contract_path: Optional[Path] = None,
                  fallback: Optional[Callable[[], Contract]] = None) -> DeployedModel:
    """Load ``path`` and find its contract: ``contract_path`` when given, else the one embedded by ``d2debug
    export``, else ``contract.json`` beside it, else ``fallback()`` (e.g. derived from the model's config for an
    export made by detectron2's own ``export_model.py``). One line when none is found or the file is bad."""
    path = Path(path)
    fmt = artifact_format(path)
    if not path.is_file():
        raise D2DebugError(f"{path}: no such file")
    if fmt == "torchscript":
        module, embedded, runtime = _load_ts(path)
        session = None
    else:
        session, embedded, runtime = _load_onnx(path)
        module = None
    found, source = _found_contract(path, fmt, embedded, contract_path, fallback)
    return DeployedModel(path, found, source, runtime, module, session)

