"""Damage: what fixing each finding alone recovers, measured with the model.

The Doctor's explanation of the user's tensor is a chain: a decode (orientation, alpha, recompression), a
geometry (size, resampler, crop, padding, transposition), a channel order and a per-channel value map, and
the container (batch, dtype, height/width). For each finding the user's input is rebuilt with that one step
set to the reference and everything else as the user had it; the model runs on it and on the user's input as
given, and ``recovers`` is the agreement F1 with the reference's output gained (``score``: mIoU for a
semantic segmentor). Findings are then ranked by it, most damaging first.

Tensors are ``3xHxW`` float32 (the user's values) unless said otherwise; images ``HxWx3`` uint8 in
``cfg.INPUT.FORMAT`` order.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch

from ..compare import compare
from ..errors import D2DebugError, first_line
from ..findings import Finding
from ..run import reference_spec, run_tensor
from .register import pad_like
from .resample import render_at

__all__ = ["Explanation", "Fed", "reference_output", "measure_recovery", "measure_own", "ON_OUTPUT", "ON_INPUT"]


class Fed(NamedTuple):
    """One input as the model gets it: the image (``3xHxW``, in ``dtype``), batched or not, and the
    height/width passed (``None``: not passed)."""

    tensor: torch.Tensor
    batched: bool
    size: Optional[tuple[int, int]]
    channels_last: bool = False  # handed over as HxWxC (``tensor`` is still 3xHxW)


@dataclasses.dataclass
class Explanation:
    """The user's input as the Doctor explained it (what :func:`measure_recovery` rebuilds from).

    ``as_fed``: the user's input; ``user_decode`` / ``reference_decode``: the decode the user used and the
    reference's; ``size``: the user's image size (after un-transposing and removing padding); ``resampler``:
    ``(backend, interpolation)`` or ``("none", "none")``; ``perm``/``slope``/``offset``: the channel order and
    value map; ``transposed``; ``content``: the tensor without padding (``None`` without padding);
    ``crop_resize``: the ``(h, w)`` a crop was cut from; ``reference_size``: the reference's input size;
    ``original``: the original ``(H, W)``.
    """

    as_fed: Fed
    user_decode: np.ndarray
    reference_decode: np.ndarray
    size: tuple[int, int]
    resampler: tuple[str, str]
    perm: tuple[int, ...]
    slope: np.ndarray
    offset: np.ndarray
    transposed: bool
    content: Optional[torch.Tensor]
    crop_resize: Optional[tuple[int, int]]
    reference_size: tuple[int, int]
    original: tuple[int, int]
    padding: Optional[dict] = None  # side -> pixels
    fill: Optional[np.ndarray] = None  # the padding's value per channel, in the user's units
    render: Optional[np.ndarray] = None  # HxWx3 uint8: what explains the user's pixels at their size (before values)
    delta: Optional[torch.Tensor] = None  # 3xhxw: what no stage explains, grey levels, reference channel order
    full_decode: Optional[np.ndarray] = None  # the full-size decode when the user's decoder reduced the image
    crop_box: Optional[tuple[int, int, int, int]] = None  # (x0, y0, x1, y1) of the crop in the crop_resize frame
    crop_in_image: Optional[tuple[int, int, int, int]] = None  # the box in the decoded image, when cut before resizing
    padding_mode: str = "constant"  # np.pad's name: constant, edge, symmetric, reflect, wrap


def _user_values(e: Explanation, img: np.ndarray) -> torch.Tensor:
    """An ``HxWx3`` render mapped the way the user's values are: channel ``c`` = slope[c] * render[perm[c]]
    + offset[c]."""
    r = img.astype(np.float32).transpose(2, 0, 1)
    out = np.stack([e.slope[c] * r[e.perm[c]] + e.offset[c] for c in range(3)]).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(out))


def _geometry(e: Explanation, t: torch.Tensor, skip: str = "") -> torch.Tensor:
    """The user's padding and transposition put back on a rebuilt image (except the one named ``skip``)."""
    if e.padding and skip != "padding":
        t = pad_like(t, {"padding": e.padding, "padding_mode": e.padding_mode, "padding_fill": e.fill})
    if e.transposed and skip != "transposed_hw":
        t = t.transpose(1, 2)
    return t


def _given(value, what: str):
    """``value``, which the explanation holds only when the user's input had ``what``; a rebuild asked for
    without it raises one of :data:`REBUILD_ERRORS`."""
    if value is None:
        raise ValueError(f"the explanation has no {what}")
    return value


def _with(e: Explanation, tensor: torch.Tensor) -> Fed:
    """``tensor`` fed with the user's height/width, as one float32 3xHxW image: a batch or dtype that stops the
    model from running at all is its own finding, so the other fixes are measured on an input that runs."""
    return Fed(tensor.float(), False, e.as_fed.size)


def _fixes(e: Explanation) -> dict[str, Callable[[], Fed]]:
    """The user's input with one finding undone, per finding id (built when asked)."""
    t = e.as_fed.tensor.float()
    inv = [e.perm.index(j) for j in range(3)]

    def rerender(decode: np.ndarray, size=None, resampler=None) -> Fed:
        return _with(e, _geometry(e, _user_values(e, render_at(decode, size or e.size, resampler or e.resampler))))

    def ref_size_for(decode: np.ndarray) -> tuple[int, int]:
        H, W = decode.shape[:2]
        h0, w0 = e.reference_decode.shape[:2]
        return e.reference_size if (H, W) == (h0, w0) else (e.reference_size[1], e.reference_size[0])

    def oriented_size() -> tuple[int, int]:
        """The user's size for the reference decode: the reference's when the user's resize rule was right,
        else theirs, turned when the two decodes are turned by 90 degrees."""
        if e.size == ref_size_for(e.user_decode):
            return e.reference_size
        if e.user_decode.shape[:2] != e.reference_decode.shape[:2]:
            return e.size[1], e.size[0]
        return e.size

    def values() -> Fed:
        return _with(e, torch.stack([(t[c] - float(e.offset[c])) / float(e.slope[c]) for c in range(3)]))

    return {
        "batch_contract": lambda: e.as_fed._replace(batched=False),
        "channels_last": lambda: e.as_fed._replace(channels_last=False),
        "dtype": lambda: e.as_fed._replace(tensor=t),
        "missing_original_size": lambda: Fed(t, False, e.original),
        "channel_order": lambda: _with(e, t[inv]),
        "value_range_0_1": values,
        "double_normalization": values,
        "external_normalization": values,
        "graph_double_normalization": values,
        "transposed_hw": lambda: _with(e, t.transpose(1, 2)),
        "padding": lambda: _with(e, _geometry(e, _given(e.content, "padding"), skip="padding")),
        "resize_size": lambda: rerender(e.user_decode, ref_size_for(e.user_decode)),
        "resize_aspect": lambda: rerender(e.user_decode, ref_size_for(e.user_decode)),
        "resize_interpolation": lambda: rerender(e.user_decode if e.full_decode is None else e.full_decode,
                                                 resampler=("pil", "bilinear")),
        "crop": lambda: rerender(e.user_decode, e.crop_resize),
        "exif_orientation": lambda: rerender(e.reference_decode, oriented_size()),
        "alpha_channel": lambda: rerender(e.reference_decode),
        "recompression": lambda: rerender(e.reference_decode),
        "unexplained": lambda: _with(e, _geometry(e, _user_values(e, _given(e.render, "render")))),
    }


def _alone(e: Explanation, reference_tensor: torch.Tensor) -> dict[str, Callable[[], Fed]]:
    """The reference input with ONLY the user's step of each finding applied (how much that mistake costs by
    itself): the tie-break when fixing any one of several mistakes alone recovers nothing."""
    ref = reference_tensor.float()

    def feed(t: torch.Tensor, size=e.original) -> Fed:
        return Fed(t.float(), False, size)

    def mapped(t: torch.Tensor, perm=(0, 1, 2), values=True) -> torch.Tensor:
        slope, offset = (e.slope, e.offset) if values else (np.ones(3), np.zeros(3))
        return torch.stack([float(slope[c]) * t[perm[c]] + float(offset[c]) for c in range(3)])

    def at(decode: np.ndarray, size, resampler=("pil", "bilinear")) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(render_at(decode, size, resampler).astype(np.float32)
                                                     .transpose(2, 0, 1)))

    fill01 = None if e.fill is None else list((np.asarray(e.fill) - e.offset) / e.slope)
    return {
        "batch_contract": lambda: Fed(ref[None], True, e.original),
        "channels_last": lambda: Fed(ref, False, e.original, channels_last=True),
        "dtype": lambda: Fed(ref.to(e.as_fed.tensor.dtype), False, e.original),
        "missing_original_size": lambda: feed(ref, e.as_fed.size),
        "channel_order": lambda: feed(mapped(ref, e.perm, values=False)),
        "value_range_0_1": lambda: feed(mapped(ref)),
        "double_normalization": lambda: feed(mapped(ref)),
        "external_normalization": lambda: feed(mapped(ref)),
        "graph_double_normalization": lambda: feed(mapped(ref)),
        "transposed_hw": lambda: feed(ref.transpose(1, 2)),
        "padding": lambda: feed(pad_like(ref, {"padding": _given(e.padding, "padding"), "padding_mode": e.padding_mode,
                                               "padding_fill": fill01})),
        "resize_size": lambda: feed(at(e.reference_decode, e.size)),
        "resize_aspect": lambda: feed(at(e.reference_decode, e.size)),
        "resize_interpolation": lambda: feed(at(e.reference_decode if e.full_decode is None else e.user_decode,
                                                e.reference_size, e.resampler)),
        "crop": lambda: feed(at(e.reference_decode, e.size)) if e.crop_resize is None else feed(
            at(_box_hwc(e.reference_decode, _given(e.crop_in_image, "crop box")), e.size) if e.crop_in_image
            else _box(at(e.reference_decode, e.crop_resize), _given(e.crop_box, "crop box"))),
        "exif_orientation": lambda: feed(at(e.user_decode, e.size if e.size != e.reference_size else
                                            (e.size[1], e.size[0]))),
        "alpha_channel": lambda: feed(at(e.user_decode, e.reference_size)),
        "recompression": lambda: feed(at(e.user_decode, e.reference_size)),
        "unexplained": lambda: feed(ref + _same_shape(_given(e.delta, "remainder"), ref)),
    }


def _same_shape(delta: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``delta`` when it lies on the reference's grid; a remainder measured on another size has no place there."""
    if tuple(delta.shape) != tuple(ref.shape):
        raise ValueError("the remainder is not on the reference's grid")
    return delta


def _box_hwc(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``(x0, y0, x1, y1)`` box of an ``HxWx3`` image."""
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def _box(t: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """The ``(x0, y0, x1, y1)`` box of a ``3xHxW`` tensor."""
    x0, y0, x1, y1 = box
    return t[:, y0:y1, x0:x1]


def _score(loaded, reference, fed: Fed) -> Optional[float]:
    """Agreement of the model's output on ``fed`` with ``reference``'s; ``None`` when the model cannot run it."""
    if fed.batched or fed.channels_last:
        # a 1xCxHxW "image": detectron2's ImageList stacks it into a 5-D batch and the backbone fails; an HxWxC
        # one: PIXEL_MEAN (3x1x1) does not broadcast over it
        return None
    spec = reference_spec(loaded.cfg, loaded.device).replace(original_size="pass" if fed.size else "omit")
    try:
        out = run_tensor(loaded, fed.tensor, spec, original_size=fed.size)
    except (RuntimeError, D2DebugError):
        return None  # e.g. a float64 tensor against float32 weights
    return compare(reference, out).score


CONTAINER = ("batch_contract", "channels_last", "dtype")
# A rebuild is size arithmetic on what the Doctor inferred (a pad, a crop, a turn, a resize to the user's size):
# where those sizes do not fit this input, torch refuses the shapes (RuntimeError) or the resizer the size
# (ValueError). Anything else is a bug in the rebuild and propagates.
REBUILD_ERRORS = (ValueError, RuntimeError)


def reference_output(loaded, reference_tensor: torch.Tensor, original: tuple[int, int]):
    """The model's output on the reference input (``3xHxW`` 0..255 of ``original`` size), on the model's own
    device: on a GPU the damage is measured where the reference runs, as fast as it runs."""
    return run_tensor(loaded, reference_tensor, reference_spec(loaded.cfg, loaded.device), original_size=original)


def measure_recovery(loaded, reference_tensor: torch.Tensor, original: tuple[int, int], e: Explanation,
                     findings: list[Finding], reference=None) -> tuple[list[Finding], set[str], dict]:
    """``findings`` with ``recovers`` set: the agreement gained by fixing each alone (``loaded``: the model,
    ``reference_tensor``: the reference input ``3xHxW`` 0..255 of ``original`` size). When the model cannot run
    the input as given (a batch, a float64 tensor), the container findings that stop it are returned as
    ``blocking`` (they recover everything the runnable input scores) and the other fixes are measured on the
    runnable input. Also returns the measured scores."""
    # On the model's own device: on a GPU the damage is measured where the reference runs, as fast as it runs.
    if reference is None:
        reference = reference_output(loaded, reference_tensor, original)
    fixes = _fixes(e)
    given = _score(loaded, reference, e.as_fed)
    runnable = _score(loaded, reference, _with(e, e.as_fed.tensor))
    base = runnable if runnable is not None else 0.0
    scores = {"as_given": None if given is None else round(given, 4), "runnable": round(base, 4)}
    blocking: set[str] = set()
    alone = _alone(e, reference_tensor)
    out = []
    for f in findings:
        make = fixes.get(f.id)
        if make is None:
            out.append(f)
            continue
        try:
            by_itself = _score(loaded, reference, alone[f.id]())
        except REBUILD_ERRORS:
            by_itself = None
        scores[f"{f.id} alone"] = None if by_itself is None else round(by_itself, 4)
        if f.id in CONTAINER:
            fixed = _score(loaded, reference, make())
            if given is None:
                gained = base  # from not running to running (as far as this finding is what stops it)
                blocking.add(f.id)
            else:
                gained = (fixed if fixed is not None else 0.0) - given
        else:
            try:
                fixed = _score(loaded, reference, make())
            except REBUILD_ERRORS:
                out.append(f)  # the rebuild does not apply to this input: the finding keeps its confidence rank
                continue
            gained = (fixed if fixed is not None else 0.0) - base
        scores[f.id] = round(base + gained, 4)
        out.append(dataclasses.replace(f, recovers=gained,
                                       costs_alone=None if by_itself is None else 1.0 - by_itself))
    return out, blocking, scores


# Where each stage can be set to the reference around the user's own function (it takes an image path and
# returns the model input): on its output (what it returned, the stage undone as the rebuilt estimate does),
# or on its input (the file it is given). Every other stage happens inside it.
ON_OUTPUT = ("batch_contract", "channels_last", "dtype", "missing_original_size", "channel_order", "value_range_0_1",
             "double_normalization", "external_normalization", "graph_double_normalization", "transposed_hw",
             "padding")
ON_INPUT = {
    "exif_orientation": "called on an upright copy of the image (EXIF applied, saved as PNG without the tag)",
    "alpha_channel": "called on a copy of the image with its alpha channel dropped (RGB PNG)",
}


def _copy_for(finding_id: str, e: Explanation, fmt: str, image: Path, folder: Path) -> Path:
    """The image file that makes the user's decode the reference's for ``finding_id`` (PNG: lossless)."""
    from PIL import Image

    rgb = e.reference_decode if fmt == "RGB" else e.reference_decode[:, :, ::-1]
    out = folder / f"{image.stem}_{finding_id}.png"
    Image.fromarray(np.ascontiguousarray(rgb)).save(out)
    return out


def measure_own(loaded, reference, e: Explanation, findings: list[Finding], function: Callable[[str], object],
                image: Path, runnable: Optional[float]) -> list[Finding]:
    """``findings`` with ``recovers_own`` / ``own`` set from the user's own ``function``: a stage on its output is
    measured there (the same input as ``recovers``); a decode stage by calling it on a file with that stage
    already the reference's (``ON_INPUT``); a stage inside it (resize, crop, resampler, re-encoding, an
    unexplained transform) cannot be set from outside, and ``own`` says so. ``reference``: the model's output on
    the reference input (:func:`reference_output`); ``runnable``: the agreement of the function's output as
    given, fed so the model runs."""
    import tempfile

    from .inputs import parse_user_input

    fmt = loaded.cfg.INPUT.FORMAT
    out = []
    with tempfile.TemporaryDirectory(prefix="d2debug-own-") as folder:
        for f in findings:
            if f.id in ON_OUTPUT:
                out.append(dataclasses.replace(f, recovers_own=f.recovers, own="set on your function's output"))
                continue
            if f.id not in ON_INPUT:
                where = "the model's config" if f.id == "pixel_mean_std" else "inside your function"
                out.append(dataclasses.replace(
                    f, own=f"not measurable on your function: the stage is {where}; the estimate is from the "
                           "input rebuilt with it fixed" if f.recovers is not None else f"the stage is {where}"))
                continue
            copy = _copy_for(f.id, e, fmt, image, Path(folder))
            try:
                ui = parse_user_input(function(str(copy)), f"your function({copy.name!r})")
            except Exception as exc:  # noqa: BLE001 - the user's code may raise anything: say it, measure nothing
                out.append(dataclasses.replace(f, own=f"your function raised {type(exc).__name__} on the PNG copy: "
                                                      f"{first_line(exc, 80)}"))
                continue
            score = _score(loaded, reference, Fed(ui.tensor, False, ui.original_size))
            gained = None if score is None or runnable is None else score - runnable
            out.append(dataclasses.replace(f, recovers_own=gained, own=ON_INPUT[f.id]))
    return out
