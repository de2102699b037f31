"""LVIS-v1-val-shaped data (suite.bench.lvis_val_shape), the fast evaluator on it against the
official API, and `suite bench eval` end to end on a small size, down to the report."""

import json
import subprocess
import sys

import numpy as np
import pytest
from lvis import LVIS

from suite.cli import main
from suite.bench.lvis_val_shape import DETECTIONS_PER_IMAGE, as_results, lvis_v1_categories, lvis_val_shaped
from suite.evaluation import bootstrap
from suite.evaluation.evaluate import evaluate_lvis_results
from suite.evaluation.lvis_official import run_lvis_eval
from suite.report.readme import build_report


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    dataset, detections = lvis_val_shaped(80, seed=1, masks=True)
    path = tmp_path_factory.mktemp("shaped") / "val.json"
    path.write_text(json.dumps(dataset))
    return path, dataset, detections


def test_shape_is_lvis_v1_val_like(shaped):
    path, dataset, detections = shaped
    assert len(dataset["categories"]) == 1203
    frequencies = [c["frequency"] for c in dataset["categories"]]
    assert (frequencies.count("r"), frequencies.count("c"), frequencies.count("f")) == (337, 461, 405)
    assert len(detections) == 80 * DETECTIONS_PER_IMAGE
    assert np.all(np.bincount(detections.image_ids)[1:] == DETECTIONS_PER_IMAGE)
    assert 8 < len(dataset["annotations"]) / 80 < 18  # LVIS v1 val: 12.4 instances per image
    assert len(detections.segmentations) == len(detections)
    again, same = lvis_val_shaped(80, seed=1)
    assert again == dataset and np.array_equal(same.scores, detections.scores)


def test_categories_are_detectron2s_and_a_measuring_process_imports_neither_it_nor_torch():
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    assert lvis_v1_categories() == [{key: c[key] for key in ("id", "name", "frequency", "synset")}
                                    for c in sorted(LVIS_CATEGORIES, key=lambda c: c["id"])]
    code = ("import json, sys; from suite.bench.eval_scale import measure; "
            "[measure('bbox', 4, evaluator, 2, 1, 0) for evaluator in ('fast', 'official')]; "
            "print(json.dumps(sorted({'torch', 'detectron2'} & set(sys.modules))))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip().splitlines()[-1] == "[]"


def test_fast_equals_official_on_the_shaped_set(shaped):
    path, dataset, detections = shaped
    for task in ("bbox", "segm"):
        results = as_results(detections, task)
        fast = evaluate_lvis_results(LVIS(str(path)), results, [task], evaluator="fast")[task]
        official = evaluate_lvis_results(LVIS(str(path)), results, [task], evaluator="official")[task]
        assert fast.keys() == official.keys()
        assert all(fast[key] == official[key] or (fast[key] != fast[key] and official[key] != official[key])
                   for key in fast), task
        assert 0 < fast["AP"] < 100
    reps = bootstrap.fast_replicates(LVIS(str(path)), detections, "bbox", resamples=4, seed=0)
    lvis_eval = run_lvis_eval(LVIS(str(path)), as_results(detections, "bbox"), "bbox")
    assert reps == bootstrap.official_replicates(lvis_eval, bootstrap.resample_indices(80, 4, 0))


def test_suite_bench_eval_writes_records_the_report_shows(tmp_path):
    output = tmp_path / "bench" / "eval.json"
    finished = subprocess.run([sys.executable, "-m", "suite", "bench", "eval", "--sizes", "30", "60",
                               "--official-sizes", "30", "--tasks", "bbox", "--resamples", "3",
                               "--official-timed-resamples", "2", "--output", str(output)],
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    written = json.loads(output.read_text())
    assert written["kind"] == "bench_eval"
    records = {(r["evaluator"], r["num_images"]): r for r in written["records"]}
    assert set(records) == {("fast", 30), ("fast", 60), ("official", 30)}
    assert records[("fast", 30)]["AP"] == records[("official", 30)]["AP"]  # same data, same AP
    assert records[("official", 30)]["bootstrap_timed_resamples"] == 2
    assert all(r["peak_rss_gib"] > 0 and r["total_s"] > 0 for r in written["records"])
    # the other protocols, measured by the fast evaluator on the same data (boxes: fixed only)
    fixed = records[("fast", 30)]["metric_protocols"]["fixed"]
    assert set(records[("fast", 30)]["metric_protocols"]) == {"fixed"} and "metric_protocols" not in records[("official", 30)]
    assert fixed["total_s"] > 0 and 0 <= fixed["AP_pool"] <= 100
    assert records[("fast", 30)]["all_protocols_total_s"] > records[("fast", 30)]["total_s"]
    assert records[("fast", 30)]["all_protocols_peak_rss_gib"] >= records[("fast", 30)]["peak_rss_gib"]
    report = build_report([tmp_path / "bench"], tmp_path / "report")
    text = report.readme.read_text()
    assert "### LVIS evaluation at scale" in text and "eval_scaling.png" in report.figures
    assert not report.left_out
    # the other protocols' times beside the standard's, one row per fast measurement that timed them
    protocol_rows = [line for line in text.splitlines() if line.startswith("| E1 | bbox | ") and line.endswith("|")
                     and "×" in line]
    assert len(protocol_rows) == 2
    ratio = records[("fast", 30)]["all_protocols_total_s"] / records[("fast", 30)]["total_s"]
    assert f"| {ratio:.2f}× |" in protocol_rows[0]


def test_suite_bench_eval_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["bench", "eval", "--sizes", "0", "--output", str(tmp_path / "x.json")]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert main(["bench", "eval", "--resamples", "1", "--output", str(tmp_path / "x.json")]) == 2
    assert "--resamples" in capsys.readouterr().err
    assert main(["bench", "eval", "--protocols", "lvis2020", "--output", str(tmp_path / "x.json")]) == 2
    assert "--protocols" in capsys.readouterr().err


def test_eval_bench_measures_every_protocol_for_masks():
    """A fast mask measurement holds fixed and challenge2021 beside the standard protocol."""
    from suite.bench.eval_scale import measure

    record = measure("segm", 30, "fast", 3, 1, 0, ["standard", "fixed", "challenge2021"])
    assert set(record["metric_protocols"]) == {"fixed", "challenge2021"}
    challenge = record["metric_protocols"]["challenge2021"]
    assert set(challenge) >= {"evaluate_s", "bootstrap_s", "total_s", "AP", "APr", "APc", "APf"}
    assert "AP_pool" not in challenge and "AP_pool" in record["metric_protocols"]["fixed"]
    assert challenge["AP"] <= record["metric_protocols"]["fixed"]["AP"]  # boundary IoU <= mask IoU, same detections
    assert challenge["shares_candidates_with"] == "fixed" and "shares_candidates_with" not in \
        record["metric_protocols"]["fixed"]
