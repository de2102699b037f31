"""Training steps per loss, and the loss's share of them.

Scopes (record `scope`, docs/records.md):
  box_predictor  RoI features (N, 1024) float32 -> linear classifier (1024 -> num_logits) -> loss ->
                 gradients of the features and the classifier: the part of the box head a loss changes.
                 N = 512 RoIs x {2, 16} images on the CPU ({2} with --quick), 512 x 16 on CUDA.
  mask_rcnn      one whole Detectron2 Mask R-CNN training step through the plugin (forward with
                 losses, backward, SGD step): the small model of configs/small_cpu.yaml with 128 px
                 images on the CPU (8 a batch, 2 with --quick), R50-FPN
                 (configs/Base-LVISv1-MaskRCNN-FPN-2x.yaml, trained BatchNorm for its FrozenBN) with 2
                 images of 1024 px on CUDA; randomly initialised, SGD at LEARNING_RATE, on generated images
                 held in memory. N = ROI_HEADS.BATCH_SIZE_PER_IMAGE x images.
Both scopes use LVIS v1's 1203 classes, Zipf-distributed labels and EQL frequencies
(suite.bench.kernel.zipf_class_freq). In every group the loss alone (forward + backward on (N,
num_logits) logits, suite.bench.kernel.build_kernel) is timed beside the steps, round-robin, and
`loss_share` = its median / the step's median; `ratio_to_ce` = step median / the ce step's median.
"""

from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import nn

from suite.bench.kernel import build_kernel, build_loss_module, make_labels, timing_record, zipf_class_freq
from suite.bench.timing import time_calls
from suite.package_data import CONFIGS_DIR

STEP_LOSSES = ("ce", "focal", "eql", "eqlv2", "fed", "seesaw")
LVIS_NUM_CLASSES = 1203
FEATURE_DIM = 1024  # Detectron2's box head FC_DIM
ROIS_PER_IMAGE = 512
METADATA_NAME = "suite_bench_zipf"  # metadata only: EQL's and fed's class frequencies for the mask_rcnn step
# Enough images that rounding the counts moves no class across EQL's lambda (100,000 moved rank 273).
METADATA_NUM_IMAGES = 1_000_000
INSTANCES_PER_IMAGE = 8
# Small enough that 12 steps of the random R50-FPN with focal loss stay finite (1e-4 diverged).
LEARNING_RATE = 1e-5

Record = Dict[str, object]


def _box_predictor_step(name: str, num_rois: int, num_classes: int, device: str) -> Callable[[], None]:
    """Classifier + loss forward and backward (torch.autograd.grad, nothing accumulates) on fixed
    (num_rois, FEATURE_DIM) features and Zipf labels."""
    generator = torch.Generator().manual_seed(0)
    loss = build_loss_module(name, num_classes, device)
    classifier = nn.Linear(FEATURE_DIM, loss.num_logits).to(device)
    features = torch.randn(num_rois, FEATURE_DIM, generator=generator).to(device).requires_grad_()
    labels = make_labels(num_rois, num_classes).to(device)
    inputs = (features, classifier.weight, classifier.bias)

    def step():
        torch.autograd.grad(sum(loss(classifier(features), labels).values()), inputs)

    return step


def _register_zipf_metadata(num_classes: int) -> None:
    """(Re)register METADATA_NAME with LVIS v1's fields that EQL reads (suite.d2.class_freq):
    class_image_count from zipf_class_freq over METADATA_NUM_IMAGES images, category ids 1..C."""
    from detectron2.data import MetadataCatalog

    counts = [{"id": label + 1, "image_count": round(freq * METADATA_NUM_IMAGES)}
              for label, freq in enumerate(zipf_class_freq(num_classes).tolist())]
    if METADATA_NAME in MetadataCatalog.list():
        MetadataCatalog.remove(METADATA_NAME)
    MetadataCatalog.get(METADATA_NAME).set(class_image_count=counts, num_train_images=METADATA_NUM_IMAGES)


def mask_rcnn_cfg(name: str, num_classes: int, device: str):
    """The plugin's Mask R-CNN config with loss `name`: small CPU model on the CPU, R50-FPN
    otherwise; no weights; EQL's frequencies from METADATA_NAME (see _register_zipf_metadata)."""
    from detectron2.config import get_cfg

    from suite.d2 import add_longtail_config

    on_cpu = torch.device(device).type == "cpu"
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(str(CONFIGS_DIR / ("small_cpu.yaml" if on_cpu else "Base-LVISv1-MaskRCNN-FPN-2x.yaml")))
    if not on_cpu:
        # Without ImageNet weights, R50's identity FrozenBN lets activations grow through its residual
        # blocks (loss_cls ~1e5 at the first step, NaN at the second, measured at 320 px on the CPU);
        # trained BatchNorm, as in small_cpu.yaml, keeps the steps finite at a little more cost.
        cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = name
    cfg.DATASETS.TRAIN = (METADATA_NAME,)
    return cfg


def make_batch(num_classes: int, image_size: int, images: int, seed: int = 0) -> List[Dict[str, object]]:
    """Detectron2 training inputs, deterministic in `seed`: `images` dicts with a (3, S, S) uint8 noise
    "image" and "instances" holding INSTANCES_PER_IMAGE boxes (XYXY, at least S / 16 wide and high where
    the image allows), their filled-rectangle BitMasks and int64 classes in [0, num_classes) drawn
    with Zipf weights (zipf_class_freq)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    generator = torch.Generator().manual_seed(seed)
    grid = torch.arange(image_size, dtype=torch.float32)
    batch = []
    for _ in range(images):
        corners = torch.rand(INSTANCES_PER_IMAGE, 2, 2, generator=generator) * image_size
        low = corners.min(dim=1).values.floor()
        high = (corners.max(dim=1).values + image_size / 16).clamp(max=image_size).floor()
        inside_x = (grid >= low[:, None, 0]) & (grid < high[:, None, 0])  # (K, S)
        inside_y = (grid >= low[:, None, 1]) & (grid < high[:, None, 1])
        instances = Instances((image_size, image_size))
        instances.gt_boxes = Boxes(torch.cat([low, high], dim=1))
        instances.gt_classes = torch.multinomial(zipf_class_freq(num_classes), INSTANCES_PER_IMAGE,
                                                 replacement=True, generator=generator)
        instances.gt_masks = BitMasks(inside_y[:, :, None] & inside_x[:, None, :])
        image = torch.randint(0, 256, (3, image_size, image_size), generator=generator, dtype=torch.uint8)
        batch.append({"image": image, "instances": instances})
    return batch


class MaskRCNNStep:
    """One SGD training step (a call) of the plugin's Mask R-CNN (`model`, initialised from seed 0
    without touching the global generator) on a fixed batch of make_batch; the loss sees `num_rois`
    RoIs a step."""

    def __init__(self, name: str, num_classes: int, device: str, image_size: int, images: int):
        from detectron2.modeling import build_model

        cfg = mask_rcnn_cfg(name, num_classes, device)
        with torch.random.fork_rng(devices=[]):  # build_model initialises on the CPU
            torch.manual_seed(0)
            self.model = build_model(cfg).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=0.9)
        self.batch = make_batch(num_classes, image_size, images)
        self.num_rois = cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE * images

    def __call__(self) -> None:
        from detectron2.utils.events import EventStorage

        with EventStorage():
            losses = self.model(self.batch)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()


def _time_group(scope: str, steps: Dict[str, Callable[[], None]], num_rois: int, num_classes: int,
                device: str, warmup: int, repeats: int) -> List[Record]:
    """Time each loss's step and its loss kernel side by side; one record per step, in `steps` order."""
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


def box_predictor_records(device: str, num_rois: int, num_classes: int = LVIS_NUM_CLASSES, *,
                          losses: Iterable[str] = STEP_LOSSES, warmup: int = 1, repeats: int = 3) -> List[Record]:
    """The box_predictor scope at one shape: a record per loss."""
    steps = {name: _box_predictor_step(name, num_rois, num_classes, device) for name in losses}
    return _time_group("box_predictor", steps, num_rois, num_classes, device, warmup, repeats)


def mask_rcnn_records(device: str, images: int, image_size: int, num_classes: int = LVIS_NUM_CLASSES, *,
                      losses: Iterable[str] = STEP_LOSSES, warmup: int = 1, repeats: int = 3) -> List[Record]:
    """The mask_rcnn scope: a record per loss, each step with its own model and optimizer."""
    _register_zipf_metadata(num_classes)
    steps = {name: MaskRCNNStep(name, num_classes, device, image_size, images) for name in losses}
    (num_rois,) = {step.num_rois for step in steps.values()}
    return _time_group("mask_rcnn", steps, num_rois, num_classes, device, warmup, repeats)


def run_step_bench(device: str, quick: bool, progress: Optional[Callable[[str], None]] = None, *,
                   losses: Iterable[str] = STEP_LOSSES, num_classes: int = LVIS_NUM_CLASSES,
                   box_images: Optional[Iterable[int]] = None, mask_images: Optional[int] = None,
                   image_size: Optional[int] = None, repeats: Optional[int] = None) -> List[Record]:
    """Both scopes for every loss, at the shapes of the module docstring unless given: box predictor
    at ROIS_PER_IMAGE x `box_images` RoIs, Mask R-CNN with `mask_images` images of `image_size` px.
    Warm-up 1 and 3 repeats with `quick`, else 2 and 10. Returns the records, box_predictor first."""
    losses = tuple(losses)
    on_cpu = torch.device(device).type == "cpu"
    warmup = 1 if quick else 2
    repeats = repeats or (3 if quick else 10)
    box_images = tuple(box_images or (((2,) if quick else (2, 16)) if on_cpu else (16,)))
    mask_images = mask_images or (8 if on_cpu and not quick else 2)
    image_size = image_size or (128 if on_cpu else 1024)
    timing = {"losses": losses, "warmup": warmup, "repeats": repeats}
    records = []
    for images in box_images:
        group = box_predictor_records(device, images * ROIS_PER_IMAGE, num_classes, **timing)
        records += _report(progress, group)
    records += _report(progress, mask_rcnn_records(device, mask_images, image_size, num_classes, **timing))
    return records


def _report(progress: Optional[Callable[[str], None]], records: List[Record]) -> List[Record]:
    """Pass one group's records through, telling `progress` one line about them."""
    if progress and records:
        first = records[0]
        progress(f"{first['scope']} {first['num_rois']} RoIs x {first['num_classes']}: " + ", ".join(
            f"{r['name']} {r['median_ms']:.1f} ms ({r['iters_per_s']:.1f} it/s, loss {100 * r['loss_share']:.1f} %)"
            for r in records))
    return records
