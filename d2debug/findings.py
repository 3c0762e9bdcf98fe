"""Findings: the one vocabulary in which the Doctor, the fingerprint check and the pytest helper say what
differs from the reference, and the code that fixes it.

A :class:`Finding` names a stage by its id (:data:`FINDING_IDS`, a public contract: the CLI's JSON, the
dashboard and users' CI read them), quotes the measured evidence, and gives the fix for the Detectron2
contract. :func:`merge` and :func:`rank` turn the findings of several checks into one ordered list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal, Optional, get_args

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = [
    "FindingId",
    "FINDING_IDS",
    "STAGE_ORDER",
    "REMINDERS",
    "Finding",
    "merge",
    "rank",
    "reference_resize_code",
    "feed_code",
]

FindingId = Literal[
    "channel_order",
    "value_range_0_1",
    "external_normalization",
    "double_normalization",
    "pixel_mean_std",
    "resize_size",
    "resize_aspect",
    "resize_interpolation",
    "exif_orientation",
    "missing_original_size",
    "dtype",
    "batch_contract",
    "padding",
    "crop",
    "transposed_hw",
    "recompression",
    "alpha_channel",
    "traced_size",
    "graph_double_normalization",
    "rescale_boxes",
    "channels_last",
    "unexplained",
    "match",
]
FINDING_IDS: tuple[str, ...] = get_args(FindingId)

# Tie-break order for findings of equal confidence: the earlier a stage, the earlier it is listed.
STAGE_ORDER: tuple[str, ...] = (
    "batch_contract", "channels_last", "dtype", "exif_orientation", "alpha_channel", "recompression", "transposed_hw",
    "crop", "padding", "channel_order", "value_range_0_1", "graph_double_normalization", "double_normalization",
    "external_normalization", "pixel_mean_std", "traced_size", "resize_aspect", "resize_size", "resize_interpolation",
    "missing_original_size", "unexplained", "match", "rescale_boxes",
)
# Findings that say what the deployment must still do with a correct input (not a difference from the
# reference): listed after the others, and a diagnosis whose only other finding is ``match`` is a match.
REMINDERS: tuple[str, ...] = ("rescale_boxes",)
_POSITION = {k: i for i, k in enumerate(STAGE_ORDER)}


@dataclass(frozen=True)
class Finding:
    """One diagnosed difference. ``id`` is one of :data:`FINDING_IDS`; ``confidence`` in [0, 1]; ``evidence``
    quotes the measured numbers; ``fix`` is the correct code for the Detectron2 contract."""

    id: FindingId
    confidence: float
    evidence: str
    fix: str
    recovers: Optional[float] = None  # agreement F1 gained by fixing this one alone (None: not measured)
    costs_alone: Optional[float] = None  # agreement F1 lost by this mistake alone on the reference input
    # With the user's own preprocessing function: the agreement gained by setting this stage to the reference on
    # its input file or its output (None: not measurable there), and how it was set or why it could not be.
    recovers_own: Optional[float] = None
    own: Optional[str] = None

    def __post_init__(self) -> None:
        if self.id not in FINDING_IDS:
            raise ValueError(f"finding id {self.id!r} is not one of {', '.join(FINDING_IDS)}")

    def to_dict(self) -> dict:
        return {"id": self.id, "confidence": round(float(self.confidence), 3), "evidence": self.evidence,
                "fix": self.fix, "recovers": None if self.recovers is None else round(float(self.recovers), 4),
                "costs_alone": None if self.costs_alone is None else round(float(self.costs_alone), 4),
                "recovers_own": None if self.recovers_own is None else round(float(self.recovers_own), 4),
                "own": self.own}


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per id: when two checks (the pixels and a fingerprint, say) report the same stage, the
    confidences take the larger, the evidences are joined, and the fix of the more confident one is kept."""
    merged: dict[str, Finding] = {}
    for f in findings:
        g = merged.get(f.id)
        merged[f.id] = f if g is None else Finding(
            f.id, max(f.confidence, g.confidence), f"{g.evidence}; {f.evidence}",
            g.fix if g.confidence >= f.confidence else f.fix)
    return list(merged.values())


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Most damaging first when the damage was measured: by ``recovers`` (what fixing each alone gains, to 2
    decimals of F1), then by ``costs_alone`` (what the mistake costs by itself: it separates mistakes of
    which any one already destroys the output), then most confident; equal ones in pipeline order
    (:data:`STAGE_ORDER`). A finding whose damage was not measured ranks after the measured ones, a reminder
    (:data:`REMINDERS`) after all."""
    return sorted(findings, key=lambda f: (f.id in REMINDERS, f.recovers is None, -round(f.recovers or 0.0, 2),
                                           -round(f.costs_alone or 0.0, 2), -round(f.confidence, 3),
                                           _POSITION[f.id]))


# ---------------------------------------------------------------------------------------------------------------
# The fixes shared by several findings


def reference_resize_code(cfg: CfgNode) -> str:
    """The reference resize for ``cfg`` as code (detectron2's own transform on the ``HxWx3`` uint8 image)."""
    return (f"aug = T.ResizeShortestEdge([{cfg.INPUT.MIN_SIZE_TEST}, {cfg.INPUT.MIN_SIZE_TEST}], "
            f"{cfg.INPUT.MAX_SIZE_TEST}); image = aug.get_transform(image).apply_image(image)  "
            "# detectron2.data.transforms as T, on the HxWx3 uint8 image: what DefaultPredictor does")


def feed_code(cfg: CfgNode) -> str:
    """How to hand the image to the model by the Detectron2 contract (0..255 float32, ``INPUT.FORMAT``)."""
    return ("inputs = [{'image': torch.as_tensor(image.astype('float32').transpose(2, 0, 1)), "
            "'height': orig_h, 'width': orig_w}]; model(inputs)  "
            f"# 0..255 float32, {cfg.INPUT.FORMAT} order; the model applies PIXEL_MEAN/STD itself")
