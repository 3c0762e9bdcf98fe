"""The audit's summary: per pipeline, agreement with the reference over the images and COCO AP when the
dataset is annotated; the images where each pitfall disagrees most; and the pitfall table in Markdown.

``summary.json`` holds the rows as plain dicts (a public contract: people script it); code that reads them
goes through :class:`SummaryRow` so the keys are written in one place.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..coco import coco_ap
from ..errors import D2DebugError, first_line
from ..model import LoadedModel
from ..pitfalls import REFERENCE, REFERENCE_PITFALL, Pitfall
from .dataset import AuditDataset

__all__ = ["SummaryRow", "summary_rows", "ap_kinds", "table_cells", "summarize", "pitfalls_markdown", "table_records", "load_summary", "MODEL_KEYS"]

# What the summary records of the model (keys of LoadedModel.describe()).
MODEL_KEYS = ("config", "weights", "architecture", "class_names", "input_format", "pixel_mean", "pixel_std",
              "min_size_test", "max_size_test", "score_thresh_test", "device")
_AGREEMENT_TOTALS = ("matched", "missed", "extra", "class_flips")


@dataclass(frozen=True)
class SummaryRow:
    """One pipeline over the dataset. ``f1``: mean agreement F1 over its images (``None`` without images);
    counts are totals; ``AP``/``AP50``/``AP75`` fractions 0..1 from pycocotools (``None`` without
    annotations), ``dAP``/``dAP50`` the difference from the reference's. ``mask_AP``/``keypoint_AP`` (and
    their ``d``) the same for masks (``segm``) and keypoints, when the model predicts them and the
    annotations carry them. ``mask_iou``, ``keypoint_distance``, ``sem_seg_miou``: means over the images of
    the per-image agreement numbers (``None`` where they do not apply); ``score``: the mean of the number the
    tools rank by (F1, or semantic mIoU for a semantic segmentor)."""

    name: str
    label: str
    change: str
    explains: str
    images: int
    failed: int
    detections: int
    f1: Optional[float]
    matched: int
    missed: int
    extra: int
    class_flips: int
    AP: Optional[float] = None
    AP50: Optional[float] = None
    AP75: Optional[float] = None
    dAP: Optional[float] = None
    dAP50: Optional[float] = None
    mask_AP: Optional[float] = None
    dmask_AP: Optional[float] = None
    keypoint_AP: Optional[float] = None
    dkeypoint_AP: Optional[float] = None
    mask_iou: Optional[float] = None
    keypoint_distance: Optional[float] = None
    sem_seg_miou: Optional[float] = None
    score: Optional[float] = None

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE

    def damage_key(self) -> tuple:
        """Most damaging first: by AP lost when AP is known, else by agreement lost."""
        score = self.score if self.score is not None else self.f1
        return (self.dAP if self.dAP is not None else 0.0, score if score is not None else 1.0, self.name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SummaryRow":
        values: dict[str, Any] = {f.name: d.get(f.name) for f in fields(cls)}
        return cls(**values)


def summary_rows(summary: dict) -> list[SummaryRow]:
    """The rows of a summary (the reference first, then by damage) as :class:`SummaryRow`."""
    return [SummaryRow.from_dict(r) for r in summary["rows"]]


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def _row(pitfall: Pitfall, ok: Sequence[dict]) -> SummaryRow:
    name = pitfall.name
    agr = [r["agreement"][name] for r in ok if name in r["variants"]]
    totals: dict[str, Any] = {k: sum(a[k] for a in agr) for k in _AGREEMENT_TOTALS}
    means: dict[str, Any] = {k: _mean(a.get(k) for a in agr) for k in ("mask_iou", "keypoint_distance", "sem_seg_miou")}
    return SummaryRow(
        name=name, label=pitfall.label, change=pitfall.change_text(), explains=pitfall.explains,
        images=len(agr), failed=sum(1 for r in ok if name in r.get("errors", {})),
        detections=sum(a["n_variant"] for a in agr),
        f1=_mean(a["f1"] for a in agr),
        **totals,
        **means,
        score=_mean(a.get("score", a["f1"]) for a in agr),
    )


# iou type -> (the record's per-detection field it needs, what the annotations must carry, summary key prefix)
_AP_KINDS = {"bbox": (None, None, ""), "segm": ("masks", "segmentation", "mask_"),
             "keypoints": ("keypoints", "keypoints", "keypoint_")}


def ap_kinds(dataset: AuditDataset, records: Sequence[dict]) -> list[str]:
    """The COCO iou types an audit can score: ``bbox`` when annotated; ``segm`` / ``keypoints`` too when the
    model predicts masks / keypoints and the annotations carry segmentations / keypoints."""
    if dataset.coco is None:
        return []
    anns = dataset.coco.dataset.get("annotations", [])
    kinds = ["bbox"]
    first = next((r for r in records if "variants" in r), None)
    for kind, (field_, ann_key, _) in list(_AP_KINDS.items())[1:]:
        if first is not None and field_ in first["variants"][REFERENCE] and any(a.get(ann_key) for a in anns):
            kinds.append(kind)
    return kinds


def _ap(dataset: AuditDataset, ok: Sequence[dict], name: str, kind: str = "bbox") -> Optional[dict]:
    """pycocotools AP of pipeline ``name`` over the annotated images it ran on (``None`` when there are
    none); ``kind``: ``bbox``, ``segm`` or ``keypoints``."""
    field_ = _AP_KINDS[kind][0]
    dets = {}
    for r in ok:
        if name not in r["variants"] or r.get("image_id") is None:
            continue
        v = r["variants"][name]
        det = (np.asarray(v["boxes"], np.float64).reshape(-1, 4), np.asarray(v["scores"], np.float64),
               np.asarray(v["classes"], np.int64))
        dets[r["image_id"]] = det + ((v[field_],) if field_ else ())
    return coco_ap(dataset.coco, dets, kind) if dets else None


def _worst(ok: Sequence[dict], pitfall: Pitfall, n: int) -> list[dict]:
    """The ``n`` images where ``pitfall`` agrees least with the reference (lowest F1, most differences)."""
    name = pitfall.name
    scored = [(a.get("score", a["f1"]), -(a["missed"] + a["extra"] + a["class_flips"]), r["index"], r)
              for r in ok if name in r["agreement"] for a in (r["agreement"][name],) if a.get("score", a["f1"]) < 1.0]
    scored.sort(key=lambda t: t[:3])
    return [{"index": r["index"], "key": r["key"],
             **{k: r["agreement"][name].get(k) for k in ("f1", "matched", "missed", "extra", "class_flips",
                                                         "score")}}
            for *_, r in scored[:n]]


def summarize(records: Sequence[dict], pitfalls: Sequence[Pitfall], dataset: AuditDataset,
              loaded: Optional[LoadedModel] = None, worst_per_pitfall: int = 3) -> dict:
    """Per variant: mean agreement F1 over images, totals of matched/missed/extra/class flips, and COCO
    AP/AP50/AP75 (fractions 0..1) when the dataset has annotations; rows sorted by damage. Also the images
    where each pitfall disagrees most with the reference."""
    ok = [r for r in records if "error" not in r]
    kinds = ap_kinds(dataset, ok)
    rows, ap_ref = [], {}
    for pitfall in [REFERENCE_PITFALL, *pitfalls]:
        row = _row(pitfall, ok).to_dict()
        for kind in kinds:
            ap = _ap(dataset, ok, pitfall.name, kind)
            if ap is None:
                continue
            prefix = _AP_KINDS[kind][2]
            if pitfall.name == REFERENCE:
                ap_ref[kind] = ap
            ref = ap_ref.get(kind)
            # unrounded: pycocotools' own values
            if kind == "bbox":
                row.update({k: ap[k] for k in ("AP", "AP50", "AP75")})
                if ref is not None:
                    row.update(dAP=ap["AP"] - ref["AP"], dAP50=ap["AP50"] - ref["AP50"])
            else:
                row[f"{prefix}AP"] = ap["AP"]
                if ref is not None:
                    row[f"d{prefix}AP"] = ap["AP"] - ref["AP"]
        rows.append(SummaryRow.from_dict(row))
    out = {
        "dataset": {
            "source": dataset.source,
            "annotations": str(dataset.annotations) if dataset.annotations else None,
            "images": len(dataset.images),
            "finished": len(records),
            "failed": [{"key": r["key"], "error": r["error"]} for r in records if "error" in r],
            "notes": list(dataset.notes),
        },
        "rows": [r.to_dict() for r in [rows[0], *sorted(rows[1:], key=SummaryRow.damage_key)]],
        "worst": {p.name: _worst(ok, p, worst_per_pitfall) for p in pitfalls},
    }
    if loaded is not None:
        d = loaded.describe()
        out["model"] = {k: d[k] for k in MODEL_KEYS}
    return out


# How each kind of table column prints (printf style): AP-like in percent with one decimal (signed for the
# drops), agreement ratios with three decimals, counts as they are.
_FORMATS = {"pct": "%.1f", "dpct": "%+.1f", "ratio": "%.3f", "count": "%d"}


def _table(summary: dict, detections: bool) -> tuple[list[tuple[str, str]], list[list]]:
    """The pitfall table as ``(columns, rows)``: each column ``(name, kind)`` (``text`` or a :data:`_FORMATS`
    kind), each row its values, numbers already in the units and rounding they print with (``None``: n/a); the
    reference first and the pitfalls by damage."""
    rows = summary_rows(summary)
    cols = _columns(rows)
    columns = [("pitfall", "text"), ("stage change", "text")]
    columns += [("AP", "pct"), ("dAP", "dpct"), ("AP50", "pct"), ("dAP50", "dpct")] if cols["box"] else []
    columns += [("mask AP", "pct"), ("dmask AP", "dpct")] if cols["mask"] else []
    columns += [("keypoint AP", "pct"), ("dkeypoint AP", "dpct")] if cols["keypoint"] else []
    columns += [("agreement F1", "ratio"), ("matched", "count"), ("missed", "count"), ("extra", "count"),
                ("class flips", "count")]
    columns += [("mask IoU", "ratio")] if cols["mask_iou"] else []
    columns += [("semantic mIoU", "ratio")] if cols["sem_seg"] else []
    columns += [("detections", "count")] if detections else []
    fields = {"AP": "AP", "dAP": "dAP", "AP50": "AP50", "dAP50": "dAP50", "mask AP": "mask_AP",
              "dmask AP": "dmask_AP", "keypoint AP": "keypoint_AP", "dkeypoint AP": "dkeypoint_AP",
              "agreement F1": "f1", "matched": "matched", "missed": "missed", "extra": "extra",
              "class flips": "class_flips", "mask IoU": "mask_iou", "semantic mIoU": "sem_seg_miou",
              "detections": "detections"}
    out = []
    for r in rows:
        values: list = [r.label, r.change if not r.is_reference else "none"]
        for name, kind in columns[2:]:
            v = getattr(r, fields[name])
            values.append(None if v is None else round(100 * v, 1) if kind in ("pct", "dpct")
                          else round(v, 3) if kind == "ratio" else int(v))
        out.append(values)
    return columns, out


def table_cells(summary: dict, detections: bool = False) -> tuple[list[str], list[list[str]]]:
    """The pitfall table as text: ``(header, rows)``, the reference first and the pitfalls by damage; AP
    columns (box, then mask and keypoint when scored) in percent, the agreement numbers; ``detections`` adds
    each pipeline's total. The Markdown table, the HTML report and (as numbers) the dashboard print these."""
    columns, rows = _table(summary, detections)
    cells = [[v if kind == "text" else "n/a" if v is None else _FORMATS[kind] % v
              for (_, kind), v in zip(columns, row)] for row in rows]
    return [name for name, _ in columns], cells


def pitfalls_markdown(summary: dict) -> str:
    """The summary as a markdown table, the reference first and the pitfalls by damage (AP in percent)."""
    head, rows = table_cells(summary)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for cells in rows:
        change = cells[1] if cells[1] == "none" else f"`{cells[1]}`"
        lines.append("| " + " | ".join([cells[0], change, *cells[2:]]) + " |")
    cols = _columns(summary_rows(summary))
    ds = summary["dataset"]
    foot = f"\n{ds['finished']} images from `{ds['source']}`"
    if ds.get("annotations"):
        foot += f"; AP (COCO 0.50:0.95, pycocotools) against `{Path(ds['annotations']).name}`"
    foot += "; agreement F1 is against the reference's detections (IoU >= 0.5, same class)"
    foot += "; mask IoU: mean over the matched pairs.\n" if cols["mask_iou"] else ".\n"
    if ds.get("failed"):
        foot += f"{len(ds['failed'])} image(s) could not be read and are left out.\n"
    return "\n".join(lines) + "\n" + foot


def _columns(rows: Sequence[SummaryRow]) -> dict[str, bool]:
    """Which optional columns the table has: box / mask / keypoint AP, mask IoU, semantic mIoU."""
    return {"box": any(r.AP is not None for r in rows), "mask": any(r.mask_AP is not None for r in rows),
            "keypoint": any(r.keypoint_AP is not None for r in rows),
            "mask_iou": any(r.mask_iou is not None for r in rows),
            "sem_seg": any(r.sem_seg_miou is not None for r in rows)}


def table_records(summary: dict) -> tuple[list[dict], dict[str, str]]:
    """The pitfall table for a data frame: rows (column -> value; numbers stay numbers, so the table sorts by
    them, already rounded as :func:`table_cells` prints them) and each numeric column's printf format, so a
    dashboard shows the cells the Markdown table and the HTML report print."""
    columns, rows = _table(summary, detections=False)
    formats = {name: _FORMATS[kind] for name, kind in columns if kind != "text"}
    return [dict(zip([name for name, _ in columns], row)) for row in rows], formats


def load_summary(path: Path) -> dict:
    """A ``summary.json`` written by an audit. Raises :class:`D2DebugError` naming the file when it is not one."""
    try:
        summary = json.loads(Path(path).read_text())
        summary_rows(summary)
        summary["dataset"]["finished"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise D2DebugError(f"{path}: not an audit summary.json ({first_line(exc)})") from None
    return summary
