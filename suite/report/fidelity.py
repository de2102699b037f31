"""The report's "Proxy fidelity" section: each data set of the recorded runs beside LVIS v1 train
(suite.data.stats's statistics), and what the classifier saw per frequency group on it
(suite.report.group_balance), mean over seeds per arm.

A data set's statistics come from its run records (`dataset.num_train_images` and `per_category`:
each class's frequency group and training image and instance counts), so the report needs neither
the data set's files nor Detectron2. LVIS v1's come from the committed baselines
(`baselines/lvis_v1_image_counts.json`, derived from Detectron2's metadata; training images and
instances as published, `baselines/lvis_v1_published_sizes.json`), so the committed report is the
same on every Detectron2.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from suite.data.lvis_format import FREQUENCY_GROUPS
from suite.data.lvis_reference import BASELINE_FILE, PUBLISHED_SIZES_FILE, load_baseline
from suite.data.stats import STAT_KEYS, STAT_LABELS, class_statistics, format_value
from suite.report.group_balance import balance_rows
from suite.report.records import Records
from suite.report.tables import markdown


def record_statistics(record: Dict[str, Any]) -> Dict[str, Any]:
    """STAT_KEYS of a run's training set, from its run record."""
    categories = record["per_category"]
    stats = class_statistics({category["id"]: category["frequency"] for category in categories},
                             {category["id"]: category["image_count"] for category in categories})
    num_images = record["dataset"]["num_train_images"]
    num_instances = sum(category["instance_count"] for category in categories)
    stats.update({"num_images": num_images, "num_instances": num_instances,
                  "instances_per_image": num_instances / num_images if num_images else None})
    return stats


def lvis_v1_statistics(baseline_file: Path = BASELINE_FILE, sizes_file: Path = PUBLISHED_SIZES_FILE) -> Dict[str, Any]:
    """STAT_KEYS of LVIS v1 train from the committed baselines."""
    stats = {key: None for key in STAT_KEYS}
    stats.update(load_baseline(baseline_file)["statistics"])
    sizes = json.loads(Path(sizes_file).read_text())
    stats.update({"num_images": sizes["train_images"], "num_instances": sizes["train_instances"],
                  "instances_per_image": sizes["train_instances"] / sizes["train_images"]})
    return stats


def datasets(records: Records) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(name, path, statistics) per data set (name and path) of the run records, sorted; the
    statistics of its first record by path (its runs share the training set)."""
    found: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for _, record in records.runs:
        key = (str(record["dataset"]["name"]), str(record["dataset"].get("path")))
        if key not in found:
            found[key] = record_statistics(record)
    return [(name, path, stats) for (name, path), stats in sorted(found.items())]


def statistics_table(columns: Sequence[Tuple[str, Dict[str, Any]]], lvis: Dict[str, Any]) -> str:
    """Markdown: one row per statistic, one column per (label, statistics), LVIS v1 last, and how
    many times milder than LVIS's each set's pressures are."""
    every = [*columns, ("LVIS v1 train", lvis)]
    rows = [[STAT_LABELS[key], *(format_value(stats.get(key)) for _, stats in every)] for key in STAT_KEYS]
    for key in ("rarest_pressure", "median_rare_pressure"):
        rows.append([f"LVIS v1's {STAT_LABELS[key]} / this set's",
                     *(format_value(lvis[key] / stats[key] if stats.get(key) else None) for _, stats in columns), "1"])
    return markdown(["statistic", *(label for label, _ in every)], rows)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def balance_table(rows: Sequence[Dict[str, Any]], labels: Dict[Tuple[str, str], str]) -> str:
    """Markdown: per data set (its label) and arm, the runs and the mean over them of the foreground
    RoI share (%) and the positive / negative classifier gradient ratio per group r / c / f."""
    grouped: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((labels[row["dataset"], str(row["dataset_path"])], row["arm"]), []).append(row)
    table = []
    for (label, arm), runs in sorted(grouped.items()):
        shares = [_mean([run[f"share_{group}"] for run in runs]) for group in FREQUENCY_GROUPS]
        ratios = [_mean([run[f"ratio_{group}"] for run in runs]) for group in FREQUENCY_GROUPS]
        table.append([label, arm, str(len(runs)),
                      " / ".join("n/a" if share is None else f"{100 * share:.1f}" for share in shares),
                      " / ".join("n/a" if ratio is None else f"{ratio:.3f}" for ratio in ratios)])
    return markdown(["data set", "arm", "runs", "fg RoIs % r / c / f", "pos/neg grad r / c / f"], table)


def fidelity_section(records: Records) -> List[str]:
    """## Proxy fidelity (README lines); nothing without run records."""
    found = datasets(records)
    if not found:
        return []
    labels = {(name, path): f"{name} #{index}" for index, (name, path, _) in enumerate(found, start=1)}
    lines = ["## Proxy fidelity", "",
             "How LVIS-like each data set of these runs is (docs/data-stats.md): its training split's statistics "
             "from its run records, beside LVIS v1 train from the committed baselines "
             "(`baselines/lvis_v1_image_counts.json`, derived from Detectron2's metadata; training images and "
             "instances as published, `baselines/lvis_v1_published_sizes.json`). Pressure on a class: the sum over "
             "classes of their training image counts / its image count. Data sets:", ""]
    lines += [f"- {labels[name, path]}: `{path}`" for name, path, _ in found] + [""]
    lines += [statistics_table([(labels[name, path], stats) for name, path, stats in found], lvis_v1_statistics()), ""]
    lines += ["What the classifier saw per frequency group, mean over the runs of each arm "
              "(`python -m suite.report.group_balance` per run): the group's share of the sampled foreground RoIs "
              "(Seesaw runs whose last checkpoint is kept, else n/a) and the sum of its classes' positive over "
              "negative classifier gradient (runs that recorded it).", "",
              balance_table(balance_rows(records), labels), ""]
    return lines
