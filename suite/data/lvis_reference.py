"""LVIS v1's training-set statistics from the metadata of the Detectron2 that is running, and the
derived baseline of its per-class image counts (`baselines/lvis_v1_image_counts.json`).

Detectron2 holds LVIS v1's 1203 categories with their frequency groups in
`detectron2.data.datasets.lvis_v1_categories.LVIS_CATEGORIES` (every version, v0.6 included),
and per-class training image counts as the metadata field `class_image_count` of
`detectron2.data.datasets.lvis.get_lvis_instances_meta("lvis_v1")` only in later versions (its
`lvis_v1_category_image_count.py`, e.g. a source tree on PYTHONPATH as SUITE_D2_SOURCE).
Neither holds the number of images or instances: those statistics are None here (the LVIS v1
annotations themselves give them: `suite data stats lvis_v1`).

The baseline is derived from a Detectron2 that has the counts (`suite data lvis-baseline`) and
committed with its provenance, so that a Detectron2 without them (v0.6, what CI installs) still
has LVIS's image-count statistics and the quantiles that shape the generated set's LVIS profile
(suite.data.synth.lvis_profile_spec). It keeps, per frequency group, the image count at
BASELINE_QUANTILES evenly spaced quantile levels (linear interpolation between order statistics,
numpy's default, rounded to 6 decimals) rather than the 1203 counts: enough to map the distribution onto a few dozen
classes, and no copy of Detectron2's table.
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from suite.data.lvis_format import FREQUENCY_GROUPS
from suite.data.stats import class_statistics
from suite.environment import code_version, repo_relative
from suite.errors import UserError
from suite.package_data import BASELINES_DIR

BASELINE_FILE = BASELINES_DIR / "lvis_v1_image_counts.json"
# LVIS v1 train's image and instance numbers as published (no Detectron2 metadata holds them).
PUBLISHED_SIZES_FILE = BASELINES_DIR / "lvis_v1_published_sizes.json"
DERIVE_COMMAND = "suite data lvis-baseline"
BASELINE_QUANTILES = 101  # levels 0, 0.01, ..., 1
# The statistics that per-class image counts give (suite.data.stats.STAT_KEYS minus those of the
# categories alone and of the annotations).
IMAGE_COUNT_KEYS = ("image_count_min", "image_count_max", "image_count_ratio", "image_count_sum", "rarest_pressure",
                    "median_rare_pressure", "classes_without_images")
# The metadata modules a baseline is derived from; their sha256 is its provenance.
SOURCE_MODULES = ("detectron2.data.datasets.lvis_v1_categories", "detectron2.data.datasets.lvis_v1_category_image_count")


def _metadata() -> Tuple[Dict[int, str], Optional[Dict[int, int]], str]:
    """(frequency group by category id, training image count by id or None, "Detectron2 <version>
    at <path>")."""
    import detectron2
    from detectron2.data.datasets.lvis import get_lvis_instances_meta
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    frequencies = {category["id"]: category["frequency"] for category in LVIS_CATEGORIES}
    class_image_count = get_lvis_instances_meta("lvis_v1").get("class_image_count")
    image_counts = None if class_image_count is None else {
        entry["id"]: entry["image_count"] for entry in class_image_count}
    return frequencies, image_counts, f"Detectron2 {detectron2.__version__} at {detectron2.__path__[0]}"


def lvis_v1_metadata_statistics(baseline_file: Path = BASELINE_FILE) -> Dict[str, Any]:
    """suite.data.stats's statistics of LVIS v1 train from Detectron2's metadata, plus "source":
    what they were read from. Where the metadata has no per-class image counts, the image-count
    statistics come from the committed baseline (when it exists), and "source" says so."""
    frequencies, image_counts, origin = _metadata()
    stats = class_statistics(frequencies, image_counts)
    if image_counts:
        stats["source"] = f"{origin}: categories, frequency groups and per-class image counts"
        return stats
    missing = "no per-class image counts (later Detectron2 versions have them, lvis_v1_category_image_count.py)"
    if not Path(baseline_file).is_file():
        stats["source"] = f"{origin}: categories and frequency groups; {missing}"
        return stats
    baseline = load_baseline(baseline_file)
    stats.update({key: baseline["statistics"][key] for key in IMAGE_COUNT_KEYS})
    derived = baseline["provenance"]
    stats["source"] = (f"{origin}: categories and frequency groups; {missing}, so the image-count statistics are "
                       f"{repo_relative(baseline_file)}'s, derived from Detectron2 {derived['detectron2_version']} "
                       f"on {derived['derived_at'][:10]}")
    return stats


def baseline_content(frequencies: Mapping[int, str], image_counts: Mapping[int, int]) -> Dict[str, Any]:
    """The baseline's data from each category's frequency group and training image count: the
    statistics (suite.data.stats.class_statistics) and, per group, "classes" and "quantiles" (the
    image count at levels i / (BASELINE_QUANTILES - 1), ascending). ValueError on inconsistent input."""
    statistics = class_statistics(frequencies, image_counts)
    levels = np.linspace(0.0, 1.0, BASELINE_QUANTILES)
    groups = {}
    for group in FREQUENCY_GROUPS:
        counts = np.array(sorted(image_counts[category_id] for category_id, value in frequencies.items()
                                 if value == group), dtype=float)
        if counts.size == 0:
            raise ValueError(f"no category in frequency group {group!r}")
        groups[group] = {"classes": int(counts.size), "quantiles": [round(float(value), 6) for value in np.quantile(counts, levels)]}
    return {"statistics": {key: statistics[key] for key in ("num_classes", "groups", *IMAGE_COUNT_KEYS)},
            "groups": groups}


def _sha256_of_module(name: str) -> Dict[str, str]:
    import importlib

    path = Path(importlib.import_module(name).__file__)
    return {"module": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def derive_baseline() -> Dict[str, Any]:
    """The baseline from the running Detectron2's metadata, with its provenance (command, Detectron2
    version, path and commit where it is a git checkout, each metadata file's sha256, this
    repository's commit, date). UserError where the metadata has no per-class image counts."""
    from suite.environment import detectron2_install

    frequencies, image_counts, origin = _metadata()
    if not image_counts:
        raise UserError(f"{origin} has no per-class LVIS v1 image counts (metadata class_image_count); run this with a "
                        "later Detectron2, e.g. a source tree of its main branch on PYTHONPATH (SUITE_D2_SOURCE, tox -e "
                        "d2-current)")
    install = detectron2_install()
    return {
        "about": "LVIS v1 train: per-class training image counts per frequency group, as quantiles, and the statistics "
                 "of suite data stats, derived from Detectron2's metadata by the command in provenance; "
                 "suite.data.lvis_reference says how.",
        **baseline_content(frequencies, image_counts),
        "provenance": {
            "command": DERIVE_COMMAND, "detectron2_version": install["version"],
            "detectron2_commit": install["commit"], "sources": [_sha256_of_module(name) for name in SOURCE_MODULES],
            "suite_commit": code_version()["git_commit"],
            "derived_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def same_baseline(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether two baselines hold the same data from the same metadata files (their dates, suite
    commits and Detectron2 paths may differ)."""
    def kept(baseline):
        return ({key: value for key, value in baseline.items() if key != "provenance"},
                baseline["provenance"]["sources"])
    return kept(one) == kept(other)


def load_baseline(path: Path = BASELINE_FILE) -> Dict[str, Any]:
    """The committed baseline; UserError naming the file (and the command that writes it) when it
    is missing or not a baseline."""
    try:
        baseline = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; write it with `{DERIVE_COMMAND}` on a Detectron2 that has LVIS v1's "
                        "image counts") from None
    except ValueError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(baseline, dict) or not {"statistics", "groups", "provenance"} <= set(baseline):
        raise UserError(f"{path}: not an LVIS image-count baseline (no statistics/groups/provenance)")
    return baseline


def lvis_v1_classes_per_image(baseline_file: Path = BASELINE_FILE, sizes_file: Path = PUBLISHED_SIZES_FILE) -> float:
    """LVIS v1 train's mean number of classes per image: the baseline's sum of per-class image
    counts over the published number of training images. UserError naming a missing or bad file."""
    baseline = load_baseline(baseline_file)
    try:
        train_images = json.loads(Path(sizes_file).read_text())["train_images"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{sizes_file}: no published train_images ({error})") from None
    return baseline["statistics"]["image_count_sum"] / train_images
