"""Dataset audit: the reference pipeline and every single-stage pitfall over a dataset, measured.

- :mod:`.dataset`: the images (a directory or a COCO json) and their annotations;
- :mod:`.results`: the resumable results file, the settings it is tied to, detections in a record;
- :mod:`.images`: one image's pipelines, prepared (in DataLoader workers) and run;
- :mod:`.runner`: every pipeline on every image, appended as each image finishes;
- :mod:`.shard`: the same over several processes and machines under torchrun (torch.distributed);
- :mod:`.summary`: agreement and COCO AP per pipeline, the worst images, the Markdown table;
- :mod:`.report`: ``summary.json``, ``pitfalls.md`` and the self-contained ``report.html``.

The pitfalls themselves are :mod:`d2debug.pitfalls`.
"""
from ..pitfalls import REFERENCE, STANDARD_PITFALLS, Pitfall, parse_variants
from .dataset import AuditDataset, AuditImage, load_dataset
from .report import build_report, damage_chart_svg, write_outputs
from .results import RESULTS_NAME, ResultsState, audit_settings, auto_out_dir, read_results, results_files, shard_path
from .runner import AuditRun, assign, run_audit
from .shard import Ranks, SharedError, launched_by_torchrun, start_ranks
from .summary import SummaryRow, load_summary, pitfalls_markdown, summarize, summary_rows, table_records

__all__ = [
    "REFERENCE",
    "Pitfall",
    "STANDARD_PITFALLS",
    "AuditImage",
    "AuditDataset",
    "AuditRun",
    "ResultsState",
    "RESULTS_NAME",
    "SummaryRow",
    "parse_variants",
    "load_dataset",
    "audit_settings",
    "auto_out_dir",
    "read_results",
    "run_audit",
    "assign",
    "Ranks",
    "SharedError",
    "launched_by_torchrun",
    "start_ranks",
    "results_files",
    "shard_path",
    "summarize",
    "summary_rows",
    "table_records",
    "load_summary",
    "pitfalls_markdown",
    "build_report",
    "damage_chart_svg",
    "write_outputs",
]
