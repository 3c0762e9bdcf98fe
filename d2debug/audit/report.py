"""The audit's outputs for people: ``summary.json``, ``pitfalls.md`` and a self-contained ``report.html``
(one file, no external scripts, styles or images).

The report holds a bar chart of the damage each pitfall does (inline SVG, sorted), the pitfall table, and for
each pitfall the images where it disagrees most with the reference, drawn with ``render.draw_overlay`` and
embedded as base64 PNG.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..render import OVERLAY_COLOURS, draw_overlay, png_bytes
from ..stages import decode
from .dataset import AuditDataset
from .results import RESULTS_NAME, overlay_parts
from .summary import SummaryRow, pitfalls_markdown, summary_rows, table_cells

__all__ = ["build_report", "damage_chart_svg", "worst_overlays", "write_outputs"]

Figures = dict[str, list[tuple[str, bytes]]]  # pitfall name -> [(caption, PNG bytes)]

OVERLAY_SIDE = 360  # px, long side of the embedded overlays: keeps the report a few MB

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.ref{background:#eef6ee}
code{background:#f3f3f3;padding:0 3px}.fig{display:inline-block;margin:6px;vertical-align:top;font-size:.85em}
.fig img{display:block;border:1px solid #ccc}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.muted{color:#666}
"""


def _esc(v) -> str:
    return html.escape(str(v))


def _ap_lost(row: SummaryRow) -> Optional[float]:
    return None if row.dAP is None else max(0.0, -row.dAP) * 100.0


def _f1_lost(row: SummaryRow) -> float:
    score = row.score if row.score is not None else row.f1
    return max(0.0, 1.0 - (score if score is not None else 1.0)) * 100.0


def damage_chart_svg(summary: dict) -> str:
    """Horizontal bars, most damaging pitfall on top: AP points lost (when annotated; orange) and agreement
    F1 lost x100 (blue), so a pitfall that changes detections without moving AP still shows."""
    rows = [r for r in summary_rows(summary) if not r.is_reference]
    by_ap = any(r.dAP is not None for r in rows)
    vals = sorted(rows, key=lambda r: (-(_ap_lost(r) or 0.0), -_f1_lost(r), r.name))
    label_w, bar_w, row_h, top = 260, 520, 30 if by_ap else 22, 30
    height = top + row_h * len(vals) + 10
    vmax = max([_f1_lost(r) for r in vals] + [(_ap_lost(r) or 0.0) for r in vals] + [1e-9])
    legend = []
    if by_ap:
        legend.append('<rect x="{x}" y="6" width="12" height="12" fill="#d55e00"/>'
                      '<text x="{tx}" y="16" font-size="12">AP points lost</text>'.format(x=label_w, tx=label_w + 16))
    off = label_w + (130 if by_ap else 0)
    legend.append(f'<rect x="{off}" y="6" width="12" height="12" fill="#0072b2"/>'
                  f'<text x="{off + 16}" y="16" font-size="12">agreement F1 lost (x100) vs the reference</text>')
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" height="{height}" '
             'role="img" aria-label="damage per pitfall">', *legend]
    for k, r in enumerate(vals):
        y = top + k * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 14}" font-size="12" text-anchor="end">{_esc(r.label)}</text>')
        bars = ([(_ap_lost(r) or 0.0, "#d55e00")] if by_ap else []) + [(_f1_lost(r), "#0072b2")]
        for j, (v, colour) in enumerate(bars):
            w = bar_w * v / vmax
            yy = y + 2 + j * 12
            parts.append(f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="10" fill="{colour}"/>')
            parts.append(f'<text x="{label_w + w + 6:.1f}" y="{yy + 9}" font-size="10">{v:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(summary: dict) -> str:
    head, rows = table_cells(summary, detections=True)
    out = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for cells in rows:
        cls = ' class="ref"' if cells[1] == "none" else ""
        out.append(f"<tr{cls}><td>{_esc(cells[0])}</td><td><code>{_esc(cells[1])}</code></td>"
                   + "".join(f'<td class="n">{_esc(v)}</td>' for v in cells[2:]) + "</tr>")
    out.append("</table>")
    return "".join(out)


def worst_overlays(summary: dict, records: Sequence[dict], dataset, class_names: Sequence[str],
                   max_side: int = OVERLAY_SIDE) -> Figures:
    """For each pitfall, ``(caption, PNG bytes)`` of its worst images: the reference-vs-pitfall overlay drawn
    on the reference decoding of the image (boxes as each pipeline returned them, so a wrong frame shows)."""
    by_index = {r["index"]: r for r in records}
    rgb_cache: dict[int, np.ndarray] = {}
    out: Figures = {}
    for name, worst in summary.get("worst", {}).items():
        figs = []
        for w in worst:
            rec = by_index.get(w["index"])
            if rec is None or name not in rec.get("variants", {}):
                continue
            if w["index"] not in rgb_cache:
                dec = decode(dataset.images[w["index"]].path, "detectron2")
                rgb_cache[w["index"]] = dec.image[:, :, ::-1] if dec.order == "BGR" else dec.image
            ref, var, agr = overlay_parts(rec, name, class_names)
            img = draw_overlay(rgb_cache[w["index"]], ref, var, agr, max_side=max_side)
            cap = (f"{w['key']}: F1 {w['f1']:.2f}, matched {w['matched']}, missed {w['missed']}, "
                   f"extra {w['extra']}, flips {w['class_flips']}")
            figs.append((cap, png_bytes(img)))
        out[name] = figs
    return out


def build_report(summary: dict, records: Sequence[dict], dataset, class_names: Sequence[str],
                 figures: Optional[Figures] = None) -> str:
    """The whole report as one HTML string (UTF-8), images inline as ``data:image/png;base64``.
    ``figures``: the :func:`worst_overlays` when already drawn."""
    figs = worst_overlays(summary, records, dataset, class_names) if figures is None else figures
    ds = summary["dataset"]
    model = summary.get("model", {})
    p = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         "<title>d2debug dataset audit</title>", f"<style>{_CSS}</style></head><body>",
         "<h1>Dataset audit: what each preprocessing pitfall costs on this data</h1>"]
    bits = [f"{ds['finished']} of {ds['images']} images from <code>{_esc(ds['source'])}</code>"]
    if ds.get("annotations"):
        bits.append(f"AP against <code>{_esc(ds['annotations'])}</code> (COCO 0.50:0.95, pycocotools)")
    if model:
        bits.append(f"model <code>{_esc(model.get('weights'))}</code> ({_esc(model.get('architecture'))}, "
                    f"INPUT.FORMAT {_esc(model.get('input_format'))}, PIXEL_MEAN {_esc(model.get('pixel_mean'))}, "
                    f"PIXEL_STD {_esc(model.get('pixel_std'))})")
    p.append("<p>" + "; ".join(bits) + ".</p>")
    for note in ds.get("notes", []):
        p.append(f"<p class='muted'>{_esc(note)}</p>")
    if ds.get("failed"):
        p.append("<p>Images that could not be read: " + "; ".join(
            f"<code>{_esc(f['key'])}</code> ({_esc(f['error'])})" for f in ds["failed"]) + "</p>")
    p.append("<h2>Damage per pitfall</h2>")
    p.append(damage_chart_svg(summary))
    p.append("<h2>Table</h2>")
    p.append("<p class='muted'>Each pitfall is the reference pipeline (exactly what DefaultPredictor does) with "
             "one stage changed. AP in percent; agreement F1 is against the reference's own detections "
             "(IoU &ge; 0.5, same class), 1.000 meaning identical output.</p>")
    p.append(_table(summary))
    p.append("<h2>Worst images per pitfall</h2>")
    legend = "".join(
        f"<span><i class='sw' style='background:rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})'></i>"
        f"{_esc(k.replace('_', ' '))}</span>"
        for k, (r, g, b) in OVERLAY_COLOURS.items())
    p.append(f"<p class='legend'>{legend}</p>")
    for row in summary_rows(summary):
        name = row.name
        if row.is_reference:
            continue
        p.append(f"<h3>{_esc(row.label)} <code>{_esc(row.change)}</code></h3>")
        if row.explains:
            p.append(f"<p class='muted'>{_esc(row.explains)}</p>")
        if not figs.get(name):
            p.append("<p>Same detections as the reference on every image.</p>")
            continue
        for cap, png in figs[name]:
            b64 = base64.b64encode(png).decode("ascii")
            p.append(f"<div class='fig'><img alt='{_esc(cap)}' src='data:image/png;base64,{b64}'>"
                     f"<span>{_esc(cap)}</span></div>")
    p.append("</body></html>")
    return "\n".join(p)


def write_outputs(out_dir: Path, summary: dict, records: Sequence[dict], dataset: AuditDataset,
                  class_names: Sequence[str]) -> tuple[dict[str, Path], Figures]:
    """Write ``summary.json``, ``pitfalls.md`` and ``report.html`` into ``out_dir`` (each written to a
    temporary file and renamed, so a reader never sees half a file). Returns the paths (with the results
    file's) and the worst-image figures drawn for the report."""
    figures = worst_overlays(summary, records, dataset, class_names)
    paths = {"summary": out_dir / "summary.json", "markdown": out_dir / "pitfalls.md",
             "report": out_dir / "report.html", "results": out_dir / RESULTS_NAME}
    texts = {
        "summary": json.dumps(summary, indent=1),
        "markdown": pitfalls_markdown(summary),
        "report": build_report(summary, records, dataset, class_names, figures=figures),
    }
    for k, text in texts.items():
        tmp = paths[k].with_name(paths[k].name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, paths[k])
    return paths, figures
