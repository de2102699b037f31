"""The fast LVIS evaluator (`suite.evaluation.lvis_fast`) against the official `lvis` API, the
reference: the same precision array bit for bit, hence the same AP, AP50, AP75, APs, APm, APl,
APr, APc, APf and per-category AP, on generated hard cases (tests/eval_helpers.py: empty images,
categories without ground truth, negative and not-exhaustive categories, overlapping ground
truth, every area range, tied scores, the per-image limit, polygon and RLE masks) and on a set of
the suite's own generator; and the bootstrap's replicates equal the official ones."""

import copy
import json
import math

import numpy as np
import pytest
from lvis import LVIS
from pycocotools import mask as mask_utils

from suite.evaluation import bootstrap, lvis_fast
from suite.evaluation.evaluate import EVALUATORS, evaluate_lvis_results
from suite.evaluation.lvis_official import run_lvis_eval

from data_helpers import read, small_set
from eval_helpers import hard_case
from test_evaluation_bootstrap import noisy_results


def _without_boxes(results, task):
    """What `run_lvis_eval` evaluates: for "segm" the boxes are dropped (mask areas decide)."""
    return [{k: v for k, v in r.items() if not (task == "segm" and k == "bbox")} for r in results]


def _same(summary, reference):
    """Equal keys and values, NaN equal to NaN (no ground truth)."""
    return summary.keys() == reference.keys() and all(
        value == reference[key] or (math.isnan(value) and math.isnan(reference[key])) for key, value in summary.items())


@pytest.fixture(scope="module", params=[0, 1, 2])
def hard(request, tmp_path_factory):
    dataset, results = hard_case(request.param)
    path = tmp_path_factory.mktemp("hard") / "val.json"
    path.write_text(json.dumps(dataset))
    return path, dataset, results


@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("max_dets", [300, 25])
def test_precision_equals_the_official_bit_for_bit(hard, task, max_dets):
    path, dataset, results = hard
    official = run_lvis_eval(LVIS(str(path)), copy.deepcopy(results), task, max_dets)
    matches = lvis_fast.match(LVIS(str(path)), lvis_fast.detections_from_results(_without_boxes(results, task), task),
                              task, max_dets)
    precision = matches.precision()
    assert precision.shape == official.eval["precision"].shape
    assert np.array_equal(precision, official.eval["precision"])
    summary = lvis_fast.summarize_precision(precision, matches.freq_groups, matches.params)
    assert summary == {metric: official.results[metric] for metric in summary}
    # the case exercises what it claims: the greedy loop, ties, every area, the limit
    assert matches.num_greedy_groups > 0 and matches.num_tied_detections > 0
    assert all(official.results[metric] > 0 for metric in ("APs", "APm", "APl"))
    assert max_dets == 300 or max(np.bincount([r["image_id"] for r in results])) > max_dets


def test_rules_change_the_result(hard):
    """The federated rules and ties matter here (so the equality above can fail): dropping the
    not-exhaustive lists or the negative lists changes both evaluators alike."""
    path, dataset, results = hard
    base = evaluate_lvis_results(LVIS(str(path)), results, ["bbox"])["bbox"]["AP"]
    for field in ("not_exhaustive_category_ids", "neg_category_ids"):
        changed = copy.deepcopy(dataset)
        for image in changed["images"]:
            image[field] = []
        changed_path = path.with_name(f"no_{field}.json")
        changed_path.write_text(json.dumps(changed))
        fast = evaluate_lvis_results(LVIS(str(changed_path)), results, ["bbox"], evaluator="fast")["bbox"]
        official = evaluate_lvis_results(LVIS(str(changed_path)), results, ["bbox"], evaluator="official")["bbox"]
        assert _same(fast, official)
        assert fast["AP"] != base, field


def test_bootstrap_replicates_equal_the_official(hard):
    path, dataset, results = hard
    for task in ("bbox", "segm"):
        task_results = _without_boxes(results, task)
        official = bootstrap.replicates(LVIS(str(path)), copy.deepcopy(task_results), task, 25, 3, "official")
        fast = bootstrap.replicates(LVIS(str(path)), task_results, task, 25, 3, "fast")
        assert fast == official, task
        assert len(set(fast["AP"])) > 1


def test_run_evaluation_and_bootstrap_record_are_the_same_with_either_evaluator(tmp_path):
    """On a set of the suite's generator, as `suite train` and `suite study` evaluate it."""
    json_file = small_set(tmp_path / "set").split("val").json_file
    dataset = read(json_file)
    results = noisy_results(dataset, seed=4)
    fast = evaluate_lvis_results(json_file, results, evaluator="fast")
    official = evaluate_lvis_results(json_file, results, evaluator="official")
    assert set(fast) == {"bbox", "segm"}
    for task in fast:
        assert _same(fast[task], official[task]), task
    records = [bootstrap.bootstrap_record(json_file, results, resamples=20, seed=0, evaluator=evaluator)
               for evaluator in EVALUATORS]
    assert json.dumps(records[0]) == json.dumps(records[1])
    # the evaluation's own bootstrap, from the matching its metrics come from: the same record
    for evaluator in EVALUATORS:
        replicates = bootstrap.BootstrapReplicates(resamples=20, seed=0)
        evaluate_lvis_results(json_file, results, evaluator=evaluator, bootstrap=replicates)
        assert json.dumps(replicates.record(["standard"])) == json.dumps(records[0]), evaluator


def test_detections_nothing_to_evaluate(hard):
    """Every detection of a category the image is not annotated for: all filtered out."""
    path, dataset, results = hard
    unknown = [dict(r, category_id=len(dataset["categories"])) for r in results]  # never in gt nor negatives
    for evaluator in EVALUATORS:
        summary = evaluate_lvis_results(LVIS(str(path)), unknown, ["bbox"], evaluator=evaluator)["bbox"]
        assert summary["AP"] == 0.0 and summary["AP-class0"] == 0.0
        assert math.isnan(summary[f"AP-class{len(dataset['categories']) - 1}"])  # no ground truth


def test_bad_input_is_a_value_error(hard):
    path, dataset, results = hard
    with pytest.raises(ValueError, match="not in the ground truth"):
        lvis_fast.match(LVIS(str(path)), lvis_fast.detections_from_results(
            [dict(results[0], image_id=10 ** 6)], "bbox"), "bbox")
    with pytest.raises(ValueError, match="has no 'segmentation'"):
        lvis_fast.detections_from_results([{"image_id": 1, "category_id": 1, "score": 1.0, "bbox": [0, 0, 1, 1]}],
                                          "segm")
    zero_id = copy.deepcopy(dataset)
    zero_id["annotations"][0]["id"] = 0
    zero_path = path.with_name("zero_id.json")
    zero_path.write_text(json.dumps(zero_id))
    with pytest.raises(ValueError, match="id 0"):
        lvis_fast.match(LVIS(str(zero_path)), lvis_fast.detections_from_results(results, "bbox"), "bbox")
    with pytest.raises(ValueError, match="evaluator"):
        evaluate_lvis_results(LVIS(str(path)), results, evaluator="faster")


def test_detectron2_test_path_uses_the_fast_evaluator_and_equals_the_official(tmp_path):
    """`DefaultTrainer.test` (what `TEST.EVAL_PERIOD` calls) of the suite's trainer builds the
    evaluator of cfg.TEST.LVIS_EVALUATOR ("fast" by default); both give the same results."""
    from suite.data.register import register_synthetic_lvis
    from suite.evaluation.evaluate import LVISPerCategoryEvaluator
    from suite.harness.train import default_cfg
    from suite.harness.trainer import LongTailTrainer
    from test_evaluation_official import GroundTruthModel

    registered = register_synthetic_lvis(small_set(tmp_path / "set").root, prefix="test_evaluation_lvis_fast")
    cfg = default_cfg()
    assert cfg.TEST.LVIS_EVALUATOR == "fast"
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATASETS.TEST = (registered.val,)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    evaluator = LongTailTrainer.build_evaluator(cfg, registered.val)
    assert isinstance(evaluator, LVISPerCategoryEvaluator) and evaluator.evaluator == "fast"
    model = GroundTruthModel(registered.val, skip_labels=[0, 1])
    fast = LongTailTrainer.test(cfg, model)
    cfg.TEST.LVIS_EVALUATOR = "official"
    official = LongTailTrainer.test(cfg, model)
    assert set(fast) == {"bbox", "segm"}
    for task in fast:
        assert _same(fast[task], official[task]), task
    assert fast["bbox"]["AP"] < 100.0  # the skipped classes count


@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("max_dets", [300, 25])
def test_a_detection_of_no_area_is_left_out_after_the_limit_as_the_official(hard, task, max_dets):
    """The official `get_ann_ids` keeps areas > 0 only: an empty mask or a box of no width is no
    detection at all, though it took its place within the limit per image (a model's low scores
    give such masks)."""
    path, dataset, results = hard
    image = dataset["images"][0]
    empty = mask_utils.encode(np.zeros((image["height"], image["width"]), np.uint8, order="F"))
    empty["counts"] = empty["counts"].decode("ascii")
    present = sorted({a["category_id"] for a in dataset["annotations"] if a["image_id"] == image["id"]})
    flat = [{"image_id": image["id"], "category_id": category, "score": score, "bbox": [5.0, 5.0, 0.0, 8.0],
             "segmentation": empty} for category in present for score in (0.999, 0.5, 0.01)]
    with_flat = results + flat
    official = run_lvis_eval(LVIS(str(path)), copy.deepcopy(with_flat), task, max_dets)
    matches = lvis_fast.match(LVIS(str(path)), lvis_fast.detections_from_results(_without_boxes(with_flat, task), task),
                              task, max_dets)
    assert np.array_equal(matches.precision(), official.eval["precision"])
    alone = lvis_fast.match(LVIS(str(path)), lvis_fast.detections_from_results(_without_boxes(results, task), task),
                            task, max_dets)
    assert matches.num_evaluated_detections <= alone.num_evaluated_detections  # none of them counted
