"""`suite demo`, `suite study` and `suite pretrain`."""

import argparse
from pathlib import Path

from suite.data.synth import LVIS_PROFILE_CLASSES
from suite.harness.commands import PROTOCOLS_HELP, protocol_names
from suite.losses import LOSSES
from suite.workflows import pretrain as pretraining
from suite.workflows import study
from suite.workflows.executor_settings import DEFAULT_TIME_MIN, EXECUTORS

STUDY_EPILOG = f"""\
grid
  arms (--losses, comma-separated, any subset; default {','.join(study.DEFAULT_ARMS)}):
    ce               softmax CE, linear classifier (Detectron2's default)
    ce_cosine        softmax CE with the cosine classifier (temperature 20): the control that
                     tells Seesaw's loss from its classifier
    focal, eql       sigmoid focal loss, EQL (lambda just above the set's common classes)
    eqlv2, fed       EQLv2, the federated loss (4 % of the classes drawn a step, as 50 of LVIS's
                     1203); not defaults: add them to --losses
    seesaw           Seesaw in the official configuration: cosine classifier, temperature 20
    seesaw_mitigation, seesaw_compensation
                     Seesaw with one factor only (q = 0, p = 0), cosine classifier
    seesaw_linear    Seesaw with both factors on the linear classifier
    seesaw_none, seesaw_none_linear
                     Seesaw with neither factor (p = q = 0), cosine and linear classifier: the
                     control that tells the factors from the objectness branch (C + 2 logits,
                     class softmax over foreground RoIs only, scores p(class | fg) p(fg))
    seesaw_official  mmdet 3.3.0's Seesaw code, cosine classifier (a reference; not a default:
                     add it to --losses, or to the first K seeds with --official-seeds K)
  --preset ablation: the paper's ablation of Seesaw's factors and classifier, with the control of
    neither factor; the default study's ce, ce_cosine and seesaw cells are the same cells (same
    folders, same runs), so a study folder that holds them keeps them. Its arms:
    {','.join(study.PRESETS['ablation'])}
  seeds (--seeds, default {','.join(map(str, study.DEFAULT_SEEDS))}): paired - seed s gives every arm the same data
    order and the same initial weights for every module but the classifier.

protocol (generated set; docs/harness.md "Loss study" gives the reasons)
  data      the demo's training set (400 images, 24 classes, LVIS-like frequencies: rare classes
            in 1-10 training images), validation grown to {study.STUDY_VAL_IMAGES} images with every class in at
            least {study.STUDY_MIN_VAL_IMAGES} of them (for AP_r's standard error); --dataset DIR uses a set of yours
  start     a ResNet body pretrained once per seed ({pretraining.PRETRAIN_ITERATIONS} iterations of CE, from scratch) on a
            separate generated set ({pretraining.PRETRAIN_IMAGES} images, own seed, own classes), the CPU stand-in
            for ImageNet weights, loaded through MODEL.WEIGHTS; --pretrain-iter 0 trains from scratch
  schedule  {study.STUDY_ITERATIONS} iterations, batch 8, lr {study.BASE_LR} (the paper's 0.02 at batch 16), warm-up 50,
            steps at 16/24 and 22/24, FrozenBN with stem and res2 frozen (fine-tuning)
  --profile lvis  the LVIS-shaped generated set (suite data synth --profile lvis: {LVIS_PROFILE_CLASSES} classes,
            image counts from LVIS v1's quantiles, {study.PROFILES['lvis'].image_size} px) and {study.LVIS_PROFILE_ITERATIONS} iterations, the default's
            training cost per cell (docs/data-stats.md); use its own --out
  lvis_v1   --dataset lvis_v1: the configs/lvis_v1 files (ImageNet R-50, the 2x schedule); with
            --device cuda --num-gpus N this is the LVIS v1 study on your GPUs

outputs
  OUT/study.json             grid, protocol, data set, cells done, total time (atomic, per cell)
  OUT/runs/<arm>/seed<s>/    ordinary run directories (run.json, config.yaml, checkpoints,
                             inference/lvis_instances_results.json) + bootstrap.json: AP, APr,
                             APc, APf on resampled validation images (same resamples for all);
                             a finished cell keeps only its last checkpoint (model_final.pth,
                             what suite eval reads) unless --keep-checkpoints
  OUT/pretrain/, OUT/init/   the pretraining runs and each seed's shared initial weights
  a progress line per cell with the study's ETA; then: suite report --results OUT/runs
  (mean +- sd per arm, paired differences to CE with 95% intervals and verdicts)

Running the same command again keeps finished cells and resumes an interrupted one.

jobs (--launcher submitit; docs/harness.md "A study on a Slurm cluster")
  every cell a job: Slurm through submitit, or submitit's LocalExecutor (processes on this
  machine), as --executor says (default auto: Slurm where srun is on PATH, else the
  LocalExecutor); each seed's pretraining first (Slurm: afterok), then its cells,
  then the study record (Slurm: a last job, afterany; locally this command waits and writes it).
  A preempted or timed-out job is requeued and resumes from its checkpoint; a failed one is
  named with its log, the others go on, and the same command resubmits what is not done.
  --status OUT shows the grid (done, running, queued, failed); --dry-run shows the jobs and an
  estimate of their hours from the cells OUT has finished.
"""


def _names(text: str):
    return [name.strip() for name in text.split(",") if name.strip()]


def _key_value(text: str):
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _seeds(text: str):
    try:
        return [int(seed) for seed in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers separated by commas, got {text!r}") from None


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="the whole suite on the CPU: data, four losses, report (about 15 minutes)",
        description="Generate the default synthetic long-tailed set, train and evaluate ce, focal, eql "
        "and seesaw on it (or the losses of --losses) with the small CPU model, and write the report to "
        "OUTPUT/report/README.md. Running it again keeps finished runs and resumes an interrupted one.")
    demo.add_argument("--output", type=Path, default=Path("output/demo"), help="default: output/demo")
    demo.add_argument("--max-iter", type=int, help="training iterations per loss (default: the tuned demo value)")
    demo.add_argument("--losses", nargs="+", choices=LOSSES, metavar="LOSS",
                      help=f"the losses to train (default: ce focal eql seesaw, which fit the 15 minutes; any of {', '.join(LOSSES)})")
    demo.set_defaults(func=run_demo)

    parser = subparsers.add_parser(
        "study", help="a losses x seeds grid with paired seeds, for statistics (estimated 2 hours on 2 cores)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate every arm (loss and classifier) at every seed on one data set and one "
        "protocol; keep each run's detections and bootstrap its AP over validation images.",
        epilog=STUDY_EPILOG)
    parser.add_argument("--out", type=Path, metavar="OUT", help="study folder (created, or continued); required but "
                        "with --status")
    parser.add_argument("--losses", type=_names, metavar="ARM,...",
                        help=f"arms (default {','.join(study.DEFAULT_ARMS)}; known: {','.join(study.ARMS)})")
    parser.add_argument("--preset", choices=sorted(study.PRESETS),
                        help="a named set of arms instead of --losses (ablation: Seesaw's factors and classifier)")
    parser.add_argument("--profile", choices=sorted(study.PROFILES), default="default",
                        help="the generated study set and its iterations (default %(default)s; lvis: the LVIS-shaped "
                        "set)")
    parser.add_argument("--seeds", type=_seeds, default=list(study.DEFAULT_SEEDS), metavar="S,...",
                        help=f"seeds (default {','.join(map(str, study.DEFAULT_SEEDS))})")
    parser.add_argument("--official-seeds", type=int, default=0, metavar="K",
                        help="also run seesaw_official at the first K seeds (default 0)")
    parser.add_argument("--dataset", metavar="DIR|lvis_v1",
                        help="a set written by 'suite data synth', or lvis_v1 (default: generate the study set in OUT/data)")
    parser.add_argument("--max-iter", type=int, help=f"iterations per cell (default {study.STUDY_ITERATIONS}; "
                        f"--profile lvis {study.LVIS_PROFILE_ITERATIONS}; lvis_v1: the config's)")
    parser.add_argument("--pretrain-iter", type=int, default=pretraining.PRETRAIN_ITERATIONS, metavar="N",
                        help="pretraining iterations per seed; 0 trains every cell from scratch (default %(default)s)")
    parser.add_argument("--pretrain-images", type=int, default=pretraining.PRETRAIN_IMAGES, metavar="N",
                        help="training images of the pretraining set (default %(default)s)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="Detectron2 config for every cell and the pretraining (default: configs/small_cpu.yaml; "
                        "lvis_v1: configs/lvis_v1/mask_rcnn_R_50_FPN_2x_<loss>.yaml)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs) per machine of a cell (default 1)")
    parser.add_argument("--num-machines", type=int, default=1,
                        help="machines per cell (default 1; more: each cell a job of that many nodes, --launcher submitit)")
    parser.add_argument("--bootstrap-resamples", type=int, default=study.DEFAULT_RESAMPLES, metavar="B",
                        help="resamples of the validation images per run (default %(default)s)")
    parser.add_argument("--protocol", type=protocol_names, default=["standard"], metavar="P[,P...]",
                        help="LVIS protocols every cell is evaluated and bootstrapped under, separated by commas: " +
                        PROTOCOLS_HELP + "; "
                        "the standard one is always evaluated (each cell's `metrics`), the others on a pass of their "
                        "own (its `metric_protocols`); part of the study's protocol")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every checkpoint of a finished cell (default: only its last, model_final.pth; "
                        "an unfinished cell keeps all, for its resume)")
    jobs = parser.add_argument_group(
        "jobs", "--launcher submitit: every cell a job on Slurm (submitit; its LocalExecutor where there is no "
        "Slurm, or with --executor local), each seed's pretraining before its cells (docs/harness.md, \"A study on "
        "a Slurm cluster\")")
    jobs.add_argument("--launcher", choices=("local", "submitit"), default="local",
                      help="local: every cell in turn in this process (default); submitit: every cell a job")
    jobs.add_argument("--executor", choices=EXECUTORS,
                      help="where the jobs run: auto (default): Slurm where srun is on PATH, else submitit's "
                      "LocalExecutor; slurm: Slurm (an error without it); local: the LocalExecutor, processes on "
                      "this machine")
    jobs.add_argument("--executor-config", type=Path, metavar="FILE",
                      help="yaml file of the job settings above and below (executor, partition, time_min, account, "
                      "cpus_per_task, mem_gb, sbatch: {KEY: VALUE}); the command line wins")
    jobs.add_argument("--partition", help="Slurm partition")
    jobs.add_argument("--time", type=int, dest="time_min", metavar="MIN",
                      help=f"time limit of a job in minutes (default {DEFAULT_TIME_MIN}: 3 days)")
    jobs.add_argument("--account", help="Slurm account")
    jobs.add_argument("--cpus-per-task", type=int, metavar="N", help="CPUs of a job's task (one task per node)")
    jobs.add_argument("--mem-gb", type=float, metavar="GB", help="memory per node")
    jobs.add_argument("--sbatch", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                      help="a further sbatch option, e.g. --sbatch constraint=volta32gb (repeatable)")
    jobs.add_argument("--status", type=Path, metavar="DIR",
                      help="show the grid of the study in DIR (done, running, queued, failed) and exit")
    jobs.add_argument("--dry-run", action="store_true",
                      help="show the grid, the jobs and their dependencies and an estimate of the hours they take, "
                      "submit nothing")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="Detectron2 config overrides for every cell and the pretraining")
    parser.set_defaults(func=run_study)

    pretrain = subparsers.add_parser(
        "pretrain", help="pretrain a backbone on a separate generated set (the study's stand-in for ImageNet)",
        description="Generate the pretraining set in OUT/data (own seed, own classes) unless it is there, train CE "
        "from scratch on it as OUT/seed<S> (an ordinary run directory) and write OUT/seed<S>/backbone.pth: the "
        "ResNet body, for MODEL.WEIGHTS.")
    pretrain.add_argument("--out", required=True, type=Path, metavar="OUT", help="folder of the set and the runs")
    pretrain.add_argument("--seed", type=int, default=0, help="seed of the pretraining run (default 0)")
    pretrain.add_argument("--iterations", type=int, default=pretraining.PRETRAIN_ITERATIONS, metavar="N",
                          help="training iterations (default %(default)s)")
    pretrain.add_argument("--images", type=int, default=pretraining.PRETRAIN_IMAGES, metavar="N",
                          help="training images of the pretraining set (default %(default)s)")
    pretrain.add_argument("--classes", type=int, default=24, help="classes of the pretraining set (default 24)")
    pretrain.add_argument("--size", type=int, default=128, metavar="PX", help="image side (default 128)")
    pretrain.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="Detectron2 config overrides")
    pretrain.set_defaults(func=run_pretrain)


def run_demo(args: argparse.Namespace) -> int:
    from suite.workflows.demo import DEMO_ITERATIONS, DEMO_LOSSES, run_demo as demo

    demo(args.output, max_iter=args.max_iter or DEMO_ITERATIONS, losses=tuple(args.losses or DEMO_LOSSES))
    return 0


def run_study(args: argparse.Namespace) -> int:
    if args.status is not None:
        from suite.workflows.study_status import print_status

        return print_status(args.status)
    if args.out is None:
        raise ValueError("--out OUT is required (but with --status DIR)")
    if args.preset and args.losses:
        raise ValueError(f"--preset {args.preset} and --losses both name the arms; give one")
    arms = study.PRESETS[args.preset] if args.preset else study.DEFAULT_ARMS if args.losses is None else args.losses
    options = study.StudyOptions(
        out=args.out, arms=tuple(arms), seeds=args.seeds, official_seeds=args.official_seeds, profile=args.profile,
        dataset=args.dataset,
        max_iter=args.max_iter, pretrain_iter=args.pretrain_iter, pretrain_images=args.pretrain_images,
        config_file=args.config, device=args.device, num_gpus=args.num_gpus, num_machines=args.num_machines,
        bootstrap_resamples=args.bootstrap_resamples, keep_checkpoints=args.keep_checkpoints,
        protocols=tuple(args.protocol), overrides=args.overrides)
    settings = None
    if args.launcher == "submitit":
        from suite.workflows.executor_settings import executor_settings

        settings = executor_settings(
            args.executor_config, executor=args.executor, partition=args.partition, time_min=args.time_min,
            account=args.account, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb, sbatch=dict(args.sbatch))
    if args.dry_run:
        from suite.workflows.study_status import print_dry_run

        return print_dry_run(options, settings)
    if settings is None:
        study.run_study(options)
        return 0
    from suite.workflows.launcher import submit_study

    return submit_study(options, settings)


def run_pretrain(args: argparse.Namespace) -> int:
    from suite.data.layout import SyntheticLayout
    from suite.data.synth import generate

    if args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    data = args.out / "data"
    if not SyntheticLayout(data).split("train").json_file.exists():
        generate(pretraining.pretrain_set_spec(args.classes, args.size, args.images), data)
    backbone = pretraining.pretrain_backbone(data, args.out / f"seed{args.seed}", args.seed, args.iterations,
                                             overrides=args.overrides)
    print(f"backbone: {backbone} (MODEL.WEIGHTS {backbone})")
    return 0
