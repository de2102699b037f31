"""How long-tailed a training set is: the statistics `suite data stats` puts beside LVIS v1's.

Every statistic is of the training split and uses LVIS's conventions: a class's image count is
the number of training images holding at least one of its instances (LVIS's `image_count`, here
counted from the annotations), its group the category's `frequency` ("r"/"c"/"f").

    num_classes, num_images, num_instances, instances_per_image (mean over all training images)
    groups                 {"r": classes, "c": ..., "f": ...}
    image_count_min/max    the per-class image-count range; image_count_ratio = max / min
    image_count_sum        sum over classes of their image counts
    rarest_pressure        image_count_sum / image_count_min: how many class-image occurrences
                           of other classes the rarest class is up against
    median_rare_pressure   image_count_sum / the median image count of the rare classes
    classes_without_images classes with no training image (then min, ratio and rarest_pressure
                           are None: the set cannot train them)

A statistic a source cannot give is None (LVIS v1 from Detectron2's metadata holds no image or
instance numbers; Detectron2 v0.6 holds no per-class image counts: suite.data.lvis_reference).
"""

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from suite.data.layout import LVIS_V1, dataset_split
from suite.data.lvis_format import FREQUENCY_GROUPS, read_lvis_json
from suite.errors import UserError

STAT_KEYS = ("num_classes", "num_images", "num_instances", "instances_per_image", "groups", "image_count_min",
             "image_count_max", "image_count_ratio", "image_count_sum", "rarest_pressure", "median_rare_pressure",
             "classes_without_images")

# How a table names each statistic.
STAT_LABELS = {
    "num_classes": "classes", "num_images": "training images", "num_instances": "training instances",
    "instances_per_image": "instances per image", "groups": "classes rare / common / frequent",
    "image_count_min": "images per class, min", "image_count_max": "images per class, max",
    "image_count_ratio": "images per class, max / min", "image_count_sum": "sum of images per class",
    "rarest_pressure": "pressure on the rarest class", "median_rare_pressure": "pressure on the median rare class",
    "classes_without_images": "classes without training images",
}


def class_statistics(frequencies: Mapping[int, str], image_counts: Optional[Mapping[int, int]]) -> Dict[str, Any]:
    """The per-class statistics from each category id's frequency group ("r"/"c"/"f") and, when
    known, its training image count (`image_counts`, the same ids; None: unknown, those
    statistics are None). ValueError if the ids differ, a group is not r/c/f or a count is negative."""
    if not frequencies:
        raise ValueError("no categories")
    bad_group = [category_id for category_id, group in frequencies.items() if group not in FREQUENCY_GROUPS]
    if bad_group:
        raise ValueError(f"category {bad_group[0]} has frequency {frequencies[bad_group[0]]!r}, not r/c/f")
    stats: Dict[str, Any] = {key: None for key in STAT_KEYS}
    stats["num_classes"] = len(frequencies)
    stats["groups"] = {group: sum(1 for value in frequencies.values() if value == group) for group in FREQUENCY_GROUPS}
    if image_counts is None:
        return stats
    if set(image_counts) != set(frequencies):
        raise ValueError(f"image counts for {len(image_counts)} category ids, frequencies for {len(frequencies)}: "
                         "not the same categories")
    if any(count < 0 for count in image_counts.values()):
        raise ValueError("a negative image count")
    counts = list(image_counts.values())
    total = sum(counts)
    rare = [image_counts[category_id] for category_id, group in frequencies.items() if group == "r"]
    median_rare = statistics.median(rare) if rare else None
    lowest = min(counts)
    stats.update({
        "image_count_min": lowest,
        "image_count_max": max(counts),
        "image_count_ratio": max(counts) / lowest if lowest else None,
        "image_count_sum": total,
        "rarest_pressure": total / lowest if lowest else None,
        "median_rare_pressure": total / median_rare if median_rare else None,
        "classes_without_images": sum(1 for count in counts if count == 0),
    })
    return stats


def training_set_statistics(train: Mapping[str, Any]) -> Dict[str, Any]:
    """All STAT_KEYS of an LVIS-format training file's content (checked by
    suite.data.lvis_format.read_lvis_json)."""
    images_of = defaultdict(set)
    for annotation in train["annotations"]:
        images_of[annotation["category_id"]].add(annotation["image_id"])
    frequencies = {category["id"]: category["frequency"] for category in train["categories"]}
    stats = class_statistics(frequencies, {category_id: len(images_of[category_id]) for category_id in frequencies})
    num_images, num_instances = len(train["images"]), len(train["annotations"])
    stats.update({"num_images": num_images, "num_instances": num_instances,
                  "instances_per_image": num_instances / num_images if num_images else None})
    return stats


def dataset_statistics(dataset: str) -> Dict[str, Any]:
    """The statistics of a data set's training split, plus "source" (the file read). `dataset`:
    the folder of a set written by `suite data synth` (or laid out as one), or "lvis_v1" (its
    training annotations under $DETECTRON2_DATASETS). UserError naming the file if it is missing
    or not LVIS format."""
    if dataset != LVIS_V1 and not Path(dataset).is_dir():
        raise UserError(f"{dataset}: no such data set folder (write one with: suite data synth --out {dataset})")
    train_json = dataset_split(dataset, "train").json_file
    try:
        stats = training_set_statistics(read_lvis_json(train_json))
    except ValueError as error:
        raise UserError(f"{train_json}: {error}") from None
    stats["source"] = f"training annotations {train_json}"
    return stats


def format_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table: one line per statistic, one column per data set (`columns[i]` heads
    `rows[i]`); None is "n/a"."""
    lines = [["statistic", *columns]]
    for key in STAT_KEYS:
        lines.append([STAT_LABELS[key], *(format_value(row.get(key)) for row in rows)])
    widths = [max(len(line[index]) for line in lines) for index in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                      for index, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        return " / ".join(format_value(value[group]) for group in FREQUENCY_GROUPS)
    if isinstance(value, float):
        return f"{value:.2e}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)
