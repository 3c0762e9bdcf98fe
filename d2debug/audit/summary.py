"""The audit's summary: per pipeline, agreement with the reference over the images and COCO AP when the
dataset is annotated; the images where each pitfall disagrees most; and the pitfall table in Markdown.

``summary.json`` holds the rows as plain dicts (a public contract: people script it); code that reads them
goes through :class:`SummaryRow` so the keys are written in one place.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..coco import coco_ap
from ..errors import D2DebugError, first_line
from ..model import LoadedModel
from ..pitfalls import REFERENCE, REFERENCE_PITFALL, Pitfall
from ..text import pct
from .dataset import AuditDataset

__all__ = ["SummaryRow", "summary_rows", "summarize", "pitfalls_markdown", "table_records", "load_summary", "MODEL_KEYS"]

# What the summary records of the model (keys of LoadedModel.describe()).
MODEL_KEYS = ("config", "weights", "architecture", "class_names", "input_format", "pixel_mean", "pixel_std",
              "min_size_test", "max_size_test", "score_thresh_test", "device")
_AGREEMENT_TOTALS = ("matched", "missed", "extra", "class_flips")


@dataclass(frozen=True)
class SummaryRow:
    """One pipeline over the dataset. ``f1``: mean agreement F1 over its images (``None`` without images);
    counts are totals; ``AP``/``AP50``/``AP75`` fractions 0..1 from pycocotools (``None`` without
    annotations), ``dAP``/``dAP50`` the difference from the reference's."""

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

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE

    def damage_key(self) -> tuple:
        """Most damaging first: by AP lost when AP is known, else by agreement lost."""
        return (self.dAP if self.dAP is not None else 0.0, self.f1 if self.f1 is not None else 1.0, self.name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SummaryRow":
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


def summary_rows(summary: dict) -> list[SummaryRow]:
    """The rows of a summary (the reference first, then by damage) as :class:`SummaryRow`."""
    return [SummaryRow.from_dict(r) for r in summary["rows"]]


def _row(pitfall: Pitfall, ok: Sequence[dict]) -> SummaryRow:
    name = pitfall.name
    agr = [r["agreement"][name] for r in ok if name in r["variants"]]
    return SummaryRow(
        name=name, label=pitfall.label, change=pitfall.change_text(), explains=pitfall.explains,
        images=len(agr), failed=sum(1 for r in ok if name in r.get("errors", {})),
        detections=sum(a["n_variant"] for a in agr),
        f1=round(float(np.mean([a["f1"] for a in agr])), 4) if agr else None,
        **{k: sum(a[k] for a in agr) for k in _AGREEMENT_TOTALS},
    )


def _ap(dataset: AuditDataset, ok: Sequence[dict], name: str) -> Optional[dict]:
    """pycocotools AP of pipeline ``name`` over the annotated images it ran on (``None`` when there are none)."""
    dets = {
        r["image_id"]: (
            np.asarray(r["variants"][name]["boxes"], np.float64).reshape(-1, 4),
            np.asarray(r["variants"][name]["scores"], np.float64),
            np.asarray(r["variants"][name]["classes"], np.int64),
        )
        for r in ok if name in r["variants"] and r.get("image_id") is not None
    }
    return coco_ap(dataset.coco, dets) if dets else None


def _worst(ok: Sequence[dict], pitfall: Pitfall, n: int) -> list[dict]:
    """The ``n`` images where ``pitfall`` agrees least with the reference (lowest F1, most differences)."""
    name = pitfall.name
    scored = [(a["f1"], -(a["missed"] + a["extra"] + a["class_flips"]), r["index"], r)
              for r in ok if name in r["agreement"] for a in (r["agreement"][name],) if a["f1"] < 1.0]
    scored.sort(key=lambda t: t[:3])
    return [{"index": r["index"], "key": r["key"],
             **{k: r["agreement"][name][k] for k in ("f1", "matched", "missed", "extra", "class_flips")}}
            for *_, r in scored[:n]]


def summarize(records: Sequence[dict], pitfalls: Sequence[Pitfall], dataset: AuditDataset,
              loaded: Optional[LoadedModel] = None, worst_per_pitfall: int = 3) -> dict:
    """Per variant: mean agreement F1 over images, totals of matched/missed/extra/class flips, and COCO
    AP/AP50/AP75 (fractions 0..1) when the dataset has annotations; rows sorted by damage. Also the images
    where each pitfall disagrees most with the reference."""
    ok = [r for r in records if "error" not in r]
    rows, ap_ref = [], None
    for pitfall in [REFERENCE_PITFALL, *pitfalls]:
        row = _row(pitfall, ok)
        ap = _ap(dataset, ok, pitfall.name) if dataset.coco is not None else None
        if ap is not None:
            ap_ref = ap if pitfall.name == REFERENCE else ap_ref
            delta = ({"dAP": ap["AP"] - ap_ref["AP"], "dAP50": ap["AP50"] - ap_ref["AP50"]}
                     if ap_ref is not None else {})
            # unrounded: pycocotools' own values
            row = SummaryRow(**{**row.to_dict(), **{k: ap[k] for k in ("AP", "AP50", "AP75")}, **delta})
        rows.append(row)
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


def pitfalls_markdown(summary: dict) -> str:
    """The summary as a markdown table, the reference first and the pitfalls by damage (AP in percent)."""
    rows = summary_rows(summary)
    has_ap = any(r.AP is not None for r in rows)
    head = ["pitfall", "stage change"]
    head += ["AP", "dAP", "AP50", "dAP50"] if has_ap else []
    head += ["agreement F1", "matched", "missed", "extra", "class flips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [r.label, f"`{r.change}`" if not r.is_reference else "none"]
        if has_ap:
            cells += [pct(r.AP), pct(r.dAP, True), pct(r.AP50), pct(r.dAP50, True)]
        cells += ["n/a" if r.f1 is None else f"{r.f1:.3f}", str(r.matched), str(r.missed), str(r.extra),
                  str(r.class_flips)]
        lines.append("| " + " | ".join(cells) + " |")
    ds = summary["dataset"]
    foot = f"\n{ds['finished']} images from `{ds['source']}`"
    if ds.get("annotations"):
        foot += f"; AP (COCO 0.50:0.95, pycocotools) against `{Path(ds['annotations']).name}`"
    foot += "; agreement F1 is against the reference's detections (IoU >= 0.5, same class).\n"
    if ds.get("failed"):
        foot += f"{len(ds['failed'])} image(s) could not be read and are left out.\n"
    return "\n".join(lines) + "\n" + foot


def table_records(summary: dict) -> list[dict]:
    """The pitfall table as rows for a data frame: AP columns in percent when the audit had annotations."""
    rows = summary_rows(summary)
    has_ap = any(r.AP is not None for r in rows)
    return [{
        "pitfall": r.label,
        "stage change": r.change,
        **({"AP": r.AP * 100, "dAP": r.dAP * 100, "AP50": r.AP50 * 100, "dAP50": r.dAP50 * 100}
           if has_ap and r.AP is not None else {}),
        "agreement F1": r.f1,
        "matched": r.matched,
        "missed": r.missed,
        "extra": r.extra,
        "class flips": r.class_flips,
    } for r in rows]


def load_summary(path: Path) -> dict:
    """A ``summary.json`` written by an audit. Raises :class:`D2DebugError` naming the file when it is not one."""
    try:
        summary = json.loads(Path(path).read_text())
        summary_rows(summary)
        summary["dataset"]["finished"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise D2DebugError(f"{path}: not an audit summary.json ({first_line(exc)})") from None
    return summary
