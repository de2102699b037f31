"""Per frequency group: the gradient ratio of a run record and the foreground share of Seesaw's
counts, against hand computations; runs of the committed study by hand."""

import json
from pathlib import Path

import pytest

from suite.report.group_balance import (foreground_share_by_group, gradient_ratio_by_group, group_balance_rows,
                                        label_groups, main)

STUDY = Path(__file__).resolve().parents[1] / "results" / "study"


def record(pos, neg, frequencies):
    return {"per_category": [{"id": index + 1, "frequency": frequency} for index, frequency in enumerate(frequencies)],
            "grad_balance": None if pos is None else {"class_ids": list(range(len(pos))), "pos_grad": pos,
                                                      "neg_grad": neg}}


def test_gradient_ratio_is_a_ratio_of_sums_per_group():
    # labels 0, 1 rare; 2 common; 3 frequent (per_category listed out of id order on purpose)
    run = record([1.0, 3.0, 2.0, 5.0], [4.0, 4.0, 8.0, 5.0], "rrcf")
    run["per_category"].reverse()
    assert label_groups(run) == ["r", "r", "c", "f"]
    assert gradient_ratio_by_group(run) == {"r": 0.5, "c": 0.25, "f": 1.0}  # (1 + 3) / (4 + 4), 2 / 8, 5 / 5
    assert gradient_ratio_by_group(record(None, None, "rcf")) == {"r": None, "c": None, "f": None}
    assert gradient_ratio_by_group(record([1.0, 2.0], [0.0, 2.0], "rf")) == {"r": None, "c": None, "f": 1.0}
    with pytest.raises(ValueError, match="grad_balance has 2 classes, per_category 3"):
        gradient_ratio_by_group(record([1.0, 2.0], [1.0, 1.0], "rcf"))


def test_foreground_share_leaves_background_out():
    assert foreground_share_by_group([1, 3, 4, 2, 90], ["r", "r", "c", "f"]) == {"r": 0.4, "c": 0.4, "f": 0.2}
    assert foreground_share_by_group([0, 0, 7], ["r", "f"]) == {"r": None, "c": None, "f": None}
    with pytest.raises(ValueError, match="expected C \\+ 1"):
        foreground_share_by_group([1, 2], ["r", "f"])


def test_committed_study_ratios_by_hand(capsys):
    rows = {(row["arm"], row["seed"]): row for row in group_balance_rows([STUDY])}
    run = json.loads((STUDY / "runs" / "ce" / "seed0" / "run.json").read_text())
    frequency = {category["id"]: category["frequency"] for category in run["per_category"]}
    balance = run["grad_balance"]
    for group in "rcf":
        labels = [label for label in balance["class_ids"] if frequency[label + 1] == group]
        expected = sum(balance["pos_grad"][j] for j in labels) / sum(balance["neg_grad"][j] for j in labels)
        assert rows["ce", 0][f"ratio_{group}"] == pytest.approx(expected)
        assert rows["ce", 0][f"share_{group}"] is None  # committed records keep no checkpoints
    assert main(["--results", str(STUDY)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(rows)
