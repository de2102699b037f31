"""The end of a training run, the same on both routes (`suite train`'s LongTailTrainer on a yaml
config, scripts/train_net.py's loop on a LazyConfig, suite.harness.lazy_run): once the model is
trained and evaluated with the suite's evaluator, every rank gathers the gradient balance and
the digest of every rank's weights, and
the main process builds the run record, writes it atomically and logs a summary."""

import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from detectron2.data import MetadataCatalog
from detectron2.utils import comm

from suite.data.register import RegisteredDataset
from suite.evaluation.evaluate import metrics_record, per_category_record, protocols_record
from suite.harness.distributed import rank_weights_sha256
from suite.harness.run_record import RunSetting, build_run_record, write_run_record
from suite.harness.run_state import LossCurve, TrainingTime

logger = logging.getLogger("suite.train")


def grad_balance_record(model: torch.nn.Module) -> Optional[Dict[str, Any]]:
    """The box predictor's gradient balance summed over all ranks (a collective: every rank
    calls it), None when not recorded. A cascade's record adds up its stages' sums and lists
    each stage's under "stages"."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    predictors = model.roi_heads.box_predictor
    if not isinstance(predictors, torch.nn.ModuleList):
        balance = predictors.grad_balance
        return None if balance is None else balance.as_record(all_ranks=True)
    if predictors[0].grad_balance is None:
        return None
    stages = [predictor.grad_balance.as_record(all_ranks=True) for predictor in predictors]
    return {
        "class_ids": stages[0]["class_ids"],
        "pos_grad": [sum(values) for values in zip(*(stage["pos_grad"] for stage in stages))],
        "neg_grad": [sum(values) for values in zip(*(stage["neg_grad"] for stage in stages))],
        "stages": stages,
    }


def finish_run(output_dir: Path, setting: RunSetting, dataset: RegisteredDataset, model: torch.nn.Module,
               evaluation: Dict[str, Dict[str, float]], training_time: TrainingTime, loss_curve: LossCurve,
               start_iter: int, max_dets_per_image: int) -> Optional[Dict[str, Any]]:
    """Called by every rank after training and evaluation (`evaluation`: the suite evaluator's
    {task: summary}, empty on ranks other than 0; `max_dets_per_image`: its limit per image): gather
    the gradient balance, then on the main process write OUTPUT_DIR/run.json and return the record
    (None on the other ranks)."""
    balance = grad_balance_record(model)
    digests = rank_weights_sha256(model)
    if not comm.is_main_process():
        return None
    record = build_run_record(
        setting,
        dataset=dataset.record(),
        metrics=metrics_record(evaluation),
        per_category=per_category_record(evaluation, MetadataCatalog.get(dataset.train).lvis_categories),
        wall_s=training_time.wall_s,
        start_iter=start_iter,
        segments=training_time.segments,
        curve=loss_curve.points,
        grad_balance=balance,
        weights_sha256=digests,
        metric_protocols=protocols_record(evaluation, max_dets_per_image),
    )
    write_run_record(Path(output_dir), record)
    log_summary(record)
    return record


def log_summary(record: Dict[str, Any]) -> None:
    """One line: the loss, the data set, the training and the AP of a run record."""
    bbox, segm = record["metrics"]["bbox"], record["metrics"]["segm"]

    def ap(metrics, key):
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.1f}"

    segments = record["train"].get("segments", 1)
    logger.info(
        "done: %s on %s, %d iterations in %.0f s of training%s | bbox AP %s (r %s c %s f %s) | "
        "segm AP %s (r %s c %s f %s)",
        record["loss"]["name"], record["dataset"]["name"], record["iterations"], record["train"]["wall_s"],
        f" over {segments} segments" if segments > 1 else "",
        ap(bbox, "AP"), ap(bbox, "APr"), ap(bbox, "APc"), ap(bbox, "APf"),
        ap(segm, "AP"), ap(segm, "APr"), ap(segm, "APc"), ap(segm, "APf"),
    )
