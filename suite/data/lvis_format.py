"""Reading and checking LVIS-format annotation files (LVIS v1: https://www.lvisdataset.org).

What is checked is what Detectron2's loader and the `lvis` evaluator rely on; a file that fails
gives a `UserError` with one line naming the file and the first problem, instead of a
KeyError or an assertion deep inside either library.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

from suite.errors import UserError

FREQUENCY_GROUPS = ("r", "c", "f")
IMAGE_KEYS = ("id", "height", "width", "coco_url", "neg_category_ids", "not_exhaustive_category_ids")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "segmentation")
CATEGORY_KEYS = ("id", "name", "frequency")


def read_lvis_json(path: Path) -> Dict[str, Any]:
    """Load and check an LVIS-format file; return its top-level dict."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    try:
        dataset = json.loads(text)
    except ValueError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    problem = lvis_format_problem(dataset)
    if problem:
        raise UserError(f"{path}: not an LVIS-format annotation file: {problem}")
    return dataset


def _missing(record: Any, keys) -> List[str]:
    if not isinstance(record, dict):
        return ["(not an object)"]
    return [key for key in keys if key not in record]


def lvis_format_problem(dataset: Any) -> str:
    """The first reason `dataset` is not usable LVIS format, or "" when it is.

    Required: lists `images`, `annotations`, `categories`; category ids exactly 1..K (Detectron2
    maps id to label id - 1); each category's `frequency` in r/c/f; the image, annotation and
    category keys above; annotations on known images and categories, with non-empty polygon
    lists of at least 3 points each (Detectron2's LVIS loader reads polygons only)."""
    if not isinstance(dataset, dict):
        return "the top level is not a JSON object"
    missing = _missing(dataset, ("images", "annotations", "categories"))
    if missing:
        return f"no {', '.join(repr(key) for key in missing)} at the top level"
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset[key], list):
            return f"{key!r} is not a list"
    categories = dataset["categories"]
    if not categories:
        return "no categories"
    for category in categories:
        missing = _missing(category, CATEGORY_KEYS)
        if missing:
            return f"category {category.get('id') if isinstance(category, dict) else category!r} lacks {missing[0]!r}"
        if category["frequency"] not in FREQUENCY_GROUPS:
            return f"category {category['id']} has frequency {category['frequency']!r}, not r/c/f"
    category_ids = sorted(category["id"] for category in categories)
    if category_ids != list(range(1, len(categories) + 1)):
        return f"category ids are not 1..{len(categories)}"
    image_ids = set()
    for image in dataset["images"]:
        missing = _missing(image, IMAGE_KEYS)
        if missing:
            return f"image {image.get('id') if isinstance(image, dict) else image!r} lacks {missing[0]!r}"
        image_ids.add(image["id"])
    if len(image_ids) != len(dataset["images"]):
        return "image ids are not unique"
    annotation_ids = set()
    for annotation in dataset["annotations"]:
        missing = _missing(annotation, ANNOTATION_KEYS)
        if missing:
            return f"annotation {annotation.get('id') if isinstance(annotation, dict) else annotation!r} lacks {missing[0]!r}"
        where = f"annotation {annotation['id']}"
        if annotation["image_id"] not in image_ids:
            return f"{where} is on unknown image {annotation['image_id']!r}"
        if not 1 <= annotation["category_id"] <= len(categories):
            return f"{where} has unknown category {annotation['category_id']!r}"
        segmentation = annotation["segmentation"]
        if (not isinstance(segmentation, list) or not segmentation
                or any(not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                       for polygon in segmentation)):
            return f"{where}: segmentation is not a non-empty list of polygons of >= 3 points"
        annotation_ids.add(annotation["id"])
    if len(annotation_ids) != len(dataset["annotations"]):
        return "annotation ids are not unique"
    return ""
