"""LVIS evaluation: the metrics and the per-category AP of the run record.

`evaluate_lvis_results` evaluates predictions in the LVIS results format with one of
EVALUATORS: "fast" (`suite.evaluation.lvis_fast`, vectorized, equal to the official API:
docs/evaluation.md) or "official" (`LVISEval` of the `lvis` API, with `suite.evaluation.lvis_numpy2`'s
NumPy view for NumPy 2). It returns, per task ("bbox", "segm"), the nine metrics of docs/records.md and
each category's AP under the key "AP-<name>", as Detectron2's COCOEvaluator reports
per-category AP. `LVISPerCategoryEvaluator` is Detectron2's `LVISEvaluator` with that
evaluation, so `inference_on_dataset` and `DefaultTrainer.test` (also from `TEST.EVAL_PERIOD`)
give the same dict. `metrics_record` and `per_category_record` turn it into the run record's fields.

Units and conventions: AP in percent (0-100). Where the `lvis` API has no value (-1: no ground
truth in that group, area range or category) the result is NaN, which the run record writes as
null. A category's AP is the mean of its precision over the 10 IoU thresholds and 101 recall
points, all areas - the quantity LVIS averages into AP, APr, APc and APf. Detectron2 labels are
category id - 1, as `suite.data.register` registers every set.
"""

import itertools
import logging
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from detectron2.data import build_detection_test_loader
from detectron2.evaluation import LVISEvaluator, inference_on_dataset
from lvis import LVIS, LVISEval, LVISResults

from suite.evaluation import lvis_fast, lvis_numpy2
from suite.records import write_json_atomic
from suite.schema import AP_METRICS, TASKS

LVIS_MAX_DETS = lvis_fast.LVIS_MAX_DETS  # LVIS's official limit of detections per image
EVALUATORS = ("fast", "official")
DEFAULT_EVALUATOR = "fast"

logger = logging.getLogger("suite.eval")


def _percent(value: float) -> float:
    return float("nan") if value == -1 else float(value) * 100


def run_lvis_eval(lvis_gt: LVIS, results: Sequence[dict], task: str, max_dets: int = LVIS_MAX_DETS) -> LVISEval:
    """Run the official evaluation of `results` (LVIS results format: dicts with image_id,
    category_id, score and bbox [x, y, w, h] and/or an RLE segmentation; not modified) for
    `task` "bbox" or "segm"; return the evaluated `LVISEval`. `results` must not be empty.
    For "segm" boxes are dropped so that the mask area decides small/medium/large, as
    Detectron2's LVISEvaluator does."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    drop = {"bbox"} if task == "segm" else set()
    results = [{key: value for key, value in result.items() if key not in drop} for result in results]
    lvis_numpy2.install()
    lvis_eval = LVISEval(lvis_gt, LVISResults(lvis_gt, results, max_dets=max_dets), task)
    lvis_eval.run()
    return lvis_eval


def summarize(lvis_eval: LVISEval) -> Dict[str, float]:
    """The nine metrics and "AP-<name>" for each category of an evaluated `LVISEval`."""
    summary = {metric: _percent(lvis_eval.get_results()[metric]) for metric in AP_METRICS}
    names = [lvis_eval.lvis_gt.cats[category_id]["name"] for category_id in lvis_eval.params.cat_ids]
    summary.update(_per_category(lvis_eval.eval["precision"], lvis_eval.params.area_rng_lbl.index("all"), names))
    return summary


def _per_category(precision: np.ndarray, all_areas: int, names: Sequence[str]) -> Dict[str, float]:
    """"AP-<name>" per category of a (iou thresholds, recall points, categories, areas) precision."""
    summary = {}
    for index, name in enumerate(names):
        values = precision[:, :, index, all_areas]
        values = values[values > -1]
        summary[f"AP-{name}"] = float(np.mean(values)) * 100 if values.size else float("nan")
    return summary


def summarize_fast(lvis_gt: LVIS, results: Sequence[dict], task: str,
                   max_dets: int = LVIS_MAX_DETS) -> Dict[str, float]:
    """`summarize(run_lvis_eval(...))` computed by `suite.evaluation.lvis_fast` (the same numbers)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    matches = lvis_fast.match(lvis_gt, lvis_fast.detections_from_results(results, task), task, max_dets)
    precision = matches.precision()
    metrics = lvis_fast.summarize_precision(precision, matches.freq_groups, matches.params)
    summary = {metric: _percent(metrics[metric]) for metric in AP_METRICS}
    names = [lvis_gt.cats[category_id]["name"] for category_id in matches.params.cat_ids]
    summary.update(_per_category(precision, matches.params.area_rng_lbl.index("all"), names))
    return summary


def evaluate_lvis_results(lvis_gt: Union[LVIS, str, Path], results: Sequence[dict],
                          tasks: Optional[Iterable[str]] = None,
                          max_dets: int = LVIS_MAX_DETS,
                          evaluator: str = DEFAULT_EVALUATOR) -> Dict[str, Dict[str, float]]:
    """{task: summary} for `tasks` (default: "bbox", and "segm" if any result has a mask).
    `lvis_gt`: the ground truth as an `LVIS` or the path of its JSON; `evaluator`: one of
    EVALUATORS. With no results every value is NaN (Detectron2's LVISEvaluator does the same)."""
    check_evaluator(evaluator)
    if not isinstance(lvis_gt, LVIS):
        lvis_gt = LVIS(str(lvis_gt))
    if tasks is None:
        tasks = TASKS if any("segmentation" in result for result in results) else ("bbox",)
    names = [lvis_gt.cats[category_id]["name"] for category_id in sorted(lvis_gt.cats)]
    evaluation = {}
    for task in sorted(tasks):
        if not results:
            logger.warning("No predictions to evaluate: every %s metric is NaN", task)
            evaluation[task] = {key: float("nan") for key in [*AP_METRICS, *(f"AP-{name}" for name in names)]}
            continue
        evaluation[task] = summarize_fast(lvis_gt, results, task, max_dets) if evaluator == "fast" else \
            summarize(run_lvis_eval(lvis_gt, results, task, max_dets))
        logger.info("%s: %s", task, "  ".join(f"{metric} {evaluation[task][metric]:.1f}" for metric in AP_METRICS))
    return evaluation


def check_evaluator(evaluator: str) -> None:
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")


class LVISPerCategoryEvaluator(LVISEvaluator):
    """Detectron2's `LVISEvaluator` whose results also hold each category's AP ("AP-<name>" per
    task), whose evaluation runs on NumPy 2, and which evaluates with `evaluator` (one of
    EVALUATORS; "fast" by default). A drop-in for `LVISEvaluator` (same arguments, plus
    `evaluator`). Like its base it writes `lvis_instances_results.json` (with category ids, not
    labels) to `output_dir`."""

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *,
                 max_dets_per_image=None, evaluator: str = DEFAULT_EVALUATOR):
        check_evaluator(evaluator)
        super().__init__(dataset_name, tasks, distributed, output_dir, max_dets_per_image=max_dets_per_image)
        self.evaluator = evaluator

    def _eval_predictions(self, predictions):
        lvis_results = list(itertools.chain(*[prediction["instances"] for prediction in predictions]))
        for result in lvis_results:
            result["category_id"] += 1  # label -> LVIS category id
        if self._output_dir:
            write_json_atomic(Path(self._output_dir) / "lvis_instances_results.json", lvis_results)
        if not self._do_evaluation:
            logger.info("%s has no annotations: nothing to evaluate", self._metadata.json_file)
            return
        self._results.update(evaluate_lvis_results(
            self._lvis_api, lvis_results, self._tasks, self._max_dets_per_image or LVIS_MAX_DETS, self.evaluator))


def build_lvis_evaluator(dataset_name: str, output_dir: Optional[str] = None,
                         max_dets: int = LVIS_MAX_DETS, distributed: bool = True,
                         evaluator: str = DEFAULT_EVALUATOR):
    """A `LVISPerCategoryEvaluator` for a registered data set (its metadata needs `json_file`)."""
    return LVISPerCategoryEvaluator(dataset_name, distributed=distributed, output_dir=output_dir,
                                    max_dets_per_image=max_dets, evaluator=evaluator)


def evaluate_model(cfg, model, dataset_name: str, output_dir: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """Run `model` (eval mode is the caller's) over the registered `dataset_name` with the test
    loader of `cfg` and evaluate with cfg.TEST.LVIS_EVALUATOR (the plugin's key; "fast" in a
    config without it); returns {task: summary} (empty on
    ranks other than 0)."""
    evaluator = build_lvis_evaluator(dataset_name, output_dir, cfg.TEST.DETECTIONS_PER_IMAGE,
                                     evaluator=cfg.TEST.get("LVIS_EVALUATOR", DEFAULT_EVALUATOR))
    return inference_on_dataset(model, build_detection_test_loader(cfg, dataset_name), evaluator) or {}


def _none_if_nan(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else value


def metrics_record(evaluation: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, Optional[float]]]:
    """The run record's `metrics`: {"bbox": {...}, "segm": {...}} with the nine metrics, NaN as
    None; a task that was not evaluated has every metric None."""
    return {task: {metric: _none_if_nan(evaluation.get(task, {}).get(metric)) for metric in AP_METRICS}
            for task in TASKS}


def per_category_record(evaluation: Dict[str, Dict[str, float]], categories: Sequence[dict]) -> List[dict]:
    """The run record's `per_category`: for each category (dicts with id, name, frequency,
    image_count, instance_count: a registered set's `lvis_categories` metadata) its bbox and
    segm AP, None where the category has no ground truth in the evaluated set."""
    return [{
        "id": category["id"], "name": category["name"], "frequency": category["frequency"],
        "image_count": category.get("image_count"), "instance_count": category.get("instance_count"),
        "bbox_AP": _none_if_nan(evaluation.get("bbox", {}).get(f"AP-{category['name']}")),
        "segm_AP": _none_if_nan(evaluation.get("segm", {}).get(f"AP-{category['name']}")),
    } for category in sorted(categories, key=lambda category: category["id"])]
