"""Run an exported model the way a deployment does, and measure where it parts from the reference.

The deployment's preprocessing is a :class:`~d2debug.stages.PipelineSpec` like any variant (the contract's own
is the reference spec: decode, flip to the contract's channel order, shortest-edge resize, float 0..255),
its post-processing is ``spec.original_size``: ``pass`` rescales the outputs to the original image
(``detector_postprocess``, as ``DefaultPredictor`` and detectron2's ``export_model.py`` do), ``omit`` leaves
them in the frame of the tensor fed (what a deployment that forgets the rescale draws). The model-side fields
(``model_norm``, thresholds, precision) are baked into the graph and cannot vary here.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import torch

from ..compare import Agreement, compare
from ..errors import D2DebugError
from ..model import LoadedModel
from ..pitfalls import Pitfall
from ..run import RunResult, prepare, result_from_outputs
from ..session import ComparisonView, ReferenceView, compare_variant
from ..stages import Decoded, PipelineSpec, StageValueError, decode
from .artifact import DeployedModel
from .contract import cfg_with_contract, config_differences

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["BAKED", "DEPLOYED", "DEPLOYED_PITFALL", "deployed_pitfalls", "check_deployment_spec", "check_same_model",
           "contract_differences", "contract_cfg", "instances_from_outputs", "run_deployed", "run_deployed_tensor",
           "DeployedComparison", "compare_deployed"]

BAKED = ("model_norm", "score_thresh", "nms_thresh", "precision")  # PipelineSpec fields an export freezes
DEPLOYED = "deployed"  # the audit's name of the artifact fed the reference input; its pitfalls are deployed_NAME
DEPLOYED_PITFALL = Pitfall(DEPLOYED, "deployed artifact, reference input", (),
                           "the exported model fed exactly the reference input: what the export alone changed")


def deployed_pitfalls(pitfalls: Sequence[Pitfall]) -> list[Pitfall]:
    """The audit's pipelines for a deployed model: the artifact fed the reference input, then each pitfall
    made by the deployment's preprocessing (the ones changing a baked field cannot happen there and are
    left out)."""
    return [DEPLOYED_PITFALL] + [
        Pitfall(f"{DEPLOYED}_{p.name}", f"{p.label} (deployed)", p.changes, p.explains)
        for p in pitfalls if not any(k in BAKED for k, _ in p.changes)]


def check_deployment_spec(spec: PipelineSpec) -> None:
    """Refuse, in one line, a spec that changes what the exported graph holds."""
    ref = PipelineSpec()
    for name in BAKED:
        if getattr(spec, name) != getattr(ref, name):
            raise StageValueError(name, getattr(spec, name), "baked into the exported graph: change the config "
                                                             "and export again")


def check_same_model(loaded: LoadedModel, deployed: DeployedModel) -> None:
    """Refuse, in one line, an artifact exported from another model than ``loaded``: another architecture or
    another number of classes (class NAMES may differ: they depend on how each was loaded, not on the graph)."""
    c, name = deployed.contract, deployed.path.name
    mine = loaded.arch.describe()
    if c.architecture != mine:
        raise D2DebugError(f"{name}: an export of {c.architecture}, but the loaded model is {mine}; load the model "
                           "it was exported from")
    if c.class_names and len(c.class_names) != len(loaded.class_names):
        raise D2DebugError(f"{name}: an export of a model with {len(c.class_names)} classes, but the loaded model "
                           f"has {len(loaded.class_names)}; load the model it was exported from")


def contract_differences(loaded: LoadedModel, deployed: DeployedModel) -> list[str]:
    """Where the contract's input settings differ from ``loaded``'s config (``"INPUT.FORMAT: RGB in the contract,
    BGR in the config"``): the artifact was exported with another config, and the export's part of the gap
    measures what that changes."""
    return [f"{key}: {a} in the contract, {b} in the config"
            for key, a, b in config_differences(deployed.contract, loaded.cfg)]


def contract_cfg(loaded: LoadedModel, deployed: DeployedModel) -> CfgNode:
    """The config the deployment's host stages read (channel order, test sizes), from the contract."""
    return cfg_with_contract(loaded.cfg, deployed.contract)


def instances_from_outputs(outputs: dict[str, torch.Tensor], image_size: tuple[int, int]):
    """detectron2 ``Instances`` of ``image_size`` ``(h, w)`` from an export's named outputs (``pred_boxes``
    becomes ``Boxes``; ``image_size`` is dropped)."""
    from detectron2.structures import Boxes, Instances

    inst = Instances(image_size)
    for name, value in outputs.items():
        if name != "image_size":
            inst.set(name, Boxes(value.float()) if name.endswith("boxes") else value)
    return inst


def run_deployed(loaded: LoadedModel, deployed: DeployedModel, image: Union[str, Path, Decoded],
                 spec: PipelineSpec) -> RunResult:
    """One image through the deployment ``spec`` and the exported model: a :class:`RunResult` like any run
    (``device`` names the runtime)."""
    check_deployment_spec(spec)
    t0 = time.perf_counter()
    dec = image if isinstance(image, Decoded) else decode(image, spec.decoder)
    t1 = time.perf_counter()
    tensor, orig = prepare(contract_cfg(loaded, deployed), dec, spec)
    host = {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}
    return run_deployed_tensor(loaded, deployed, tensor, orig, spec, dec, host)


def run_deployed_tensor(loaded: LoadedModel, deployed: DeployedModel, tensor: torch.Tensor,
                        original: tuple[int, int], spec: PipelineSpec, decoded: Optional[Decoded] = None,
                        host_timings: Optional[dict[str, float]] = None) -> RunResult:
    """Feed ``tensor`` (``3xHxW`` float32, what the deployment made of an image of ``original`` ``(h, w)``) to
    the exported model; ``spec.original_size`` says whether its outputs are rescaled to the original frame.
    ``backbone_input`` is the graph's normalization of the input, computed from the contract's mean/std (the
    graph's own tensors are not reachable)."""
    from detectron2.modeling.postprocessing import detector_postprocess

    t0 = time.perf_counter()
    outputs = deployed.infer(tensor)
    forward = time.perf_counter() - t0
    h, w = int(tensor.shape[1]), int(tensor.shape[2])
    out_h, out_w = original if spec.original_size == "pass" else (h, w)
    inst = detector_postprocess(instances_from_outputs(outputs, (h, w)), out_h, out_w)
    c = deployed.contract
    backbone = tensor
    if c.normalizes:
        mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in (c.pixel_mean, c.pixel_std))
        backbone = (tensor - mean) / std
    result = result_from_outputs(loaded, tensor, spec, original, {"instances": inst}, backbone, decoded,
                                 host_timings, forward)
    return dataclasses.replace(result, device=deployed.runtime)


@dataclass
class DeployedComparison:
    """The Python reference against a deployed model on one image, the gap split in two:

    - ``export``: the reference vs the exported model fed the REFERENCE input (what the export itself changed);
    - ``deployment``: the exported model fed the reference input vs fed the deployment's (what the
      deployment's preprocessing/post-processing changed);
    - ``view``: the reference vs the deployment as a whole, with the drawings and histograms of a stage page.
    """

    view: ComparisonView
    export: Agreement
    deployment: Agreement
    exported_on_reference: RunResult

    def gap_rows(self) -> list[dict]:
        """The three agreements as rows (``part``, ``f1``, ``missed``, ``extra``, ``class_flips``,
        ``mean_iou``)."""
        parts = (("export (artifact fed the reference input)", self.export),
                 ("deployment preprocessing (same artifact, your input)", self.deployment),
                 ("total (reference vs your deployment)", self.view.agreement))
        return [{"part": name, "f1": round(a.f1, 4), "missed": a.missed, "extra": a.extra,
                 "class_flips": a.class_flips, "mean_iou": round(a.mean_iou, 4)} for name, a in parts]

    def verdict(self) -> str:
        """One sentence naming the bigger part of the gap (lost F1 first, then box IoU of the matched pairs)."""
        def gap(a: Agreement) -> tuple[float, float]:
            return round(1.0 - a.f1, 4), (round(1.0 - a.mean_iou, 4) if a.matched else 0.0)

        total = self.view.agreement
        if gap(total) == (0.0, 0.0) and not (total.missed or total.extra or total.class_flips):
            return (f"No gap on this image: your deployment finds what the reference finds (agreement F1 "
                    f"{total.f1:.3f}, box IoU {total.mean_iou:.3f}).")
        if gap(self.export) > gap(self.deployment):
            return (f"Most of the gap comes from the export itself: the artifact fed the reference input agrees "
                    f"with the Python model at F1 {self.export.f1:.3f} (box IoU {self.export.mean_iou:.3f}).")
        changed = ", ".join(f"{k}={b}" for k, (_a, b) in self.view.differences.items()) or "none"
        return (f"Most of the gap comes from your deployment's preprocessing ({changed}): fed your input instead of "
                f"the reference input, the same artifact agrees only at F1 {self.deployment.f1:.3f} (box IoU "
                f"{self.deployment.mean_iou:.3f}).")


def compare_deployed(loaded: LoadedModel, deployed: DeployedModel, image: Union[str, Path], spec: PipelineSpec,
                     reference: Union[ReferenceView, RunResult],
                     user_input: Optional[tuple[torch.Tensor, tuple[int, int]]] = None) -> DeployedComparison:
    """Run the exported model on ``image`` fed the reference input and fed the deployment ``spec`` (or
    ``user_input``: the ``3xHxW`` float32 tensor the user's own preprocessing made of ``image``, and the
    original ``(h, w)``; ``spec`` then only says whether outputs are rescaled), and compare both with the Python
    ``reference`` run (its spec is the reference pipeline)."""
    ref = reference.result if isinstance(reference, ReferenceView) else reference
    source: Union[str, Path, Decoded] = ref.decoded if ref.decoded is not None else image
    on_ref = run_deployed(loaded, deployed, source, ref.spec)
    same_decode = spec.decoder == ref.spec.decoder and ref.decoded is not None
    if user_input is not None:
        check_deployment_spec(spec)
        mine = run_deployed_tensor(loaded, deployed, user_input[0], user_input[1], spec, ref.decoded)
    # The device is the reference's; an exported model runs where its runtime does.
    elif spec.replace(device=ref.spec.device) == ref.spec:
        mine = on_ref
    else:
        mine = run_deployed(loaded, deployed, source if same_decode else image, spec)
    view = compare_variant(loaded, image, spec, reference, variant_result=mine)
    return DeployedComparison(view, compare(ref, on_ref), compare(on_ref, mine), on_ref)
