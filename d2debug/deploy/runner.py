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
from typing import TYPE_CHECKING, Union

import torch

from ..compare import Agreement, compare
from ..model import LoadedModel
from ..run import RunResult, prepare, result_from_outputs
from ..session import ComparisonView, ReferenceView, compare_variant
from ..stages import Decoded, PipelineSpec, StageValueError, decode
from .artifact import DeployedModel
from .contract import cfg_with_contract

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["BAKED", "check_deployment_spec", "contract_cfg", "instances_from_outputs", "run_deployed",
           "DeployedComparison", "compare_deployed"]

BAKED = ("model_norm", "score_thresh", "nms_thresh", "precision")  # PipelineSpec fields an export freezes


def check_deployment_spec(spec: PipelineSpec) -> None:
    """Refuse, in one line, a spec that changes what the exported graph holds."""
    ref = PipelineSpec()
    for name in BAKED:
        if getattr(spec, name) != getattr(ref, name):
            raise StageValueError(name, getattr(spec, name), "baked into the exported graph: change the config "
                                                             "and export again")


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
    (``device`` names the runtime), with ``backbone_input`` the graph's normalization of the input (computed
    from the contract's mean/std, the graph's own tensors not being reachable)."""
    from detectron2.modeling.postprocessing import detector_postprocess

    check_deployment_spec(spec)
    t0 = time.perf_counter()
    dec = image if isinstance(image, Decoded) else decode(image, spec.decoder)
    t1 = time.perf_counter()
    tensor, orig = prepare(contract_cfg(loaded, deployed), dec, spec)
    t2 = time.perf_counter()
    outputs = deployed.infer(tensor)
    forward = time.perf_counter() - t2
    h, w = int(tensor.shape[1]), int(tensor.shape[2])
    inst = instances_from_outputs(outputs, (h, w))
    out_h, out_w = orig if spec.original_size == "pass" else (h, w)
    inst = detector_postprocess(inst, out_h, out_w)
    c = deployed.contract
    backbone = tensor
    if c.normalizes:
        mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in (c.pixel_mean, c.pixel_std))
        backbone = (tensor - mean) / std
    result = result_from_outputs(loaded, tensor, spec, orig, {"instances": inst}, backbone, dec,
                                 {"decode": t1 - t0, "preprocess": t2 - t1}, forward)
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


def compare_deployed(loaded: LoadedModel, deployed: DeployedModel, image: Union[str, Path], spec: PipelineSpec,
                     reference: Union[ReferenceView, RunResult]) -> DeployedComparison:
    """Run the exported model on ``image`` fed the reference input and fed the deployment ``spec``, and
    compare both with the Python ``reference`` run (its spec is the reference pipeline)."""
    ref = reference.result if isinstance(reference, ReferenceView) else reference
    source: Union[str, Path, Decoded] = ref.decoded if ref.decoded is not None else image
    on_ref = run_deployed(loaded, deployed, source, ref.spec)
    same_decode = spec.decoder == ref.spec.decoder and ref.decoded is not None
    # The device is the reference's; an exported model runs where its runtime does.
    mine = on_ref if spec.replace(device=ref.spec.device) == ref.spec else run_deployed(
        loaded, deployed, source if same_decode else image, spec)
    view = compare_variant(loaded, image, spec, reference, variant_result=mine)
    return DeployedComparison(view, compare(ref, on_ref), compare(on_ref, mine), on_ref)
