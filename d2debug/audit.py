"""Dataset audit: the reference pipeline and every single-stage pitfall over a dataset, measured.

For each image the reference and each pitfall variant run through the same code (``run.run``); each variant
is compared with the reference (``compare.compare``) and, when COCO annotations are given, every variant's
detections are scored with pycocotools (``coco.coco_ap``).

Results are appended per image to ``OUT/results.jsonl`` (one JSON object per line, flushed and fsynced), so an
interrupted audit resumes where it stopped:

- line 1 is a header holding the audit's settings (model fingerprint, variant specs, image list); a resume
  with other settings is refused with one line saying what differs, never silently mixed;
- each further line is one finished image; a torn last line (the process was killed mid-write) is detected
  and dropped, and the file is truncated to its last complete line before appending.

Detections are stored as the pipeline returned them: ``boxes`` ``Nx4`` ``XYXY_ABS`` float32 values (written
exactly, so a resumed audit equals a clean one), in the frame the variant returns (``original`` unless the
variant omits height/width), ``scores`` and 0-based ``classes``.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .compare import compare, compare_boxes
from .errors import D2DebugError
from .model import LoadedModel
from .run import reference_spec, run
from .stages import Decoded, PipelineSpec, decode

__all__ = [
    "Pitfall",
    "STANDARD_PITFALLS",
    "AuditImage",
    "AuditDataset",
    "AuditRun",
    "RESULTS_NAME",
    "parse_variants",
    "load_dataset",
    "audit_settings",
    "auto_out_dir",
    "read_results",
    "run_audit",
    "summarize",
    "pitfalls_markdown",
    "write_outputs",
]

RESULTS_NAME = "results.jsonl"
RESULTS_FORMAT = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
REFERENCE = "reference"


@dataclass(frozen=True)
class Pitfall:
    """A named pipeline: the reference with ``changes`` (``PipelineSpec`` field -> value) applied."""

    name: str
    label: str
    changes: tuple[tuple[str, object], ...]
    explains: str = ""

    def spec(self, reference: PipelineSpec) -> PipelineSpec:
        return reference.replace(**dict(self.changes))

    def change_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.changes) or "none (the reference)"


# The standard set: each is ONE stage changed, the mistake people make (see PITFALLS.md).
STANDARD_PITFALLS: tuple[Pitfall, ...] = (
    Pitfall("channel_swap", "channel swap (RGB/BGR)", (("channel_order", "swapped"),),
            "red and blue channels exchanged before the model"),
    Pitfall("model_zoo_norm", "model-zoo PIXEL_MEAN/STD", (("model_norm", "d2_default"),),
            "deployed with get_cfg() defaults instead of the training run's PIXEL_MEAN/STD"),
    Pitfall("imagenet_double_norm", "ImageNet Normalize + model norm", (("external_norm", "imagenet"),),
            "ToTensor + T.Normalize(ImageNet) outside, then the model normalizes again"),
    Pitfall("range_0_1", "0..1 value range", (("value_range", "0_1"),),
            "ToTensor() scaling: the model expects 0..255"),
    Pitfall("fixed_square", "fixed square resize", (("resize", "fixed"),),
            "cv2.resize to a square: aspect ratio stretched"),
    Pitfall("no_resize", "no resize", (("resize", "none"),),
            "the image fed at its original size"),
    Pitfall("nearest", "nearest interpolation", (("interpolation", "nearest"),),
            "nearest-neighbour resize instead of bilinear"),
    Pitfall("cv2_bilinear", "cv2 vs PIL bilinear", (("resize_backend", "cv2"),),
            "cv2.resize INTER_LINEAR (no antialias) instead of detectron2's PIL bilinear"),
    Pitfall("pil_no_exif", "PIL decoding without EXIF", (("decoder", "pil"),),
            "Image.open without exif_transpose: rotated photos stay as stored"),
    Pitfall("boxes_resized_frame", "height/width not passed", (("original_size", "omit"),),
            "boxes come back in the resized frame and are drawn misplaced"),
)
_BY_NAME = {p.name: p for p in STANDARD_PITFALLS}


def parse_variants(texts: Optional[Sequence[str]]) -> list[Pitfall]:
    """Pitfalls from names: a standard name, ``all``, or a custom ``NAME:KEY=VALUE+KEY=VALUE`` (spec fields).

    ``None``/empty gives the standard set. The reference is always run and is not listed here.
    Raises :class:`D2DebugError` naming a bad entry.
    """
    if not texts:
        return list(STANDARD_PITFALLS)
    out: list[Pitfall] = []
    for text in texts:
        text = text.strip()
        if text == "all":
            out += [p for p in STANDARD_PITFALLS if p.name not in {q.name for q in out}]
            continue
        if ":" in text:
            name, body = text.split(":", 1)
            name = name.strip()
            if not name or name == REFERENCE or not name.replace("_", "").replace("-", "").isalnum():
                raise D2DebugError(f"--variants {text!r}: a custom variant needs a name of letters, digits, _ or -")
            changes = []
            probe = PipelineSpec()
            for part in body.split("+"):
                key, value = _parse_change(text, part)
                probe = probe.replace(**{key: value})  # validates the value now, not in the middle of a run
                changes.append((key, value))
            pitfall = Pitfall(name, name, tuple(changes), "custom variant")
        elif text in _BY_NAME:
            pitfall = _BY_NAME[text]
        else:
            raise D2DebugError(
                f"--variants {text!r}: unknown pitfall (known: {', '.join(_BY_NAME)}, all, or NAME:KEY=VALUE+...)"
            )
        if pitfall.name in {p.name for p in out}:
            raise D2DebugError(f"--variants {text!r}: the name {pitfall.name!r} is given twice")
        out.append(pitfall)
    return out


def _parse_change(text: str, part: str) -> tuple[str, object]:
    from .stages import parse_assignment

    try:
        return parse_assignment(part)
    except D2DebugError as exc:
        raise D2DebugError(f"--variants {text!r}: {str(exc).split(': ', 1)[-1]}") from None


# ---------------------------------------------------------------------------------------------------------------
# The dataset


@dataclass(frozen=True)
class AuditImage:
    """One image: ``key`` is its path relative to the dataset root (stable across moves of the whole set)."""

    path: Path
    key: str
    image_id: Optional[int] = None


@dataclass(frozen=True)
class AuditDataset:
    """The images to audit, in order, and the COCO annotations (a pycocotools ``COCO``) if any."""

    images: tuple[AuditImage, ...]
    source: str
    annotations: Optional[Path] = None
    coco: object = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = ()


def _coco_or_error(path: Path):
    from .coco import load_coco

    if not path.exists():
        raise D2DebugError(f"{path}: annotation file not found")
    if not path.is_file():
        raise D2DebugError(f"{path}: not a file (expected a COCO json)")
    try:
        return load_coco(path)
    except ValueError as exc:
        raise D2DebugError(str(exc)) from None


def load_dataset(images: str | Path, annotations: str | Path | None = None, limit: Optional[int] = None) -> AuditDataset:
    """The image list of an audit.

    ``images``: a directory (its image files, sorted by name, not recursive) or a COCO json (its images,
    by id, paths relative to the json; the json is also the annotations unless ``annotations`` is given).
    ``annotations``: a COCO json; images of a directory get their ids by relative path, else by file name.
    ``limit``: keep the first N images. Raises :class:`D2DebugError` naming the bad path.
    """
    images = Path(images).expanduser()
    if limit is not None and limit < 1:
        raise D2DebugError(f"--limit {limit}: must be at least 1")
    if not images.exists():
        raise D2DebugError(f"{images}: no such file or directory")
    notes: list[str] = []
    if images.is_file():
        if images.suffix.lower() != ".json":
            raise D2DebugError(f"{images}: --images must be a directory of images or a COCO json")
        listing = _coco_or_error(images)
        root = images.resolve().parent
        items = []
        for img in sorted(listing.dataset["images"], key=lambda d: d["id"]):
            rel = str(img.get("file_name", ""))
            path = root / rel
            if not rel or not path.is_file():
                raise D2DebugError(
                    f"{images}: image {rel!r} (id {img['id']}) not found at {path}; if the images live elsewhere, "
                    "pass --images IMAGE_DIR --annotations JSON"
                )
            items.append(AuditImage(path.resolve(), rel, int(img["id"])))
        ann_path = Path(annotations).expanduser() if annotations else images
        coco = listing if ann_path == images else _coco_or_error(ann_path)
        if ann_path != images:
            ids = set(coco.getImgIds())
            missing = [i.key for i in items if i.image_id not in ids]
            if missing:
                raise D2DebugError(f"{ann_path}: has no image with the ids of {len(missing)} image(s) of {images}")
        source = str(images)
    else:
        root = images.resolve()
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise D2DebugError(f"{images}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this directory")
        coco, ann_path = None, None
        ids: dict[str, int] = {}
        if annotations:
            ann_path = Path(annotations).expanduser()
            coco = _coco_or_error(ann_path)
            ann_root = ann_path.resolve().parent
            by_name: dict[str, list[int]] = {}
            for img in coco.dataset["images"]:
                rel = str(img.get("file_name", ""))
                ids[str((ann_root / rel).resolve())] = int(img["id"])
                by_name.setdefault(Path(rel).name, []).append(int(img["id"]))
            for name, v in by_name.items():
                if len(v) == 1:
                    ids.setdefault(name, v[0])
        items = []
        for p in files:
            image_id = ids.get(str(p.resolve()), ids.get(p.name))
            items.append(AuditImage(p.resolve(), p.name, image_id))
        unannotated = sum(1 for i in items if i.image_id is None)
        if ann_path is not None and unannotated == len(items):
            raise D2DebugError(f"{ann_path}: none of the {len(items)} images in {images} is listed in it")
        if unannotated and ann_path is not None:
            notes.append(f"{unannotated} image(s) not in {ann_path.name}: agreement only, left out of AP")
        source = str(images)
    if limit is not None:
        items = items[:limit]
    return AuditDataset(tuple(items), source, ann_path.resolve() if ann_path else None, coco, tuple(notes))


# ---------------------------------------------------------------------------------------------------------------
# Settings and the results file


def _sha256_file(path: Optional[Path]) -> Optional[str]:
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audit_settings(loaded: LoadedModel, dataset: AuditDataset, pitfalls: Sequence[Pitfall],
                   reference: PipelineSpec) -> dict:
    """What the results of an audit depend on: the model (config, weights content, classes), the variants'
    full specs, and the image list. Two audits with equal settings produce equal results files."""
    cfg = loaded.cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""  # the weights are identified by content, not by where they lie
    variants = {REFERENCE: reference.to_dict()}
    variants.update({p.name: p.spec(reference).to_dict() for p in pitfalls})
    image_list = [[i.key, i.image_id] for i in dataset.images]
    return {
        "format": RESULTS_FORMAT,
        "model": {
            "config_sha256": _sha256_text(cfg.dump()),
            "weights_sha256": _sha256_file(loaded.weights_path),
            "class_names": list(loaded.class_names),
        },
        "variants": variants,
        "images": {"count": len(image_list), "sha256": _sha256_text(json.dumps(image_list))},
    }


def auto_out_dir(root: str | Path, loaded: LoadedModel, dataset: AuditDataset,
                 pitfalls: Optional[Sequence[Pitfall]] = None) -> Path:
    """A results folder under ``root`` named after the audit's settings: the same model, variants and images
    always land in (and resume from) the same folder, other settings in another one."""
    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    ref = reference_spec(loaded.cfg, "cuda" if str(loaded.device).startswith("cuda") else "cpu")
    settings = audit_settings(loaded, dataset, pitfalls, ref)
    return Path(root).expanduser() / ("audit-" + _sha256_text(json.dumps(settings, sort_keys=True))[:16])


def _settings_difference(old: dict, new: dict) -> str:
    parts = []
    if old.get("format") != new.get("format"):
        parts.append(f"file format {old.get('format')} vs {new.get('format')}")
    om, nm = old.get("model", {}), new.get("model", {})
    if om.get("weights_sha256") != nm.get("weights_sha256"):
        parts.append("the weights differ")
    if om.get("config_sha256") != nm.get("config_sha256"):
        parts.append("the model config differs")
    if om.get("class_names") != nm.get("class_names"):
        parts.append("the class names differ")
    ov, nv = old.get("variants", {}), new.get("variants", {})
    if ov != nv:
        gone = [k for k in ov if k not in nv]
        added = [k for k in nv if k not in ov]
        changed = [k for k in nv if k in ov and ov[k] != nv[k]]
        bits = ([f"missing now: {', '.join(gone)}"] if gone else []) + ([f"new: {', '.join(added)}"] if added else [])
        bits += [f"changed: {', '.join(changed)}"] if changed else []
        parts.append("the variants differ (" + "; ".join(bits or ["order"]) + ")")
    oi, ni = old.get("images", {}), new.get("images", {})
    if oi != ni:
        parts.append(f"the image list differs ({oi.get('count')} images before, {ni.get('count')} now)")
    return "; ".join(parts) or "unknown difference"


@dataclass
class ResultsState:
    """What an existing results file holds: its header settings, finished records, and whether a torn last
    line was dropped. ``good_bytes`` is the length of the valid prefix."""

    settings: Optional[dict]
    records: list[dict]
    good_bytes: int
    dropped_tail: bool


def read_results(path: str | Path) -> ResultsState:
    """Read ``results.jsonl``, tolerating a torn LAST line (dropped); a damaged line elsewhere raises
    :class:`D2DebugError` naming the file and line."""
    path = Path(path)
    if not path.exists():
        return ResultsState(None, [], 0, False)
    data = path.read_bytes()
    settings, records, good, dropped = None, [], 0, False
    pos, lineno = 0, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        complete = end != -1
        line = data[pos:] if not complete else data[pos:end]
        lineno += 1
        is_last = not complete or end + 1 >= len(data)
        try:
            if not complete:
                raise ValueError("no newline: torn write")
            obj = json.loads(line.decode("utf-8"))
            if not isinstance(obj, dict) or obj.get("kind") not in ("header", "image"):
                raise ValueError("not a results line")
        except (ValueError, UnicodeDecodeError):
            if is_last:
                dropped = True
                break
            raise D2DebugError(
                f"{path}: line {lineno} is damaged (not a complete results line); move the file away or "
                "pass --restart"
            ) from None
        if lineno == 1:
            if obj["kind"] != "header":
                raise D2DebugError(f"{path}: first line is not an audit header; not a d2debug results file")
            settings = obj["settings"]
        elif obj["kind"] == "image":
            records.append(obj)
        good = end + 1
        pos = end + 1
    return ResultsState(settings, records, good, dropped)


class _ResultsWriter:
    """Appends one line per finished image with a single ``write`` and an ``fsync``, under an exclusive
    lock so two audits never write the same file."""

    def __init__(self, path: Path, settings: dict, restart: bool):
        self.path = path
        self.lock_fd = os.open(str(path) + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.lock_fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise D2DebugError(f"{path}: another audit is writing this results file right now") from None
            raise
        try:
            self.set_aside = None
            state = read_results(path)
            if state.settings is not None and state.settings != settings:
                if not restart:
                    raise D2DebugError(
                        f"{path}: holds an audit with other settings ({_settings_difference(state.settings, settings)}); "
                        "use another --out directory, or --restart to keep the old file aside and start again"
                    )
            if restart and path.exists():
                stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                self.set_aside = path.with_name(f"results.{stamp}.jsonl")
                os.replace(path, self.set_aside)
                state = ResultsState(None, [], 0, False)
            self.dropped_tail = state.dropped_tail
            if state.settings is None:
                # A new file (or one whose header was torn): write the header atomically.
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(_line({"kind": "header", "settings": settings,
                                   "created": _dt.datetime.now().isoformat(timespec="seconds")}))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                state = ResultsState(settings, [], path.stat().st_size, False)
            elif state.good_bytes < path.stat().st_size:
                os.truncate(path, state.good_bytes)  # drop the torn tail before appending
            self.records = state.records
            self.fd = os.open(str(path), os.O_WRONLY | os.O_APPEND)
        except BaseException:
            self._unlock()
            raise

    def append(self, record: dict) -> None:
        data = _line(record)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)

    def _unlock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        os.close(self.lock_fd)

    def close(self) -> None:
        os.close(self.fd)
        self._unlock()


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Running


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


def _detections(r) -> dict:
    # float32 values converted exactly (no rounding) so a resumed audit reproduces a clean one bit for bit.
    return {
        "boxes": [[float(v) for v in b] for b in np.asarray(r.boxes, np.float32)],
        "scores": [float(s) for s in np.asarray(r.scores, np.float32)],
        "classes": [int(c) for c in r.classes],
        "frame": r.frame,
        "input_size": list(r.input_size),
    }


def audit_image(loaded: LoadedModel, item: AuditImage, specs: dict[str, PipelineSpec]) -> dict:
    """Run every spec on one image and return its results record. ``specs`` must start with the reference.

    Each decoder decodes the file once; the decoded array is shared by the variants that use it.
    """
    t0 = time.perf_counter()
    decoded: dict[str, Decoded] = {}
    results, errors = {}, {}
    record: dict = {"kind": "image", "key": item.key, "image_id": item.image_id}
    for name, spec in specs.items():
        try:
            if spec.decoder not in decoded:
                decoded[spec.decoder] = decode(item.path, spec.decoder)
            results[name] = run(loaded, decoded[spec.decoder], spec)
        except D2DebugError as exc:
            if name == REFERENCE:
                record.update(error=str(exc), seconds=round(time.perf_counter() - t0, 3))
                return record
            errors[name] = str(exc)
    ref = results[REFERENCE]
    record["size"] = list(ref.original_size)
    record["variants"] = {name: _detections(r) for name, r in results.items()}
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
    ref_spec = reference_spec(loaded.cfg, "cuda" if str(loaded.device).startswith("cuda") else "cpu")
    specs = {REFERENCE: ref_spec, **{p.name: p.spec(ref_spec) for p in pitfalls}}
    settings = audit_settings(loaded, dataset, pitfalls, ref_spec)
    writer = _ResultsWriter(out_dir / RESULTS_NAME, settings, restart)
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
        audit.outputs = write_outputs(audit, dataset, loaded.class_names)
    return audit


# ---------------------------------------------------------------------------------------------------------------
# Summary


def _damage_key(row: dict):
    # Most damaging first: by AP lost when AP is known, else by agreement lost.
    d_ap = row.get("dAP")
    return (d_ap if d_ap is not None else 0.0, row["f1"] if row["f1"] is not None else 1.0, row["name"])


def summarize(records: Sequence[dict], pitfalls: Sequence[Pitfall], dataset: AuditDataset,
              loaded: Optional[LoadedModel] = None, worst_per_pitfall: int = 3) -> dict:
    """Per variant: mean agreement F1 over images, totals of matched/missed/extra/class flips, and COCO
    AP/AP50/AP75 (fractions 0..1) when the dataset has annotations; rows sorted by damage. Also the images
    where each pitfall disagrees most with the reference."""
    from .coco import coco_ap

    ok = [r for r in records if "error" not in r]
    names = [REFERENCE] + [p.name for p in pitfalls]
    info = {REFERENCE: Pitfall(REFERENCE, "reference (DefaultPredictor)", (), "what DefaultPredictor does")}
    info.update({p.name: p for p in pitfalls})
    rows = []
    ap_ref = None
    for name in names:
        have = [r for r in ok if name in r["variants"]]
        agr = [r["agreement"][name] for r in have]
        row = {
            "name": name,
            "label": info[name].label,
            "change": info[name].change_text(),
            "explains": info[name].explains,
            "images": len(have),
            "failed": sum(1 for r in ok if name in r.get("errors", {})),
            "detections": sum(a["n_variant"] for a in agr),
            "f1": round(float(np.mean([a["f1"] for a in agr])), 4) if agr else None,
            "matched": sum(a["matched"] for a in agr),
            "missed": sum(a["missed"] for a in agr),
            "extra": sum(a["extra"] for a in agr),
            "class_flips": sum(a["class_flips"] for a in agr),
            "AP": None, "AP50": None, "AP75": None, "dAP": None, "dAP50": None,
        }
        if dataset.coco is not None:
            dets = {
                r["image_id"]: (
                    np.asarray(r["variants"][name]["boxes"], np.float64).reshape(-1, 4),
                    np.asarray(r["variants"][name]["scores"], np.float64),
                    np.asarray(r["variants"][name]["classes"], np.int64),
                )
                for r in have if r.get("image_id") is not None
            }
            if dets:
                ap = coco_ap(dataset.coco, dets)
                row.update({k: ap[k] for k in ("AP", "AP50", "AP75")})  # unrounded: pycocotools' own value
                if name == REFERENCE:
                    ap_ref = ap
                if ap_ref is not None:
                    row["dAP"] = ap["AP"] - ap_ref["AP"]
                    row["dAP50"] = ap["AP50"] - ap_ref["AP50"]
        rows.append(row)
    ref_row, others = rows[0], sorted(rows[1:], key=_damage_key)
    worst = {}
    for p in pitfalls:
        scored = [
            (r["agreement"][p.name]["f1"],
             -(r["agreement"][p.name]["missed"] + r["agreement"][p.name]["extra"] + r["agreement"][p.name]["class_flips"]),
             r["index"], r)
            for r in ok if p.name in r["agreement"] and r["agreement"][p.name]["f1"] < 1.0
        ]
        scored.sort(key=lambda t: t[:3])
        worst[p.name] = [
            {"index": r["index"], "key": r["key"], **{k: r["agreement"][p.name][k] for k in
                                                      ("f1", "matched", "missed", "extra", "class_flips")}}
            for *_, r in scored[:worst_per_pitfall]
        ]
    out = {
        "dataset": {
            "source": dataset.source,
            "annotations": str(dataset.annotations) if dataset.annotations else None,
            "images": len(dataset.images),
            "finished": len(records),
            "failed": [{"key": r["key"], "error": r["error"]} for r in records if "error" in r],
            "notes": list(dataset.notes),
        },
        "rows": [ref_row] + others,
        "worst": worst,
    }
    if loaded is not None:
        d = loaded.describe()
        out["model"] = {k: d[k] for k in ("config", "weights", "architecture", "class_names", "input_format",
                                          "pixel_mean", "pixel_std", "min_size_test", "max_size_test",
                                          "score_thresh_test", "device")}
    return out


def _pct(v: Optional[float], signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def pitfalls_markdown(summary: dict) -> str:
    """The summary as a markdown table, the reference first and the pitfalls by damage (AP in percent)."""
    rows = summary["rows"]
    has_ap = any(r["AP"] is not None for r in rows)
    head = ["pitfall", "stage change"]
    head += ["AP", "dAP", "AP50", "dAP50"] if has_ap else []
    head += ["agreement F1", "matched", "missed", "extra", "class flips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [r["label"], f"`{r['change']}`" if r["name"] != REFERENCE else "none"]
        if has_ap:
            cells += [_pct(r["AP"]), _pct(r["dAP"], True), _pct(r["AP50"]), _pct(r["dAP50"], True)]
        cells += ["n/a" if r["f1"] is None else f"{r['f1']:.3f}", str(r["matched"]), str(r["missed"]),
                  str(r["extra"]), str(r["class_flips"])]
        lines.append("| " + " | ".join(cells) + " |")
    ds = summary["dataset"]
    foot = f"\n{ds['finished']} images from `{ds['source']}`"
    if ds.get("annotations"):
        foot += f"; AP (COCO 0.50:0.95, pycocotools) against `{Path(ds['annotations']).name}`"
    foot += "; agreement F1 is against the reference's detections (IoU >= 0.5, same class).\n"
    if ds.get("failed"):
        foot += f"{len(ds['failed'])} image(s) could not be read and are left out.\n"
    return "\n".join(lines) + "\n" + foot


def write_outputs(audit: AuditRun, dataset: AuditDataset, class_names: Sequence[str]) -> dict[str, Path]:
    """Write ``summary.json``, ``pitfalls.md`` and ``report.html`` into the audit's directory (each written
    to a temporary file and renamed, so a reader never sees half a file)."""
    from .report import build_report, worst_overlays

    out = audit.out_dir
    audit.figures = worst_overlays(audit.summary, audit.records, dataset, class_names)
    paths = {"summary": out / "summary.json", "markdown": out / "pitfalls.md", "report": out / "report.html",
             "results": out / RESULTS_NAME}
    texts = {
        "summary": json.dumps(audit.summary, indent=1),
        "markdown": pitfalls_markdown(audit.summary),
        "report": build_report(audit.summary, audit.records, dataset, class_names, figures=audit.figures),
    }
    for k, text in texts.items():
        tmp = paths[k].with_name(paths[k].name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, paths[k])
    return paths


def overlay_parts(record: dict, name: str, class_names: Sequence[str]):
    """``(reference, variant, agreement)`` rebuilt from a results record, ready for ``render.draw_overlay``."""
    from types import SimpleNamespace

    def ns(d):
        return SimpleNamespace(
            boxes=np.asarray(d["boxes"], np.float32).reshape(-1, 4),
            scores=np.asarray(d["scores"], np.float32),
            classes=np.asarray(d["classes"], np.int64),
            class_names=list(class_names),
        )

    ref, var = ns(record["variants"][REFERENCE]), ns(record["variants"][name])
    agr = compare_boxes(ref.boxes, ref.scores, ref.classes, var.boxes, var.scores, var.classes)
    return ref, var, agr
