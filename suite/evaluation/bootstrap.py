"""Bootstrap over validation images of a run's AP, APr, APc and APf.

An LVIS match is decided per (image, category): it depends on that image's detections and
ground truth only. So the evaluation runs once, and each resample b (the validation images
drawn with replacement, B times, from a seeded generator) accumulates and summarizes the
per-image matches of the drawn images, an image drawn twice counting twice, in draw order.
Only the area range "all" is kept (the four metrics need no other). Two evaluators give the
same values (tests/test_evaluation_lvis_fast.py): "fast" (`suite.evaluation.lvis_fast`: one matching, then
`Matches.precision(draw)` per resample, vectorized, memory linear in the detections) and
"official" (`LVISEval.evaluate` once, then the official `accumulate` per resample).

A run's evaluation can bootstrap as it matches (`BootstrapReplicates`, which
`suite.evaluation.evaluate.evaluate_lvis_results` fills): its metrics and its replicates then come
from one matching. `bootstrap_record` and `write_run_bootstrap` match detections of their own.

Every run on one validation set draws the same resamples (same seed, same sorted image ids),
so the report can pair them: replicate b of two runs is the same image set. The other protocols
(`suite.evaluation.protocols`, fast evaluator only) are bootstrapped on the same draws: their
AP, APr, APc, APf and, for "fixed", AP_pool, APr_pool, APc_pool, APf_pool.

The record, `RUN_DIR/bootstrap.json` (kind "ap_bootstrap", docs/records.md):
    {"schema_version", "kind", "resamples", "seed", "num_images", "image_ids_sha256",
     "replicates": {"bbox": {"AP": [B values], "APr": [...], "APc": [...], "APf": [...]}, "segm": {...}},
     "se": {"bbox": {"AP": sd of the replicates, ...}, "segm": {...}}}
AP in percent; a replicate without ground truth of a group is null. With other protocols,
"replicates" and "se" also hold their tasks under `suite.schema.result_key` ("bbox-fixed",
"segm-challenge2021", ...) and the record a "metric_protocols" field: {name: `protocols.protocol_record`}.
"""

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from lvis import LVIS

from suite.evaluation import lvis_fast, lvis_numpy2, protocols as eval_protocols
from suite.evaluation.detection_files import RUN_CLASS_TOPK_DETECTIONS, RUN_DETECTIONS, read_detections_for
from suite.evaluation.lvis_official import run_lvis_eval
from suite.records import write_json_atomic
from suite.schema import BOOTSTRAP_KIND, BOOTSTRAP_RECORD, GROUP_METRICS, SCHEMA_VERSION, result_key

DEFAULT_RESAMPLES = 200
DEFAULT_SEED = 0


def _percent(value: float) -> float:
    return math.nan if value == -1 else float(value) * 100


def image_ids_sha256(image_ids: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(sorted(int(i) for i in image_ids)).encode()).hexdigest()


def resample_indices(num_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, num_images) indices into the sorted image ids, drawn with replacement."""
    return np.random.default_rng(seed).integers(0, num_images, size=(resamples, num_images))


def bootstrap_metrics(protocol: str) -> Tuple[str, ...]:
    """The metrics bootstrapped under `protocol`: GROUP_METRICS, and the pooled ones of "fixed"."""
    return GROUP_METRICS + (eval_protocols.POOLED_METRICS if eval_protocols.get_protocol(protocol).pooled else ())


def replicates(lvis_gt: LVIS, results: Sequence[dict], task: str, resamples: int = DEFAULT_RESAMPLES,
               seed: int = DEFAULT_SEED, evaluator: str = "fast",
               protocol: str = eval_protocols.DEFAULT_PROTOCOL) -> Dict[str, List[float]]:
    """{metric: [value on resample b for b in range(resamples)]} for `bootstrap_metrics(protocol)`,
    with `evaluator` "fast" or "official" (the same values; the official one: standard protocol only)."""
    if evaluator == "fast":
        return fast_replicates(lvis_gt, lvis_fast.detections_from_results(results, task), task, resamples, seed,
                               protocol)
    if evaluator != "official":
        raise ValueError(f"evaluator must be 'fast' or 'official', got {evaluator!r}")
    if protocol != eval_protocols.DEFAULT_PROTOCOL:
        raise ValueError(f"the official evaluator bootstraps the standard protocol only, not {protocol!r}")
    lvis_eval = run_lvis_eval(lvis_gt, results, task)
    return official_replicates(lvis_eval, resample_indices(len(lvis_eval.params.img_ids), resamples, seed))


def official_replicates(lvis_eval, draws: np.ndarray) -> Dict[str, List[float]]:
    """The replicates of an evaluated official `LVISEval` on `draws` ((B, num_images) indices into
    its sorted image ids): the official `accumulate` and summary per draw."""
    params = lvis_eval.params
    num_images, num_areas = len(params.img_ids), len(params.area_rng)
    all_areas = params.area_rng_lbl.index("all")
    per_category = [lvis_eval.eval_imgs[(k * num_areas + all_areas) * num_images:
                                        (k * num_areas + all_areas + 1) * num_images]
                    for k in range(len(params.cat_ids))]
    boot = copy.copy(lvis_eval)  # shares the ground truth and frequency groups, not the params
    boot.params = copy.deepcopy(params)
    boot.params.area_rng, boot.params.area_rng_lbl = [params.area_rng[all_areas]], ["all"]
    groups = {"AP": None, "APr": 0, "APc": 1, "APf": 2}
    values: Dict[str, List[float]] = {metric: [] for metric in GROUP_METRICS}
    lvis_logger = logging.getLogger(lvis_eval.logger.name)
    level = lvis_logger.level
    lvis_logger.setLevel(logging.WARNING)  # accumulate logs a line per call
    lvis_numpy2.install()
    try:
        for draw in draws:
            boot.params.img_ids = [params.img_ids[index] for index in draw]
            boot.eval_imgs = [images[index] for images in per_category for index in draw]
            boot.accumulate()
            for metric in GROUP_METRICS:
                values[metric].append(_percent(boot._summarize("ap", freq_group_idx=groups[metric])))
    finally:
        lvis_logger.setLevel(level)
    return values


def fast_replicates(lvis_gt: LVIS, detections: lvis_fast.Detections, task: str, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED, protocol: str = eval_protocols.DEFAULT_PROTOCOL) -> Dict[str, List[float]]:
    """`replicates` with the fast evaluator, from detections as columns (`lvis_fast.Detections`)."""
    matches = eval_protocols.match(lvis_gt, detections, task, eval_protocols.get_protocol(protocol), ("all",))
    return replicates_of_matches(matches, protocol, resamples, seed)


def replicates_of_matches(matches: lvis_fast.Matches, protocol: str, resamples: int = DEFAULT_RESAMPLES,
                          seed: int = DEFAULT_SEED) -> Dict[str, List[float]]:
    """`fast_replicates` from the matches of `protocol` (`protocols.match`; their areas must include "all")."""
    chosen, metrics = eval_protocols.get_protocol(protocol), bootstrap_metrics(protocol)
    values: Dict[str, List[float]] = {metric: [] for metric in metrics}
    for draw in resample_indices(matches.num_images, resamples, seed):
        summary = eval_protocols.summarize(matches, chosen, draw, metrics)
        for metric in metrics:
            values[metric].append(_percent(summary[metric]))
    return values


@dataclass
class BootstrapReplicates:
    """The replicates of one run's evaluation, kept as it matches: `add` (fast evaluator) or
    `add_official` (the official `LVISEval`, standard protocol) per (protocol, task), from the very
    matching its metrics come from; `record` is then the run's ap_bootstrap record, equal to
    `bootstrap_record` of the same detections. `image_ids`: the validation set's (`for_images`)."""
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    image_ids: List[int] = field(default_factory=list)
    found: Dict[Tuple[str, str], Dict[str, List[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ValueError(f"resamples must be >= 2, got {self.resamples}")

    def for_images(self, image_ids: Sequence[int]) -> None:
        """Every replicate draws from `image_ids`; a later set of other images is refused."""
        image_ids = sorted(int(image_id) for image_id in image_ids)
        if self.image_ids and self.image_ids != image_ids:
            raise ValueError("a run's bootstrap draws from one validation set; these are other images")
        self.image_ids = image_ids

    def add(self, protocol: str, task: str, matches: lvis_fast.Matches) -> None:
        self.found[(protocol, task)] = replicates_of_matches(matches, protocol, self.resamples, self.seed)

    def add_official(self, task: str, lvis_eval) -> None:
        draws = resample_indices(len(lvis_eval.params.img_ids), self.resamples, self.seed)
        self.found[(eval_protocols.DEFAULT_PROTOCOL, task)] = official_replicates(lvis_eval, draws)

    def record(self, protocols: Sequence[str]) -> Dict[str, Any]:
        """The ap_bootstrap record of `protocols` (each task found, in `bootstrap_record`'s order)."""
        reps = {result_key(task, protocol): self.found[(protocol, task)]
                for protocol in protocols for task in ("bbox", "segm") if (protocol, task) in self.found}
        se = {key: {metric: _sd(values) for metric, values in by_metric.items()} for key, by_metric in reps.items()}
        record = {"schema_version": SCHEMA_VERSION, "kind": BOOTSTRAP_KIND, "resamples": self.resamples,
                  "seed": self.seed, "num_images": len(self.image_ids),
                  "image_ids_sha256": image_ids_sha256(self.image_ids), "replicates": reps, "se": se}
        if tuple(protocols) != (eval_protocols.DEFAULT_PROTOCOL,):
            record["metric_protocols"] = {protocol: eval_protocols.protocol_record(protocol) for protocol in protocols}
        return record

    def write(self, run_dir: Path, protocols: Sequence[str]) -> Dict[str, Any]:
        """Write `record(protocols)` to RUN_DIR/bootstrap.json atomically; return it."""
        record = self.record(protocols)
        write_json_atomic(Path(run_dir) / BOOTSTRAP_RECORD, record)
        return record


def bootstrap_record(lvis_gt: Union[LVIS, str, Path], results: Sequence[dict],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                     evaluator: str = "fast",
                     protocols: Sequence[str] = (eval_protocols.DEFAULT_PROTOCOL,),
                     class_topk_results: Optional[Sequence[dict]] = None) -> Dict[str, Any]:
    """The ap_bootstrap record of detections `results` (LVIS results format) on `lvis_gt`, with
    `evaluator` "fast" or "official" (the same record), under `protocols` (each on the same draws);
    `class_topk_results`, where given, are the detections of the protocols limited per category
    (the pass with no limit per image, `suite.evaluation.class_topk`)."""
    replicates = BootstrapReplicates(resamples, seed)
    for protocol in protocols:
        eval_protocols.get_protocol(protocol)
        if evaluator == "official" and protocol != eval_protocols.DEFAULT_PROTOCOL:
            raise ValueError(f"the official evaluator bootstraps the standard protocol only, not {protocol!r}")
    if not isinstance(lvis_gt, LVIS):
        lvis_gt = LVIS(str(lvis_gt))
    replicates.for_images(lvis_gt.get_img_ids())
    tasks = ["bbox"] + (["segm"] if any("segmentation" in result for result in results) else [])

    def results_of(protocol: str) -> Sequence[dict]:
        own_pass = eval_protocols.get_protocol(protocol).limits_per_category and class_topk_results is not None
        return class_topk_results if own_pass else results

    wanted = [(protocol, task) for protocol in protocols for task in tasks
              if task in eval_protocols.get_protocol(protocol).tasks] if results else []
    if evaluator == "fast":  # fixed and challenge2021 share their candidates (`protocols.shared_matches`)
        for protocol, task, matches in eval_protocols.shared_matches(
                lvis_gt, [(eval_protocols.get_protocol(name), task) for name, task in wanted],
                lambda protocol, task: lvis_fast.detections_from_results(results_of(protocol.name), task), ("all",)):
            replicates.add(protocol.name, task, matches)
    else:
        for _, task in wanted:
            replicates.add_official(task, run_lvis_eval(lvis_gt, results, task))
    return replicates.record(protocols)


def _sd(values: Sequence[float]) -> float:
    finite = np.array([value for value in values if math.isfinite(value)], float)
    return float(finite.std(ddof=1)) if finite.size > 1 else math.nan


def write_run_bootstrap(run_dir: Path, val_json: Path, resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED, metric_protocols: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Bootstrap the detections a finished run kept against `val_json` under the protocols of its
    run.json's `metric_protocols` (None: the standard one, at most 300 detections per image): the
    standard protocol on the model's own detections (RUN_DIR/`RUN_DETECTIONS`, at most its recorded
    detections_per_image per image), the protocols limited per category on the best of each
    category (RUN_DIR/`RUN_CLASS_TOPK_DETECTIONS`, which `suite eval --protocol` writes). Write
    RUN_DIR/bootstrap.json atomically and return the record. A ValueError names a missing file,
    or one beyond its protocol's limits."""
    run_dir = Path(run_dir)
    metric_protocols = metric_protocols or {eval_protocols.DEFAULT_PROTOCOL: {}}
    max_dets_per_image = metric_protocols.get(eval_protocols.DEFAULT_PROTOCOL, {}).get("detections_per_image")
    results = _run_detections(run_dir / RUN_DETECTIONS, [eval_protocols.get_protocol(eval_protocols.DEFAULT_PROTOCOL)],
                              max_dets_per_image)
    per_category = [protocol for protocol in map(eval_protocols.get_protocol, metric_protocols)
                    if protocol.limits_per_category]
    class_topk_results = _run_detections(run_dir / RUN_CLASS_TOPK_DETECTIONS, per_category) if per_category else None
    record = bootstrap_record(val_json, results, resamples, seed, protocols=tuple(metric_protocols),
                              class_topk_results=class_topk_results)
    write_json_atomic(run_dir / BOOTSTRAP_RECORD, record)
    return record


def _run_detections(path: Path, protocols: Sequence[eval_protocols.Protocol], max_dets_per_image: Optional[int] = None
                    ) -> List[dict]:
    if not path.is_file():
        raise ValueError(f"{path}: no detections kept, nothing to bootstrap")
    return read_detections_for(path, protocols, max_dets_per_image)
