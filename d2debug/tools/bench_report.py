"""The benchmark's rows and how they print: one :class:`Row` per measured line, a :class:`BenchResult` of a
whole run (its ``--json`` form), and the text and markdown tables (``docs/bench.md``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["Row", "BenchResult", "to_text", "to_markdown"]


@dataclass
class Row:
    """One line of the table. ``value`` is seconds (per image, per toggle, per audit) or MB (``unit``);
    ``ratio`` is against ``versus``; ``target`` is the ratio to stay at or under (``None``: no target)."""

    model: str
    device: str
    row: str
    label: str
    value: float
    unit: str
    ratio: Optional[float]
    versus: str
    target: Optional[float] = None
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target

    def to_dict(self) -> dict:
        d = asdict(self)
        d["met"] = self.met
        return d


@dataclass
class BenchResult:
    rows: list[Row]
    environment: dict
    images: list[str]
    repeats: int
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        """The inverse of :meth:`to_dict` (to print a saved ``--json`` result as a table)."""
        rows = [Row(**{k: v for k, v in r.items() if k != "met"}) for r in d["rows"]]
        return cls(rows, d["environment"], d["images"], d["repeats"], d.get("details", {}), d.get("notes", []))

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "images": self.images,
            "repeats": self.repeats,
            "rows": [r.to_dict() for r in self.rows],
            "details": self.details,
            "notes": self.notes,
        }


def _value(r: Row) -> str:
    if r.unit == "MB":
        return f"{r.value:.0f} MB"
    return f"{r.value * 1000:.0f} ms" if r.value < 10 else f"{r.value:.1f} s"


def _met(r: Row) -> str:
    return "" if r.met is None else ("yes" if r.met else "NO")


def _cells(r: Row) -> list[str]:
    ratio = "n/a" if r.ratio is None else f"{r.ratio:.2f}x"
    target = "" if r.target is None else f"<= {r.target:g}"
    return [r.model, r.device, r.row, r.label, f"{_value(r)} ({r.unit.split('/')[-1]})" if r.unit != "MB" else _value(r),
            f"{ratio} {r.versus}", target, _met(r)]


_HEAD = ["model", "device", "row", "what", "median", "ratio", "target", "met"]


def to_text(res: BenchResult) -> str:
    cells = [_HEAD] + [_cells(r) for r in res.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEAD))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(_HEAD))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    env = res.environment
    head = (f"d2debug bench: {len(res.images)} images, medians of {res.repeats} repeats, {env.get('clock', 'wall')} "
            f"clock, torch {env['torch']} with {env['torch_threads']} threads on {env['cpu_count']} CPUs, load average "
            f"{env['load_average_at_start']}")
    notes = [f"note: {n}" for n in res.notes] + [f"row {r.row} ({r.model}): {r.note}" for r in res.rows if r.note]
    return "\n".join([head, ""] + lines + [""] + notes) + "\n"


def to_markdown(res: BenchResult) -> str:
    out = ["| " + " | ".join(_HEAD) + " |", "|" + "|".join(["---"] * 4 + ["---:", "---:", "---:", "---"]) + "|"]
    for r in res.rows:
        c = _cells(r)
        c[3] = c[3].replace("|", "\\|")
        out.append("| " + " | ".join(c) + " |")
    env = res.environment
    foot = [
        "",
        f"{len(res.images)} images ({', '.join(Path(p).name for p in res.images)}), medians of {res.repeats} "
        f"repeats, {env.get('clock', 'wall')} clock; torch {env['torch']}, detectron2 {env['detectron2']}, "
        f"{env['torch_threads']} torch threads on "
        f"{env['cpu_count']} CPUs; load average {env['load_average_at_start']} at the start, "
        f"{env.get('load_average_at_end')} at the end; {env['started']}.",
    ]
    foot += [f"- {n}" for n in res.notes]
    foot += [f"- row {r.row} ({r.model}, {r.device}): {r.note}" for r in res.rows if r.note]
    return "\n".join(out + foot) + "\n"
