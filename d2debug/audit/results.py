"""The audit's results files: ``OUT/results.jsonl``, and under torchrun one shard per further rank,
``OUT/results.rank<R>.jsonl``. One JSON object per line, flushed and fsynced, so an interrupted audit resumes
where it stopped; the finished images are the union of every shard, keyed on the image, so a rerun with
another number of ranks neither loses nor repeats one.

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
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional, Sequence

import numpy as np

from ..coco import decode_masks, encode_masks
from ..compare import Agreement, compare
from ..errors import D2DebugError
from ..files import sha256_file, sha256_text
from ..model import LoadedModel
from ..pitfalls import REFERENCE, STANDARD_PITFALLS, Pitfall
from ..run import reference_spec
from ..stages import PipelineSpec
from .dataset import AuditDataset

__all__ = [
    "RESULTS_NAME",
    "RESULTS_FORMAT",
    "shard_path",
    "results_files",
    "set_aside",
    "scan_results",
    "audit_settings",
    "auto_out_dir",
    "ResultsState",
    "read_results",
    "ResultsWriter",
    "settings_difference",
    "record_detections",
    "detections_from_record",
    "overlay_parts",
]

RESULTS_NAME = "results.jsonl"
RESULTS_FORMAT = 1
_SHARD = re.compile(r"^results(?:\.rank(\d+))?\.jsonl$")  # results.jsonl is rank 0's (and one process's)


def _is_file(path: Optional[Path]) -> bool:
    return path is not None and Path(path).is_file()




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
            "config_sha256": sha256_text(cfg.dump()) if loaded.lazy is None else sha256_file(loaded.config_path),
            "weights_sha256": sha256_file(loaded.weights_path) if _is_file(loaded.weights_path) else None,
            "class_names": list(loaded.class_names),
        },
        "variants": variants,
        "images": {"count": len(image_list), "sha256": sha256_text(json.dumps(image_list))},
    }


def auto_out_dir(root: str | Path, loaded: LoadedModel, dataset: AuditDataset,
                 pitfalls: Optional[Sequence[Pitfall]] = None) -> Path:
    """A results folder under ``root`` named after the audit's settings: the same model, variants and images
    always land in (and resume from) the same folder, other settings in another one."""
    pitfalls = list(STANDARD_PITFALLS if pitfalls is None else pitfalls)
    ref = reference_spec(loaded.cfg, loaded.device)
    settings = audit_settings(loaded, dataset, pitfalls, ref)
    return Path(root).expanduser() / ("audit-" + sha256_text(json.dumps(settings, sort_keys=True))[:16])


def settings_difference(old: dict, new: dict) -> str:
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


def shard_path(out_dir: Path, rank: int = 0) -> Path:
    """The results file rank ``rank`` writes: ``results.jsonl`` for rank 0 (and one process alone), else
    ``results.rank<R>.jsonl``."""
    return Path(out_dir) / (RESULTS_NAME if rank == 0 else f"results.rank{rank}.jsonl")


def results_files(out_dir: Path) -> list[Path]:
    """The results shards in ``out_dir``, by rank (files set aside by ``--restart`` are not among them)."""
    found = []
    for p in Path(out_dir).iterdir() if Path(out_dir).is_dir() else ():
        m = _SHARD.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1) or 0), p))
    return [p for _, p in sorted(found)]


def set_aside(path: Path) -> Optional[Path]:
    """Rename ``path`` to a free ``<name>.<stamp>.jsonl`` beside it (never over an existing file); ``None`` when
    it is already gone (another process set it aside first)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = path.name[: -len(".jsonl")]
    for n in range(1000):
        target = path.with_name(f"{stem}.{stamp}{'' if n == 0 else f'-{n}'}.jsonl")
        try:
            os.link(path, target)  # fails when target exists: nothing is ever overwritten
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        os.unlink(path)
        return target
    raise D2DebugError(f"{path}: cannot find a free name to set it aside")


def _refuse_other_settings(path: Path, old: Optional[dict], new: dict) -> None:
    if old is not None and old != new:
        raise D2DebugError(f"{path}: holds an audit with other settings ({settings_difference(old, new)}); use another "
                           "--out directory, or --restart to keep the old results aside and start again")


def scan_results(out_dir: Path, settings: dict, dataset: AuditDataset,
                 keep: Callable[[int], bool] = lambda i: True) -> dict[int, Optional[dict]]:
    """The finished images in every results shard of ``out_dir``: image index -> its record (``None`` where
    ``keep(index)`` is false, to learn what is done without holding it). The first shard (by rank) holding an
    image wins. A shard with other settings, or a line naming another image than the list's, raises
    :class:`D2DebugError` naming the file."""
    done: dict[int, Optional[dict]] = {}
    for path in results_files(out_dir):
        state = read_results(path)
        _refuse_other_settings(path, state.settings, settings)
        for rec in state.records:
            idx = rec.get("index")
            if not (isinstance(idx, int) and 0 <= idx < len(dataset.images)) or idx in done:
                continue
            if rec.get("key") != dataset.images[idx].key:
                raise D2DebugError(f"{path}: line for image {idx} names {rec.get('key')!r}, "
                                   f"expected {dataset.images[idx].key!r}; the file does not match its header")
            done[idx] = rec if keep(idx) else None
    return done


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


class ResultsWriter:
    """Appends one line per finished image with a single ``write`` and an ``fsync``, under an exclusive
    lock so two audits never write the same file. A file with other settings is refused (``--restart`` sets
    old files aside before one is opened: :func:`set_aside`)."""

    def __init__(self, path: Path, settings: dict):
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
            state = read_results(path)
            _refuse_other_settings(path, state.settings, settings)
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
# Detections in a record


def record_detections(result) -> dict:
    """A :class:`~d2debug.run.RunResult`'s detections as a record stores them. The float32 values are
    converted exactly (no rounding), so a resumed audit reproduces a clean one bit for bit. Masks are stored
    as COCO RLEs (what pycocotools scores), keypoints as ``[[x, y, score], ...]`` per detection."""
    rec = {
        "boxes": [[float(v) for v in b] for b in np.asarray(result.boxes, np.float32)],
        "scores": [float(s) for s in np.asarray(result.scores, np.float32)],
        "classes": [int(c) for c in result.classes],
        "frame": result.frame,
        "input_size": list(result.input_size),
    }
    if getattr(result, "masks", None) is not None:
        rec["masks"] = encode_masks(result.masks)
    if getattr(result, "keypoints", None) is not None:
        rec["keypoints"] = [[[float(v) for v in p] for p in k] for k in np.asarray(result.keypoints, np.float32)]
    return rec


def detections_from_record(record: dict, name: str, class_names: Sequence[str]) -> SimpleNamespace:
    """Pipeline ``name``'s detections from a record, shaped like a ``RunResult`` for drawing and matching:
    ``boxes`` ``Nx4`` float32 XYXY_ABS, ``scores`` ``N`` float32, ``classes`` ``N`` int64, ``class_names``,
    ``masks`` ``NxHxW`` bool and ``keypoints`` ``NxKx3`` float32 (``None`` when the model predicts none)."""
    d = record["variants"][name]
    masks = None
    if "masks" in d:
        masks = decode_masks(d["masks"], tuple(record["size"]) if d.get("frame") == "original" else
                             tuple(d["input_size"]))
    return SimpleNamespace(
        boxes=np.asarray(d["boxes"], np.float32).reshape(-1, 4),
        scores=np.asarray(d["scores"], np.float32),
        classes=np.asarray(d["classes"], np.int64),
        class_names=list(class_names),
        masks=masks,
        keypoints=_keypoints(d["keypoints"], len(d["boxes"])) if "keypoints" in d else None,
        sem_seg=None,
    )


def _keypoints(values: list, n: int) -> np.ndarray:
    """``NxKx3`` float32 keypoints from a record (``N`` = 0 gives ``0x1x3``: no detection, no keypoint count)."""
    return np.asarray(values, np.float32).reshape(n, -1, 3) if n else np.zeros((0, 1, 3), np.float32)


def overlay_parts(record: dict, name: str, class_names: Sequence[str]) -> tuple[SimpleNamespace, SimpleNamespace, Agreement]:
    """``(reference, variant, agreement)`` rebuilt from a results record, ready for ``render.draw_overlay``."""
    ref = detections_from_record(record, REFERENCE, class_names)
    var = detections_from_record(record, name, class_names)
    return ref, var, compare(ref, var)
