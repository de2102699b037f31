"""A tiny generated LVIS-format set and a tiny Mask R-CNN config for the Detectron2 plugin tests."""

import itertools
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from suite.d2 import add_longtail_config
from suite.data.register import RegisteredDataset, register_synthetic_lvis
from suite.data.synth import SynthSpec, generate
from suite.evaluation.class_topk import ClassTopKEvaluator, uncapped
from suite.evaluation.evaluate import LVISPerCategoryEvaluator

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


def every_detection(cfg, model, dataset_name: str) -> List[dict]:
    """The model's detections of every image of the set in order (all of them, whatever this
    process's rank): no limit per image, no floor."""
    mapper = DatasetMapper(cfg, False)
    results = []
    with uncapped(model), torch.no_grad():
        for image in DatasetCatalog.get(dataset_name):
            inputs = [mapper(image)]
            results += instances_to_coco_json(model(inputs)[0]["instances"].to("cpu"), inputs[0]["image_id"])
    return results


def k_best_per_category(results: List[dict], k: int) -> List[dict]:
    """The definition: per category the first k of a stable sort by score, highest first; all in
    the given order."""
    kept = set()
    for _, group in itertools.groupby(sorted(range(len(results)), key=lambda i: results[i]["category_id"]),
                                      key=lambda i: results[i]["category_id"]):
        kept.update(sorted(group, key=lambda i: -results[i]["score"])[:k])
    return [result for index, result in enumerate(results) if index in kept]


def collect_k_best(cfg, model, dataset_name: str, k: int) -> Dict[str, Any]:
    """`model` over the set through `inference_on_dataset` with `ClassTopKEvaluator` (the fixed
    protocol, the k best per category) and `uncapped`: its evaluation (rank 0), the kept
    detections (category ids; rank 0), how many detections the model gave and most held at once."""
    collector = ClassTopKEvaluator(LVISPerCategoryEvaluator(dataset_name, distributed=False, protocols=("fixed",)),
                                   cfg.MODEL.ROI_HEADS.NUM_CLASSES, k)
    with uncapped(model, collector.floor):
        evaluation = inference_on_dataset(model, build_detection_test_loader(cfg, dataset_name), collector)
    kept = [result for prediction in collector.evaluator._predictions for result in prediction["instances"]]
    return {"evaluation": evaluation, "kept": kept, "added": collector.collected.added,
            "most_held": collector.most_held}

