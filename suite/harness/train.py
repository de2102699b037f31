"""`suite train` and `suite eval`: train Mask R-CNN with a suite loss through the Detectron2
plugin, evaluate on LVIS's metrics (cfg.TEST.LVIS_EVALUATOR) and write the run record.

A run directory holds Detectron2's output (checkpoints, `last_checkpoint`, metrics.json, logs),
`config.yaml` (the full config, written before training) and, once finished, `run.json`.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from suite.d2 import PLUGIN_ROI_HEADS, add_longtail_config, check_parent_loss_keys, loss_params_from_cfg
from suite.data.layout import LVIS_V1
from suite.data.register import RegisteredDataset, register_dataset
from suite.errors import UserError
from suite.evaluation.bootstrap import BootstrapReplicates
from suite.evaluation.evaluate import (DEFAULT_EVALUATOR, check_evaluator, evaluate_model, metrics_record,
                                       per_category_record, protocols_record)
from suite.evaluation.protocols import DEFAULT_PROTOCOL, with_standard
from suite.harness.checkpoint_pruning import prune_checkpoints
from suite.harness.distributed import check_dist_url, launch
from suite.harness.finish import finish_run, log_summary
from suite.harness.run_lock import RunLock
from suite.harness.run_record import RunSetting, is_lazy_config, read_run_record, record_setting, write_run_record
from suite.harness.trainer import LongTailTrainer
from suite.losses import trainable_losses
from suite.package_data import CONFIGS_DIR
from suite.records import read_record, write_text_atomic
from suite.schema import BOOTSTRAP_KIND, BOOTSTRAP_RECORD, RUN_RECORD

CONFIG_FILE = "config.yaml"
# What `--resume` may change: the iteration budget.
RESUMABLE_KEYS = ("SOLVER.MAX_ITER",)
logger = logging.getLogger("suite.train")


@dataclass
class TrainOptions:
    """What `suite train` was asked; see its --help."""

    loss: str
    dataset: str
    output: Path
    config_file: Optional[Path] = None
    max_iter: Optional[int] = None
    device: str = "cpu"
    num_gpus: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
    resume: bool = False
    seed: int = 0
    record_grad_balance: bool = False
    bootstrap_resamples: Optional[int] = None
    prune_checkpoints: bool = False
    protocols: Sequence[str] = (DEFAULT_PROTOCOL,)
    overrides: List[str] = field(default_factory=list)


def default_config_file(dataset: str, loss: str) -> Path:
    """The official-schedule R50-FPN config for LVIS v1, the small CPU model otherwise."""
    if dataset == LVIS_V1:
        return CONFIGS_DIR / "lvis_v1" / f"mask_rcnn_R_50_FPN_2x_{loss}.yaml"
    return CONFIGS_DIR / "small_cpu.yaml"


def default_cfg() -> CfgNode:
    """The running Detectron2's defaults with the plugin's keys."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_longtail_config(cfg)
    return cfg


def load_run_cfg(config_path: Path) -> CfgNode:
    """A run's saved config.yaml on the running version's defaults (a run written under another
    Detectron2 version lacks the keys this one added)."""
    cfg = default_cfg()
    try:
        cfg.merge_from_file(str(config_path))
    except (KeyError, ValueError, AssertionError) as error:
        raise UserError(f"{config_path}: cannot be read as a config of this Detectron2 and suite ({error})") from None
    cfg.freeze()
    return cfg


def build_run_cfg(options: TrainOptions, dataset: RegisteredDataset) -> CfgNode:
    """The full config of a run: defaults + plugin keys + config file + the run's own settings +
    the user's KEY VALUE overrides (last, so they win)."""
    cfg = default_cfg()
    config_file = Path(options.config_file or default_config_file(options.dataset, options.loss))
    if not config_file.is_file():
        raise UserError(f"{config_file}: no such config file")
    if config_file.suffix == ".py":
        # The run directory's config.yaml, the --resume comparison and the exact resume are built
        # on a yaml config; a LazyConfig trains through Detectron2's loop in scripts/train_net.py,
        # which writes the same run record (suite.harness.lazy_run).
        raise UserError(f"{config_file} is a LazyConfig file; suite train reads yaml configs: train it with "
                        f"python scripts/train_net.py --config-file {config_file} --dataset {options.dataset} "
                        "(which writes the run record too)")
    cfg.merge_from_file(str(config_file))
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = options.loss
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = dataset.num_classes
    cfg.DATASETS.TRAIN = (dataset.train,)
    cfg.DATASETS.TEST = (dataset.val,)
    cfg.OUTPUT_DIR = str(options.output)
    cfg.MODEL.DEVICE = options.device
    cfg.SEED = options.seed
    cfg.MODEL.ROI_BOX_HEAD.RECORD_GRAD_BALANCE = options.record_grad_balance
    if options.max_iter is not None:
        cfg.SOLVER.MAX_ITER = options.max_iter
    try:
        cfg.merge_from_list(list(options.overrides))
    except (KeyError, ValueError, AssertionError) as error:
        raise UserError(f"bad KEY VALUE override {' '.join(options.overrides)}: {error}") from None
    cfg.TEST.EVAL_PERIOD = 0  # evaluated once, at the end
    if cfg.MODEL.ROI_HEADS.NAME not in PLUGIN_ROI_HEADS:
        raise UserError(f"MODEL.ROI_HEADS.NAME {cfg.MODEL.ROI_HEADS.NAME!r} would not train --loss {options.loss}: "
                        f"use {' or '.join(PLUGIN_ROI_HEADS)} (Cascade R-CNN: LongTailCascadeROIHeads)")
    check_parent_loss_keys(cfg)
    cfg.freeze()
    return cfg


def _flat(node: Any, prefix: str = "") -> Dict[str, Any]:
    """{"A.B.C": value} for every leaf of a config, tuples as lists (YAML has only lists)."""
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: _plain(node)}


def changed_keys(saved: CfgNode, new: CfgNode) -> List[str]:
    """The config keys whose values differ between two configs (present in only one counts)."""
    saved_flat, new_flat = _flat(saved), _flat(new)
    return sorted(key for key in saved_flat.keys() | new_flat.keys() if saved_flat.get(key) != new_flat.get(key))


def check_run_dir(options: TrainOptions, cfg: CfgNode) -> bool:
    """Refuse to overwrite a finished run, to restart an interrupted one without --resume, or to
    resume one with other options than its config.yaml's (but the iteration budget, which a
    finished run must keep). Return whether --resume found the run finished: nothing to train."""
    run_dir = Path(options.output)
    finished = (run_dir / RUN_RECORD).exists()
    if finished and not options.resume:
        raise UserError(f"{run_dir} already holds a finished run ({RUN_RECORD}); choose another --output "
                        "(--resume leaves it as it is)")
    if (run_dir / "last_checkpoint").exists() and not options.resume:
        raise UserError(f"{run_dir} holds an interrupted run: add --resume to continue it, or choose another --output")
    config_path = run_dir / CONFIG_FILE
    if options.resume and config_path.is_file():
        may_change = () if finished else RESUMABLE_KEYS
        changed = [key for key in changed_keys(load_run_cfg(config_path), cfg) if key not in may_change]
        if changed:
            state = "finished" if finished else "interrupted"
            raise UserError(f"--resume: the options differ from {config_path} of the {state} run in "
                            f"{', '.join(changed)}; " + ("a finished run cannot be changed, choose another --output"
                                                         if finished else
                                                         "only the iteration budget (--max-iter) may change"))
    return finished


def _check_output(output: Path) -> None:
    if Path(output).exists() and not Path(output).is_dir():
        raise UserError(f"--output {output} is a file; give a directory for the run")


def check_weights(cfg: CfgNode) -> None:
    """Fetch MODEL.WEIGHTS now (Detectron2 caches a download), so that a file that is missing or
    cannot be downloaded is one line before the run starts, not a traceback inside it."""
    from detectron2.utils.file_io import Detectron2Handler, PathManager

    weights = cfg.MODEL.WEIGHTS
    if not weights:
        return
    url = weights
    if weights.startswith(Detectron2Handler.PREFIX):
        url = Detectron2Handler.S3_DETECTRON2_PREFIX + weights[len(Detectron2Handler.PREFIX):]
    if "://" not in url:
        if not Path(weights).is_file():
            raise UserError(f"MODEL.WEIGHTS {weights}: no such file")
        return
    try:
        PathManager.get_local_path(weights)
    except Exception as error:  # urllib, iopath and OS errors alike: the download failed
        raise UserError(f"MODEL.WEIGHTS {weights}: cannot download {url} ({type(error).__name__}: {error}); "
                        f"download it where there is internet access and pass MODEL.WEIGHTS /path/to/"
                        f"{url.rsplit('/', 1)[-1]}") from None


def _check_options(options: TrainOptions) -> None:
    if options.loss not in trainable_losses():
        raise UserError(f"unknown loss {options.loss!r}; known losses: {', '.join(sorted(trainable_losses()))}")
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if options.num_gpus < 1 or options.num_machines < 1 or not 0 <= options.machine_rank < options.num_machines:
        raise UserError(f"--num-gpus {options.num_gpus} --num-machines {options.num_machines} --machine-rank "
                        f"{options.machine_rank}: need at least one process and machine, and a rank below "
                        "--num-machines")
    try:
        check_dist_url(options.num_machines, options.dist_url)
    except ValueError as error:
        raise UserError(str(error)) from None
    if options.max_iter is not None and options.max_iter < 1:
        raise UserError(f"--max-iter must be >= 1, got {options.max_iter}")
    if options.bootstrap_resamples is not None and options.bootstrap_resamples < 2:
        raise UserError(f"--bootstrap-resamples must be >= 2, got {options.bootstrap_resamples}")


def train(options: TrainOptions) -> Dict[str, Any]:
    """Check (options, data files, weights, the run directory), then train (through
    Detectron2's `launch`), evaluate and write run.json, holding the run directory's lock
    throughout; return the record. Nothing is written before the checks have passed."""
    _check_options(options)
    _check_output(options.output)
    dataset = register_dataset(options.dataset, check_files=True)
    cfg = build_run_cfg(options, dataset)
    try:
        check_evaluator(cfg.TEST.get("LVIS_EVALUATOR", DEFAULT_EVALUATOR), options.protocols)
    except ValueError as error:
        raise UserError(str(error)) from None
    run_dir = Path(options.output)
    if not (options.resume and (run_dir / "last_checkpoint").exists()):
        check_weights(cfg)
    # Every machine of a multi-machine run may share one file system: machine 0 holds the lock.
    lock = RunLock(run_dir) if options.machine_rank == 0 else None
    if lock:
        lock.acquire()
    try:
        if check_run_dir(options, cfg):
            configure_logging()
            logger.info("%s already holds this finished run (%s): nothing to train", run_dir, RUN_RECORD)
            record = read_run_record(run_dir)
            log_summary(record)
            return record
        if options.machine_rank == 0:
            write_text_atomic(run_dir / CONFIG_FILE, cfg.dump())
        launch(_train_worker, options.num_gpus, num_machines=options.num_machines,
               machine_rank=options.machine_rank, dist_url=options.dist_url, args=(options, cfg.dump()),
               use_gpu=options.device.startswith("cuda"))
    finally:
        if lock:
            lock.release()
    if options.machine_rank != 0:
        return {}
    return read_run_record(run_dir)


def _train_worker(options: TrainOptions, config_yaml: str) -> None:
    """One process of the run: every rank trains and evaluates; rank 0 writes run.json, then
    prunes the checkpoints and writes bootstrap.json where asked (`_after_record`)."""
    configure_logging(options.output)
    dataset = register_dataset(options.dataset)  # each spawned process has its own catalog
    cfg = CfgNode.load_cfg(config_yaml)
    seed_all_rng(cfg.SEED + comm.get_rank())
    trainer = LongTailTrainer(cfg)
    trainer.resume_or_load(resume=options.resume)
    trainer.train()
    bootstrap = None if options.bootstrap_resamples is None else BootstrapReplicates(options.bootstrap_resamples)
    evaluation = _evaluate(cfg, trainer.model, dataset, with_standard(options.protocols), bootstrap)
    record = finish_run(Path(cfg.OUTPUT_DIR), run_setting(cfg, config_yaml), dataset, trainer.model, evaluation,
                        trainer.training_time, trainer.loss_curve, trainer.start_iter, cfg.TEST.DETECTIONS_PER_IMAGE)
    if record is not None:
        _after_record(Path(cfg.OUTPUT_DIR), options, record, bootstrap)


def _after_record(run_dir: Path, options: TrainOptions, record: Dict[str, Any],
                  bootstrap: Optional[BootstrapReplicates]) -> None:
    """Once run.json is written (the caller holds the run directory's lock): the checkpoints but
    the last deleted (--prune-checkpoints), then bootstrap.json (--bootstrap-resamples), whose
    replicates come from the final evaluation's own matching; written last, it marks a study's
    cell done."""
    if options.prune_checkpoints:
        prune_checkpoints(run_dir)
    if bootstrap is not None:
        bootstrap.write(run_dir, list(record["metric_protocols"]))


def configure_logging(output: Optional[Path] = None) -> None:
    """Progress on stdout (rank 0) and into OUTPUT/log.txt, for the detectron2 and suite loggers.

    Detectron2's `setup_logger` adds handlers once per argument set and keeps them; a second run
    in the same process (`suite demo`, tests) would also log into the first run's file and
    stream. So the handlers of earlier runs are removed first."""
    for name in ("detectron2", "suite"):
        logger_to_reset = logging.getLogger(name)
        for handler in list(logger_to_reset.handlers):
            logger_to_reset.removeHandler(handler)
    setup_logger.cache_clear()
    for name in ("detectron2", "suite"):
        setup_logger(output=str(output) if output else None, distributed_rank=comm.get_rank(), name=name)


def _evaluate(cfg: CfgNode, model: torch.nn.Module, dataset: RegisteredDataset,
              protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
              bootstrap: Optional[BootstrapReplicates] = None) -> Dict[str, Dict[str, float]]:
    model.eval()
    try:
        return evaluate_model(cfg, model, dataset.val, str(Path(cfg.OUTPUT_DIR) / "inference"), protocols, bootstrap)
    finally:
        model.train()


def run_setting(cfg: CfgNode, config_yaml: str) -> RunSetting:
    """What the run record of a yaml run says was trained (its config is `config_yaml`)."""
    return RunSetting(loss_name=cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS, loss_params=loss_params_from_cfg(cfg),
                      config=_plain(cfg), config_text=config_yaml, iterations=cfg.SOLVER.MAX_ITER, seed=cfg.SEED,
                      device=cfg.MODEL.DEVICE, evaluator=cfg.TEST.get("LVIS_EVALUATOR", DEFAULT_EVALUATOR))


def _plain(node: Any) -> Any:
    """A CfgNode as plain dicts and lists (JSON-ready)."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value) for value in node]
    return node


def evaluate_run(run_dir: Path, evaluator: str = DEFAULT_EVALUATOR,
                 protocols: Sequence[str] = (DEFAULT_PROTOCOL,)) -> Dict[str, Any]:
    """`suite eval`: re-evaluate a run's final checkpoint (holding the run directory's lock) with
    `evaluator` ("fast" or "official", whatever its config says) under the standard protocol and
    `protocols` (`suite.evaluation.protocols`); rewrites its run.json `metrics`, `metric_protocols`
    and `setting`'s evaluator, and the bootstrap.json of a study's cell (same resamples and seed,
    every protocol, from the metrics' own matching).
    The run's config.yaml is read on the running Detectron2's defaults, so a run written under
    another version evaluates too."""
    run_dir = Path(run_dir)
    protocols = with_standard(protocols)
    try:
        check_evaluator(evaluator, protocols)
    except ValueError as error:
        raise UserError(str(error)) from None
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    with RunLock(run_dir):
        record = read_run_record(run_dir)
        if is_lazy_config(record["config"]):
            raise UserError(f"{run_dir} is a LazyConfig run (scripts/train_net.py), suite eval re-evaluates yaml runs: "
                            f"python scripts/train_net.py --config-file CONFIG.py --dataset DATA --eval-only "
                            f"train.init_checkpoint={run_dir / 'model_final.pth'}")
        cfg = load_run_cfg(config_path)
        cfg.defrost()
        cfg.TEST.LVIS_EVALUATOR = evaluator
        cfg.OUTPUT_DIR = str(run_dir)  # where the run is now: its detections go beside its record
        cfg.freeze()
        dataset = register_dataset(record["dataset"]["path"] if record["dataset"]["name"] != LVIS_V1 else LVIS_V1,
                                   check_files=True)
        configure_logging()
        model = LongTailTrainer.build_model(cfg)
        checkpointer = DetectionCheckpointer(model, str(run_dir))
        if not checkpointer.has_checkpoint():
            raise UserError(f"{run_dir}: no checkpoint to evaluate")
        checkpointer.resume_or_load("", resume=True)
        bootstrap = None
        if (run_dir / BOOTSTRAP_RECORD).is_file():  # a study's cell: its bootstrap follows the protocols
            drawn = read_record(run_dir / BOOTSTRAP_RECORD, BOOTSTRAP_KIND, ("resamples", "seed"))
            bootstrap = BootstrapReplicates(drawn["resamples"], drawn["seed"])
        evaluation = _evaluate(cfg, model, dataset, protocols, bootstrap)
        from detectron2.data import MetadataCatalog

        record["setting"] = {**record_setting(record), "evaluator": evaluator}
        record["metrics"] = metrics_record(evaluation)
        record["metric_protocols"] = protocols_record(evaluation, cfg.TEST.DETECTIONS_PER_IMAGE)
        record["per_category"] = per_category_record(evaluation, MetadataCatalog.get(dataset.train).lvis_categories)
        record["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_run_record(run_dir, record)
        if bootstrap is not None:
            bootstrap.write(run_dir, list(record["metric_protocols"]))
    log_summary(record)
    return record
