"""Running an audit: every pipeline on every image, each image's record appended to a results file as it
finishes, then the summary and the report.

For each image the reference and each pitfall variant run through the same code as a single run
(``run.prepare`` / ``run.run_prepared``); each variant is compared with the reference (``compare.compare``)
and, when COCO annotations are given, every variant's detections are scored with pycocotools
(:mod:`.summary`). Under torchrun the images are shared out over the ranks (:mod:`.shard`): each rank appends
to its own shard, and rank 0 merges them and writes the summary and the report.
"""
from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..deploy.artifact import DeployedModel
from ..deploy.runner import check_same_model, contract_differences, deployed_pitfalls
from ..errors import D2DebugError
from ..files import sha256_file
from ..memory import trim_if_grown
from ..model import LoadedModel
from ..pitfalls import REFERENCE, STANDARD_PITFALLS, Pitfall
from ..run import reference_spec
from .dataset import AuditDataset, AuditImage
from .images import infer_image, prepared_images
from .report import write_outputs
from .results import ResultsWriter, audit_settings, results_files, scan_results, set_aside, shard_path
from .shard import Ranks
from .summary import summarize

__all__ = ["AuditRun", "ProgressFn", "run_audit", "assign"]


@dataclass
class AuditRun:
    """The outcome of :func:`run_audit`: every finished record (in image order), the summary, counts. On a
    rank other than 0 of a sharded audit, ``records`` is empty and ``summary`` ``None`` (rank 0 has them).
    ``computed``: images computed by this run over every rank; ``resumed``: images finished before it."""

    out_dir: Path
    settings: dict
    records: list[dict]
    summary: Optional[dict]
    computed: int
    resumed: int
    dropped_tail: bool
    set_aside: list[Path]
    shards: list[Path] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # worst overlays (caption, PNG)


ProgressFn = Callable[[int, int, Optional[AuditImage]], None]


def assign(total: int, done: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The image indices rank ``rank`` of ``world_size`` computes: the ones not ``done``, in order, dealt out
    in turn. The same inputs give the same shares on every rank, with no message between them."""
    finished = set(done)
    return [i for i in range(total) if i not in finished][rank::world_size]


def run_audit(
    loaded: LoadedModel,
    dataset: AuditDataset,
    out_dir: str | Path,
    pitfalls: Optional[Sequence[Pitfall]] = None,
    restart: bool = False,
    progress: Optional[ProgressFn] = None,
    write_report: bool = True,
    worst_per_pitfall: int = 3,
    ranks: Optional[Ranks] = None,
    workers: int = 0,
    batch: Optional[bool] = None,
    deployed: Optional[DeployedModel] = None,
) -> AuditRun:
    """Audit ``dataset`` into ``out_dir``, resuming from the results files there when they hold the same
    settings (raises :class:`D2DebugError` when one holds other ones, unless ``restart``: then the old files
    are renamed aside, never deleted). ``progress(done, total, image)`` is called before the first image (with
    ``image=None``) and after each one (under torchrun: on rank 0, with every rank's images counted). Writes
    ``summary.json``, ``pitfalls.md`` and ``report.html`` when ``write_report`` (rank 0).

    ``ranks``: this process's place under torchrun (:func:`~.shard.start_ranks`; default: alone); the
    result is the same for any number of ranks. ``workers``: DataLoader worker processes preparing the inputs
    ahead of the model. ``batch``: batched forward passes for the pitfalls whose inputs share a shape (default:
    on a GPU). ``deployed``: an exported model, audited as the deployment runs it: the ``deployed``
    pipeline (the artifact fed the reference input) and each pitfall made by the deployment
    (:func:`~d2debug.deploy.runner.deployed_pitfalls`), against the Python reference."""
    ranks = ranks or Ranks()
    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    if deployed is not None:
        check_same_model(loaded, deployed)
        differ = contract_differences(loaded, deployed)
        if differ:  # the audit prepares every pipeline's input from one config
            raise D2DebugError(f"{deployed.path}: {differ[0]}; audit it with the config it was exported from")
        pitfalls = deployed_pitfalls(pitfalls)
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise D2DebugError(f"{out_dir}: --out must be a directory")
    ref_spec = reference_spec(loaded.cfg, loaded.device)
    specs = {REFERENCE: ref_spec, **{p.name: p.spec(ref_spec) for p in pitfalls}}
    settings = audit_settings(loaded, dataset, pitfalls, ref_spec)
    if deployed is not None:
        settings["deployed"] = {"format": deployed.contract.format, "sha256": sha256_file(deployed.path)}
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = ranks.broadcast(uuid.uuid4().hex[:12])
    aside = ranks.agree(lambda: _set_old_aside(out_dir, ranks) if restart else [])
    done = ranks.agree(lambda: sorted(scan_results(out_dir, settings, dataset, keep=lambda i: False)))
    done = sorted(set().union(*ranks.all_gather(done)))  # every machine's shards, shared storage or not
    mine = assign(len(dataset.images), done, ranks.rank, ranks.world_size)
    writer = ranks.agree(lambda: ResultsWriter(shard_path(out_dir, ranks.rank), settings),
                     undo=ResultsWriter.close)
    try:
        computed = _compute(loaded, dataset, mine, specs, writer, ranks, run_id, progress, workers,
                            ref_spec.device == "cuda" if batch is None else batch, len(done), deployed)
    finally:
        writer.close()
    merged = _merge(out_dir, settings, dataset, ranks, (computed, writer.dropped_tail))
    if merged is None:
        return AuditRun(out_dir, settings, [], None, computed, len(done), writer.dropped_tail, aside)
    records, counts = merged
    summary = summarize(records, pitfalls, dataset, loaded, worst_per_pitfall)
    summary["dataset"]["world_size"] = ranks.world_size
    summary["run"] = {"computed": sum(c for c, _ in counts), "resumed": len(done), "run_id": run_id,
                      "dropped_torn_line": any(d for _, d in counts),
                      "computed_per_rank": [c for c, _ in counts]}
    audit = AuditRun(out_dir, settings, records, summary, summary["run"]["computed"], len(done),
                     summary["run"]["dropped_torn_line"], aside, results_files(out_dir))
    if write_report:
        audit.outputs, audit.figures = write_outputs(out_dir, summary, records, dataset, loaded.class_names)
    return audit


def _set_old_aside(out_dir: Path, ranks: Ranks) -> list[Path]:
    """``--restart``: the first rank on each machine sets aside every results shard it sees (each machine may
    have its own disk); the others wait for it."""
    moved = []
    if ranks.local_rank == 0:
        moved = [p for p in (set_aside(f) for f in results_files(out_dir)) if p is not None]
    ranks.barrier()
    return moved


def _compute(loaded: LoadedModel, dataset: AuditDataset, mine: list[int], specs: dict, writer: ResultsWriter,
             ranks: Ranks, run_id: str, progress: Optional[ProgressFn], workers: int, batch: bool,
             resumed: int, deployed: Optional[DeployedModel] = None) -> int:
    """Run this rank's images, appending each record to its shard; then wait until every rank has finished
    (rank 0 keeps the progress going meanwhile). Returns the number computed here."""
    total, done_key, finished_key = len(dataset.images), f"{run_id}/done", f"{run_id}/finished"
    if progress:
        progress(resumed, total, None)
    computed = 0
    for prepared in prepared_images(loaded.cfg, dataset.images, mine, specs, workers):
        rec = {"index": prepared.index, **infer_image(loaded, prepared, specs, batch, deployed)}
        rec.update(rank=ranks.rank, run_id=run_id,
                   finished_at=_dt.datetime.now().isoformat(timespec="milliseconds"))
        writer.append(rec)
        item = prepared.item
        del prepared, rec
        trim_if_grown()  # see d2debug.memory: without it resident memory climbs a few MB per image
        computed += 1
        n = ranks.count(done_key, 1)
        if progress:
            progress(resumed + n, total, item)
    ranks.count(finished_key, 1)
    tick = (lambda: progress(resumed + ranks.count(done_key), total, None)) if progress else None
    ranks.wait_for(finished_key, ranks.world_size, tick=tick)
    if tick:
        tick()  # the last images of the other ranks
    return computed


def _merge(out_dir: Path, settings: dict, dataset: AuditDataset, ranks: Ranks,
           counts: tuple[int, bool]) -> Optional[tuple[list[dict], list[tuple[int, bool]]]]:
    """On rank 0: every finished record, in image order, and each rank's ``(computed, dropped torn line)``.
    Rank 0 reads the shards it can see; each image it cannot see (another machine's disk) is sent by the
    lowest rank that sees it, so no image is lost or counted twice. ``None`` on the other ranks."""
    seen = scan_results(out_dir, settings, dataset, keep=lambda i: ranks.is_main)
    owner: dict[int, int] = {}
    for r, indices in enumerate(ranks.all_gather(sorted(seen))):
        for i in indices:
            owner.setdefault(i, r)
    send: list = []
    if not ranks.is_main and any(r == ranks.rank for r in owner.values()):
        mine = {i for i, r in owner.items() if r == ranks.rank}
        send = sorted(scan_results(out_dir, settings, dataset, keep=mine.__contains__).items())
        send = [(i, rec) for i, rec in send if i in mine]
    parts = ranks.gather((counts, send))
    if parts is None:
        return None
    for _counts, part in parts[1:]:
        for i, rec in part:
            seen.setdefault(i, rec)
    records = []
    for i in sorted(seen):
        rec = seen[i]
        if rec is None:  # rank 0 keeps every record it reads; a None here is a bug, never an image to drop
            raise RuntimeError(f"image {i}: rank 0 holds no record for it")
        records.append(rec)
    return records, [c for c, _ in parts]
