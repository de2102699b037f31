"""`suite train` and `suite eval`."""

import argparse
from pathlib import Path
from typing import List

from suite.errors import UserError
from suite.losses import LOSSES, REFERENCE_LOSSES
from suite.records import write_json_atomic


PROTOCOLS_HELP = ("standard (300 detections per image), fixed (AP_fixed and AP_pool: 10,000 detections per class "
                  "over the set, none per image), challenge2021 (the LVIS Challenge 2021's boundary AP_fixed, masks); "
                  "other than standard, the fast evaluator only (docs/evaluation.md)")
RUN_PROTOCOLS_HELP = ("the standard protocol is always evaluated (run.json's `metrics`), the others on a pass of their "
                      "own, each under run.json's `metric_protocols`")


def protocol_names(text: str) -> List[str]:
    """The protocols of one --protocol argument, separated by commas ("fixed,challenge2021")."""
    return [name for name in text.split(",") if name]


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train and evaluate Mask R-CNN with one loss",
        description="Train Mask R-CNN with the chosen classification loss (Detectron2 plugin), evaluate it "
        "on LVIS's metrics at the end (TEST.LVIS_EVALUATOR: fast or official), and write RUN_DIR/run.json. Progress (iteration, ETA, "
        "loss terms) is printed while training.",
        epilog="example: suite data synth --out data/synth && "
        "suite train --loss seesaw --dataset data/synth --output runs/seesaw --max-iter 200",
    )
    train.add_argument("--loss", required=True, help=f"classification loss: {', '.join(sorted(LOSSES))}; reference: "
                       f"{', '.join(sorted(REFERENCE_LOSSES))} (mmdet 3.3.0's own code)")
    train.add_argument("--dataset", required=True,
                       help="lvis_v1 (LVIS v1 under $DETECTRON2_DATASETS) or the folder of a set written by "
                       "'suite data synth'")
    train.add_argument("--output", required=True, type=Path, metavar="RUN_DIR",
                       help="run directory (checkpoints, logs, run.json); must not hold a finished run but with --resume")
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="Detectron2 config file (default: configs/lvis_v1/mask_rcnn_R_50_FPN_2x_<loss>.yaml "
                       "for lvis_v1, configs/small_cpu.yaml otherwise)")
    train.add_argument("--max-iter", type=int, help="training iterations (default: the config's SOLVER.MAX_ITER)")
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    train.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs) per machine, default 1")
    train.add_argument("--num-machines", type=int, default=1)
    train.add_argument("--machine-rank", type=int, default=0)
    train.add_argument("--dist-url", default="auto", help="e.g. tcp://HOST:PORT for several machines")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last checkpoint; a finished run with the same "
                       "options is left as it is (nothing to train), an empty RUN_DIR starts one")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--record-grad-balance", action="store_true",
                       help="record each class's accumulated positive and negative classifier gradient "
                       "into run.json (the report's gradient-balance figure)")
    train.add_argument("--bootstrap-resamples", type=int, metavar="B",
                       help="also bootstrap the final AP over validation images, B resamples, into RUN_DIR/"
                       "bootstrap.json, from the final evaluation's own matching (suite study: 200)")
    train.add_argument("--protocol", type=protocol_names, default=["standard"], metavar="P[,P...]",
                       help="LVIS protocols of the final evaluation, separated by commas: " + PROTOCOLS_HELP + "; " +
                       RUN_PROTOCOLS_HELP)
    train.add_argument("--prune-checkpoints", action="store_true",
                       help="once run.json is written, delete every checkpoint but the last (the one suite eval "
                       "loads)")
    train.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                       help="Detectron2 config overrides, e.g. SOLVER.BASE_LR 0.01")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "eval", help="re-evaluate a run's final checkpoint, or evaluate a detection file",
        description="Evaluate the last checkpoint of RUN_DIR on its validation set and update its run.json (and "
        "its bootstrap.json, for a study's cell), or evaluate a detection file in the LVIS results format on "
        "a data set's validation set.",
        epilog="example: suite eval --detections lvis_instances_results.json --dataset lvis_v1 --protocol standard")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, metavar="RUN_DIR")
    source.add_argument("--detections", type=Path, metavar="FILE",
                        help="LVIS results (a JSON list of detections); it must hold what each protocol evaluates: "
                        "at most 300 per image (standard), at most 10,000 per category (fixed, challenge2021)")
    evaluate.add_argument("--dataset", help="with --detections: lvis_v1 (under $DETECTRON2_DATASETS) or the folder "
                          "of a set written by 'suite data synth'")
    evaluate.add_argument("--output", type=Path, metavar="FILE",
                          help="with --detections: write the metrics as JSON ({task or task-protocol: {metric: AP}})")
    evaluate.add_argument("--evaluator", choices=("fast", "official"), default="fast",
                          help="fast: the suite's vectorized LVIS evaluation, equal to the official one "
                          "(docs/evaluation.md; default); official: the lvis API's LVISEval")
    evaluate.add_argument("--protocol", nargs="+", type=protocol_names, default=[["standard"]], metavar="PROTOCOL",
                          help="LVIS protocols to evaluate (separated by spaces or commas): " + PROTOCOLS_HELP +
                          "; a run: " + RUN_PROTOCOLS_HELP)
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from suite.harness.train import TrainOptions, train

    train(TrainOptions(
        loss=args.loss, dataset=args.dataset, output=args.output, config_file=args.config,
        max_iter=args.max_iter, device=args.device, num_gpus=args.num_gpus,
        num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url,
        resume=args.resume, seed=args.seed, record_grad_balance=args.record_grad_balance,
        bootstrap_resamples=args.bootstrap_resamples, prune_checkpoints=args.prune_checkpoints,
        protocols=tuple(args.protocol), overrides=args.overrides,
    ))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    protocols = [name for names in args.protocol for name in names]
    if args.run is not None:
        if args.dataset or args.output:
            raise UserError("--dataset and --output go with --detections; a run evaluates on its own data set")
        from suite.harness.train import evaluate_run

        evaluate_run(args.run, args.evaluator, protocols)
        return 0
    if not args.dataset:
        raise UserError("--detections needs --dataset: the set whose validation split the detections are of")
    from suite.evaluation.evaluate import evaluate_detection_file

    evaluation = evaluate_detection_file(args.detections, validation_json(args.dataset), protocols, args.evaluator)
    if args.output:
        write_json_atomic(args.output, evaluation)
    return 0


def validation_json(dataset: str) -> Path:
    """The validation annotations of `dataset` (lvis_v1 or a generated set's folder); a UserError
    where the file is missing."""
    from suite.data.layout import dataset_split

    path = dataset_split(dataset, "val").json_file
    if not path.is_file():
        raise UserError(f"{dataset}: no validation annotations at {path}")
    return path
