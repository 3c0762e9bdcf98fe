"""Running an audit: every pipeline on every image, each image's record appended to the results file as it
finishes, then the summary and the report.

For each image the reference and each pitfall variant run through the same code (``run.run``); each variant
is compared with the reference (``compare.compare``) and, when COCO annotations are given, every variant's
detections are scored with pycocotools (:mod:`.summary`).
"""
from __future__ import annotations

import datetime as _dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..compare import compare
from ..errors import D2DebugError
from ..model import LoadedModel
from ..pitfalls import REFERENCE, STANDARD_PITFALLS, Pitfall
from ..run import ForwardCache, reference_spec, run
from ..stages import Decoded, PipelineSpec, decode
from .dataset import AuditDataset, AuditImage
from .report import write_outputs
from .results import RESULTS_NAME, ResultsWriter, audit_settings, record_detections
from .summary import summarize

__all__ = ["AuditRun", "ProgressFn", "audit_image", "run_audit"]


@dataclass
class AuditRun:
    """The outcome of :func:`run_audit`: every finished record (resumed ones first), the summary, counts."""

    out_dir: Path
    settings: dict
    records: list[dict]
    summary: dict
    computed: int
    resumed: int
    dropped_tail: bool
    set_aside: Optional[Path]
    outputs: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # worst overlays (caption, PNG)


ProgressFn = Callable[[int, int, Optional[AuditImage]], None]


def audit_image(loaded: LoadedModel, item: AuditImage, specs: dict[str, PipelineSpec]) -> dict:
    """Run every spec on one image and return its results record. ``specs`` must start with the reference.

    Each decoder decodes the file once; the decoded array is shared by the variants that use it, and a variant
    whose model input and model-side settings equal an earlier pipeline's reuses that forward pass.
    """
    t0 = time.perf_counter()
    decoded: dict[str, Decoded] = {}
    forwards = ForwardCache()  # pitfalls that feed the reference's own input reuse its forward pass
    results, errors = {}, {}
    record: dict = {"kind": "image", "key": item.key, "image_id": item.image_id}
    for name, spec in specs.items():
        try:
            if spec.decoder not in decoded:
                decoded[spec.decoder] = decode(item.path, spec.decoder)
            results[name] = run(loaded, decoded[spec.decoder], spec, forwards)
        except D2DebugError as exc:
            if name == REFERENCE:
                record.update(error=str(exc), seconds=round(time.perf_counter() - t0, 3))
                return record
            errors[name] = str(exc)
    ref = results[REFERENCE]
    record["size"] = list(ref.original_size)
    record["variants"] = {name: record_detections(r) for name, r in results.items()}
    record["agreement"] = {name: compare(ref, r).to_dict() for name, r in results.items()}
    if errors:
        record["errors"] = errors
    notes = []
    for dec in decoded.values():
        notes += [n for n in dec.notes if n not in notes]
    record["notes"] = notes
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def run_audit(
    loaded: LoadedModel,
    dataset: AuditDataset,
    out_dir: str | Path,
    pitfalls: Optional[Sequence[Pitfall]] = None,
    restart: bool = False,
    progress: Optional[ProgressFn] = None,
    write_report: bool = True,
    worst_per_pitfall: int = 3,
) -> AuditRun:
    """Audit ``dataset`` into ``out_dir``, resuming from ``out_dir/results.jsonl`` when it holds the same
    settings (raises :class:`D2DebugError` when it holds other ones, unless ``restart``: then the old file is
    renamed aside, never deleted). ``progress(done, total, image)`` is called before the first image (with
    ``image=None``) and after each one. Writes ``summary.json``, ``pitfalls.md`` and ``report.html``
    when ``write_report``."""
    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise D2DebugError(f"{out_dir}: --out must be a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_spec = reference_spec(loaded.cfg, loaded.device)
    specs = {REFERENCE: ref_spec, **{p.name: p.spec(ref_spec) for p in pitfalls}}
    settings = audit_settings(loaded, dataset, pitfalls, ref_spec)
    writer = ResultsWriter(out_dir / RESULTS_NAME, settings, restart)
    run_id = uuid.uuid4().hex[:12]
    try:
        by_index: dict[int, dict] = {}
        for rec in writer.records:
            idx = rec.get("index")
            if isinstance(idx, int) and 0 <= idx < len(dataset.images) and idx not in by_index:
                if rec.get("key") != dataset.images[idx].key:
                    raise D2DebugError(f"{writer.path}: line for image {idx} names {rec.get('key')!r}, "
                                       f"expected {dataset.images[idx].key!r}; the file does not match its header")
                by_index[idx] = rec
        resumed = len(by_index)
        total = len(dataset.images)
        if progress:
            progress(resumed, total, None)
        computed = 0
        for idx, item in enumerate(dataset.images):
            if idx in by_index:
                continue
            rec = {"index": idx, **audit_image(loaded, item, specs)}
            rec["run_id"] = run_id
            rec["finished_at"] = _dt.datetime.now().isoformat(timespec="milliseconds")
            writer.append(rec)
            by_index[idx] = rec
            computed += 1
            if progress:
                progress(resumed + computed, total, item)
    finally:
        writer.close()
    records = [by_index[i] for i in sorted(by_index)]
    summary = summarize(records, pitfalls, dataset, loaded, worst_per_pitfall)
    summary["run"] = {"computed": computed, "resumed": resumed, "run_id": run_id,
                      "dropped_torn_line": writer.dropped_tail}
    audit = AuditRun(out_dir, settings, records, summary, computed, resumed, writer.dropped_tail, writer.set_aside)
    if write_report:
        audit.outputs, audit.figures = write_outputs(out_dir, summary, records, dataset, loaded.class_names)
    return audit
