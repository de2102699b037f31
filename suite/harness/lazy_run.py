"""The run record of a LazyConfig run. scripts/train_net.py trains a LazyConfig with Detectron2's
SimpleTrainer loop; with `--dataset` it writes the same RUN_DIR/run.json as `suite train` writes
for a yaml config (docs/records.md), through the same end of run (suite.harness.finish):

    recorder = lazy_run_recorder(cfg, dataset)     # at setup: None where no record can be written
    trainer.register_hooks([..., *recorder.hooks(), PeriodicCheckpointer(...),
                            PeriodicEvalHook(cfg.train.eval_period, ...), ...])
    trainer.train(start_iter, cfg.train.max_iter)
    recorder.finish(model, start_iter)             # every rank evaluates; the main one writes run.json

The hooks are `suite train`'s: the segments and training time (SegmentClock) and the loss curve
(LossCurve), checkpointed with the trainer, so a `--resume`d run keeps counting them.
"""

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import instantiate
from detectron2.engine import HookBase, hooks
from detectron2.evaluation import inference_on_dataset
from omegaconf import DictConfig

from suite.d2.lazy import plain_config, trained_loss
from suite.data.register import RegisteredDataset
from suite.evaluation.evaluate import DEFAULT_EVALUATOR, LVIS_MAX_DETS, build_lvis_evaluator
from suite.harness.finish import finish_run
from suite.harness.run_record import RunSetting
from suite.harness.run_state import LossCurve, TrainingTime
from suite.harness.trainer import SegmentClock

logger = logging.getLogger("suite.train")


def lazy_run_setting(cfg: DictConfig) -> RunSetting:
    """What the run record of a LazyConfig run says was trained: the loss of its box predictors
    (every stage's, which must agree: suite.d2.lazy.trained_loss), the config as JSON-ready data
    (suite.d2.lazy.plain_config; its hash is that of its JSON text with sorted keys),
    `train.max_iter`, the seed Detectron2's default_setup seeds with, `train.seed` (null
    when absent or negative: Detectron2 then draws one), and the evaluator evaluate_lazy uses."""
    loss_name, loss_params = trained_loss(cfg.model.roi_heads)
    config = plain_config(cfg)
    seed = cfg.train.get("seed", -1)
    return RunSetting(loss_name=loss_name, loss_params=loss_params, config=config,
                      config_text=json.dumps(config, sort_keys=True), iterations=cfg.train.max_iter,
                      seed=seed if seed >= 0 else None, device=cfg.train.device, evaluator=DEFAULT_EVALUATOR)


def evaluation_set(cfg: DictConfig) -> str:
    """The one data set of `dataloader.test` (ValueError for several)."""
    names = cfg.dataloader.test.dataset.names
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != 1:
        raise ValueError(f"dataloader.test.dataset.names holds {len(names)} sets; a run record is evaluated on one")
    return names[0]


def max_dets_per_image(cfg: DictConfig) -> int:
    """The evaluation's limit per image: the config evaluator's `max_dets_per_image`, else LVIS's 300."""
    return cfg.dataloader.get("evaluator", {}).get("max_dets_per_image") or LVIS_MAX_DETS


def evaluate_lazy(cfg: DictConfig, model: torch.nn.Module) -> Dict[str, Dict[str, float]]:
    """`model` run over `dataloader.test` and evaluated by the suite's LVIS evaluator (with its
    per-category AP; `max_dets_per_image` of the config's evaluator, else LVIS's 300), which
    writes the detections to `train.output_dir`/inference/lvis_instances_results.json as a yaml
    run's; {task: summary}, empty on ranks other than 0."""
    evaluator = build_lvis_evaluator(evaluation_set(cfg), str(Path(cfg.train.output_dir) / "inference"),
                                     max_dets_per_image(cfg))
    return inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator) or {}


class PeriodicEvalHook(hooks.EvalHook):
    """Detectron2's EvalHook without its evaluation after the last iteration (current
    Detectron2's `eval_after_train=False`, which v0.6 lacks): a recorded run is evaluated once at
    the end, by the suite's evaluator (LazyRunRecorder.finish)."""

    def after_train(self):
        pass


class LazyRunRecorder:
    """What a LazyConfig run needs for its run record, made at setup: before the optimizer holds
    the model in the config, and before training, so that a config that cannot be recorded is
    said at the start."""

    def __init__(self, cfg: DictConfig, dataset: RegisteredDataset):
        self.cfg = cfg
        self.dataset = dataset
        self.setting = lazy_run_setting(cfg)
        evaluation_set(cfg)
        self.training_time = TrainingTime()
        self.loss_curve = LossCurve()

    def hooks(self) -> List[HookBase]:
        """To register before the checkpointer, so that a checkpoint holds this iteration's state."""
        return [SegmentClock(self.training_time), self.loss_curve]

    def finish(self, model: torch.nn.Module, start_iter: int) -> Optional[Dict[str, Any]]:
        """Every rank, after training: evaluate, then write run.json on the main process (the
        record; None on the other ranks)."""
        evaluation = evaluate_lazy(self.cfg, model)
        return finish_run(Path(self.cfg.train.output_dir), self.setting, self.dataset, model, evaluation,
                          self.training_time, self.loss_curve, start_iter, max_dets_per_image(self.cfg))


def lazy_run_recorder(cfg: DictConfig, dataset: Optional[RegisteredDataset]) -> Optional[LazyRunRecorder]:
    """The recorder of a run, or None, said in the log, where no run record can be written:
    without `dataset` (the record names the set `--dataset` registered, whose metadata lists the
    categories of its per-category AP), or when the box predictors do not train one suite loss."""
    if dataset is None:
        logger.warning("No run record (run.json): it needs --dataset (a generated set's folder or lvis_v1)")
        return None
    try:
        return LazyRunRecorder(cfg, dataset)
    except ValueError as error:
        logger.warning("No run record (run.json): %s", error)
        return None
