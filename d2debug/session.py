"""What one dashboard view computes, as plain functions: reference vs one variant on one image, the
sensitivity of the image to every single pitfall, and the reference chain with its actual values.

No Streamlit here: the pages call these (through cached wrappers in ``d2debug.ui``) and only draw the result,
and the speed benchmark can time exactly what a page toggle costs. All pictures are ``HxWx3`` uint8 RGB.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import render
from .compare import Agreement, compare
from .errors import D2DebugError
from .model import LoadedModel
from .pitfalls import REFERENCE, Pitfall, pitfall_stage
from .run import RunResult, run
from .stages import PipelineSpec, model_norm_values
from .stats import TensorStats, histogram_records, shared_histograms

__all__ = [
    "ReferenceView",
    "ComparisonView",
    "comparison_record",
    "SensitivityRow",
    "GlanceRow",
    "prepare_reference",
    "run_variant",
    "compare_variant",
    "sensitivity_row",
    "pipeline_at_a_glance",
]


# ---------------------------------------------------------------------------------------------------------------
# Reference and one variant


@dataclass
class ReferenceView:
    """The reference run on one image and its Visualizer drawing (computed once, reused by every toggle)."""

    result: RunResult
    drawing: np.ndarray
    _jpeg: Optional[bytes] = field(default=None, repr=False)

    def jpeg(self) -> bytes:
        """The drawing as JPEG bytes, encoded once (a page shows it on every rerun)."""
        if self._jpeg is None:
            self._jpeg = render.jpeg_bytes(self.drawing)
        return self._jpeg


def prepare_reference(loaded: LoadedModel, image: Union[str, Path], spec: PipelineSpec) -> ReferenceView:
    """Run the reference ``spec`` on ``image`` and draw its detections."""
    result = run(loaded, image, spec)
    return ReferenceView(result, render.draw_result(result.rgb_image(), result))


def outputs_text(result: RunResult) -> str:
    """What one run predicted, in words: ``5 detections with masks``, ``a map of 3 classes``..."""
    parts = []
    if result.sem_seg is not None:
        parts.append(f"a map of {len(np.unique(result.sem_seg))} classes")
    if result.sem_seg is None or len(result.boxes):
        with_ = [w for w, v in (("masks", result.masks), ("keypoints", result.keypoints)) if v is not None]
        parts.append(f"{len(result.boxes)} detections" + (f" with {' and '.join(with_)}" if with_ else ""))
    return ", ".join(parts)


def _channel_labels(ref: RunResult, var: RunResult) -> list[str]:
    """Names of the tensor channels by position: the colour each pipeline put there."""
    out = []
    for i in range(3):
        a, b = ref.fed_order[i], var.fed_order[i]
        out.append(f"ch{i} {a}" if a == b else f"ch{i} ref {a} / variant {b}")
    return out


@dataclass
class ComparisonView:
    """Everything a stage page shows for reference vs one variant on one image.

    - ``reference_drawing`` / ``variant_drawing``: Visualizer drawings, each on its own decoded image.
    - ``overlay``: both pipelines on the reference image, in :data:`render.OVERLAY_COLOURS`.
    - ``input_stats`` / ``backbone_stats``: (reference, variant) :class:`TensorStats` on shared bins, for the
      model input (what was fed as ``"image"``) and for what the backbone sees (after PIXEL_MEAN/STD).
    - ``input_hist`` / ``backbone_hist``: the same as tidy records for charts.
    """

    reference: RunResult
    variant: RunResult
    agreement: Agreement
    differences: dict[str, tuple[str, str]]
    reference_drawing: np.ndarray
    variant_drawing: np.ndarray
    overlay: np.ndarray
    channel_labels: list[str]
    input_stats: tuple[TensorStats, TensorStats]
    backbone_stats: tuple[TensorStats, TensorStats]
    input_hist: list[dict]
    backbone_hist: list[dict]
    image_name: str
    model_summary: dict = field(default_factory=dict)
    reference_view: Optional[ReferenceView] = field(default=None, repr=False)
    _encoded: dict = field(default_factory=dict, repr=False)  # side-by-side, png, json: made once, when asked

    def metrics(self) -> dict[str, dict]:
        """The agreement numbers with their deltas from the reference (the reference has F1 1, IoU 1, ...)."""
        a, r = self.agreement, self.reference
        n_ref = len(r.boxes)
        # value, and its delta from the reference (IoUs are 1 there, distances 0)
        # Shown for each output the model predicts; None (n/a) when there is no matched pair to measure.
        per_output = {"mask_iou": ("Mask IoU of pairs", r.masks, a.mask_iou, 1.0),
                      "keypoint_distance": ("Keypoint distance (px)", r.keypoints, a.keypoint_distance, 0.0),
                      "sem_seg_miou": ("Semantic mIoU", r.sem_seg, a.sem_seg_miou, 1.0)}
        extra = {k: {"label": label, "value": None if v is None else round(v, 4),
                     "delta": None if v is None else round(v - at_ref, 4)}
                 for k, (label, output, v, at_ref) in per_output.items() if output is not None}
        if a.map_only:
            return extra  # a semantic segmentor: no detections to count
        return {
            "f1": {"label": "Agreement F1", "value": round(a.f1, 4), "delta": round(a.f1 - 1.0, 4)},
            "detections": {"label": "Detections", "value": a.n_variant, "delta": a.n_variant - n_ref},
            "matched": {"label": "Matched", "value": a.matched, "delta": a.matched - n_ref},
            "missed": {"label": "Missed", "value": a.missed, "delta": a.missed},
            "extra": {"label": "Extra", "value": a.extra, "delta": a.extra},
            "class_flips": {"label": "Class flips", "value": a.class_flips, "delta": a.class_flips},
            "mean_iou": {"label": "Mean IoU of pairs", "value": round(a.mean_iou, 4),
                         "delta": round(a.mean_iou - 1.0, 4)},
            **extra,
        }

    def to_dict(self) -> dict:
        """The numbers as :func:`comparison_record` (the shape of ``python -m d2debug compare --json``)."""
        return comparison_record(self.image_name, self.model_summary, self.reference, self.variant, self.agreement,
                                 self.input_stats, self.backbone_stats)

    def to_json(self) -> str:
        """The numbers, for a bug report or a teammate."""
        if "json" not in self._encoded:
            self._encoded["json"] = json.dumps(self.to_dict(), indent=2)
        return self._encoded["json"]

    @property
    def side_by_side(self) -> np.ndarray:
        """reference | variant | overlay in one ``HxWx3`` uint8 RGB picture with captions; made on first use
        (only the PNG download needs it, not a toggle)."""
        if "side_by_side" not in self._encoded:
            change = ", ".join(f"{k}={b}" for k, (_a, b) in self.differences.items()) or "same as reference"
            self._encoded["side_by_side"] = render.side_by_side(
                [self.reference_drawing, self.variant_drawing, self.overlay],
                [REFERENCE, "variant: " + change, "overlay (matched/missed/extra/flip)"])
        return self._encoded["side_by_side"]

    def jpeg(self, which: str) -> bytes:
        """``reference``, ``variant`` or ``overlay`` as JPEG bytes for display, each encoded once."""
        if which == REFERENCE and self.reference_view is not None:
            return self.reference_view.jpeg()
        key = f"jpeg:{which}"
        if key not in self._encoded:
            picture = {REFERENCE: self.reference_drawing, "variant": self.variant_drawing, "overlay": self.overlay}
            self._encoded[key] = render.jpeg_bytes(picture[which])
        return self._encoded[key]

    def png(self) -> bytes:
        """The side-by-side picture (reference | variant | overlay) as PNG bytes."""
        if "png" not in self._encoded:
            self._encoded["png"] = render.png_bytes(self.side_by_side)
        return self._encoded["png"]


def run_variant(loaded: LoadedModel, image: Union[str, Path], variant_spec: PipelineSpec,
                reference: RunResult) -> RunResult:
    """The variant's run as a stage page makes it: on the ``reference`` run's decoded image when both use the
    same decoder (the same decoder decodes the same file to the same pixels), else from ``image``."""
    if variant_spec.decoder == reference.spec.decoder and reference.decoded is not None:
        return run(loaded, reference.decoded, variant_spec)
    return run(loaded, image, variant_spec)


def comparison_record(image: str, model: dict, reference: RunResult, variant: RunResult, agreement: Agreement,
                      input_stats: tuple[TensorStats, TensorStats],
                      backbone_stats: tuple[TensorStats, TensorStats]) -> dict:
    """THE JSON form of reference vs variant on one image: ``python -m d2debug compare --json`` prints it and
    the stage pages download it (its keys are a public contract: scripts read them).

    ``image``: the image's name or path; ``model``: ``LoadedModel.describe()``; ``input_stats`` /
    ``backbone_stats``: (reference, variant) :class:`TensorStats` of the model input and of what the backbone
    sees. Keys: ``image``, ``model``, ``reference_spec``, ``variant_spec`` (every field as the CLI writes it),
    ``changed`` (``{field: {reference, variant}}``), ``reference`` / ``variant`` (``RunResult.summary()``),
    ``agreement``, ``stats`` (``{model_input|backbone_input: {reference|variant: {channel: {mean, std, min,
    max}}}}``, each tensor channel named by the colour the REFERENCE fed there, e.g. ``R``/``G``/``B`` of an
    RGB model) and ``channels`` (what each pipeline put in channel 0, 1, 2, e.g. ``ch0 ref R / variant B``).
    """
    names = tuple(reference.fed_order)

    def stats(pair: tuple[TensorStats, TensorStats]) -> dict:
        return {side: dataclasses.replace(st, channel_names=names).to_dict()
                for side, st in zip((REFERENCE, "variant"), pair)}

    changed = reference.spec.differences(variant.spec)
    return {
        "image": image,
        "model": model,
        "reference_spec": reference.spec.to_dict(),
        "variant_spec": variant.spec.to_dict(),
        "changed": {k: {REFERENCE: r, "variant": v} for k, (r, v) in changed.items()},
        REFERENCE: reference.summary(),
        "variant": variant.summary(),
        "agreement": agreement.to_dict(),
        "stats": {"model_input": stats(input_stats), "backbone_input": stats(backbone_stats)},
        "channels": _channel_labels(reference, variant),
    }


def compare_variant(
    loaded: LoadedModel,
    image: Union[str, Path],
    variant_spec: PipelineSpec,
    reference: Union[ReferenceView, RunResult],
    variant_result: Optional[RunResult] = None,
    bins: int = 64,
) -> ComparisonView:
    """Run ``variant_spec`` on ``image`` (unless ``variant_result`` is given) and compare it with the cached
    ``reference``: drawings, overlay, side-by-side, agreement and histograms on shared bins.

    The variant always runs through the same code as the reference, so the reference spec itself gives
    agreement F1 exactly 1.0. Raises :class:`D2DebugError` for an unreadable image or an unsupported variant.
    """
    if isinstance(reference, RunResult):
        ref_view = None
        ref_result = reference
        ref_drawing = render.draw_result(ref_result.rgb_image(), ref_result)
    else:
        ref_view, ref_result, ref_drawing = reference, reference.result, reference.drawing
    var = variant_result if variant_result is not None else run_variant(loaded, image, variant_spec, ref_result)
    agreement = compare(ref_result, var)
    var_drawing = render.draw_result(var.rgb_image(), var)
    overlay = render.draw_overlay(ref_result.rgb_image(), ref_result, var, agreement)
    labels = _channel_labels(ref_result, var)
    in_stats = shared_histograms([ref_result.input_tensor, var.input_tensor], labels, bins)
    bb_stats = shared_histograms([ref_result.backbone_input, var.backbone_input], labels, bins)
    return ComparisonView(
        reference=ref_result,
        variant=var,
        agreement=agreement,
        differences=ref_result.spec.differences(variant_spec),
        reference_drawing=ref_drawing,
        variant_drawing=var_drawing,
        overlay=overlay,
        channel_labels=labels,
        input_stats=(in_stats[0], in_stats[1]),
        backbone_stats=(bb_stats[0], bb_stats[1]),
        input_hist=histogram_records(in_stats, (REFERENCE, "variant")),
        backbone_hist=histogram_records(bb_stats, (REFERENCE, "variant")),
        image_name=Path(image).name,
        reference_view=ref_view,
        model_summary=loaded.describe(),
    )


# ---------------------------------------------------------------------------------------------------------------
# Sensitivity: every single pitfall on one image


@dataclass(frozen=True)
class SensitivityRow:
    """One pitfall's effect on one image. ``error`` is set when the variant cannot run (e.g. fp16 on CPU)."""

    pitfall: Pitfall
    agreement: Optional[Agreement]
    error: Optional[str] = None

    @property
    def lost(self) -> int:
        """Reference detections not reproduced: missed plus class-flipped."""
        return 0 if self.agreement is None else self.agreement.missed + self.agreement.class_flips

    def damage_key(self) -> tuple:
        """Sort key, most damaging first; pitfalls that could not run last."""
        if self.agreement is None:
            return (1, 0.0, 0, 0)
        return (0, self.agreement.score, -self.lost, -self.agreement.extra)

    def to_dict(self) -> dict:
        return {"id": self.pitfall.name, "title": self.pitfall.label, "stage": pitfall_stage(self.pitfall),
                "change": self.pitfall.change_text(),
                "agreement": None if self.agreement is None else self.agreement.to_dict(),
                "lost": self.lost, "error": self.error}


def sensitivity_row(loaded: LoadedModel, image: Union[str, Path], pitfall: Pitfall,
                    reference: Union[ReferenceView, RunResult]) -> tuple[SensitivityRow, Optional[RunResult]]:
    """Run one pitfall against the reference. Returns the row and the variant's result (``None`` on error)."""
    ref = reference.result if isinstance(reference, ReferenceView) else reference
    try:
        var = run(loaded, image, pitfall.spec(ref.spec))
    except D2DebugError as exc:
        return SensitivityRow(pitfall, None, str(exc)), None
    return SensitivityRow(pitfall, compare(ref, var)), var


# ---------------------------------------------------------------------------------------------------------------
# The reference chain with its actual values


@dataclass(frozen=True)
class GlanceRow:
    stage: str
    setting: str
    value: str


_INTERP_TEXT = {"pil": "PIL (antialiased when downscaling)", "cv2": "cv2.resize (no antialias)",
                "torch": "torch F.interpolate (no antialias)", "torch_antialias": "torch F.interpolate antialias"}


def pipeline_at_a_glance(loaded: LoadedModel, reference: Union[ReferenceView, RunResult]) -> list[GlanceRow]:
    """The reference chain for the loaded config, with the values it used on this image."""
    r = reference.result if isinstance(reference, ReferenceView) else reference
    cfg, spec = loaded.cfg, r.spec
    h, w = r.original_size
    ih, iw = r.input_size
    mean, std = model_norm_values(spec.model_norm, cfg)
    arch = loaded.arch
    fmt = cfg.INPUT.FORMAT
    decode_note = "; ".join(r.notes) if r.notes else "3-channel image, nothing converted"
    rows = [
        GlanceRow("Decode", "detectron2 read_image(path, 'BGR')",
                  f"PIL decoder, EXIF orientation applied -> {w}x{h} (WxH) uint8 BGR; {decode_note}"),
        GlanceRow("Channel order", f"cfg.INPUT.FORMAT = {fmt}",
                  "BGR array flipped to RGB by DefaultPredictor" if fmt == "RGB" else "BGR array used as is"),
        GlanceRow("Resize", f"ResizeShortestEdge({cfg.INPUT.MIN_SIZE_TEST}, max {cfg.INPUT.MAX_SIZE_TEST})",
                  f"{w}x{h} -> {iw}x{ih} (WxH), scale {iw / w:.3f}"),
        GlanceRow("Interpolation", f"{spec.interpolation}, {_INTERP_TEXT[spec.resize_backend]}",
                  "detectron2 ResizeTransform on uint8"),
        GlanceRow("Model input", "float32 CxHxW, 0..255, no external normalization",
                  f"shape {list(r.input_tensor.shape)} in {r.fed_order} order"),
        GlanceRow("Normalization (inside the model)", "(x - PIXEL_MEAN) / PIXEL_STD",
                  f"PIXEL_MEAN {[round(v, 3) for v in mean]}, PIXEL_STD {[round(v, 3) for v in std]} ({fmt} order)"),
        GlanceRow("Output frame", "height/width passed",
                  f"{', '.join(arch.outputs)} rescaled to the original {w}x{h} (WxH)"),
        GlanceRow("Thresholds", f"{arch.score_key} / {arch.nms_key}",
                  f"score {arch.score_thresh:g}, NMS {arch.nms_thresh:g}, "
                  f"at most {int(cfg.TEST.DETECTIONS_PER_IMAGE)} detections") if arch.score_key else
        GlanceRow("Thresholds", "none", f"{arch.name} predicts a per-pixel class map"),
        GlanceRow("Device and precision", f"{r.device}, {spec.precision}", f"{len(r.boxes)} detections"),
    ]
    return rows
