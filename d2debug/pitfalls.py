"""The pitfalls: each a named pipeline, the reference with ONE stage changed, as people get it wrong.

One list for every tool: the dataset audit runs :data:`STANDARD_PITFALLS`; the dashboard's sensitivity table
runs :data:`PITFALLS` (those plus :data:`EXTRA_PITFALLS`, cheap on one image); the stage pages are the
:data:`STAGES`, each owning some :class:`~d2debug.stages.PipelineSpec` fields. Names are a public contract:
the CLI's ``--variants``, ``summary.json``, the reports and the README use them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import D2DebugError
from .stages import PipelineSpec, StageValueError, parse_assignment

__all__ = [
    "REFERENCE",
    "REFERENCE_PITFALL",
    "Pitfall",
    "STANDARD_PITFALLS",
    "EXTRA_PITFALLS",
    "PITFALLS",
    "STAGES",
    "stage_of",
    "pitfall_stage",
    "parse_variants",
]

# The name of the reference pipeline wherever pipelines are named (results files, summaries, reports).
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


REFERENCE_PITFALL = Pitfall(REFERENCE, "reference (DefaultPredictor)", (), "what DefaultPredictor does")

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

# Single-stage mistakes cheap enough to show for one image but not in the dataset audit's default set.
EXTRA_PITFALLS: tuple[Pitfall, ...] = (
    Pitfall("resize_noclamp", "shortest edge without MAX_SIZE clamp", (("resize", "shortest_edge_noclamp"),),
            "short side scaled, long side not clamped, sizes truncated"),
    Pitfall("cv2_decoder", "cv2.imread decoding", (("decoder", "cv2"),),
            "OpenCV's JPEG decoder instead of detectron2's read_image (PIL)"),
    Pitfall("score_thresh_low", "score threshold 0.05", (("score_thresh", 0.05),),
            "deploy code with a lower score threshold than the config's"),
    Pitfall("fp16", "fp16 autocast", (("precision", "fp16"),), "reduced precision instead of fp32"),
)
PITFALLS: tuple[Pitfall, ...] = STANDARD_PITFALLS + EXTRA_PITFALLS
_BY_NAME = {p.name: p for p in STANDARD_PITFALLS}


# ---------------------------------------------------------------------------------------------------------------
# Stages: the dashboard's pages, each owning the spec fields it toggles

# Stage id -> (title, the PipelineSpec fields that stage owns). The order is the dashboard's page order.
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "channel_order": ("Channel order", ("channel_order",)),
    "resize": ("Resize policy and interpolation", ("resize", "resize_size", "interpolation", "resize_backend")),
    "normalization": ("Normalization and value range", ("value_range", "external_norm", "model_norm")),
    "decoding": ("Decoding and EXIF", ("decoder",)),
    "output": ("Output frame and thresholds", ("original_size", "score_thresh", "nms_thresh")),
    "device": ("Device and precision", ("device", "precision")),
}


def stage_of(field_name: str) -> str:
    """The stage id owning a :class:`PipelineSpec` field."""
    for sid, (_title, fields) in STAGES.items():
        if field_name in fields:
            return sid
    raise KeyError(field_name)


def pitfall_stage(pitfall: Pitfall) -> str:
    """The stage a single-stage pitfall changes (the stage of its first changed field)."""
    return stage_of(pitfall.changes[0][0]) if pitfall.changes else "channel_order"


# ---------------------------------------------------------------------------------------------------------------
# Naming pitfalls on the command line


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
            pitfall = _custom_variant(text)
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


def _custom_variant(text: str) -> Pitfall:
    name, body = text.split(":", 1)
    name = name.strip()
    if not name or name == REFERENCE or not name.replace("_", "").replace("-", "").isalnum():
        raise D2DebugError(f"--variants {text!r}: a custom variant needs a name of letters, digits, _ or -")
    changes = []
    probe = PipelineSpec()
    for part in body.split("+"):
        try:
            key, value = parse_assignment(part)
            probe = probe.replace(**{key: value})  # validates the value now, not in the middle of a run
        except StageValueError as exc:
            raise D2DebugError(f"--variants {text!r}: {exc.field}={exc.value!r} {exc.reason}") from None
        except D2DebugError as exc:
            raise D2DebugError(f"--variants {text!r}: {exc}") from None
        changes.append((key, value))
    return Pitfall(name, name, tuple(changes), "custom variant")
