#!/usr/bin/env python
"""Detectron2's training entry with the plugin, as PointRend ships one: yaml configs (Detectron2's
DefaultTrainer) and LazyConfig files (.py: Detectron2's SimpleTrainer loop), both evaluated with
Detectron2's own LVISEvaluator (but at the end of a recorded LazyConfig run, below).

    python scripts/train_net.py --config-file configs/lvis_v1/mask_rcnn_R_50_FPN_2x_seesaw.yaml --num-gpus 8
    python scripts/train_net.py --config-file configs/lazy/cascade_mask_rcnn_R_101_FPN_2x_seesaw.py --num-gpus 8
    python scripts/train_net.py --config-file RUN/config.yaml --dataset DATA --eval-only MODEL.WEIGHTS RUN/model_final.pth

--dataset (a generated set's folder, or lvis_v1) registers the data and points the config's
training and test sets and class count at it. Without it the config's own data sets are used
(lvis_v1_train/lvis_v1_val: Detectron2's builtin LVIS v1 under $DETECTRON2_DATASETS).
`suite train` is the harness (run records, exact resume, the suite's evaluator); this is the
Detectron2 way of training the same models. A LazyConfig run with --dataset also writes the run
record (OUTPUT/run.json, as `suite train` does; suite.harness.lazy_run), evaluated once training
ends by the suite's evaluator instead of the config's.
"""

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the suite, when run from a checkout

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import LazyConfig, get_cfg, instantiate  # noqa: E402
import torch  # noqa: E402
from detectron2.engine import (AMPTrainer, SimpleTrainer, default_argument_parser,  # noqa: E402
                               default_setup, default_writers, hooks)
from detectron2.evaluation import LVISEvaluator, inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from suite.d2 import LongTailOutputLayers, add_longtail_config, check_roi_heads  # noqa: E402
from suite.d2.lazy import box_predictor_nodes, class_freq_of  # noqa: E402
from suite.data.register import register_dataset  # noqa: E402
from suite.environment import code_version  # noqa: E402
from suite.harness.distributed import create_ddp_model, launch  # noqa: E402
from suite.harness.lazy_run import PeriodicEvalHook, lazy_run_recorder  # noqa: E402
from suite.harness.trainer import PluginTrainer  # noqa: E402

logger = logging.getLogger("detectron2")


class Trainer(PluginTrainer):
    """The plugin's DefaultTrainer (suite.harness.trainer.PluginTrainer: it refuses a head
    ignoring the plugin's keys and trains on several CPU processes too), evaluating with
    Detectron2's LVISEvaluator (TEST.DETECTIONS_PER_IMAGE detections per image)."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return LVISEvaluator(dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)


def setup_yaml(args):
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(args.config_file)
    if args.dataset:
        dataset = register_dataset(args.dataset, check_files=True)
        cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (dataset.train,), (dataset.val,)
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = dataset.num_classes
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    check_roi_heads(cfg)
    default_setup(cfg, args)
    return cfg


def main_yaml(args):
    cfg = setup_yaml(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def setup_lazy(args):
    """The LazyConfig with --dataset and the overrides applied, and the registered set (None
    without --dataset)."""
    cfg = LazyConfig.load(args.config_file)
    dataset = None
    if args.dataset:
        dataset = register_dataset(args.dataset, check_files=True)
        cfg.dataloader.train.dataset.names, cfg.dataloader.test.dataset.names = dataset.train, dataset.val
        cfg.model.roi_heads.num_classes = dataset.num_classes
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    # EQL and the federated loss read class frequencies from the training set named now (after
    # --dataset and the overrides), unless the config gives its own.
    for predictor in box_predictor_nodes(cfg.model.roi_heads):
        if predictor.get("_target_") is LongTailOutputLayers and predictor.get("class_freq") is None:
            predictor.class_freq = class_freq_of(cfg)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="suite")
    return cfg, dataset


def test_lazy(cfg, model):
    """Inference on cfg.dataloader.test with cfg.dataloader.evaluator; the results dict."""
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def main_lazy(args):
    cfg, dataset = setup_lazy(args)
    # Before the optimizer puts the model into the config: the record holds the config as given.
    recorder = None if args.eval_only else lazy_run_recorder(cfg, dataset)
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    if args.eval_only:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return test_lazy(cfg, model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main_process = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        # The record's training time and loss curve, before the checkpointer that saves them.
        *(recorder.hooks() if recorder else []),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main_process else None,
        (PeriodicEvalHook if recorder else hooks.EvalHook)(cfg.train.eval_period, lambda: test_lazy(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main_process else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    if recorder:
        recorder.finish(model, start_iter)


def main(args):
    code_version()  # the commit this process runs, before the run record is written
    return (main_lazy if args.config_file.endswith(".py") else main_yaml)(args)


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument("--dataset", default="",
                        help="a generated LVIS-format set's folder, or lvis_v1: registered, and set as the "
                             "config's training and test sets and class count")
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    # As Detectron2's current launch: NCCL where there is a GPU, gloo (also on v0.6) where there is none.
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,), use_gpu=torch.cuda.is_available())
