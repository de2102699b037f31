"""What a run's classifier saw, per frequency group ("r", "c", "f"): the group's share of the
sampled foreground RoIs and its accumulated positive over negative classifier gradient. Beside
`suite data stats` (how long-tailed the data is), these say how long-tailed the training signal was.

    foreground share   Seesaw's counts (`cum_samples`: sampled RoIs per label over the whole run,
                       background last, kept in the checkpoints), read from the run's last
                       checkpoint: the group's foreground RoIs / all foreground RoIs. Seesaw runs
                       only, and only where the checkpoint is kept (a study keeps model_final.pth).
    gradient ratio     the run record's `grad_balance` (`suite train --record-grad-balance`): the
                       sum of the group's pos_grad over the sum of its neg_grad (a ratio of sums,
                       so frequent classes within a group weigh more).

Labels: label j is the j-th category in order of LVIS id (docs/records.md); its group is that
category's `frequency` in the run record's `per_category`.

    python -m suite.report.group_balance --results results/study
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from suite.data.lvis_format import FREQUENCY_GROUPS
from suite.errors import UserError
from suite.report.paired import arm_name
from suite.report.records import Records, gather

SEESAW_COUNTS_KEY = "roi_heads.box_predictor.cls_loss.cum_samples"


def label_groups(record: Dict[str, Any]) -> List[str]:
    """The frequency group of each label 0..C-1 of a run record."""
    return [category["frequency"] for category in sorted(record["per_category"], key=lambda category: category["id"])]


def gradient_ratio_by_group(record: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """group -> sum of pos_grad / sum of neg_grad over its classes; None where the run recorded
    no gradient balance, the group has no class, or its negative sum is 0."""
    balance = record.get("grad_balance")
    if not balance:
        return {group: None for group in FREQUENCY_GROUPS}
    groups = label_groups(record)
    if len(balance["class_ids"]) != len(groups):
        raise ValueError(f"grad_balance has {len(balance['class_ids'])} classes, per_category {len(groups)}")
    ratios = {}
    for group in FREQUENCY_GROUPS:
        labels = [label for label in balance["class_ids"] if groups[label] == group]
        negative = sum(balance["neg_grad"][label] for label in labels)
        ratios[group] = sum(balance["pos_grad"][label] for label in labels) / negative if labels and negative else None
    return ratios


def foreground_share_by_group(counts: Sequence[int], groups: Sequence[str]) -> Dict[str, Optional[float]]:
    """group -> its share of the foreground RoIs; `counts`: C + 1 per-label RoI counts, background
    last (Seesaw's cum_samples), `groups`: the C labels' groups. None when no foreground RoI."""
    if len(counts) != len(groups) + 1:
        raise ValueError(f"{len(counts)} counts for {len(groups)} classes: expected C + 1 (background last)")
    foreground = sum(counts[:-1])
    return {group: (sum(count for count, of in zip(counts, groups) if of == group) / foreground if foreground else None)
            for group in FREQUENCY_GROUPS}


def seesaw_counts(run_dir: Path) -> Optional[List[int]]:
    """Seesaw's cum_samples in the checkpoint `run_dir/last_checkpoint` names; None when there is
    no such checkpoint or it holds no Seesaw counts (another loss). Loads torch only to read one."""
    pointer = Path(run_dir) / "last_checkpoint"
    if not pointer.is_file() or not (Path(run_dir) / pointer.read_text().strip()).is_file():
        return None
    import torch

    checkpoint = torch.load(Path(run_dir) / pointer.read_text().strip(), map_location="cpu", weights_only=True)
    counts = checkpoint.get("model", {}).get(SEESAW_COUNTS_KEY)
    return None if counts is None else [int(count) for count in counts.tolist()]


def group_balance_rows(results: Sequence[Path]) -> List[Dict[str, Any]]:
    """One row per run record under `results`: see balance_rows."""
    return balance_rows(gather(results))


def balance_rows(records: Records) -> List[Dict[str, Any]]:
    """One row per run record: dataset (name), dataset_path, arm, seed, path, and per group its
    foreground share ("share_r", ...) and gradient ratio ("ratio_r", ...), None where not known."""
    rows = []
    for path, record in records.runs:
        counts = seesaw_counts(Path(path).parent)
        shares = (foreground_share_by_group(counts, label_groups(record)) if counts is not None
                  else {group: None for group in FREQUENCY_GROUPS})
        ratios = gradient_ratio_by_group(record)
        row = {"dataset": record["dataset"]["name"], "dataset_path": record["dataset"].get("path"),
               "arm": arm_name(record), "seed": record["seed"], "path": path}
        row.update({f"share_{group}": shares[group] for group in FREQUENCY_GROUPS})
        row.update({f"ratio_{group}": ratios[group] for group in FREQUENCY_GROUPS})
        rows.append(row)
    return sorted(rows, key=lambda row: (row["dataset"], row["arm"], str(row["seed"])))


def _cell(value: Optional[float], digits: str) -> str:
    return "n/a" if value is None else format(value, digits)


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table: foreground share in percent, gradient ratio, per group r / c / f."""
    header = ["dataset", "arm", "seed", "fg RoIs % r / c / f", "pos/neg grad r / c / f"]
    lines = [header] + [[str(row["dataset"]), row["arm"], str(row["seed"]),
                         " / ".join(_cell(None if row[f"share_{g}"] is None else 100 * row[f"share_{g}"], ".1f")
                                    for g in FREQUENCY_GROUPS),
                         " / ".join(_cell(row[f"ratio_{g}"], ".3f") for g in FREQUENCY_GROUPS)] for row in rows]
    widths = [max(len(line[index]) for line in lines) for index in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.report.group_balance",
                                     description="Per frequency group: share of sampled foreground RoIs (Seesaw runs "
                                     "with a kept checkpoint) and positive/negative classifier gradient ratio.")
    parser.add_argument("--results", required=True, nargs="+", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        rows = group_balance_rows(args.results)
    except (UserError, ValueError) as error:
        print(f"group_balance: error: {error}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
