"""One widget group per stage. Each draws only its widgets (the keys of :class:`~d2debug.ui.state.Keys`) and returns the
:class:`~d2debug.stages.PipelineSpec` field changes; the reference setting of every widget returns ``{}``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import streamlit as st
import torch

from ..stages import FIELD_CHOICES, custom_norm
from . import state
from .state import STAGE_KEYS, Keys

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["WIDGETS", "DEPLOYMENT_STAGES", "preset", "channel_order_ui", "resize_ui", "normalization_ui",
           "decoding_ui", "output_ui", "original_size_ui", "device_ui", "deployment_ui", "reset_deployment"]


def _radio(label: str, key: str, options: dict[str, str], help: str | None = None) -> str:
    """A horizontal radio over ``options`` (value -> label); the first option is the reference."""
    values = list(options)
    state.default(key, values[0])
    choice = st.radio(label, values, key=key, persist_state=state.PERSIST,
                      format_func=options.__getitem__, horizontal=True, help=help)
    assert choice is not None  # the key holds a default, so an option is always selected
    return choice


def channel_order_ui(cfg: CfgNode) -> dict:
    fmt = cfg.INPUT.FORMAT
    other = "BGR" if fmt == "RGB" else "RGB"
    v = _radio("Channel order fed to the model", Keys.CHANNEL_ORDER,
               {"cfg": f"{fmt}, as cfg.INPUT.FORMAT (reference)", "swapped": f"{other} (swapped)"})
    return {} if v == "cfg" else {"channel_order": v}


_POLICIES = {
    "shortest_edge": "Shortest edge + MAX_SIZE clamp (reference)",
    "shortest_edge_noclamp": "Shortest edge, no clamp, truncated",
    "fixed": "Fixed size (stretch)",
    "none": "No resize",
}
_INTERPS = {k: k for k in FIELD_CHOICES["interpolation"]}
_BACKENDS = {"pil": "PIL (detectron2 ResizeTransform)", "cv2": "OpenCV cv2.resize",
             "torch": "torch F.interpolate", "torch_antialias": "torch F.interpolate, antialias=True"}


def resize_ui(cfg: CfgNode) -> dict:
    lo = int(cfg.INPUT.MIN_SIZE_TEST)
    changes: dict = {}
    c1, c2, c3 = st.columns(3)
    with c1:
        state.default(Keys.RESIZE_POLICY, "shortest_edge")
        policy = st.selectbox("Policy", list(_POLICIES), key=Keys.RESIZE_POLICY, persist_state=state.PERSIST,
                              format_func=_POLICIES.__getitem__)
        if policy != "shortest_edge":
            changes["resize"] = policy
        if policy in ("shortest_edge", "shortest_edge_noclamp"):
            state.default(Keys.RESIZE_SHORT, lo)
            short = int(st.number_input(f"Short side (cfg MIN_SIZE_TEST = {lo})", 16, 4096, step=16,
                                        key=Keys.RESIZE_SHORT, persist_state=state.PERSIST))
            if short != lo:
                changes["resize_size"] = short
        elif policy == "fixed":
            state.default(Keys.RESIZE_W, lo)
            state.default(Keys.RESIZE_H, lo)
            w = int(st.number_input("Width", 16, 4096, step=16, key=Keys.RESIZE_W, persist_state=state.PERSIST))
            h = int(st.number_input("Height", 16, 4096, step=16, key=Keys.RESIZE_H, persist_state=state.PERSIST))
            changes["resize_size"] = (w, h)
    with c2:
        state.default(Keys.RESIZE_INTERP, "bilinear")
        interp = st.selectbox("Interpolation", list(_INTERPS), key=Keys.RESIZE_INTERP, persist_state=state.PERSIST)
        if interp != "bilinear":
            changes["interpolation"] = interp
    with c3:
        state.default(Keys.RESIZE_BACKEND, "pil")
        backend = st.selectbox("Backend", list(_BACKENDS), key=Keys.RESIZE_BACKEND, persist_state=state.PERSIST,
                               format_func=_BACKENDS.__getitem__,
                               help="PIL filters antialias when downscaling; cv2 (except area) and torch do not, "
                                    "unless torch's antialias=True.")
        if backend != "pil":
            changes["resize_backend"] = backend
    return changes


_NORMS = {
    "cfg": "cfg PIXEL_MEAN/STD, 0..255 (reference)",
    "d2_default": "Model-zoo defaults (get_cfg())",
    "imagenet": "ImageNet T.Normalize outside (double normalization)",
    "0_1": "ToTensor(): 0..1",
    "custom": "Custom",
}


def normalization_ui(cfg: CfgNode) -> dict:
    choice = _radio("Value range and normalization", Keys.NORM, _NORMS)
    if choice == "cfg":
        return {}
    if choice == "d2_default":
        return {"model_norm": "d2_default"}
    if choice == "imagenet":
        return {"external_norm": "imagenet"}
    if choice == "0_1":
        return {"value_range": "0_1"}
    where = _radio("Custom mean/std applied", Keys.NORM_CUSTOM_WHERE,
                   {"model": "inside the model (PIXEL_MEAN/STD, 0..255 units)",
                    "external": "outside, as T.Normalize (0..1 units)"})
    c1, c2 = st.columns(2)
    if where == "model":
        state.default(Keys.NORM_CUSTOM_MEAN, ",".join(f"{float(v):g}" for v in cfg.MODEL.PIXEL_MEAN))
        state.default(Keys.NORM_CUSTOM_STD, ",".join(f"{float(v):g}" for v in cfg.MODEL.PIXEL_STD))
        mean = c1.text_input("Mean (3 values)", key=Keys.NORM_CUSTOM_MEAN, persist_state=state.PERSIST)
        std = c2.text_input("Std (3 values)", key=Keys.NORM_CUSTOM_STD, persist_state=state.PERSIST)
        return {"model_norm": custom_norm(mean, std)}
    state.default(Keys.NORM_EXT_MEAN, "0.5,0.5,0.5")
    state.default(Keys.NORM_EXT_STD, "0.5,0.5,0.5")
    mean = c1.text_input("Mean (3 values, 0..1 units)", key=Keys.NORM_EXT_MEAN, persist_state=state.PERSIST)
    std = c2.text_input("Std (3 values, 0..1 units)", key=Keys.NORM_EXT_STD, persist_state=state.PERSIST)
    return {"external_norm": custom_norm(mean, std)}


def decoding_ui(cfg: CfgNode) -> dict:
    v = _radio("Decoder", Keys.DECODER, {
        "detectron2": "detectron2 read_image (reference)",
        "cv2": "cv2.imread",
        "pil": "PIL Image.open (no EXIF)",
        "pil_exif": "PIL + ImageOps.exif_transpose",
    })
    return {} if v == "detectron2" else {"decoder": v}


def output_ui(cfg: CfgNode, arch) -> dict:
    """Height/width passed or not, and the test thresholds where ``arch`` (:class:`~d2debug.arch.Arch`) has them."""
    changes = original_size_ui("Original height/width", "passed (reference)",
                               "omitted (outputs in the resized frame)")
    if arch.score_key is None:
        st.caption(f"{arch.name} has no test thresholds: it predicts a per-pixel class map.")
        return changes
    c1, c2 = st.columns(2)
    cfg_score, cfg_nms = round(arch.score_thresh, 2), round(arch.nms_thresh, 2)
    state.default(Keys.OUT_SCORE, cfg_score)
    state.default(Keys.OUT_NMS, cfg_nms)
    score = c1.slider(f"Score threshold (cfg {cfg_score:g})", 0.0, 1.0, step=0.05, key=Keys.OUT_SCORE,
                      persist_state=state.PERSIST, help=arch.score_key)
    nms = c2.slider(f"NMS IoU threshold (cfg {cfg_nms:g})", 0.0, 1.0, step=0.05, key=Keys.OUT_NMS,
                    persist_state=state.PERSIST, help=arch.nms_key)
    # The cfg's own value is the reference; only a different value is a change.
    if round(score, 4) != round(arch.score_thresh, 4):
        changes["score_thresh"] = round(float(score), 4)
    if round(nms, 4) != round(arch.nms_thresh, 4):
        changes["nms_thresh"] = round(float(nms), 4)
    return changes


def original_size_ui(label: str, passed: str, omitted: str) -> dict:
    """Whether the outputs are mapped back to the original image (``detector_postprocess`` with its height and
    width), under the page's own wording."""
    v = _radio(label, Keys.OUT_SIZE, {"pass": passed, "omit": omitted})
    return {} if v == "pass" else {"original_size": v}


def device_ui(cfg: CfgNode, reference_device: str = "cpu") -> dict:
    changes: dict = {}
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        options = {"cuda": "cuda:0", "cpu": "cpu"} if reference_device == "cuda" else {"cpu": "cpu", "cuda": "cuda:0"}
        dev = _radio("Device", Keys.DEVICE, options)
        if dev != reference_device:
            changes["device"] = dev
    else:
        st.info("No CUDA GPU on this machine. With a GPU the reference runs on cuda:0 and this page compares it "
                "with the CPU (kernel and TF32 differences) and with fp16. Here it compares CPU fp32 with CPU fp16.")
    prec = _radio("Precision", Keys.PRECISION, {"fp32": "fp32 (reference)", "fp16": "fp16 (torch.autocast)"})
    if prec != "fp32":
        changes["precision"] = prec
    return changes


WIDGETS: dict[str, Callable] = {
    "channel_order": channel_order_ui,
    "resize": resize_ui,
    "normalization": normalization_ui,
    "decoding": decoding_ui,
    "output": output_ui,
    "device": device_ui,
}


# The stages a deployment's host code owns, in pipeline order; the graph holds the rest (model_norm,
# thresholds, precision), and a model_norm chosen here is refused as baked.
DEPLOYMENT_STAGES = ("decoding", "channel_order", "resize", "normalization")


def deployment_ui(cfg: CfgNode) -> dict:
    """The host-side stages of a deployment, each with its stage page's own widget (so a choice made there shows
    here too), and whether the outputs are rescaled. ``cfg``: the contract's (its channel order and sizes)."""
    changes: dict = {}
    c1, c2 = st.columns(2)
    with c1:
        changes.update(decoding_ui(cfg))
    with c2:
        changes.update(channel_order_ui(cfg))
    changes.update(resize_ui(cfg))
    changes.update(normalization_ui(cfg))
    changes.update(original_size_ui("Rescale outputs to the original image",
                                    "rescaled (detector_postprocess, the contract)",
                                    "not rescaled (boxes in the frame of the tensor fed)"))
    return changes


def reset_deployment() -> None:
    """Button callback: every deployment widget back at the contract's pipeline (the reference)."""
    for stage in DEPLOYMENT_STAGES:
        for key in STAGE_KEYS[stage]:
            st.session_state.pop(key, None)
    st.session_state.pop(Keys.OUT_SIZE, None)


# PipelineSpec field -> the widget key that shows it, where the widget holds the field's value itself.
_FIELD_KEYS = {
    "channel_order": Keys.CHANNEL_ORDER, "resize": Keys.RESIZE_POLICY, "interpolation": Keys.RESIZE_INTERP,
    "resize_backend": Keys.RESIZE_BACKEND, "decoder": Keys.DECODER, "original_size": Keys.OUT_SIZE,
    "score_thresh": Keys.OUT_SCORE, "nms_thresh": Keys.OUT_NMS, "precision": Keys.PRECISION,
    "device": Keys.DEVICE,
}
# Normalization fields share one radio: (field, value) -> its choice.
_NORM_CHOICES = {("value_range", "0_1"): "0_1", ("external_norm", "imagenet"): "imagenet",
                 ("model_norm", "d2_default"): "d2_default"}


def preset(stage: str, changes) -> None:
    """Make the ``stage``'s widgets show ``changes`` (``(field, value)`` pairs, e.g. a pitfall's) on their next
    draw, every other widget of the stage back at the reference. Call before the widgets are drawn."""
    for key in STAGE_KEYS[stage]:
        st.session_state.pop(key, None)
    for field, value in changes:
        if field in _FIELD_KEYS:
            st.session_state[_FIELD_KEYS[field]] = value
        elif (field, value) in _NORM_CHOICES:
            st.session_state[Keys.NORM] = _NORM_CHOICES[(field, value)]
        elif field == "resize_size" and isinstance(value, int):
            st.session_state[Keys.RESIZE_SHORT] = value
        elif field == "resize_size" and isinstance(value, tuple):
            st.session_state[Keys.RESIZE_W], st.session_state[Keys.RESIZE_H] = value
        else:
            raise ValueError(f"no widget shows {field}={value!r}")
