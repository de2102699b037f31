"""Training steps per loss, and the loss's share of them.

Scopes (record `scope`, docs/records.md):
  box_predictor  RoI features (N, 1024) -> linear classifier (1024 -> num_logits) -> loss ->
                 backward to the features and the classifier: the part of the box head a loss changes.
  mask_rcnn      one whole Detectron2 Mask R-CNN training step through the plugin (forward with
                 losses, backward, SGD step): the small model of configs/small_cpu.yaml at 128 px on
                 the CPU, R50-FPN (configs/Base-LVISv1-MaskRCNN-FPN-2x.yaml) at 1024 px on CUDA,
                 randomly initialised, LVIS's 1203 classes, on generated images held in memory.
In every group the loss alone (forward + backward on logits of the step's shape, suite.bench.kernel)
is timed beside the steps, round-robin, and `loss_share` = its median / the step's median.
"""

from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import nn

from suite.bench.kernel import (build_kernel, build_loss_module, make_labels, timing_record,
                                zipf_class_freq)
from suite.bench.timing import time_calls

STEP_LOSSES = ("ce", "focal", "eql", "seesaw")
FEATURE_DIM = 1024  # Detectron2's box head FC_DIM
ROIS_PER_IMAGE = 512
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
METADATA_NAME = "suite_bench_zipf"  # metadata only: EQL's class frequencies for the mask_rcnn step
INSTANCES_PER_IMAGE = 8


def _box_predictor_step(name: str, num_rois: int, num_classes: int, device: str) -> Callable[[], None]:
    """Classifier + loss forward and backward on fixed features and Zipf labels."""
    generator = torch.Generator().manual_seed(0)
    loss = build_loss_module(name, num_classes, device)
    classifier = nn.Linear(FEATURE_DIM, loss.num_logits).to(device)
    features = torch.randn(num_rois, FEATURE_DIM, generator=generator).to(device).requires_grad_()
    labels = make_labels(num_rois, num_classes).to(device)
    params = (features, classifier.weight, classifier.bias)

    def step():
        torch.autograd.grad(sum(loss(classifier(features), labels).values()), params)

    return step


def _register_zipf_metadata(num_classes: int) -> None:
    """Metadata with LVIS v1's fields for EQL (class_image_count, num_train_images), Zipf counts."""
    from detectron2.data import MetadataCatalog

    num_images = 100_000
    counts = [{"id": label + 1, "image_count": round(freq * num_images)}
              for label, freq in enumerate(zipf_class_freq(num_classes).tolist())]
    if METADATA_NAME in MetadataCatalog.list():
        MetadataCatalog.remove(METADATA_NAME)
    MetadataCatalog.get(METADATA_NAME).set(class_image_count=counts, num_train_images=num_images)


def mask_rcnn_cfg(name: str, num_classes: int, device: str, image_size: int, images: int):
    """The model's config: small CPU model on the CPU, R50-FPN on CUDA; no weights."""
    from detectron2.config import get_cfg

    from suite.d2 import add_longtail_config

    cfg = get_cfg()
    add_longtail_config(cfg)
    base = "small_cpu.yaml" if device == "cpu" else "Base-LVISv1-MaskRCNN-FPN-2x.yaml"
    cfg.merge_from_file(str(CONFIGS / base))
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = name
    cfg.DATASETS.TRAIN = (METADATA_NAME,)
    cfg.INPUT.MIN_SIZE_TRAIN = (image_size,)
    cfg.INPUT.MAX_SIZE_TRAIN = image_size
    cfg.SOLVER.IMS_PER_BATCH = images
    return cfg


def make_batch(num_classes: int, image_size: int, images: int, seed: int = 0) -> List[Dict]:
    """Detectron2 training inputs: `images` dicts with a (3, S, S) uint8 image of noise and
    INSTANCES_PER_IMAGE boxes with rectangle masks and Zipf-distributed classes."""
    from detectron2.structures import BitMasks, Boxes, Instances

    generator = torch.Generator().manual_seed(seed)
    batch = []
    for index in range(images):
        corners = torch.rand(INSTANCES_PER_IMAGE, 2, 2, generator=generator) * image_size
        low, high = corners.min(dim=1).values, corners.max(dim=1).values + image_size / 16
        boxes = torch.cat([low, high.clamp(max=image_size)], dim=1).floor()
        grid = torch.arange(image_size, dtype=torch.float32)
        inside_x = (grid[None, :] >= boxes[:, None, 0]) & (grid[None, :] < boxes[:, None, 2])
        inside_y = (grid[None, :] >= boxes[:, None, 1]) & (grid[None, :] < boxes[:, None, 3])
        instances = Instances((image_size, image_size))
        instances.gt_boxes = Boxes(boxes)
        labels = make_labels(INSTANCES_PER_IMAGE * 4, num_classes, seed + index)  # a quarter foreground
        instances.gt_classes = labels[labels < num_classes][:INSTANCES_PER_IMAGE]
        instances.gt_masks = BitMasks(inside_y[:, :, None] & inside_x[:, None, :])
        image = torch.randint(0, 256, (3, image_size, image_size), generator=generator, dtype=torch.uint8)
        batch.append({"image": image, "instances": instances, "height": image_size, "width": image_size})
    return batch


class MaskRCNNStep:
    """One SGD training step (`step()`) of the plugin's Mask R-CNN (`model`) on a fixed generated batch."""

    def __init__(self, name: str, num_classes: int, device: str, image_size: int, images: int):
        from detectron2.modeling import build_model

        torch.manual_seed(0)
        self.model = build_model(mask_rcnn_cfg(name, num_classes, device, image_size, images)).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.batch = make_batch(num_classes, image_size, images)

    def __call__(self) -> None:
        from detectron2.utils.events import EventStorage

        with EventStorage():
            losses = self.model(self.batch)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()


def _time_group(scope: str, steps: Dict[str, Callable[[], None]], num_rois: int, num_classes: int,
                device: str, warmup: int, repeats: int) -> List[Dict[str, object]]:
    """Time each loss's step and its loss kernel side by side; one record per step."""
    kernels = {f"{name}/loss": build_kernel(name, num_rois, num_classes, "float32", device) for name in steps}
    timings = time_calls({**steps, **kernels}, device=device, warmup=warmup, repeats=repeats)
    records = []
    for name in steps:
        record = timing_record(name, scope, device, "float32", num_rois, num_classes, timings[name])
        record["iters_per_s"] = 1e3 / record["median_ms"]
        record["loss_share"] = timings[f"{name}/loss"].median_ms / record["median_ms"]
        records.append(record)
    ce_ms = next((record["median_ms"] for record in records if record["name"] == "ce"), None)
    for record in records:
        record["ratio_to_ce"] = record["median_ms"] / ce_ms if ce_ms else None
        record["ratio_to_floor"] = record["ratio_to_official"] = None
    return records


def run_step_bench(device: str, quick: bool, progress: Optional[Callable[[str], None]] = None, *,
                   losses: Iterable[str] = STEP_LOSSES, num_classes: int = 1203,
                   box_images: Optional[Iterable[int]] = None, mask_images: Optional[int] = None,
                   image_size: Optional[int] = None, repeats: Optional[int] = None) -> List[Dict[str, object]]:
    """Both scopes for every loss. Defaults: box predictor at 512 RoIs x {2, 16} images ({2} with
    quick); Mask R-CNN with 8 images of 128 px on the CPU (2 with quick), 2 of 1024 px on CUDA."""
    losses = tuple(losses)
    on_cpu = torch.device(device).type == "cpu"
    warmup = 1 if quick else 2
    repeats = repeats or (3 if quick else 10)
    box_images = tuple(box_images or ((2,) if quick else (2, 16)))
    mask_images = mask_images or (2 if quick or not on_cpu else 8)
    image_size = image_size or (128 if on_cpu else 1024)
    records = []
    for images in box_images:
        num_rois = images * ROIS_PER_IMAGE
        steps = {name: _box_predictor_step(name, num_rois, num_classes, device) for name in losses}
        records += _report(progress, _time_group("box_predictor", steps, num_rois, num_classes, device, warmup, repeats))
    _register_zipf_metadata(num_classes)
    steps = {name: MaskRCNNStep(name, num_classes, device, image_size, mask_images) for name in losses}
    num_rois = mask_images * mask_rcnn_cfg("ce", num_classes, device, image_size, mask_images).MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    records += _report(progress, _time_group("mask_rcnn", steps, num_rois, num_classes, device, warmup, repeats))
    return records


def _report(progress: Optional[Callable[[str], None]], records: List[Dict[str, object]]) -> List[Dict[str, object]]:
    if progress and records:
        first = records[0]
        progress(f"{first['scope']} {first['num_rois']} RoIs x {first['num_classes']}: " + ", ".join(
            f"{r['name']} {r['median_ms']:.1f} ms ({r['iters_per_s']:.1f} it/s, loss {100 * r['loss_share']:.0f} %)"
            for r in records))
    return records
