"""LVIS v1's training-set statistics from the metadata of the Detectron2 that is running, read at
run time (no LVIS number is stored in this repository).

Detectron2 holds LVIS v1's 1203 categories with their frequency groups in
`detectron2.data.datasets.lvis_v1_categories.LVIS_CATEGORIES` (every version, v0.6 included),
and per-class training image counts as the metadata field `class_image_count` of
`detectron2.data.datasets.lvis.get_lvis_instances_meta("lvis_v1")` only in later versions (its
`lvis_v1_category_image_count.py`, e.g. a source tree on PYTHONPATH as SUITE_D2_SOURCE).
Neither holds the number of images or instances: those statistics are None here (the LVIS v1
annotations themselves give them: `suite data stats lvis_v1`).
"""

from typing import Any, Dict

from suite.data.stats import class_statistics


def lvis_v1_metadata_statistics() -> Dict[str, Any]:
    """suite.data.stats's statistics of LVIS v1 train from Detectron2's metadata, plus "source":
    what they were read from and what it lacks."""
    import detectron2
    from detectron2.data.datasets.lvis import get_lvis_instances_meta
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    frequencies = {category["id"]: category["frequency"] for category in LVIS_CATEGORIES}
    class_image_count = get_lvis_instances_meta("lvis_v1").get("class_image_count")
    image_counts = None if class_image_count is None else {
        entry["id"]: entry["image_count"] for entry in class_image_count}
    stats = class_statistics(frequencies, image_counts)
    origin = f"Detectron2 {detectron2.__version__} at {detectron2.__path__[0]}"
    stats["source"] = (f"{origin}: categories, frequency groups and per-class image counts" if image_counts else
                       f"{origin}: categories and frequency groups; no per-class image counts (later Detectron2 "
                       "versions have them, lvis_v1_category_image_count.py)")
    return stats
