"""LVIS evaluation: the metrics and the per-category AP of the run record.

`evaluate_lvis_results` evaluates predictions in the LVIS results format with one of
EVALUATORS: "fast" (`suite.evaluation.lvis_fast`, vectorized, equal to the official API:
docs/evaluation.md) or "official" (`LVISEval` of the `lvis` API, with `suite.evaluation.lvis_numpy2`'s
NumPy view for NumPy 2). It returns, per task ("bbox", "segm"), the nine metrics of docs/records.md and
each category's AP under the key "AP-<name>", as Detectron2's COCOEvaluator reports
per-category AP. Other protocols (`suite.evaluation.protocols`: "fixed", "challenge2021"; the fast
evaluator only) add their tasks under `suite.schema.result_key(task, protocol)`, e.g. "segm-fixed".
`LVISPerCategoryEvaluator` is Detectron2's `LVISEvaluator` with that evaluation, so
`inference_on_dataset` and `DefaultTrainer.test` (also from `TEST.EVAL_PERIOD`) give the same dict;
it evaluates the detections it is given (a model's, limited per image). Given a
`suite.evaluation.bootstrap.BootstrapReplicates`, either also bootstraps each result from the
matching its metrics come from (a run's bootstrap.json). `evaluate_model` gives the protocols
limited per category a pass of their own (`suite.evaluation.class_topk`).
`metrics_record`, `per_category_record` and `protocols_record` turn its dict into the run record's
fields.

Units and conventions: AP in percent (0-100). Where the `lvis` API has no value (-1: no ground
truth in that group, area range or category) the result is NaN, which the run record writes as
null. A category's AP is the mean of its precision over the 10 IoU thresholds and 101 recall
points, all areas - the quantity LVIS averages into AP, APr, APc and APf. Detectron2 labels are
category id - 1, as `suite.data.register` registers every set.
"""

import dataclasses
import itertools
import logging
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from detectron2.data import build_detection_test_loader
from detectron2.evaluation import LVISEvaluator, inference_on_dataset
from lvis import LVIS, LVISEval

from suite.evaluation import class_topk, lvis_fast, protocols as eval_protocols
from suite.evaluation.bootstrap import BootstrapReplicates
from suite.evaluation.detection_files import CLASS_TOPK_FOLDER, RESULTS_FILE_NAME, read_detections_for
from suite.evaluation.lvis_official import run_lvis_eval
from suite.records import write_json_atomic
from suite.schema import AP_METRICS, TASKS, result_key

LVIS_MAX_DETS = lvis_fast.LVIS_MAX_DETS  # LVIS's official limit of detections per image
EVALUATORS = ("fast", "official")
DEFAULT_EVALUATOR = "fast"

logger = logging.getLogger("suite.eval")


def _percent(value: float) -> float:
    return float("nan") if value == -1 else float(value) * 100


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


def _protocol(task: str, protocol: str, max_dets: int) -> eval_protocols.Protocol:
    """The protocol `protocol` for `task`, the standard one limited to `max_dets` per image."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    chosen = eval_protocols.get_protocol(protocol)
    return dataclasses.replace(chosen, max_dets_per_image=max_dets) if chosen.name == "standard" else chosen


def _summarize_matches(lvis_gt: LVIS, matches: lvis_fast.Matches, chosen: eval_protocols.Protocol) -> Dict[str, float]:
    """`summarize(run_lvis_eval(...))` from the fast evaluator's matches (`suite.evaluation.lvis_fast`:
    the same numbers); under another protocol, its metrics; and each category's AP."""
    precision = matches.precision()
    metrics = eval_protocols.summarize(matches, chosen, precision=precision)
    summary = {metric: _percent(value) for metric, value in metrics.items()}
    names = [lvis_gt.cats[category_id]["name"] for category_id in matches.params.cat_ids]
    summary.update(_per_category(precision, matches.params.area_rng_lbl.index("all"), names))
    return summary


def evaluate_lvis_results(lvis_gt: Union[LVIS, str, Path], results: Sequence[dict],
                          tasks: Optional[Iterable[str]] = None,
                          max_dets: int = LVIS_MAX_DETS,
                          evaluator: str = DEFAULT_EVALUATOR,
                          protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,),
                          bootstrap: Optional[BootstrapReplicates] = None) -> Dict[str, Dict[str, float]]:
    """{task: summary} for `tasks` (default: "bbox", and "segm" if any result has a mask) under
    each of `protocols` (key `suite.schema.result_key(task, protocol)`: the task itself for the
    standard protocol; a protocol evaluates the tasks it defines). `lvis_gt`: the ground truth as
    an `LVIS` or the path of its JSON; `evaluator`: one of EVALUATORS; `max_dets`: the standard
    protocol's limit per image; `bootstrap`, where given, gets the replicates of each result from
    the same matching. With no results every value is NaN (Detectron2's LVISEvaluator does the
    same) and nothing is bootstrapped."""
    check_evaluator(evaluator, protocols)
    if not isinstance(lvis_gt, LVIS):
        lvis_gt = LVIS(str(lvis_gt))
    if bootstrap is not None:
        bootstrap.for_images(lvis_gt.get_img_ids())
    if tasks is None:
        tasks = TASKS if any("segmentation" in result for result in results) else ("bbox",)
    names = [lvis_gt.cats[category_id]["name"] for category_id in sorted(lvis_gt.cats)]
    wanted = [(protocol, task) for protocol in protocols
              for task in sorted(set(tasks) & set(eval_protocols.get_protocol(protocol).tasks))]
    evaluation: Dict[str, Dict[str, float]] = {}
    if not results:
        for protocol, task in wanted:
            logger.warning("No predictions to evaluate: every %s metric is NaN", result_key(task, protocol))
            evaluation[result_key(task, protocol)] = {metric: float("nan") for metric in [
                *eval_protocols.get_protocol(protocol).metrics, *(f"AP-{name}" for name in names)]}
        return evaluation
    if evaluator == "fast":
        chosen = [(_protocol(task, protocol, max_dets), task) for protocol, task in wanted]
        for protocol, task, matches in eval_protocols.shared_matches(
                lvis_gt, chosen, lambda _, task: lvis_fast.detections_from_results(results, task)):
            evaluation[result_key(task, protocol.name)] = _summarize_matches(lvis_gt, matches, protocol)
            if bootstrap is not None:
                bootstrap.add(protocol.name, task, matches)
            _log(evaluation, task, protocol)
    else:
        for protocol, task in wanted:
            lvis_eval = run_lvis_eval(lvis_gt, results, task, max_dets)
            evaluation[result_key(task, protocol)] = summarize(lvis_eval)
            if bootstrap is not None:
                bootstrap.add_official(task, lvis_eval)
            _log(evaluation, task, eval_protocols.get_protocol(protocol))
    return evaluation


def _log(evaluation: Dict[str, Dict[str, float]], task: str, protocol: eval_protocols.Protocol) -> None:
    key = result_key(task, protocol.name)
    logger.info("%s: %s", key, "  ".join(f"{metric} {evaluation[key][metric]:.1f}" for metric in protocol.metrics))


def evaluate_detection_file(path: Path, val_json: Path, protocols: Sequence[str],
                            evaluator: str = DEFAULT_EVALUATOR) -> Dict[str, Dict[str, float]]:
    """`suite eval --detections`: the detections of the file at `path` on the validation set
    `val_json` under each of `protocols` (`evaluate_lvis_results`' dict), once the file is read and
    found within every protocol's limits (`suite.evaluation.detection_files`; a ValueError
    otherwise, before any evaluation)."""
    check_evaluator(evaluator, protocols)
    results = read_detections_for(path, [eval_protocols.get_protocol(name) for name in protocols])
    return evaluate_lvis_results(val_json, results, evaluator=evaluator, protocols=protocols)


def check_evaluator(evaluator: str, protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,)) -> None:
    """A ValueError unless `evaluator` is one of EVALUATORS and computes each of `protocols`."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    for protocol in protocols:
        eval_protocols.get_protocol(protocol)
        if evaluator == "official" and protocol != "standard":
            raise ValueError(f"the official evaluator (lvis 0.5.3) computes the standard protocol only, not {protocol!r}: "
                             f"use the fast evaluator")


class LVISPerCategoryEvaluator(LVISEvaluator):
    """Detectron2's `LVISEvaluator` whose results also hold each category's AP ("AP-<name>" per
    task), whose evaluation runs on NumPy 2, and which evaluates with `evaluator` (one of
    EVALUATORS; "fast" by default). A drop-in for `LVISEvaluator` (same arguments, plus
    `evaluator`, `protocols` and `bootstrap`: `evaluate_lvis_results`'). Like its base it writes
    `lvis_instances_results.json` (with category ids, not labels) to `output_dir`."""

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *,
                 max_dets_per_image=None, evaluator: str = DEFAULT_EVALUATOR,
                 protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,),
                 bootstrap: Optional[BootstrapReplicates] = None):
        check_evaluator(evaluator, protocols)
        super().__init__(dataset_name, tasks, distributed, output_dir, max_dets_per_image=max_dets_per_image)
        self.evaluator = evaluator
        self.protocols = tuple(protocols)
        self.bootstrap = bootstrap

    def _eval_predictions(self, predictions):
        lvis_results = list(itertools.chain(*[prediction["instances"] for prediction in predictions]))
        for result in lvis_results:
            result["category_id"] += 1  # label -> LVIS category id
        if self._output_dir:
            write_json_atomic(Path(self._output_dir) / RESULTS_FILE_NAME, lvis_results)
        if not self._do_evaluation:
            logger.info("%s has no annotations: nothing to evaluate", self._metadata.json_file)
            return
        self._results.update(evaluate_lvis_results(
            self._lvis_api, lvis_results, self._tasks, self._max_dets_per_image or LVIS_MAX_DETS, self.evaluator,
            self.protocols, self.bootstrap))


def build_lvis_evaluator(dataset_name: str, output_dir: Optional[str] = None,
                         max_dets: int = LVIS_MAX_DETS, distributed: bool = True,
                         evaluator: str = DEFAULT_EVALUATOR,
                         protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,),
                         bootstrap: Optional[BootstrapReplicates] = None):
    """A `LVISPerCategoryEvaluator` for a registered data set (its metadata needs `json_file`)."""
    return LVISPerCategoryEvaluator(dataset_name, distributed=distributed, output_dir=output_dir,
                                    max_dets_per_image=max_dets, evaluator=evaluator, protocols=protocols,
                                    bootstrap=bootstrap)


def evaluate_model(cfg, model, dataset_name: str, output_dir: Optional[str] = None,
                   protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,),
                   bootstrap: Optional[BootstrapReplicates] = None) -> Dict[str, Dict[str, float]]:
    """Run `model` (eval mode is the caller's) over the registered `dataset_name` with the test
    loader of `cfg` and evaluate with cfg.TEST.LVIS_EVALUATOR (the plugin's key; "fast" in a
    config without it) under `protocols`, each result also bootstrapped into `bootstrap` where
    given (on rank 0); returns {result key: summary} (empty on ranks other than 0). The standard
    protocol evaluates the model's own detections (at most TEST.DETECTIONS_PER_IMAGE per image), written to `output_dir`/lvis_instances_results.json; the
    protocols that limit detections per category ("fixed", "challenge2021") evaluate a second pass
    with no limit per image, the best of each category kept (`suite.evaluation.class_topk`),
    written to `output_dir`/CLASS_TOPK_FOLDER."""
    evaluator = cfg.TEST.get("LVIS_EVALUATOR", DEFAULT_EVALUATOR)
    per_category = [name for name in protocols if eval_protocols.get_protocol(name).limits_per_category]
    per_image = [name for name in protocols if name not in per_category]
    loader = build_detection_test_loader(cfg, dataset_name)
    evaluation: Dict[str, Dict[str, float]] = {}
    if per_image:
        evaluation.update(inference_on_dataset(model, loader, build_lvis_evaluator(
            dataset_name, output_dir, cfg.TEST.DETECTIONS_PER_IMAGE, evaluator=evaluator, protocols=per_image,
            bootstrap=bootstrap)) or {})
    if per_category:
        collector = class_topk.ClassTopKEvaluator(
            LVISPerCategoryEvaluator(dataset_name, distributed=False, evaluator=evaluator, protocols=per_category,
                                     bootstrap=bootstrap,
                                     output_dir=None if output_dir is None else str(Path(output_dir) / CLASS_TOPK_FOLDER)),
            cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            max(eval_protocols.get_protocol(name).max_dets_per_category for name in per_category))
        with class_topk.uncapped(model, collector.floor):
            evaluation.update(inference_on_dataset(model, loader, collector) or {})
    return evaluation


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


def protocols_record(evaluation: Dict[str, Dict[str, float]], max_dets_per_image: int) -> Dict[str, Any]:
    """The run record's `metric_protocols`: for each protocol in `evaluation` (an `evaluate_lvis_results`
    dict) its `protocols.protocol_record` (`max_dets_per_image`: the standard protocol's limit as
    evaluated) and, for every protocol but the standard one, whose metrics are the record's
    `metrics`, "metrics": {task: {metric: AP in percent, None for NaN}}."""
    record: Dict[str, Any] = {}
    for name, protocol in eval_protocols.PROTOCOLS.items():
        present = [task for task in protocol.tasks if result_key(task, name) in evaluation]
        if not present:
            continue
        record[name] = eval_protocols.protocol_record(name, max_dets_per_image)
        if name != "standard":
            record[name]["metrics"] = {
                task: {metric: _none_if_nan(evaluation[result_key(task, name)].get(metric))
                       for metric in protocol.metrics} for task in present}
    return record
