"""A tiny generated LVIS-format set and a tiny Mask R-CNN config for the Detectron2 plugin tests."""

from pathlib import Path
from typing import List

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import build_detection_train_loader

from suite.d2 import add_longtail_config
from suite.data.register import RegisteredDataset, register_synthetic_lvis
from suite.data.synth import SynthSpec, generate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = SynthSpec(num_train_images=24, num_val_images=4, num_classes=6, image_size=64, seed=5, min_val_images=1)
PREFIX = "d2test"


def tiny_dataset(root: Path, spec: SynthSpec = TINY, prefix: str = PREFIX) -> RegisteredDataset:
    """Generate `spec` under root and register it as `{prefix}_train`/`{prefix}_val`."""
    generate(spec, root)
    return register_synthetic_lvis(root, prefix=prefix)


def tiny_cfg(dataset: RegisteredDataset, loss: str, output: Path = None, **head) -> CfgNode:
    """configs/small_cpu.yaml shrunk to 64 px images, 2 images a batch, 32 RoIs an image; `head`:
    extra MODEL.ROI_BOX_HEAD keys (e.g. COSINE_CLASSIFIER=True)."""
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "small_cpu.yaml"))
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = loss
    for key, value in head.items():
        cfg.MODEL.ROI_BOX_HEAD[key] = value
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = dataset.num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = cfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 0.001
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.DATASETS.TRAIN = (dataset.train,)
    cfg.DATASETS.TEST = (dataset.val,)
    cfg.MODEL.DEVICE = "cpu"
    cfg.SEED = 0
    if output is not None:
        cfg.OUTPUT_DIR = str(output)
    return cfg


def train_batches(cfg: CfgNode, count: int) -> List[list]:
    """The first `count` batches of Detectron2's train loader, seeded with cfg.SEED: its sampler's
    seed is Detectron2's shared_random_seed() (NumPy's global generator, rank 0's under
    torch.distributed) and its random flips draw from NumPy too, so both are seeded, not only torch."""
    torch.manual_seed(cfg.SEED)
    np.random.seed(cfg.SEED)
    loader = iter(build_detection_train_loader(cfg))
    return [next(loader) for _ in range(count)]
