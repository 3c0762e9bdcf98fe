"""The deployed model's contract: what the Doctor's findings mean when the user's tensor is what their
deployment feeds an exported model (:class:`~d2debug.deploy.contract.Contract`), not the Python model.

The Doctor's detectors run unchanged on a config carrying the contract's values (channel order, the resize done
outside the graph, the mean/std the graph holds: :func:`~d2debug.deploy.contract.cfg_with_contract`); this
module then turns their findings into the deployment's terms and adds what only a contract tells:

- ``graph_double_normalization``: a normalized tensor (any mean/std) fed to a graph that normalizes itself
  (replaces ``double_normalization`` / ``external_normalization``);
- ``traced_size``: the contract says the graph agrees with the Python model only at its traced size, and the
  tensor is another size;
- ``rescale_boxes`` (a reminder): the graph returns boxes in the frame of the tensor fed, with the scale
  factors to the original image.

Sizes are ``(h, w)``; tensors ``3xHxW`` float32 in the contract's channel order.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional, Sequence

from ..errors import D2DebugError
from ..findings import Finding, feed_code
from ..text import fmt

if TYPE_CHECKING:
    from detectron2.config import CfgNode

    from ..deploy.contract import Contract

__all__ = ["check_contract", "contract_notes", "deployed_feed_code", "deployment_findings", "rescale_finding"]

_NORMALIZED = ("double_normalization", "external_normalization")
_RESIZED = ("resize_size", "resize_aspect", "resize_interpolation")


def check_contract(contract: Contract) -> None:
    """Refuse, in one line, a contract the Doctor cannot read a tensor against: one whose graph expects the
    deployment to normalize (the Doctor's reference is the 0..255 input of a graph that normalizes itself)."""
    if not contract.normalizes:
        raise D2DebugError("the contract says the graph does not normalize (normalizes: false): the Doctor diagnoses "
                           "inputs of exported models that normalize inside the graph, as detectron2's exports do")


def contract_notes(contract: Contract, cfg: CfgNode) -> list[str]:
    """Where the contract and the model's config disagree (the contract's values are the reference then)."""
    from ..deploy.contract import config_differences

    return [f"the contract's {key} {fmt(c)} differs from the config's {fmt(g)}: the contract's is the reference "
            "(the artifact was exported with it)" for key, c, g in config_differences(contract, cfg)
            if fmt(c) != fmt(g)]


def deployed_feed_code(contract: Contract) -> str:
    """How a deployment feeds the exported graph by its contract (one image, 0..255 float32, no normalization)."""
    call = ("session.run(None, {'%s': x.numpy()})" % contract.input_name if contract.format == "onnx"
            else "model(x)")
    return (f"x = torch.as_tensor(image.astype('float32').transpose(2, 0, 1)); outputs = {call}  # 3xHxW float32 "
            f"0..255, {contract.channel_order} order, resized OUTSIDE the graph by ResizeShortestEdge("
            f"{contract.min_size}, {contract.max_size}); no batch axis, no mean/std: the graph normalizes itself")


def deployment_findings(findings: list[Finding], contract: Contract, cfg: CfgNode, size: tuple[int, int],
                        decoded: tuple[int, int], slope: Sequence[float]) -> list[Finding]:
    """``findings`` (made against ``cfg``, the config with the contract's values) in the deployment's terms,
    plus ``traced_size``. ``size``: the tensor's ``(h, w)``; ``decoded``: the image's ``(H, W)``; ``slope``:
    the fitted per-channel value slope (a negative one is an inverted image, not a normalization)."""
    model_feed, graph_feed = feed_code(cfg), deployed_feed_code(contract)
    out = []
    for f in findings:
        fix = f.fix.replace(model_feed, graph_feed)
        if f.id in _NORMALIZED and all(a > 0 for a in slope):
            out.append(Finding(
                "graph_double_normalization", f.confidence,
                f"the exported graph normalizes itself ((x - {fmt(list(contract.pixel_mean), 2)}) / "
                f"{fmt(list(contract.pixel_std), 2)} inside, contract normalizes: true) and the tensor fed is already "
                f"normalized, so the normalization is done twice: {_values_only(f.evidence)}",
                "feed the 0..255 values; remove your (x - mean) / std (T.Normalize) and any / 255: " + graph_feed))
            continue
        if f.id in _RESIZED:
            f = dataclasses.replace(f, evidence=f"{f.evidence}; the contract asks for this resize OUTSIDE the graph "
                                                "(the exported graph does not resize)")
        elif f.id == "channel_order":
            fix = (f"the exported graph takes {contract.channel_order} (contract channel_order): image = "
                   f"read_image(path, format='{contract.channel_order}')  # or image[:, :, ::-1]; then " + graph_feed)
        out.append(dataclasses.replace(f, fix=fix))
    traced = traced_size_finding(contract, cfg, size, decoded)
    return out + ([traced] if traced is not None else [])


def _values_only(evidence: str) -> str:
    """A normalization finding's evidence without its last clause when that clause says what the Python model
    does next (the graph's own normalization is said instead)."""
    head, _, tail = evidence.rpartition("; ")
    return head if head and ("model" in tail or "preprocess_image" in tail) else evidence


def traced_size_finding(contract: Contract, cfg: CfgNode, size: tuple[int, int],
                        decoded: tuple[int, int]) -> Optional[Finding]:
    """``traced_size`` when the contract says the graph works only at its traced size (``any_size`` false,
    measured at export) and the tensor is another size."""
    traced = tuple(contract.traced_size) if contract.traced_size else None
    if contract.any_size is not False or traced is None or tuple(size) == traced:
        return None
    from detectron2.data import transforms as T

    H, W = decoded
    wanted = tuple(T.ResizeShortestEdge.get_output_shape(H, W, contract.min_size, contract.max_size))
    other = contract.agreement.get("other_size") or {}
    fed = "x".join(str(v) for v in other.get("input_size") or ())
    measured = f"; fed {fed} at export, it agreed with the Python model at F1 {other.get('f1')}" if fed else ""
    ev = (f"the tensor is {size[0]}x{size[1]} but the graph was traced on {traced[0]}x{traced[1]} and the contract "
          f"says it works only at that size (any_size: false{measured}): a traced graph replays the shapes it was "
          "traced with")
    if wanted != traced:
        ev += (f"; the contract's resize gives {wanted[0]}x{wanted[1]} for this {H}x{W} image, so no correct input "
               "for it fits this artifact")
    return Finding(
        "traced_size", 0.95, ev,
        "export again so the graph takes any size (a TorchScript R-CNN: d2debug.deploy.export_model(model, "
        f"'torchscript', out_dir, method='scripting')); with this artifact feed only {traced[0]}x{traced[1]} inputs. "
        + deployed_feed_code(contract))


def rescale_finding(contract: Contract, size: tuple[int, int], original: tuple[int, int],
                    analysis: dict) -> Optional[Finding]:
    """``rescale_boxes``: the graph's boxes are in the frame of the ``size`` tensor fed (``output_frame`` of the
    contract); the exact factors to the ``original`` ``(H, W)`` image (after taking off a padding the Doctor
    found, ``analysis["padding"]``). ``None`` when the tensor is the original size."""
    h, w = size
    H, W = original
    pad = analysis.get("padding") or {}
    top, left = int(pad.get("top", 0)), int(pad.get("left", 0))
    ch, cw = analysis.get("content_size") or (h, w)
    if (h, w) == (H, W) and not pad:
        return None
    shift = (f"boxes[:, 0::2] -= {left}; boxes[:, 1::2] -= {top}  # the padding first; " if top or left else "")
    masks = (f"; masks: detectron2.layers.paste_masks_in_image(pred_masks[:, 0], boxes, ({H}, {W})) after the rescale"
             if "pred_masks" in contract.outputs else "")
    keypoints = (f"; pred_keypoints[..., 0] *= {W} / {cw}; pred_keypoints[..., 1] *= {H} / {ch}"
                 if "pred_keypoints" in contract.outputs else "")
    frame = f"{ch}x{cw} image inside the {h}x{w} tensor fed" if (ch, cw) != (h, w) else f"{h}x{w} tensor fed"
    return Finding(
        "rescale_boxes", 0.99,
        f"the exported graph returns boxes in the frame of the {frame} (contract output_frame: input; "
        f"detector_postprocess is not in the graph); the image is {H}x{W}: x scale {W}/{cw} = {W / cw:.6g}, "
        f"y scale {H}/{ch} = {H / ch:.6g}",
        f"{shift}boxes[:, 0::2] *= {W} / {cw}; boxes[:, 1::2] *= {H} / {ch}  # pred_boxes XYXY to the original "
        f"{H}x{W} image; or detector_postprocess(instances, {H}, {W}) as DefaultPredictor does{keypoints}{masks}")
