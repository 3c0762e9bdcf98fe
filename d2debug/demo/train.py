"""The training recipe of the shipped demo model: detectron2's own ``DefaultTrainer`` on CPU, from scratch.

The model is a narrow stock ResNet-50 FPN Faster R-CNN built only from stock detectron2 config keys, so plain
detectron2 loads the result with ``DefaultPredictor`` and no import of d2debug. Its config differs from
detectron2's defaults the way real custom models do: ``INPUT.FORMAT: RGB``, ``PIXEL_MEAN = PIXEL_STD = 127.5``
(the 0..255 form of mean = std = 0.5), its own test sizes and class names.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch

from ..compat import portable_dump
from ..samples import DEMO_CLASSES, DEMO_CONFIG, DEMO_METRICS, DEMO_WEIGHTS
from .data import CLASS_NAMES, write_sample_split, write_split

__all__ = ["build_train_cfg", "train", "export_weights", "evaluate_reference"]

log = logging.getLogger("d2debug.demo")


def build_train_cfg(out_dir: Path, train_name: str, test_name: str, max_iter: int = 3000, seed: int = 1234,
                    masks: bool = True, base_lr: float = 0.02, warmup: int = 300):
    """The training config. Everything not set here is detectron2's default. ``masks``: a Mask R-CNN (the
    mask head narrowed like the rest of the model: 4 convs of 128 channels), else a Faster R-CNN."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    m = cfg.MODEL
    m.DEVICE = "cpu"
    m.MASK_ON = masks
    m.PIXEL_MEAN = [127.5, 127.5, 127.5]
    m.PIXEL_STD = [127.5, 127.5, 127.5]
    m.BACKBONE.NAME = "build_resnet_fpn_backbone"
    m.BACKBONE.FREEZE_AT = 0
    m.RESNETS.DEPTH = 50
    m.RESNETS.WIDTH_PER_GROUP = 16
    m.RESNETS.RES2_OUT_CHANNELS = 64
    m.RESNETS.STEM_OUT_CHANNELS = 32
    m.RESNETS.NORM = "BN"
    m.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    m.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    m.FPN.OUT_CHANNELS = 64
    m.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    m.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    m.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    m.RPN.PRE_NMS_TOPK_TRAIN = 1000
    m.RPN.POST_NMS_TOPK_TRAIN = 500
    m.RPN.PRE_NMS_TOPK_TEST = 500
    m.RPN.POST_NMS_TOPK_TEST = 300
    m.ROI_HEADS.NAME = "StandardROIHeads"
    m.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    m.ROI_HEADS.NUM_CLASSES = len(CLASS_NAMES)
    m.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 128
    m.ROI_HEADS.SCORE_THRESH_TEST = 0.5
    m.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    m.ROI_BOX_HEAD.NUM_FC = 2
    m.ROI_BOX_HEAD.FC_DIM = 256
    m.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    m.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    m.ROI_MASK_HEAD.NUM_CONV = 4
    m.ROI_MASK_HEAD.CONV_DIM = 128
    m.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    m.WEIGHTS = ""
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TRAIN = (288, 320, 352)
    cfg.INPUT.MAX_SIZE_TRAIN = 587
    cfg.INPUT.MIN_SIZE_TEST = 320
    cfg.INPUT.MAX_SIZE_TEST = 533
    cfg.DATASETS.TRAIN = (train_name,)
    cfg.DATASETS.TEST = (test_name,)
    cfg.DATALOADER.NUM_WORKERS = 1
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.BASE_LR = base_lr
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.WARMUP_ITERS = min(warmup, max_iter // 2)
    # LR drops at 75% and 90%; very short runs (tests) keep only the drops the scheduler can place.
    steps = sorted({int(max_iter * 0.75), int(max_iter * 0.9)})
    cfg.SOLVER.STEPS = tuple(s for s in steps if cfg.SOLVER.WARMUP_ITERS < s < max_iter)
    # From scratch with BN, early steps can explode; clipping keeps the run alive without changing the model.
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 10.0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**7  # only the final checkpoint
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = seed
    cfg.OUTPUT_DIR = str(out_dir)
    return cfg


def _register(name: str, json_path: Path, image_root: Path) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_path), str(image_root))


def export_weights(checkpoint: Path, dest: Path) -> Path:
    """Write the model state alone (fp32 tensors, no optimizer state) as ``{"model": state_dict}``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    torch.save({"model": {k: v.float() if v.is_floating_point() else v for k, v in state.items()}}, dest)
    return dest


def evaluate_reference(config: Path, weights: Path, val_json: Path) -> dict[str, float]:
    """COCO AP of the model on ``val_json`` with plain ``DefaultPredictor`` on ``read_image(path, "BGR")``:
    box ``AP``/``AP50``/``AP75`` and, for a model with masks, ``mask_AP``/``mask_AP50``/``mask_AP75``."""
    from detectron2.config import get_cfg
    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor

    from ..coco import coco_ap, encode_masks, load_coco

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)
    coco = load_coco(val_json)
    dets = {}
    for img in coco.dataset["images"]:
        out = predictor(read_image(str(Path(val_json).parent / img["file_name"]), format="BGR"))["instances"]
        dets[img["id"]] = (out.pred_boxes.tensor.numpy(), out.scores.numpy(), out.pred_classes.numpy(),
                           encode_masks(out.pred_masks) if out.has("pred_masks") else None)
    metrics = coco_ap(coco, dets)
    if cfg.MODEL.MASK_ON:
        metrics.update({f"mask_{k}": v for k, v in coco_ap(coco, dets, "segm").items()})
    return metrics


def train(
    out_dir: Path,
    iters: int = 3000,
    train_images: int = 1500,
    val_dir: Path | None = None,
    seed: int = 1234,
    masks: bool = True,
    init: Path | None = None,
    base_lr: float = 0.02,
    warmup: int = 300,
) -> dict:
    """Generate the data, train, export ``model.pth`` + ``config.yaml`` + ``classes.json`` and evaluate.

    ``val_dir`` holds a validation split (``annotations.json`` + ``images/``); it is generated into
    ``out_dir/val`` when not given. ``init``: weights to start from (the shipped Mask R-CNN starts from the
    box model of a first run with ``masks=False``; the mask head, absent there, starts from its
    initialisation). Returns the metrics also written to ``out_dir/metrics.json``.
    """
    from detectron2.engine import DefaultTrainer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logger(str(out_dir / "train.log"), name="detectron2")
    t0 = time.perf_counter()
    train_json = write_split(out_dir / "train", train_images, seed=seed)
    if val_dir is None:
        val_dir = out_dir / "val"
        write_sample_split(val_dir)
    val_json = Path(val_dir) / "annotations.json"
    t_data = time.perf_counter() - t0
    _register("d2debug_demo_train", train_json, train_json.parent)
    _register("d2debug_demo_val", val_json, val_json.parent)

    cfg = build_train_cfg(out_dir, "d2debug_demo_train", "d2debug_demo_val", iters, seed, masks, base_lr, warmup)
    seed_all_rng(seed)
    torch.manual_seed(seed)
    # The model's config (weights are passed beside it), in a form detectron2 0.6 and 0.7 both load.
    (out_dir / "config.yaml").write_text(portable_dump(cfg))
    if init is not None:
        cfg.MODEL.WEIGHTS = str(Path(init).resolve())  # read by resume_or_load(resume=False)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    t1 = time.perf_counter()
    trainer.train()
    t_train = time.perf_counter() - t1

    model_path = export_weights(out_dir / "model_final.pth", out_dir / "model.pth")
    (out_dir / "classes.json").write_text(json.dumps(list(CLASS_NAMES), indent=1) + "\n")
    metrics: dict[str, object] = dict(evaluate_reference(out_dir / "config.yaml", model_path, val_json))
    metrics.update(
        iterations=iters,
        train_images=train_images,
        data_seconds=round(t_data, 1),
        train_seconds=round(t_train, 1),
        val_images=len(json.loads(val_json.read_text())["images"]),
        masks=masks,
        base_lr=base_lr,
        init=str(init) if init is not None else None,
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def install_into(out_dir: Path, sample_dir: Path) -> None:
    """Copy a finished training run's model, dumped config, class names and metrics into ``sample_dir``, under
    the names the demo model is loaded by (:mod:`d2debug.samples`)."""
    sample_dir.mkdir(parents=True, exist_ok=True)
    for made, shipped in (("model.pth", DEMO_WEIGHTS), ("config.yaml", DEMO_CONFIG), ("classes.json", DEMO_CLASSES),
                          ("metrics.json", DEMO_METRICS)):
        shutil.copyfile(out_dir / made, sample_dir / shipped.name)
