"""One image of an audit: every pipeline's model input prepared (decoding, channel order, resize, value range),
then every forward pass and its record.

The two halves run in different places: :func:`prepared_images` prepares in ``torch.utils.data.DataLoader``
worker processes while the model runs in the main one, and :func:`infer_image` runs the model. Both are the
same code with or without workers, so an audit's records do not depend on how many there are.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

import torch

from ..compare import compare
from ..deploy.artifact import DeployedModel
from ..deploy.runner import DEPLOYED, run_deployed_tensor
from ..errors import D2DebugError
from ..memory import trim_if_grown
from ..model import LoadedModel
from ..pitfalls import REFERENCE
from ..run import ForwardCache, RunResult, prepare, run_batch, run_prepared
from ..stages import Decoded, PipelineSpec, decode
from .dataset import AuditImage
from .results import record_detections

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["PreparedImage", "prepare_image", "prepared_images", "infer_image", "MAX_BATCH"]

MAX_BATCH = 8  # inputs per batched forward pass: bounds the GPU memory one batch takes

Input = tuple[torch.Tensor, tuple[int, int]]  # (3xHxW float32 model input, original (h, w))


@dataclass
class PreparedImage:
    """What the host-side stages made of one image: per pipeline its model input, or the one-line error that
    stopped it (``inputs[name]`` is then a ``str``). ``error``: the reference could not run (the image is
    unreadable): the image's record carries it. Pipelines that feed the same input share one tensor, so a
    worker sends it once."""

    index: int
    item: AuditImage
    inputs: dict[str, Union[Input, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: Optional[str] = None
    seconds: float = 0.0

    def fed(self, name: str) -> Input:
        """The model input prepared for pipeline ``name``, which did not fail (see ``inputs``)."""
        value = self.inputs[name]
        assert not isinstance(value, str), f"{name} failed to prepare ({value})"
        return value


def prepare_image(cfg: CfgNode, index: int, item: AuditImage, specs: dict[str, PipelineSpec]) -> PreparedImage:
    """Decode ``item`` once per decoder and prepare every spec's input. ``specs`` must start with the
    reference; ``cfg`` is the model's config (``LoadedModel.cfg``)."""
    t0 = time.perf_counter()
    out = PreparedImage(index, item)
    decoded: dict[str, Decoded] = {}
    try:
        for name, spec in specs.items():
            try:
                if spec.decoder not in decoded:
                    decoded[spec.decoder] = decode(item.path, spec.decoder)
                tensor, size = prepare(cfg, decoded[spec.decoder], spec)
            except D2DebugError as exc:
                if name == REFERENCE:
                    out.error = str(exc)
                    return out
                out.inputs[name] = str(exc)
                continue
            same = next((t for t, _ in (v for v in out.inputs.values() if not isinstance(v, str))
                         if t.shape == tensor.shape and torch.equal(t, tensor)), None)
            out.inputs[name] = (same if same is not None else tensor, size)
        for dec in decoded.values():
            out.notes += [n for n in dec.notes if n not in out.notes]
        return out
    finally:
        out.seconds = time.perf_counter() - t0


class _Images(torch.utils.data.Dataset):
    """The images of ``indices`` prepared one per item, for the DataLoader's workers."""

    def __init__(self, cfg: CfgNode, items: Sequence[AuditImage], indices: Sequence[int],
                 specs: dict[str, PipelineSpec]):
        self.cfg, self.items, self.indices, self.specs = cfg, items, list(indices), specs

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> PreparedImage:
        idx = self.indices[i]
        try:
            return prepare_image(self.cfg, idx, self.items[idx], self.specs)
        finally:
            trim_if_grown()  # the worker's decoded images and resize buffers: see d2debug.memory


def _as_is(item):
    return item


def prepared_images(cfg: CfgNode, items: Sequence[AuditImage], indices: Sequence[int], specs: dict[str, PipelineSpec],
                    workers: int = 0) -> Iterator[PreparedImage]:
    """The images ``items[i]`` for ``i`` in ``indices``, in that order, prepared. ``workers`` > 0: in that many
    DataLoader worker processes, which run ahead of the model by up to two images each."""
    if workers <= 0:
        for idx in indices:
            yield prepare_image(cfg, idx, items[idx], specs)
        return
    loader = torch.utils.data.DataLoader(_Images(cfg, items, indices, specs), batch_size=None, shuffle=False,
                                         num_workers=workers, collate_fn=_as_is, prefetch_factor=2)
    yield from loader


def infer_image(loaded: LoadedModel, prepared: PreparedImage, specs: dict[str, PipelineSpec],
                batch: bool = False, deployed: Optional[DeployedModel] = None) -> dict:
    """Every pipeline's forward pass on one prepared image, and the image's results record (without its
    ``index``). The reference runs alone, exactly as ``DefaultPredictor`` does; a pipeline whose input and
    model-side settings equal an earlier one's reuses that forward pass. ``batch``: the other pipelines whose
    inputs share a shape and model-side settings go through one batched forward pass (on a GPU, where that
    is faster). ``deployed``: the exported model the ``deployed*`` pipelines feed instead of the Python one."""
    t0 = time.perf_counter()
    item = prepared.item
    exported = {n for n in specs if n.startswith(DEPLOYED)} if deployed is not None else set()
    record: dict = {"kind": "image", "key": item.key, "image_id": item.image_id}
    if prepared.error is not None:
        record.update(error=prepared.error, seconds=round(prepared.seconds, 3))
        return record
    forwards = ForwardCache()
    results: dict[str, RunResult] = {}
    errors = {name: v for name, v in prepared.inputs.items() if isinstance(v, str)}
    if batch:
        _run_batches(loaded, {n: s for n, s in specs.items() if n not in exported}, prepared, forwards, results,
                     errors)
    for name, spec in specs.items():
        if name in errors or name in results:
            continue
        tensor, size = prepared.fed(name)
        try:
            if name in exported:
                assert deployed is not None
                results[name] = run_deployed_tensor(loaded, deployed, tensor, size, spec)
            else:
                results[name] = run_prepared(loaded, tensor, size, spec, forwards)
        except D2DebugError as exc:
            if name == REFERENCE:
                record.update(error=str(exc), seconds=round(prepared.seconds + time.perf_counter() - t0, 3))
                return record
            errors[name] = str(exc)
    results = {name: results[name] for name in specs if name in results}  # the specs' order
    ref = results[REFERENCE]
    record["size"] = list(ref.original_size)
    record["variants"] = {name: record_detections(r) for name, r in results.items()}
    record["agreement"] = {name: compare(ref, r).to_dict() for name, r in results.items()}
    if errors:
        record["errors"] = {name: errors[name] for name in specs if name in errors}
    record["notes"] = list(prepared.notes)
    record["seconds"] = round(prepared.seconds + time.perf_counter() - t0, 3)
    return record


def _run_batches(loaded: LoadedModel, specs: dict[str, PipelineSpec], prepared: PreparedImage,
                 forwards: ForwardCache, results: dict, errors: dict) -> None:
    """The reference alone, then the pipelines that need a forward pass of their own grouped by input shape
    and model-side settings, each group in batched forward passes of up to :data:`MAX_BATCH` inputs. A
    batch that fails is left to the one-by-one path, which names the pipeline that failed."""
    tensor, size = prepared.fed(REFERENCE)
    try:
        results[REFERENCE] = run_prepared(loaded, tensor, size, specs[REFERENCE], forwards)
    except D2DebugError:
        return  # the one-by-one path records the error
    groups: dict[tuple, list[tuple[str, torch.Tensor, tuple[int, int]]]] = {}
    for name, spec in specs.items():
        if name in errors or name == REFERENCE:
            continue
        tensor, size = prepared.fed(name)
        key = ForwardCache.key(spec)
        if forwards.get(tensor, key) is not None:
            continue  # the reference's own input: reused one by one
        group = groups.setdefault((tuple(tensor.shape), key), [])
        if not any(t is tensor or torch.equal(t, tensor) for _, t, _ in group):
            group.append((name, tensor, size))
    for members in groups.values():
        for start in range(0, len(members), MAX_BATCH):
            chunk = members[start:start + MAX_BATCH]
            if len(chunk) < 2:
                continue
            try:
                got = run_batch(loaded, [(t, s, specs[n]) for n, t, s in chunk], forwards)
            except D2DebugError:
                continue
            results.update({n: r for (n, _, _), r in zip(chunk, got)})
