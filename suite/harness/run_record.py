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
