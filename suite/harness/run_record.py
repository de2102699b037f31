"""The run record (`RUN_DIR/run.json`, kind "train_run", docs/records.md): built here, written
atomically, read back with checks."""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from suite.environment import collect
from suite.records import read_record, write_json_atomic
from suite.schema import RUN_FIELDS, RUN_KIND, RUN_RECORD, SCHEMA_VERSION


def config_hash(config_text: str) -> str:
    return hashlib.sha256(config_text.encode()).hexdigest()


def is_lazy_config(config: Dict[str, Any]) -> bool:
    """Whether a run record's `config` is a LazyConfig's (scripts/train_net.py: `model`, `train`,
    `dataloader`, ...) rather than a yaml config's (`suite train`: `MODEL`, `SOLVER`, ...)."""
    return "MODEL" not in config and "model" in config


def box_predictor_nodes(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A LazyConfig's box predictor nodes: a cascade's `box_predictors`, or `box_predictor`."""
    heads = config.get("model", {}).get("roi_heads", {})
    return list(heads.get("box_predictors") or []) + ([heads["box_predictor"]] if "box_predictor" in heads else [])


def trained_setting(config: Dict[str, Any], evaluator: Optional[str]) -> Dict[str, Any]:
    """run.json's `setting` (docs/records.md): what was trained beside the loss (`loss`), the data
    (`dataset`) and the iterations, read from the run's `config` in either form, and the evaluator
    that computed its metrics ("fast" or "official"; None where not known):

        {"box_predictors": [{"cosine_scale": float, or None for the linear classifier,
                             "num_logits": int or None}, ...],
         "pretrained": bool,
         "schedule": {"images_per_batch": int, "base_lr": float, "lr_steps": [int, ...]},
         "evaluator": evaluator}

    A yaml config has one box predictor entry (MODEL.ROI_BOX_HEAD, which every cascade stage
    shares), a LazyConfig one per box predictor node; `pretrained`: the run started from a
    weights file (MODEL.WEIGHTS, train.init_checkpoint); `lr_steps`: the iterations where the
    learning rate drops (SOLVER.STEPS; the milestones of a LazyConfig's multi-step scheduler
    before its end, [] for another scheduler)."""
    if is_lazy_config(config):
        scheduler = config.get("lr_multiplier", {}).get("scheduler", {})
        milestones, values = list(scheduler.get("milestones") or []), scheduler.get("values") or []
        return {
            "box_predictors": [{"cosine_scale": node.get("cosine_scale"), "num_logits": node.get("num_logits")}
                               for node in box_predictor_nodes(config)],
            "pretrained": bool(config.get("train", {}).get("init_checkpoint")),
            "schedule": {"images_per_batch": config.get("dataloader", {}).get("train", {}).get("total_batch_size"),
                         "base_lr": config.get("optimizer", {}).get("lr"),
                         "lr_steps": milestones[:len(values) - 1] if values else milestones},
            "evaluator": evaluator,
        }
    head, solver = config.get("MODEL", {}).get("ROI_BOX_HEAD", {}), config.get("SOLVER", {})
    return {
        "box_predictors": [{"cosine_scale": head.get("COSINE_SCALE") if head.get("COSINE_CLASSIFIER") else None,
                            "num_logits": head.get("CLS_NUM_LOGITS")}],
        "pretrained": bool(config.get("MODEL", {}).get("WEIGHTS")),
        "schedule": {"images_per_batch": solver.get("IMS_PER_BATCH"), "base_lr": solver.get("BASE_LR"),
                     "lr_steps": list(solver.get("STEPS") or [])},
        "evaluator": evaluator,
    }


def record_setting(record: Dict[str, Any]) -> Dict[str, Any]:
    """A run record's `setting`; for a record written before it, derived from its `config` as
    trained_setting does, with the evaluator its config named: a yaml config without
    TEST.LVIS_EVALUATOR predates the fast evaluator ("official"), a LazyConfig run's record was
    always evaluated by the fast one; None where `suite eval` evaluated the run again (its
    `evaluated_at`), which before `setting` recorded no evaluator."""
    if "setting" in record:
        return record["setting"]
    config = record["config"]
    if "evaluated_at" in record:
        evaluator = None
    elif is_lazy_config(config):
        evaluator = "fast"
    else:
        evaluator = config.get("TEST", {}).get("LVIS_EVALUATOR", "official")
    return trained_setting(config, evaluator)


def cosine_classifier(setting: Dict[str, Any]) -> bool:
    """Whether a run's box classifier is cosine: a `setting` box predictor with a cosine scale."""
    return any(node["cosine_scale"] is not None for node in setting["box_predictors"])


@dataclass(frozen=True)
class RunSetting:
    """What a run record says was trained, as each route reads it from its config: the loss
    and its parameters, the config as JSON-ready data and the text its hash is taken of (the
    yaml dump, or the LazyConfig's JSON), the iterations, the seed, the device."""

    loss_name: str
    loss_params: Dict[str, Any]
    config: Dict[str, Any]
    config_text: str
    iterations: int
    seed: Optional[int]
    device: str
    evaluator: str


def build_run_record(setting: RunSetting, *, dataset: Dict[str, Any], metrics: Dict[str, Any],
                     per_category: List[Dict[str, Any]], wall_s: float, start_iter: int, segments: int,
                     curve: List[Dict[str, float]], grad_balance: Optional[Dict[str, Any]],
                     weights_sha256: List[str], metric_protocols: Dict[str, Any]) -> Dict[str, Any]:
    """Everything docs/records.md lists for a finished run. `wall_s`: training time over all
    `segments` (1 + resumes); `start_iter`: where the last segment started; `weights_sha256`: the
    final model state's digest on each rank, in rank order (suite.harness.distributed);
    `metric_protocols`: which evaluation protocol produced the metrics
    (suite.evaluation.evaluate.protocols_record)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": RUN_KIND,
        "loss": {"name": setting.loss_name, "params": setting.loss_params},
        "dataset": dataset,
        "config": setting.config,
        "config_hash": config_hash(setting.config_text),
        "iterations": setting.iterations,
        "seed": setting.seed,
        "setting": trained_setting(setting.config, setting.evaluator),
        "metrics": metrics,
        "metric_protocols": metric_protocols,
        "per_category": per_category,
        "train": {
            "start_iter": start_iter,
            "segments": segments,
            "wall_s": wall_s,
            "iters_per_s": setting.iterations / wall_s if wall_s > 0 else None,
            "loss_curve": curve,
            "world_size": len(weights_sha256),
            "weights_sha256": weights_sha256,
        },
        "grad_balance": grad_balance,
        "environment": collect(setting.device),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_run_record(run_dir: Path, record: Dict[str, Any]) -> Path:
    path = Path(run_dir) / RUN_RECORD
    write_json_atomic(path, record)
    return path


def read_run_record(run_dir: Path) -> Dict[str, Any]:
    return read_record(Path(run_dir) / RUN_RECORD, RUN_KIND, RUN_FIELDS)
