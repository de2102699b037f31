"""The validation-size figures of docs/harness.md ("The protocol, and why"): AP_r's bootstrap
standard error on a validation split, for a simulated detector, and the bootstrap's time.

    python scripts/simulate_bootstrap_se.py VAL_JSON [RESAMPLES] [RECALL]

The detector finds each ground-truth instance with probability RECALL (default 0.6; box and
mask shifted sideways by 8 % of the box width, score uniform in [0.3, 1]) and fills every image
up to 100 detections with random boxes of random classes (score uniform in [0, 0.6]). Prints the
time of `suite.evaluation.bootstrap.bootstrap_record` (RESAMPLES resamples, default 200, both tasks)
and the standard errors. A stand-in for a trained model, to size a split before training one.
"""

import json
import sys
import time

import numpy as np
from lvis import LVIS
from pycocotools import mask as mask_utils

from suite.evaluation import bootstrap
from suite.schema import GROUP_METRICS

DETECTIONS_PER_IMAGE = 100


def _rle(polygon, height, width):
    encoded = mask_utils.merge(mask_utils.frPyObjects(polygon, height, width))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def simulated_detections(dataset, recall, rng):
    num_classes = len(dataset["categories"])
    annotations = {}
    for annotation in dataset["annotations"]:
        annotations.setdefault(annotation["image_id"], []).append(annotation)
    results = []
    for image in dataset["images"]:
        height, width = image["height"], image["width"]
        detections = []
        for annotation in annotations.get(image["id"], []):
            if rng.random() < recall:
                x, y, w, h = annotation["bbox"]
                shift = rng.normal(0, 0.08 * w)
                polygon = (np.array(annotation["segmentation"][0]).reshape(-1, 2) + [shift, 0]).reshape(-1).tolist()
                detections.append({"image_id": image["id"], "category_id": annotation["category_id"],
                                   "bbox": [x + shift, y, w, h], "score": float(rng.uniform(0.3, 1)),
                                   "segmentation": _rle([polygon], height, width)})
        while len(detections) < DETECTIONS_PER_IMAGE:
            x, y = rng.uniform(0, width - 20, 2)  # square images
            w, h = rng.uniform(10, 40, 2)
            box = [x, y, x + w, y, x + w, y + h, x, y + h]
            detections.append({"image_id": image["id"], "category_id": int(rng.integers(1, num_classes + 1)),
                               "bbox": [x, y, w, h], "score": float(rng.uniform(0, 0.6)),
                               "segmentation": _rle([box], height, width)})
        results += detections
    return results


def main(argv):
    val_json = argv[0]
    resamples = int(argv[1]) if len(argv) > 1 else 200
    recall = float(argv[2]) if len(argv) > 2 else 0.6
    dataset = json.loads(open(val_json).read())
    results = simulated_detections(dataset, recall, np.random.default_rng(0))
    start = time.perf_counter()
    record = bootstrap.bootstrap_record(LVIS(val_json), results, resamples=resamples)
    print(f"{len(dataset['images'])} images, {len(results)} detections, {resamples} resamples x 2 tasks: "
          f"{time.perf_counter() - start:.1f} s")
    for task in ("bbox", "segm"):
        se = {metric: round(record["se"][task][metric], 2) for metric in GROUP_METRICS}
        print(f"{task}: SE {se}, mean APr {np.nanmean(record['replicates'][task]['APr']):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
