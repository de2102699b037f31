"""The report's "Proxy fidelity" section (suite.report.fidelity) on hand-made records: a data
set's statistics from its run records by hand, LVIS v1's from the committed baselines, the
per-arm means of the group balance, and a report that loads neither torch nor Detectron2."""

import subprocess
import sys

import pytest

from suite.data.lvis_reference import load_baseline
from suite.report import fidelity
from suite.report.records import gather

from test_report_generate import balance, run_record, table_rows, write, write_results


def test_record_statistics_by_hand():
    """run_record's classes: image counts 250, 150 (f), 30, 10 (c), 2, 1 (r); 887 instances; 40 images."""
    stats = fidelity.record_statistics(run_record("ce", 0, 20.0, 2.0, 15.0, 30.0))
    assert (stats["num_images"], stats["num_instances"], stats["instances_per_image"]) == (40, 887, 887 / 40)
    assert stats["image_count_sum"] == 443 and stats["groups"] == {"r": 2, "c": 2, "f": 2}
    assert stats["rarest_pressure"] == 443 and stats["median_rare_pressure"] == pytest.approx(443 / 1.5)


def test_lvis_column_is_the_committed_baselines():
    stats = fidelity.lvis_v1_statistics()
    baseline = load_baseline()["statistics"]
    assert all(stats[key] == value for key, value in baseline.items())
    assert (stats["num_images"], stats["num_instances"]) == (100170, 1270141)  # as published
    assert stats["rarest_pressure"] == 360952 and stats["num_classes"] == 1203


def test_section_tables(tmp_path):
    """Two data sets (synth, lvis_v1); CE's gradient ratio is the mean over its two seeds."""
    results = write_results(tmp_path / "results")
    write(results / "ce_1" / "run.json", run_record("ce", 1, 22.0, 4.0, 15.0, 30.0,
                                                    balance=balance([30, 20, 10, 4, 1, .5], [10, 10, 20, 20, 10, 10])))
    text = "\n".join(fidelity.fidelity_section(gather([results])))
    assert "- lvis_v1 #1: `data/lvis_v1`" in text and "- synth #2: `data/synth`" in text
    rows = {row[0]: row[1:] for row in table_rows(text, "## Proxy fidelity")}
    assert rows["pressure on the rarest class"] == ["443", "443", "3.61e+05"]
    assert rows["LVIS v1's pressure on the rarest class / this set's"] == ["815", "815", "1"]  # 360952 / 443
    assert rows["instances per image"][2] == "12.7"
    balance_rows = {(row[0], row[1]): row[2:] for row in table_rows(text, "What the classifier saw")}
    # r: seed 0 (1 + .5) / (30 + 30) = 0.025, seed 1 (1 + .5) / (10 + 10) = 0.075, mean 0.050;
    # c: 14 / 40 both; f: 90 / 20 = 4.5 and 50 / 20 = 2.5, mean 3.5
    assert balance_rows["synth #2", "ce"] == ["2", "n/a / n/a / n/a", "0.050 / 0.350 / 3.500"]
    assert balance_rows["lvis_v1 #1", "seesaw"][1:] == ["n/a / n/a / n/a", "n/a / n/a / n/a"]


def test_report_with_the_section_loads_neither_torch_nor_detectron2(tmp_path):
    results = write_results(tmp_path / "results")
    code = ("import sys; from suite.report import generate_report; "
            f"generate_report([{str(results)!r}], {str(tmp_path / 'out')!r}); "
            "print(sorted(name for name in ('torch', 'detectron2') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert "## Proxy fidelity" in (tmp_path / "out" / "README.md").read_text()
