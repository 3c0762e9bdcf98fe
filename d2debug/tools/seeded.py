"""Models of every architecture detectron2 ships, with seeded random weights, saved the way training runs save
them (``config.yaml`` from ``cfg.dump()`` + ``model_final.pth``): what the tests and the bench run each
architecture on without a download. Weights do not change what the pipeline does or what a forward costs.

Each is a stock model-zoo config, narrowed (a thin ResNet-50, 32-channel FPN and heads, 256/400 test sizes)
so a forward takes a fraction of a second on a CPU; ``user_sized`` keeps the stock widths and sizes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..compat import cfg_node

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["ARCHITECTURES", "seeded_model"]

# name -> (model-zoo config, overrides beyond the narrowing)
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "faster_rcnn_fpn": ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", {}),
    "mask_rcnn_fpn": ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", {}),
    "mask_rcnn_c4": ("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml", {}),
    "cascade_mask_rcnn": ("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml", {}),
    "keypoint_rcnn": ("COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
                      {"MODEL.ROI_HEADS.NUM_CLASSES": 1, "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": (32, 32)}),
    "retinanet": ("COCO-Detection/retinanet_R_50_FPN_1x.yaml",
                  # a random head at the stock prior (0.01) scores every anchor below the 0.05 threshold
                  {"MODEL.RETINANET.NUM_CLASSES": 3, "MODEL.RETINANET.PRIOR_PROB": 0.05}),
    "panoptic_fpn": ("COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml", {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 4}),
    "semantic_fpn": ("Misc/semantic_R_50_FPN_1x.yaml", {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 5}),
}

_NARROW = {
    "MODEL.RESNETS.WIDTH_PER_GROUP": 8,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 32,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 16,
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 300,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 100,
    "MODEL.ROI_HEADS.NUM_CLASSES": 3,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 32,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 32,
    "INPUT.MIN_SIZE_TEST": 256,
    "INPUT.MAX_SIZE_TEST": 400,
}


def _set(cfg: CfgNode, key: str, value) -> None:
    node, leaf = cfg_node(cfg, key)
    node[leaf] = value


def seeded_model(name: str, workdir: Path, seed: int = 0, user_sized: bool = False) -> tuple[Path, Path]:
    """Write ``workdir/<name>/config.yaml`` and ``model_final.pth`` (``{"model": state_dict}``, weights from
    ``torch.manual_seed(seed)``) for one of :data:`ARCHITECTURES`; return their paths. The config's test set is
    cleared (the model-zoo's names COCO sets whose classes these models do not have)."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    zoo, extra = ARCHITECTURES[name]
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(zoo))
    for key, value in {**({} if user_sized else _NARROW), **extra}.items():
        _set(cfg, key, value)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.DATASETS.TEST = ()
    out = Path(workdir) / name
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model(cfg)
    kp_head = getattr(getattr(model, "roi_heads", None), "keypoint_head", None)
    if kp_head is not None:
        # Untrained, the thin net's heatmap logits reach +-3000, where exp() in detectron2's heatmap decoding
        # overflows and its own assertion fails; scaled down, they span what a trained head gives (a few units).
        with torch.no_grad():
            kp_head.score_lowres.weight.mul_(1e-3)
    config, weights = out / "config.yaml", out / "model_final.pth"
    config.write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, weights)
    return config, weights
