"""The diagnosis: which preprocessing stage(s) of a user's own inference code differ from the reference.

Input: a config (the reference pipeline is what ``DefaultPredictor`` does for it), one image file, and what the
user's code feeds the model for that image (see :mod:`~d2debug.doctor.inputs`).

The Doctor does not guess from a list of symptoms. It re-renders the image under candidate explanations and
keeps the one that reproduces the user's tensor best, one step at a time:

1. the container: list/dict/tensor, 4-D batch, dtype, height/width (facts, read off the object);
2. the orientation: the EXIF-applied decode (reference) vs the pixels as stored (:mod:`.geometry`);
3. the geometry: the user's size vs ``ResizeShortestEdge.get_output_shape`` of the decoded size;
4. the resampler: every candidate kernel rendered at the user's size (:mod:`.resample`);
5. the values: channel permutation and per-channel affine map (:mod:`.values`);
6. the original size passed as height/width;
7. the model side: the weights' first BatchNorm statistics vs PIXEL_MEAN/STD (:mod:`.normcheck`), and a
   fingerprint's recorded values when one is given (:mod:`.fingerprint`);
8. what is left: an exact reproduction is a ``match``; a difference no stage explains is ``unexplained``, described
   by the closest family that reproduces it (a value curve, a blur or sharpening, a colour change:
   :mod:`.residual`).

No forward pass is needed: everything except step 7 (one 7x7 convolution) is tensor arithmetic.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from ..deploy.contract import cfg_with_contract
from ..errors import D2DebugError
from ..findings import REMINDERS, Finding, merge, rank
from ..render import heatmap, stretched
from ..run import preprocess
from ..stages import decode, to_model_order
from ..stats import histogram_records, tensor_stats
from ..text import fmt
from .damage import Explanation, Fed, measure_own, measure_recovery, reference_output
from .deployed import check_contract, contract_notes, deployment_findings, rescale_finding
from .fingerprint import cfg_from_fingerprint, check_config, check_statistics
from .fit import EXACT, UNEXPLAINED, Fit, as_channels
from .geometry import Orientation, choose_orientation, explain_size, orientation_tag, original_size_finding
from .inputs import UserInput, container_findings, parse_user_input
from .normcheck import norm_check, pixel_mean_std_finding
from .register import CropMatch, Geometry, find_crop, unpad, untranspose
from .resample import Resampling, choose_resampler, render_at, weak_resampler_finding
from .residual import (
    COLOUR_RMS,
    RESAMPLER_SIGMA,
    UNEXPLAINED_RMS,
    Spatial,
    colour_change,
    describe_colour,
    describe_curve,
    describe_spatial,
    spatial_filter,
    unexplained_finding,
    value_curve,
)
from .source import alpha_source, recompressed_source, reduced_source
from .values import channel_finding, value_findings

if TYPE_CHECKING:
    from detectron2.config import CfgNode

    from ..deploy.contract import Contract

__all__ = ["Diagnosis", "diagnose"]

# Reading the input as equal to the reference: max |difference| below MATCH_MAX_ABS (exact below
# MATCH_EXACT), or every checked stage agreeing with an RMS below MATCH_CLOSE_RMS (another decoder, a filter).
MATCH_MAX_ABS = 0.5
MATCH_EXACT = 1e-3
MATCH_CLOSE_RMS = 1.0
_DTYPES = {"float64": torch.float64, "float16": torch.float16, "uint8": torch.uint8, "int64": torch.int64,
           "int32": torch.int32, "int16": torch.int16, "bfloat16": torch.bfloat16}
# The residual counts against every value finding's confidence with this scale (grey levels).
QUALITY_SCALE = 5.0


@dataclass
class Diagnosis:
    """The Doctor's answer for one image.

    ``findings``: most likely first; ``[Finding("match", ...)]`` when the input equals the reference (followed
    by the reminders, :data:`~d2debug.findings.REMINDERS`, such as ``rescale_boxes`` under a contract).
    ``reference``: the reference model input, ``3xHxW`` float32 0..255 in ``cfg_format`` order.
    ``user``: the user's image, ``3xhxw`` float32 (a copy, values as fed). ``analysis``: the winning
    explanation and every candidate's residual (for reports and the dashboard).
    """

    findings: list[Finding]
    reference: torch.Tensor
    user: torch.Tensor
    user_input: UserInput
    image: str
    cfg_format: str
    original_size: tuple[int, int]
    analysis: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    @property
    def top(self) -> str:
        return next((i for i in self.ids if i not in REMINDERS), "unexplained")

    @property
    def is_match(self) -> bool:
        """The input equals the reference; a reminder of what the deployment must still do is no difference."""
        return [i for i in self.ids if i not in REMINDERS] == ["match"]

    def to_dict(self) -> dict:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "image": self.image,
            "original_size": list(self.original_size),
            "reference": {"shape": list(self.reference.shape), "dtype": "float32", "channel_order": self.cfg_format,
                          "range": [round(float(self.reference.min()), 3), round(float(self.reference.max()), 3)]},
            "input": {"container": self.user_input.container, "shape": list(self.user.shape),
                      "dtype": self.user_input.dtype, "batch": self.user_input.batch,
                      "height": self.user_input.height, "width": self.user_input.width,
                      "range": [round(float(self.user.min()), 4), round(float(self.user.max()), 4)]},
            "analysis": self.analysis,
            "notes": list(self.notes),
        }

    def difference(self) -> np.ndarray:
        """Per-pixel ``|user - reference|`` averaged over channels, ``HxW`` float32 in model-input units, on the
        reference's grid (the user tensor is resampled bilinearly when its size differs; see ``notes``)."""
        u = self.user
        if tuple(u.shape[1:]) != tuple(self.reference.shape[1:]):
            u = torch.nn.functional.interpolate(u[None], size=tuple(self.reference.shape[1:]), mode="bilinear",
                                                align_corners=False)[0]
        return (u - self.reference).abs().mean(0).numpy()

    def histograms(self, bins: int = 64):
        """``(reference, user)`` :class:`~d2debug.stats.TensorStats` on shared bins, channels named by format."""
        return tensor_stats(self.reference, self.user, list(self.cfg_format), bins=bins)

    def histogram_records(self, labels: Sequence[str] = ("reference", "your input"), bins: int = 64) -> list[dict]:
        """Tidy rows ``{pipeline, channel, x, x2, count, fraction}`` of :meth:`histograms`, for charts."""
        return histogram_records(self.histograms(bins), labels)

    def difference_heatmap(self) -> tuple[np.ndarray, float]:
        """:meth:`difference` as an ``HxWx3`` uint8 RGB heat map (black = equal, white-hot = the largest
        difference) and the difference value shown at full scale."""
        return heatmap(self.difference())

    def display_images(self) -> tuple[np.ndarray, np.ndarray]:
        """``(reference, user)`` as ``HxWx3`` uint8 RGB for display: channels read in ``cfg_format`` order (as
        the model reads them), each tensor min-max stretched to 0..255 (so a 0..1 or normalized input is
        visible; its value range is shown by the histograms)."""
        return stretched(self.reference, self.cfg_format), stretched(self.user, self.cfg_format)

    def report(self) -> str:
        """Human-readable lines (the CLI's text output)."""
        a = self.analysis
        lines = [
            f"image       {self.image} (decoded {self.original_size[0]}x{self.original_size[1]})",
            f"reference   3x{self.reference.shape[1]}x{self.reference.shape[2]} float32 {self.cfg_format} 0..255 "
            f"({a.get('reference_resize', 'ResizeShortestEdge, PIL bilinear')})",
            f"your input  {self.user_input.describe()}, values {float(self.user.min()):.4g}..{float(self.user.max()):.4g}",
        ]
        if "contract" in a:
            lines.insert(2, f"contract    {a['contract']['summary']}")
        if "residual" in a:
            lines.append(f"explained   best explanation leaves {a['residual']:.3g} grey levels RMS "
                         f"({a.get('explanation', '')})")
        for i, f in enumerate(self.findings, 1):
            damage = "" if f.recovers is None else (
                f"; fixing it alone recovers {f.recovers:+.3f} agreement F1"
                + ("" if f.costs_alone is None else f", alone it costs {f.costs_alone:.3f}"))
            lines.append(f"finding {i}   {f.id} (confidence {f.confidence:.2f}{damage})")
            if f.own is not None:
                own = "" if f.recovers_own is None else f"fixing it alone recovers {f.recovers_own:+.3f}: "
                lines.append(f"  yours     {own}{f.own}")
            lines.append(f"  evidence  {f.evidence}")
            lines.append(f"  fix       {f.fix}")
        if not self.findings:
            lines.append("finding     none explains the difference (see notes)")
        for n in self.notes:
            lines.append(f"note        {n}")
        return "\n".join(lines)


class _Reference(NamedTuple):
    image: np.ndarray  # the reference decode, HxWx3 uint8 in cfg.INPUT.FORMAT order
    tensor: torch.Tensor  # the reference model input, 3xHxW float32 0..255
    size: tuple[int, int]  # the original (H, W)
    notes: tuple[str, ...]


def _reference(cfg: CfgNode, path: Path) -> _Reference:
    dec = decode(path, "detectron2")
    img = np.ascontiguousarray(to_model_order(dec.image, dec.order, cfg.INPUT.FORMAT, "cfg"))
    tensor, size = preprocess(cfg, dec)
    return _Reference(img, tensor, size, dec.notes)


def diagnose(model_or_cfg, image: Union[str, Path], user_input: Union[UserInput, Any],
             fingerprint: Optional[dict] = None, measure: bool = True,
             contract: Optional[Contract] = None, preprocess: Optional[Callable[[str], Any]] = None) -> Diagnosis:
    """Diagnose one user model input against the reference pipeline on ``image``.

    ``model_or_cfg``: a :class:`~d2debug.model.LoadedModel` (its config is the reference, and its weights
    are checked against PIXEL_MEAN/STD), a detectron2 ``CfgNode``, or ``None`` with a ``fingerprint`` (then
    the fingerprint's recorded stage values are the reference). ``user_input``: a :class:`UserInput` or any
    object :func:`parse_user_input` accepts. ``fingerprint``: a loaded pipeline fingerprint; when given, the
    recorded training-time stage values are the reference and the config is checked against them.
    ``measure``: with a model, run it on the user's input and on the input with each finding fixed alone, set
    each finding's ``recovers`` and rank the findings by it, most damaging first (:mod:`.damage`).
    ``contract``: the exported model's contract, when ``user_input`` is what a deployment feeds that artifact:
    its channel order, resize and mean/std are the reference, and the findings are in its terms
    (:mod:`.deployed`: ``graph_double_normalization``, ``traced_size``, the ``rescale_boxes`` reminder).
    ``preprocess``: the user's own function that made ``user_input`` from the image path (already trusted by
    the caller); with ``measure`` each finding also gets ``recovers_own``, measured on what that function returns
    with the stage set to the reference on its input file or its output, or ``own`` saying why it cannot be.
    """
    model = getattr(model_or_cfg, "model", None)
    cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
    if cfg is None and fingerprint is None:
        raise D2DebugError("the Doctor needs a config (or a model) or a pipeline fingerprint")
    ui = user_input if isinstance(user_input, UserInput) else parse_user_input(user_input)
    ref_cfg = cfg_from_fingerprint(fingerprint) if fingerprint is not None else cfg
    analysis: dict = {}
    if contract is not None:
        ref_cfg, cfg = _with_contract(contract, ref_cfg, cfg, analysis)
    path = Path(image)
    fmt_order = ref_cfg.INPUT.FORMAT
    ref = _reference(ref_cfg, path)
    notes = list(ui.notes) + [n for n in ref.notes if "EXIF" not in n] + analysis.pop("contract_notes", [])
    analysis["reference_resize"] = (f"ResizeShortestEdge({ref_cfg.INPUT.MIN_SIZE_TEST}, "
                                    f"{ref_cfg.INPUT.MAX_SIZE_TEST}), PIL bilinear")
    findings = _container(ui, ref.size, notes)
    geo = _explain_pixels(ui, ref, path, ref_cfg, analysis)
    findings += geo.findings
    U, size, orient, rs = geo.U, geo.size, geo.orient, geo.rs
    decoded = orient.image.shape[:2]
    analysis["resampler_residuals"] = rs.residuals
    best, value_list, remainder = _values(U, geo, ref_cfg, analysis)
    analysis.update(resampler=f"{rs.key[0]}/{rs.key[1]}", residual=round(float(rs.fit.residual), 4),
                    permutation=list(best.perm), slope=[float(f"{v:.6g}") for v in best.slope],
                    offset=[float(f"{v:.6g}") for v in best.offset])
    quality = 1.0 / (1.0 + max(0.0, best.residual - EXACT) / QUALITY_SCALE)
    channel = channel_finding(best, fmt_order, quality)
    findings += ([channel] if channel else []) + value_list
    sized = original_size_finding(ui, ref.size, decoded, orient.chosen)
    if sized is not None and geo.crop is not None and _crop_frame(geo.crop, decoded, ui):
        sized = None  # height/width are the crop's own: the crop finding says boxes come back in its frame
    findings += [sized] if sized else []

    findings += _model_side(model, cfg, fingerprint, ref.tensor, findings, analysis)
    notes += _fingerprint_notes(fingerprint, ui, findings)
    if remainder is not None:
        findings.append(unexplained_finding(remainder[0], remainder[1], ref_cfg))
    elif best.residual > UNEXPLAINED:
        notes.append(f"{best.residual:.2f} grey levels RMS remain after the best explanation (the resampler the "
                     "Doctor found reproduces the pixels only roughly)")
    analysis["explanation"] = (f"{orient.chosen.replace('_', ' ')}, {size[0]}x{size[1]}, {rs.key[0]}/{rs.key[1]}, "
                               f"channels {list(best.perm)}, slope {fmt(best.slope, 4)}, offset {fmt(best.offset, 3)}")
    fed = (int(ui.tensor.shape[1]), int(ui.tensor.shape[2]))
    if contract is not None:
        findings = deployment_findings(findings, contract, ref_cfg, fed, ref.size, best.slope.tolist())
    if not findings:
        findings += _match_or_unexplained(ref.tensor, ui.tensor, analysis, ref_cfg)
    findings = merge(findings)
    blocking: set[str] = set()
    if hasattr(model_or_cfg, "model_on") and measure and findings and findings[0].id != "match":
        explained = _explanation(ui, ref, geo, best)
        if contract is not None:  # the graph takes no height/width: a deployment rescales the boxes itself
            explained.as_fed = explained.as_fed._replace(size=explained.as_fed.size or ref.size)
        findings, blocking = _measure(model_or_cfg, ref, explained, findings, preprocess, path, analysis)
    # A traced graph fed another size is not measurable with the Python model (it takes any size): first, with
    # what stops the model from running.
    blocking |= {"traced_size"}
    ranked = rank(findings)
    ranked = [f for f in ranked if f.id in blocking] + [f for f in ranked if f.id not in blocking]
    reminder = rescale_finding(contract, fed, ref.size, analysis) if contract is not None else None
    ranked += [reminder] if reminder is not None else []
    return Diagnosis(ranked, ref.tensor, ui.tensor, ui, str(path), fmt_order, ref.size, analysis, notes)


def _container(ui: UserInput, original: tuple[int, int], notes: list[str]) -> list[Finding]:
    """The container's findings; height/width left out of an image fed at its ``original`` size are no mistake
    there (its own frame IS the original's), only a note."""
    findings = container_findings(ui)
    if any(f.id == "missing_original_size" for f in findings) and tuple(ui.tensor.shape[1:]) == original:
        findings = [f for f in findings if f.id != "missing_original_size"]
        notes.append("no height/width: harmless while the image is fed at its original size (boxes come back in "
                     "that frame); pass them once you resize: {'image': x, 'height': orig_h, 'width': orig_w}")
    return findings


def _measure(loaded, ref: _Reference, explained: Explanation, findings: list[Finding],
             preprocess: Optional[Callable[[str], Any]], path: Path, analysis: dict) -> tuple[list[Finding], set[str]]:
    """Each finding's measured damage (and, with the user's function, on what it returns); the findings that
    stop the model from running."""
    reference = reference_output(loaded, ref.tensor, ref.size)  # one forward pass for both measurements
    findings, blocking, analysis["damage_scores"] = measure_recovery(loaded, ref.tensor, ref.size, explained,
                                                                     findings, reference)
    if preprocess is not None:
        findings = measure_own(loaded, reference, explained, findings, preprocess, path,
                               analysis["damage_scores"]["runnable"])
    return findings, blocking


def _with_contract(contract: Contract, ref_cfg: CfgNode, cfg: Optional[CfgNode],
                   analysis: dict) -> tuple[CfgNode, Optional[CfgNode]]:
    """The reference config and the deployment config with the contract's values; what the contract says goes
    into ``analysis`` (``contract``, and ``contract_notes`` where it differs from the config)."""
    check_contract(contract)
    traced = contract.traced_size
    size = ("any size (measured at export)" if contract.any_size else
            f"only {traced[0]}x{traced[1]} (measured at export)" if traced and contract.any_size is False else
            f"traced on {traced[0]}x{traced[1]}, other sizes not measured" if traced else "sizes not measured")
    analysis["contract"] = {
        "format": contract.format, "method": contract.method, "channel_order": contract.channel_order,
        "min_size": contract.min_size, "max_size": contract.max_size, "normalizes": contract.normalizes,
        "traced_size": list(traced) if traced else None, "any_size": contract.any_size,
        "summary": f"{contract.format} ({contract.method}), {contract.channel_order} 0..255, resize outside "
                   f"ResizeShortestEdge({contract.min_size}, {contract.max_size}), normalizes inside, {size}"}
    analysis["contract_notes"] = contract_notes(contract, ref_cfg)
    return cfg_with_contract(ref_cfg, contract), (cfg_with_contract(cfg, contract) if cfg is not None else None)


class _Pixels(NamedTuple):
    """How the user's pixels were made (everything before channel order and values), and its findings."""

    findings: list[Finding]
    U: np.ndarray  # the registered tensor as 3xN float64
    size: tuple[int, int]
    orient: Orientation
    rs: Resampling  # what explains the pixels (its fit holds the channel order and value map)
    user_decode: np.ndarray
    turned: Geometry
    padded: Geometry
    crop: Optional[CropMatch]
    spatial: Optional[Spatial]  # a blur or sharpening of the render that explains the pixels (no stage's)
    source: bool  # a source other than the file as read (alpha composite, re-encoding) explains them


def _explain_pixels(ui: UserInput, ref: _Reference, path: Path, cfg: CfgNode, analysis: dict) -> _Pixels:
    """Geometry first (H/W exchanged, constant borders), then the decode (orientation), the crop or the size
    rule and the resampler, then a source other than the file as read (alpha composite, JPEG re-encoding)."""
    findings = []
    turned = untranspose(ui.tensor, ref.image, rotated=orientation_tag(path) in (5, 6, 7, 8))
    padded = unpad(turned.tensor, ref.image, cfg)
    findings += [g.finding for g in (turned, padded) if g.finding is not None]
    analysis.update(**turned.info, **padded.info)
    tensor = padded.tensor
    U = tensor.numpy().reshape(3, -1).astype(np.float64)
    size = (int(tensor.shape[1]), int(tensor.shape[2]))
    orient = choose_orientation(U, size, path, ref.image, cfg.INPUT.FORMAT)
    if orient.residuals:
        analysis["orientation_residuals"] = orient.residuals
    analysis["orientation"] = orient.chosen
    crop = find_crop(U, size, orient.image, cfg)
    if crop is not None:
        analysis.update(crop.info)
        rs = choose_resampler(U, size, crop.image, cfg)
        sized_rule = [crop.finding, crop.size_finding]
    else:
        rs = choose_resampler(U, size, orient.image, cfg)
        H, W = orient.image.shape[:2]
        sized_rule = [explain_size(size[0], size[1], H, W, cfg)]
    findings += [f for f in (orient.finding, *sized_rule, rs.finding) if f is not None]
    user_decode = orient.image
    src = _source(U, size, path, orient.image, rs, cfg, analysis) if crop is None else None
    if src is not None:
        findings.append(src.finding)
        user_decode = src.image
        rs = rs._replace(fit=src.fit, image=_render_like(rs, size)(src.image))
    spatial = spatial_filter(U, rs.image, rs.fit.residual) if src is None else None
    weak = (weak_resampler_finding(rs, size, orient.image.shape[:2], cfg)
            if crop is None and src is None and rs.finding is None else None)
    if spatial is not None and weak is not None and spatial.kind == "blur" and spatial.sigma < RESAMPLER_SIGMA:
        spatial = None  # a blur as light as kernels differ by: another resampler made the pixels
    if spatial is not None:
        analysis["spatial"] = {"kind": spatial.kind, "sigma": spatial.sigma, "amount": spatial.amount,
                               "residual": round(spatial.fit.residual, 3)}
    elif weak is not None:
        findings.append(weak)
    return _Pixels(findings, U, size, orient, rs, user_decode, turned, padded, crop, spatial, src is not None)


def _crop_frame(crop: CropMatch, decoded: tuple[int, ...], ui: UserInput, tol: float = 2.0) -> bool:
    """Whether the height/width passed are the size of the crop's region in the decoded image (within ``tol``
    pixels): the user crops and describes the crop, consistently."""
    rh, rw = crop.info["crop"]["resized_to"]
    x0, y0, x1, y1 = crop.info["crop"]["box_xyxy"]
    h, w = (y1 - y0) * decoded[0] / rh, (x1 - x0) * decoded[1] / rw
    return ui.height is not None and ui.width is not None and abs(ui.height - h) <= tol and abs(ui.width - w) <= tol


# Findings that already account for pixels no kernel or decode of the table reproduces exactly (a crop's box
# and frame are registered to a pixel, not to the user's exact scale).
_ATTRIBUTED = ("resize_interpolation", "recompression", "alpha_channel", "crop")


def _values(U: np.ndarray, geo: _Pixels, cfg: CfgNode,
            analysis: dict) -> tuple[Fit, list[Finding], Optional[tuple[float, str]]]:
    """The channel order and value map that explain the pixels (``Fit``), the value findings, and what remains
    that no stage names (``(grey levels RMS, description)`` for the ``unexplained`` finding, or ``None``).

    A spatial filter found with the pixels is the remainder and the map is fitted against the filtered render;
    otherwise a value curve is looked for (its ends still name the value range: a gamma after ToTensor is
    both ``value_range_0_1`` and a curve), then a colour change that stays in 0..255, then any residual left."""
    rs = geo.rs
    best = rs.fit
    remainder: Optional[tuple[float, str]] = None
    if geo.spatial is not None:
        best = geo.spatial.fit
        remainder = (float(rs.fit.residual), describe_spatial(geo.spatial, rs.fit.residual))
    quality = 1.0 / (1.0 + max(0.0, best.residual - EXACT) / QUALITY_SCALE)
    Rp = as_channels(rs.image)[list(best.perm)]
    attributed = any(f.id in _ATTRIBUTED for f in geo.findings)
    curve = value_curve(U, Rp, best, cfg) if geo.spatial is None and not geo.source and not attributed else None
    if curve is not None:
        analysis["value_curve"] = {"residual": round(curve.residual, 3), "moved": round(curve.moved, 3),
                                   "value_range": curve.name, "gamma": round(curve.gamma, 3)}
        remainder = (curve.moved, describe_curve(curve))
        if curve.name is None:
            return best, [], remainder
        best = best._replace(slope=curve.slope, offset=curve.offset)
        linear = best.slope[:, None] * Rp + best.offset[:, None]
        value_list, info = value_findings(linear, Rp, best.slope, best.offset, 0.0, cfg, 1.0)
        info.pop("value_note", None)
        analysis.update(info)
        return best, [dataclasses.replace(f, evidence=f"{f.evidence}; read off the ends of a value curve (see "
                                                      "'unexplained')") for f in value_list], remainder
    value_list, info = value_findings(U, Rp, best.slope, best.offset, best.residual, cfg, quality)
    note = info.pop("value_note", None)
    analysis.update(info)
    if remainder is None and note is not None and not geo.source:
        moved = colour_change(best.slope, best.offset, Rp)
        if moved > COLOUR_RMS:
            remainder = (moved, describe_colour(best.slope, best.offset, moved))
    if remainder is None and best.residual > UNEXPLAINED_RMS and not attributed:
        remainder = (float(best.residual), "a change no value curve, blur or sharpening of the image reproduces "
                                           "(local contrast such as CLAHE, a denoiser, an overlay, a decoder of its own)")
    return best, value_list, remainder


def _explanation(ui: UserInput, ref: _Reference, geo: _Pixels, best: Fit) -> Explanation:
    """The chain that explains the user's input (``best``: its channel order and value map), for measuring what
    fixing each step recovers."""
    render = geo.rs.image
    # What no stage explains, in the reference's units and channel order on the user's grid: the user's pixels
    # with the value map undone, less the render that explains them.
    mapped = (geo.U - best.offset[:, None]) / best.slope[:, None]
    delta = np.empty_like(mapped)
    delta[list(best.perm)] = mapped - as_channels(render)[list(best.perm)]
    return Explanation(
        as_fed=Fed(ui.tensor.to(_DTYPES.get(ui.dtype, torch.float32)), ui.batch is not None,
                   ui.original_size, ui.channels_last),
        user_decode=geo.user_decode, reference_decode=ref.image, size=geo.size, resampler=geo.rs.key,
        perm=best.perm, slope=best.slope, offset=best.offset, transposed=geo.turned.finding is not None,
        content=geo.padded.tensor if geo.padded.finding is not None else None,
        crop_resize=tuple(geo.crop.info["crop"]["resized_to"]) if geo.crop is not None else None,
        crop_box=tuple(geo.crop.info["crop"]["box_xyxy"]) if geo.crop is not None else None,
        crop_in_image=(tuple(geo.crop.info["crop"]["box_in_image_xyxy"])
                       if geo.crop is not None and geo.crop.info["crop"].get("cut") == "before_resize" else None),
        padding_mode=geo.padded.info.get("padding_mode", "constant"),
        reference_size=(int(ref.tensor.shape[1]), int(ref.tensor.shape[2])), original=ref.size,
        padding=geo.padded.info.get("padding"), fill=geo.padded.info.get("padding_fill"), render=render,
        delta=torch.from_numpy(delta.reshape(3, *geo.size).astype(np.float32)),
        full_decode=geo.orient.image if geo.source and any(f.id == "resize_interpolation" for f in geo.findings)
        else None)


def _render_like(rs, size: tuple[int, int]):
    """A function putting a decode at the user's ``size`` with the resampler that explained their pixels."""
    return lambda img: render_at(img, size, rs.key)


def _source(U, size, path: Path, decode: np.ndarray, rs, cfg: CfgNode, analysis: dict):
    """An alpha composite or a JPEG re-encoding that explains the pixels better than the file as read."""
    render = _render_like(rs, size)
    src = alpha_source(U, path, cfg.INPUT.FORMAT, render, rs.fit.residual, cfg)
    if src is None:
        # a reduced decode and a re-encoding both blur the pixels: the one that explains them better
        found = [s for s in (reduced_source(U, path, decode, cfg.INPUT.FORMAT, render, rs.fit.residual, cfg),
                             recompressed_source(U, decode, cfg.INPUT.FORMAT, render, rs.fit.residual, cfg))
                 if s is not None]
        src = min(found, key=lambda s: s.fit.residual) if found else None
    if src is not None:
        analysis.update(src.info)
    return src


def _model_side(model, cfg: CfgNode, fingerprint: Optional[dict], reference: torch.Tensor, findings: list[Finding],
                analysis: dict) -> list[Finding]:
    """The deployment config's PIXEL_MEAN/STD against the fingerprint's recorded values and the weights."""
    out = check_config(fingerprint, cfg) if fingerprint is not None and cfg is not None else []
    if model is None:
        return out
    if cfg is not None:
        deploy_cfg = cfg
    else:
        assert fingerprint is not None, "diagnose needs a config or a fingerprint"
        deploy_cfg = cfg_from_fingerprint(fingerprint)
    nc = norm_check(model, deploy_cfg, reference)
    if nc is not None:
        analysis["norm_check"] = nc
        f = pixel_mean_std_finding(nc, deploy_cfg)
        if f is not None and not any(g.id == "pixel_mean_std" for g in findings + out):
            out.append(f)
    return out


def _fingerprint_notes(fingerprint: Optional[dict], ui: UserInput, findings: list[Finding]) -> list[str]:
    """What the fingerprint's statistics alone say, as notes: they confirm the pixel findings or, where the
    pixels found nothing, suggest (one image against a dataset average is weaker evidence)."""
    if fingerprint is None:
        return []
    have = {f.id for f in findings}
    return [f"fingerprint statistics agree on {f.id}: {f.evidence}" if f.id in have else
            f"fingerprint statistics alone suggest {f.id} (not confirmed by the pixels): {f.evidence}"
            for f in check_statistics(fingerprint, ui.tensor, ui.original_size)]


def _match_or_unexplained(reference: torch.Tensor, user: torch.Tensor, analysis: dict,
                          cfg: CfgNode) -> list[Finding]:
    """No stage differs: a ``match`` when the input equals the reference (or nearly, with every stage right:
    another JPEG decoder), else ``unexplained``: something the vocabulary has no stage for differs."""
    if tuple(reference.shape) != tuple(user.shape):
        return [unexplained_finding(
            None, f"the input is {user.shape[1]}x{user.shape[2]} where the reference is "
            f"{reference.shape[1]}x{reference.shape[2]}, and no resize rule, crop or padding the Doctor knows makes "
            "that size", cfg, 0.6)]
    diff = (reference - user).abs()
    top = float(diff.max())
    analysis["max_abs_diff"] = top
    if top < MATCH_MAX_ABS:
        return [Finding("match", 0.99 if top < MATCH_EXACT else 0.9,
                        f"the input equals the reference: max |difference| {top:.3g}, mean {float(diff.mean()):.3g}",
                        "nothing to fix")]
    rms = float(diff.pow(2).mean().sqrt())
    if rms < MATCH_CLOSE_RMS:
        return [Finding("match", 0.6,
                        f"every stage the Doctor checks agrees with the reference; small pixel differences remain "
                        f"(RMS {rms:.2f}, max {top:.1f} grey levels: another JPEG decoder, a light filter)",
                        "nothing to fix in the stages the Doctor checks")]
    return [unexplained_finding(rms, f"the input differs from the reference by max {top:.1f} grey levels in a way "
                                     "no stage explains", cfg)]
