"""Ground truth and simulated detections shaped like LVIS v1 val, to time evaluation at its scale.

LVIS v1 val: 19,809 images, 1,203 categories (337 rare, 461 common, 405 frequent: Detectron2's
`LVIS_CATEGORIES`), about 244,700 instances (12.4 per image), 300 detections per image.
Detectron2 v0.6's metadata holds each category's frequency group but not its image count, so
the per-category image counts are modelled per group, scaled to the number of images:
rare 0 to 3 images, common log-uniform in [1, 40], frequent log-uniform in [15, 1000] (at
19,809 images: about 100,000 (image, category) pairs, 5 per image), 2.45 instances per pair on
average (geometric), an image's negative categories Poisson(4) drawn by frequency, each present
category not exhaustive with probability 0.05. Images are 640 x 480; an object is an octagon
(its mask) of log-uniform size 8 to 400 px; `area` is the octagon's area.

Detections (exactly 300 per image; scores rounded to float32 as a detector's): per object two
of its own category and two of a confusable one (a category of the image or a random one),
boxes jittered by 10 % of the object's size, then random boxes of categories drawn by
frequency up to 300. Masks (task "segm") are the octagons of the detected boxes, as RLE.

The category table is read from Detectron2's metadata file as a Python literal, without importing
Detectron2 (which imports torch): a `suite bench eval` measuring process then holds what LVIS
evaluation needs, not torch's 0.6 GiB.
"""

import ast
import importlib.util
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from suite.evaluation.lvis_fast import Detections

LVIS_V1_VAL_IMAGES = 19809
DETECTIONS_PER_IMAGE = 300
WIDTH, HEIGHT = 640, 480
_FREQUENCY_WEIGHT = {"r": 1.0, "c": 10.0, "f": 100.0}  # how often a detector or a negative list picks a group


def _detectron2_lvis_categories() -> List[dict]:
    """`LVIS_CATEGORIES` of the Detectron2 that `import detectron2` would load (installed or on
    PYTHONPATH), read from detectron2/data/datasets/lvis_v1_categories.py without importing it."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("LVIS v1's categories come from Detectron2's metadata, and Detectron2 is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "datasets" / "lvis_v1_categories.py"
    for statement in ast.parse(path.read_text(), str(path)).body:
        names = [getattr(target, "id", None) for target in getattr(statement, "targets", [])]
        if isinstance(statement, ast.Assign) and names == ["LVIS_CATEGORIES"]:
            return ast.literal_eval(statement.value)
    raise RuntimeError(f"{path}: no LVIS_CATEGORIES = [...] literal")


def lvis_v1_categories() -> List[dict]:
    """LVIS v1's categories (id, name, frequency, synset) from Detectron2's metadata, by id."""
    return [{"id": c["id"], "name": c["name"], "frequency": c["frequency"], "synset": c["synset"]}
            for c in sorted(_detectron2_lvis_categories(), key=lambda c: c["id"])]


def _image_counts(frequencies: List[str], num_images: int, rng: np.random.Generator) -> np.ndarray:
    scale = num_images / LVIS_V1_VAL_IMAGES
    counts = []
    for frequency in frequencies:
        if frequency == "r":
            count = rng.integers(0, 4)
        else:
            low, high = (1, 40) if frequency == "c" else (15, 1000)
            count = np.exp(rng.uniform(np.log(low), np.log(high)))
        counts.append(count * scale)
    counts = np.asarray(counts)
    return np.minimum(np.floor(counts) + (rng.random(len(counts)) < counts % 1), num_images).astype(np.int64)


def _octagon(boxes: np.ndarray) -> np.ndarray:
    """(n, 16) polygons: the octagon inscribed in each [x, y, w, h] box, corners cut at 30 %."""
    x, y, w, h = boxes.T
    cut_w, cut_h = 0.3 * w, 0.3 * h
    points = [(x + cut_w, y), (x + w - cut_w, y), (x + w, y + cut_h), (x + w, y + h - cut_h),
              (x + w - cut_w, y + h), (x + cut_w, y + h), (x, y + h - cut_h), (x, y + cut_h)]
    return np.stack([coordinate for point in points for coordinate in point], axis=1)


def _random_boxes(count: int, rng: np.random.Generator) -> np.ndarray:
    size = np.exp(rng.uniform(np.log(8), np.log(400), size=count))
    aspect = np.exp(rng.uniform(-0.7, 0.7, size=count))
    w, h = np.minimum(size * aspect, WIDTH - 1), np.minimum(size / aspect, HEIGHT - 1)
    return np.stack([rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h], axis=1)


def _jitter(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 0.1, size=boxes.shape) * boxes[:, [2, 3, 2, 3]]
    jittered = boxes + noise
    jittered[:, 2:] = np.maximum(jittered[:, 2:], 1.0)
    jittered[:, :2] = np.clip(jittered[:, :2], 0, [WIDTH - 1, HEIGHT - 1])
    jittered[:, 2] = np.minimum(jittered[:, 2], WIDTH - jittered[:, 0])
    jittered[:, 3] = np.minimum(jittered[:, 3], HEIGHT - jittered[:, 1])
    return jittered


def _rles(boxes: np.ndarray) -> list:
    if len(boxes) == 0:
        return []
    return mask_utils.frPyObjects(_octagon(boxes).tolist(), HEIGHT, WIDTH)  # one RLE per polygon


def lvis_val_shaped(num_images: int, seed: int = 0, masks: bool = False) -> Tuple[Dict, Detections]:
    """(LVIS-format ground truth dict, 300 detections per image as columns; with `masks` their
    RLE segmentations too). Deterministic for a seed."""
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    rng = np.random.default_rng(seed)
    categories = lvis_v1_categories()
    category_ids = np.array([c["id"] for c in categories])
    weights = np.array([_FREQUENCY_WEIGHT[c["frequency"]] for c in categories])
    weights /= weights.sum()
    counts = _image_counts([c["frequency"] for c in categories], num_images, rng)
    pairs = [(int(image), int(category_id)) for category_id, count in zip(category_ids, counts)
             for image in rng.choice(num_images, size=count, replace=False)]
    present: List[List[int]] = [[] for _ in range(num_images)]
    for image, category_id in pairs:
        present[image].append(category_id)

    images, annotations = [], []
    columns: Dict[str, list] = {"image_ids": [], "category_ids": [], "scores": [], "boxes": []}
    segmentations: list = []
    for index in range(num_images):
        image_id = index + 1
        own = sorted(present[index])
        object_categories = np.repeat(own, rng.geometric(1 / 2.45, size=len(own))).astype(np.int64)
        object_boxes = _random_boxes(len(object_categories), rng)
        for category_id, polygon, box in zip(object_categories.tolist(), _octagon(object_boxes).tolist(),
                                             object_boxes.tolist()):
            x, y = np.array(polygon).reshape(-1, 2).T
            area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))  # shoelace
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": box, "area": float(area), "segmentation": [polygon]})
        negatives = rng.choice(category_ids, size=min(rng.poisson(4), 20), replace=False, p=weights)
        negatives = sorted(set(negatives.tolist()) - set(own))
        images.append({"id": image_id, "width": WIDTH, "height": HEIGHT, "neg_category_ids": negatives,
                       "not_exhaustive_category_ids": [c for c in own if rng.random() < 0.05],
                       "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg"})

        objects = np.repeat(np.arange(len(object_categories)), 4)[:DETECTIONS_PER_IMAGE]
        confusable = np.array(own + negatives) if own or negatives else category_ids
        confused = np.where(rng.random(len(objects)) < 0.5, rng.choice(confusable, size=len(objects)),
                            rng.choice(category_ids, size=len(objects), p=weights))
        own_category = np.arange(len(objects)) % 4 < 2
        det_categories = np.where(own_category, object_categories[objects], confused)
        det_scores = np.where(own_category, rng.beta(4, 2, size=len(objects)), rng.beta(2, 4, size=len(objects)))
        det_boxes = _jitter(object_boxes[objects], rng)
        fill = DETECTIONS_PER_IMAGE - len(objects)
        det_categories = np.r_[det_categories, rng.choice(category_ids, size=fill, p=weights)]
        det_scores = np.r_[det_scores, rng.beta(1, 6, size=fill)].astype(np.float32).astype(np.float64)
        det_boxes = np.r_[det_boxes, _random_boxes(fill, rng)]
        columns["image_ids"].append(np.full(DETECTIONS_PER_IMAGE, image_id))
        columns["category_ids"].append(det_categories)
        columns["scores"].append(det_scores)
        columns["boxes"].append(det_boxes)
        if masks:
            segmentations += _rles(det_boxes)

    categories = [dict(c, image_count=int(count), instance_count=0) for c, count in zip(categories, counts)]
    dataset = {"info": {"description": "LVIS v1 val shaped (suite.bench.lvis_val_shape)"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": categories}
    detections = Detections(
        image_ids=np.concatenate(columns["image_ids"]).astype(np.int64),
        category_ids=np.concatenate(columns["category_ids"]).astype(np.int64),
        scores=np.concatenate(columns["scores"]), boxes=np.concatenate(columns["boxes"]),
        segmentations=segmentations if masks else None)
    return dataset, detections


def as_results(detections: Detections, task: str) -> List[dict]:
    """The detections as LVIS results dicts (what the official API takes)."""
    key_values = detections.boxes.tolist() if task == "bbox" else detections.segmentations
    key = "bbox" if task == "bbox" else "segmentation"
    return [{"image_id": image_id, "category_id": category_id, "score": score, key: value}
            for image_id, category_id, score, value in zip(detections.image_ids.tolist(),
                                                         detections.category_ids.tolist(),
                                                         detections.scores.tolist(), key_values)]
