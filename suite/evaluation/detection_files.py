"""Detection files (the LVIS results format) read for a protocol, refused in one line where they
are not what the protocol evaluates.

LVIS's API silently keeps the 300 best detections of an image; the suite evaluates a file under a
protocol only when it holds what that protocol allows (`suite.evaluation.protocols`): at most
`max_dets_per_image` per image (the standard protocol: the model's own detections) and at most
`max_dets_per_category` per category (fixed, challenge2021: the pass with no limit per image,
`suite.evaluation.class_topk`). A file beyond a limit is the other pass's, or several files put
together, and its AP would silently depend on which detections the limit drops.
"""

import json
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence

from suite.evaluation.protocols import Protocol

REQUIRED_FIELDS = ("image_id", "category_id", "score")
RESULTS_FILE_NAME = "lvis_instances_results.json"  # Detectron2's LVISEvaluator's, in its output folder
CLASS_TOPK_FOLDER = "class_topk"  # the pass with no limit per image, in the evaluator's output folder
RUN_DETECTIONS = Path("inference") / RESULTS_FILE_NAME  # of a run: the model's own detections
RUN_CLASS_TOPK_DETECTIONS = Path("inference") / CLASS_TOPK_FOLDER / RESULTS_FILE_NAME  # and the best of each category


def read_detections(path: Path) -> List[dict]:
    """The results of the JSON file at `path`: a list of dicts with image_id, category_id, score
    and a bbox or segmentation. A ValueError naming the file where it is missing or not that."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such detection file")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON detection file ({error})") from None
    if not isinstance(results, list):
        raise ValueError(f"{path}: not LVIS results: a JSON list of detections, not a {type(results).__name__}")
    for index, result in enumerate(results):
        missing = [field for field in REQUIRED_FIELDS if not isinstance(result, dict) or field not in result]
        if missing or not ("bbox" in result or "segmentation" in result):
            raise ValueError(f"{path}: detection {index} is not an LVIS result: it needs image_id, category_id, "
                             f"score and a bbox or segmentation")
    return results


def check_limits(results: Sequence[dict], protocol: Protocol, source: str,
                 max_dets_per_image: Optional[int] = None) -> None:
    """A ValueError, naming `source`, the protocol and its limit, where `results` hold more
    detections of one image or one category than `protocol` allows. `max_dets_per_image`: the
    standard protocol's limit as evaluated (a config's TEST.DETECTIONS_PER_IMAGE), else the protocol's."""
    per_image = protocol.max_dets_per_image if max_dets_per_image is None or protocol.max_dets_per_image < 0 \
        else max_dets_per_image
    for limit, field, unit, whose in (
            (per_image, "image_id", "image", "a model's own detections; a pass with no limit per image is the "
             "fixed protocol's"),
            (protocol.max_dets_per_category, "category_id", "category", "the best of each category over the set, "
             "as suite eval writes them to inference/class_topk/")):
        if limit < 0 or not results:
            continue
        key, count = Counter(result[field] for result in results).most_common(1)[0]
        if count > limit:
            raise ValueError(f"{source}: {unit} {key} has {count:,} detections, but the {protocol.name} protocol "
                             f"evaluates at most {limit:,} per {unit} ({whose})")


def read_detections_for(path: Path, protocols: Sequence[Protocol], max_dets_per_image: Optional[int] = None
                        ) -> List[dict]:
    """The detections of the file at `path` (read_detections), once found within the limits of
    every one of `protocols` (check_limits, naming the file)."""
    results = read_detections(path)
    for protocol in protocols:
        check_limits(results, protocol, str(path), max_dets_per_image)
    return results
