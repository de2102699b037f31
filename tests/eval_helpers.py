"""Generated LVIS sets and detections that exercise every rule of the official evaluation: empty
images, categories without ground truth, negative and not-exhaustive categories, ground truth
that overlaps (a detection with several candidates), every area range, tied scores within and
across images, more detections than the per-image limit, and masks as polygons and RLE."""

import numpy as np
from pycocotools import mask as mask_utils

SIZE = 320  # image side in pixels: ground truth of every area range (small < 32², large > 96²)


def _polygon(x, y, w, h):
    """A diamond inside the box: its mask area differs from the box area."""
    return [[x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h, x, y + h / 2]]


def _rle(box):
    encoded = mask_utils.merge(mask_utils.frPyObjects(_polygon(*box), SIZE, SIZE))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def hard_case(seed: int, num_images: int = 30, num_categories: int = 12, detections_per_image: int = 40):
    """(LVIS dataset dict, results list with bbox and segmentation)."""
    rng = np.random.default_rng(seed)
    frequencies = ["r", "c", "f"]
    categories = [{"id": k + 1, "name": f"class{k}", "frequency": frequencies[k % 3], "image_count": 1,
                   "instance_count": 1, "synset": f"class{k}.n.01"} for k in range(num_categories)]
    images, annotations, results = [], [], []
    scores = np.round(np.linspace(0.05, 0.95, 7), 2)  # few distinct scores: many ties
    for image_id in range(1, num_images + 1):
        present = [] if image_id % 7 == 0 else sorted(set(rng.integers(1, num_categories, size=3).tolist()))
        boxes = []
        for category in present:
            x, y = rng.uniform(0, SIZE / 2, size=2)
            for _ in range(int(rng.integers(1, 4))):
                w, h = rng.uniform(3, SIZE / 2, size=2)
                box = [float(x + rng.uniform(0, 4)), float(y + rng.uniform(0, 4)), float(w), float(h)]
                boxes.append((category, box))  # same-class objects overlap: several candidates
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "bbox": box, "area": float(w * h / 2), "segmentation": _polygon(*box)})
        absent = [c for c in range(1, num_categories + 1) if c not in present and c != num_categories]
        negatives = sorted(rng.choice(absent, size=min(3, len(absent)), replace=False).tolist())
        not_exhaustive = present[:1] if image_id % 3 == 0 else []
        images.append({"id": image_id, "height": SIZE, "width": SIZE, "neg_category_ids": negatives,
                       "not_exhaustive_category_ids": not_exhaustive,
                       "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg"})
        for _ in range(0 if image_id % 11 == 0 else detections_per_image):
            if boxes and rng.random() < 0.6:
                category, (x, y, w, h) = boxes[int(rng.integers(len(boxes)))]
                if rng.random() < 0.2:
                    category = int(rng.integers(1, num_categories + 1))
                box = [x + rng.normal(0, w / 8), y + rng.normal(0, h / 8), w * rng.uniform(0.8, 1.2), h]
            else:
                category = int(rng.choice(negatives)) if negatives and rng.random() < 0.5 else \
                    int(rng.integers(1, num_categories + 1))
                box = [*rng.uniform(0, SIZE / 2, size=2), *rng.uniform(2, SIZE / 2, size=2)]
            box = [float(value) for value in box]
            results.append({"image_id": image_id, "category_id": category, "bbox": box,
                            "score": float(rng.choice(scores)), "segmentation": _rle(box)})
    dataset = {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    return dataset, results
