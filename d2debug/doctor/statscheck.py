"""The statistics-only check: a user's model input against a pipeline fingerprint without the image it came
from. Weaker than :func:`~d2debug.doctor.diagnose.diagnose` (one tensor against the recorded dataset
statistics, no re-rendering), but it needs nothing but the tensor and the fingerprint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..findings import Finding
from .fingerprint import check_config, check_statistics
from .inputs import UserInput, container_findings

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["StatisticsCheck", "check_input_statistics"]


@dataclass(frozen=True)
class StatisticsCheck:
    """Findings (most confident first) for one input checked against a fingerprint by its statistics."""

    findings: tuple[Finding, ...]
    user_input: UserInput
    fingerprint_source: str

    @property
    def is_match(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        ui = self.user_input
        return {"findings": [f.to_dict() for f in self.findings], "mode": "statistics only (no --image)",
                "input": {"container": ui.container, "shape": list(ui.tensor.shape), "dtype": ui.dtype}}

    def report(self) -> str:
        lines = [f"your input  {self.user_input.describe()} (statistics-only check against {self.fingerprint_source})"]
        for i, f in enumerate(self.findings, 1):
            lines += [f"finding {i}   {f.id} (confidence {f.confidence:.2f})", f"  evidence  {f.evidence}",
                      f"  fix       {f.fix}"]
        if not self.findings:
            lines.append("finding     none: the input's statistics fit the recorded training inputs")
        return "\n".join(lines)


def check_input_statistics(ui: UserInput, fingerprint: dict, cfg: Optional[CfgNode] = None,
                           source: str = "the fingerprint") -> StatisticsCheck:
    """The container findings, the statistics against ``fingerprint``, and (with a deployment ``cfg``) the
    config's preprocessing values against the recorded ones; ``source`` names the fingerprint in reports."""
    findings = container_findings(ui) + check_statistics(fingerprint, ui.tensor, ui.original_size)
    findings += check_config(fingerprint, cfg) if cfg is not None else []
    findings.sort(key=lambda f: -f.confidence)
    return StatisticsCheck(tuple(findings), ui, source)
