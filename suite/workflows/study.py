"""`suite study`: a grid of losses x seeds on one data set and one protocol, with paired seeds.

Layout of a study folder OUT:

    OUT/study.json                 the study record (kind "study", docs/records.md), rewritten
                                   atomically after every cell
    OUT/data/                      the study set (generated unless --dataset names one)
    OUT/pretrain/data/             the pretraining set (own seed and classes)
    OUT/pretrain/seed<s>/          the pretraining run of seed s and its backbone.pth
    OUT/init/seed<s>.pth           the shared initial weights of seed s
    OUT/runs/<arm>/seed<s>/        a cell: an ordinary run directory (run.json, config.yaml,
                                   checkpoints, inference/lvis_instances_results.json) and
                                   bootstrap.json (AP over resampled validation images); once
                                   finished, only its last checkpoint (model_final.pth) unless
                                   --keep-checkpoints

Pairing: seed s gives every arm the same data order (Detectron2 seeds its sampler and
augmentations from cfg.SEED before anything loss-specific is drawn) and the same initial weights
for every module but the classifier (OUT/init/seed<s>.pth, suite.workflows.pretrain). Running the
study again keeps finished cells and resumes an interrupted one from its last checkpoint.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from suite.d2.config import loss_param_key
from suite.data.layout import LVIS_V1
from suite.data.synth import LVIS_PROFILE_IMAGE_SIZE
from suite.environment import collect
from suite.errors import UserError
from suite.evaluation.bootstrap import BOOTSTRAP_RECORD, DEFAULT_RESAMPLES, write_run_bootstrap
from suite.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, with_standard
from suite.harness.checkpoint_pruning import prune_checkpoints
from suite.harness.run_lock import RunLock
from suite.harness.run_record import read_run_record
from suite.records import read_record, write_json_atomic
from suite.schema import RUN_RECORD, SCHEMA_VERSION, STUDY_FIELDS, STUDY_KIND, STUDY_RECORD
from suite.workflows import pretrain as pretraining
from suite.workflows.study_jobs import check_not_held

logger = logging.getLogger("suite.study")


@dataclass(frozen=True)
class Arm:
    """One row of the grid: a loss, its classifier, and config overrides of the loss's own keys
    (its parameters reach the loss through the run's config, as every run's do)."""

    name: str
    loss: str
    cosine: bool  # normalized (cosine) linear classifier, temperature 20
    loss_overrides: Tuple[str, ...] = ()  # KEY VALUE pairs of the loss's parameters (loss_param_key)


# Seesaw's exponents at 0: both factors are 1 for every pair of classes.
NEITHER_FACTOR = (loss_param_key("seesaw", "p"), "0.0", loss_param_key("seesaw", "q"), "0.0")
ARMS = {arm.name: arm for arm in (
    Arm("ce", "ce", False),
    Arm("ce_cosine", "ce", True),  # the control: the official Seesaw classifier with plain CE
    Arm("focal", "focal", False),
    Arm("eql", "eql", False),
    Arm("eqlv2", "eqlv2", False),
    Arm("fed", "fed", False),
    Arm("seesaw", "seesaw", True),  # the official configuration: both factors, cosine classifier
    # The paper's ablation: one factor switched off (its exponent 0 makes it 1 for every pair),
    # and both factors on the linear classifier.
    Arm("seesaw_mitigation", "seesaw", True, (loss_param_key("seesaw", "q"), "0.0")),
    Arm("seesaw_compensation", "seesaw", True, (loss_param_key("seesaw", "p"), "0.0")),
    Arm("seesaw_linear", "seesaw", False),
    # The control: neither factor, so what is left of Seesaw is its objectness branch (C + 2
    # logits, the class softmax over foreground RoIs only, a 2-way objectness CE, scores
    # p(class | fg) p(fg)), on each classifier.
    Arm("seesaw_none", "seesaw", True, NEITHER_FACTOR),
    Arm("seesaw_none_linear", "seesaw", False, NEITHER_FACTOR),
    Arm("seesaw_official", "seesaw_official", True),  # mmdet's code, a reference
)}
DEFAULT_ARMS = ("ce", "focal", "eql", "seesaw", "ce_cosine")
# Named sets of arms (--preset). "ablation": the paper's ablation of Seesaw's two factors and of
# its classifier, beside CE with each classifier and the control with neither factor on each
# classifier; ce, ce_cosine and seesaw are the default study's cells, so a study folder that holds
# them keeps them.
PRESETS = {"ablation": ("ce", "ce_cosine", "seesaw", "seesaw_mitigation", "seesaw_compensation", "seesaw_linear",
                        "seesaw_none", "seesaw_none_linear")}
DEFAULT_SEEDS = (0, 1, 2)

# The protocol on a generated set (docs/harness.md "Loss study" argues each number).
STUDY_ITERATIONS = 250
STUDY_VAL_IMAGES = 480
STUDY_MIN_VAL_IMAGES = 80
BASE_LR = 0.01  # the paper's 0.02 at batch 16, scaled to the small model's batch of 8
# The LVIS profile's iterations: the default's cost per cell at its measured cost per iteration
# (docs/data-stats.md "An LVIS-shaped set": scripts/time_profiles.py).
LVIS_PROFILE_ITERATIONS = 320


@dataclass(frozen=True)
class Profile:
    """A study set (`set_spec`) and the schedule that fits a cell's budget on it: `iterations`,
    and `image_size` (None: the config's input size, 128 px) as the INPUT overrides."""

    name: str
    iterations: int
    image_size: Optional[int] = None

    def set_spec(self):
        """The SynthSpec of the profile's study set (lvis: read from the committed baselines)."""
        from suite.data.synth import SynthSpec, lvis_profile_spec

        if self.name == "lvis":
            return lvis_profile_spec()
        return SynthSpec(num_val_images=STUDY_VAL_IMAGES, min_val_images=STUDY_MIN_VAL_IMAGES)

    def input_overrides(self) -> List[str]:
        """Config overrides (KEY VALUE ...) that train and test at `image_size`, for the study's
        cells and its pretraining."""
        if self.image_size is None:
            return []
        size = str(self.image_size)
        return ["INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MAX_SIZE_TRAIN", size, "INPUT.MIN_SIZE_TEST", size,
                "INPUT.MAX_SIZE_TEST", size]


# default: the demo's training set (LVIS-like frequency groups: rare classes in 1-10 training
# images) with a validation split grown so that every class, rare ones included, is in at least
# STUDY_MIN_VAL_IMAGES validation images. lvis: suite.data.synth.lvis_profile_spec.
PROFILES = {"default": Profile("default", STUDY_ITERATIONS),
            "lvis": Profile("lvis", LVIS_PROFILE_ITERATIONS, LVIS_PROFILE_IMAGE_SIZE)}


def study_set_spec(profile: str = "default"):
    """The study set of a profile (PROFILES)."""
    return PROFILES[profile].set_spec()


def schedule_overrides(iterations: int, pretrained: bool) -> List[str]:
    """The paper's 2x recipe scaled to `iterations`: steps at 16/24 and 22/24 of training, lr
    0.02 x 8/16; from a pretrained backbone, Detectron2's fine-tuning setting (FrozenBN, stem and
    res2 frozen, as with ImageNet weights); from scratch, the small config's trainable BN."""
    overrides = ["SOLVER.STEPS", pretraining.steps(iterations, (16 / 24, 22 / 24)),
                 "SOLVER.BASE_LR", str(BASE_LR), "SOLVER.CHECKPOINT_PERIOD", "50"]
    if pretrained:
        overrides += ["MODEL.RESNETS.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "2"]
    return overrides


@dataclass
class StudyOptions:
    """What `suite study` was asked; see its --help."""

    out: Path
    arms: Sequence[str] = DEFAULT_ARMS
    seeds: Sequence[int] = DEFAULT_SEEDS
    official_seeds: int = 0
    profile: str = "default"  # PROFILES: the generated set and the iterations
    dataset: Optional[str] = None  # None: generate the profile's study set in OUT/data
    max_iter: Optional[int] = None
    pretrain_iter: int = pretraining.PRETRAIN_ITERATIONS
    pretrain_images: int = pretraining.PRETRAIN_IMAGES
    config_file: Optional[Path] = None
    device: str = "cpu"
    num_gpus: int = 1
    num_machines: int = 1  # > 1 only through the submitit launcher (suite.workflows.launcher)
    bootstrap_resamples: int = DEFAULT_RESAMPLES
    keep_checkpoints: bool = False  # False: a finished cell keeps only its last checkpoint (not part of the protocol)
    protocols: Sequence[str] = (DEFAULT_PROTOCOL,)  # every cell's LVIS evaluation protocols (suite.evaluation.protocols)
    overrides: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    arm: Arm
    seed: int

    def run_dir(self, out: Path) -> Path:
        return Path(out) / "runs" / self.arm.name / f"seed{self.seed}"

    def done(self, out: Path) -> bool:
        """Whether the cell of the study in `out` is finished: its bootstrap record, written last
        (after its checkpoints were pruned), marks it."""
        return (self.run_dir(out) / BOOTSTRAP_RECORD).exists()


def cells(options: StudyOptions) -> List[Cell]:
    """Seed-major order, so that a study cut short holds complete paired seeds; seesaw_official
    joins the first `official_seeds` seeds."""
    grid = []
    for index, seed in enumerate(options.seeds):
        names = list(options.arms)
        if index < options.official_seeds and "seesaw_official" not in names:
            names.append("seesaw_official")
        grid += [Cell(ARMS[name], seed) for name in names]
    return grid


def check_options(options: StudyOptions) -> None:
    """UserError naming the first bad option (before anything is generated or trained)."""
    import torch

    if options.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if options.num_gpus < 1 or (options.num_gpus > 1 and options.device != "cuda"):
        raise UserError(f"--num-gpus {options.num_gpus}: needs 1, or more with --device cuda")
    if options.num_machines < 1:
        raise UserError(f"--num-machines must be >= 1, got {options.num_machines}")
    unknown = [name for name in options.arms if name not in ARMS]
    if unknown:
        raise UserError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    if not options.arms or len(set(options.arms)) != len(options.arms):
        raise UserError(f"--losses must name distinct arms, at least one, got {list(options.arms)}")
    if len(set(options.seeds)) != len(options.seeds) or not options.seeds:
        raise UserError(f"--seeds must be distinct and at least one, got {list(options.seeds)}")
    if options.official_seeds < 0 or options.official_seeds > len(options.seeds):
        raise UserError(f"--official-seeds must be in [0, {len(options.seeds)}], got {options.official_seeds}")
    if options.pretrain_iter < 0:
        raise UserError(f"--pretrain-iter must be >= 0, got {options.pretrain_iter}")
    if options.max_iter is not None and options.max_iter < 1:
        raise UserError(f"--max-iter must be >= 1, got {options.max_iter}")
    if options.profile not in PROFILES:
        raise UserError(f"unknown profile {options.profile}; known: {', '.join(PROFILES)}")
    if options.bootstrap_resamples < 2:
        raise UserError(f"--bootstrap-resamples must be >= 2, got {options.bootstrap_resamples}")
    unknown = [protocol for protocol in options.protocols if protocol not in PROTOCOLS]
    if unknown:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {unknown[0]!r}")


class Study:
    """Runs the cells of one study folder; see the module docstring."""

    def __init__(self, options: StudyOptions):
        check_options(options)
        self.options = options
        self.out = Path(options.out)
        self.lvis = options.dataset == LVIS_V1
        self.data_dir = None if self.lvis else Path(options.dataset) if options.dataset else self.out / "data"
        self.pretrained = self.lvis or options.pretrain_iter > 0
        self.profile = PROFILES[options.profile]
        self.iterations = (options.max_iter if options.max_iter is not None else
                           None if self.lvis else self.profile.iterations)

    # -- the protocol ---------------------------------------------------------------------------
    def protocol(self) -> Dict[str, Any]:
        """What every cell shares (the study record's `protocol`): a rerun must match it. A cell
        on several machines adds `num_machines` (absent: 1, as in records written before it), and
        cells evaluated under more than the standard protocol add `evaluation_protocols` (absent:
        the standard one)."""
        machines = {"num_machines": self.options.num_machines} if self.options.num_machines > 1 else {}
        protocols = with_standard(self.options.protocols)
        evaluation = {"evaluation_protocols": list(protocols)} if protocols != (DEFAULT_PROTOCOL,) else {}
        return {
            "iterations": self.iterations,
            "start": ("ImageNet weights of the config (MODEL.WEIGHTS)" if self.lvis else
                      f"backbone pretrained {self.options.pretrain_iter} iterations on a separate set"
                      if self.pretrained else "from scratch"),
            "pretrain_iterations": None if self.lvis else self.options.pretrain_iter,
            "pretrain_images": None if self.lvis or not self.pretrained else self.options.pretrain_images,
            "config_file": str(self.options.config_file) if self.options.config_file else None,
            "overrides": self._protocol_overrides(),
            "device": self.options.device, "num_gpus": self.options.num_gpus, **machines,
            "bootstrap_resamples": self.options.bootstrap_resamples, **evaluation,
        }

    def _protocol_overrides(self) -> List[str]:
        protocol = [] if self.lvis else schedule_overrides(self.iterations, self.pretrained) + self.profile.input_overrides()
        return protocol + list(self.options.overrides)

    def _arm_overrides(self, arm: Arm) -> List[str]:
        overrides = ["MODEL.ROI_BOX_HEAD.COSINE_CLASSIFIER", str(arm.cosine), *arm.loss_overrides]
        if self.lvis or arm.loss not in ("eql", "fed"):
            return overrides
        from suite.workflows.demo import eql_lambda, fed_num_classes
        from suite.data.synth import SynthSpec

        spec = SynthSpec(num_train_images=self._num_train_images())
        if arm.loss == "eql":
            overrides += [loss_param_key("eql", "lambda_"), str(eql_lambda(spec))]
        else:
            overrides += [loss_param_key("fed", "num_sampled_classes"), str(fed_num_classes(spec))]
        return overrides

    def _config_file(self, arm: Arm) -> Optional[Path]:
        if self.options.config_file:
            return Path(self.options.config_file)
        from suite.harness.train import default_config_file

        config_loss = "seesaw" if arm.loss == "seesaw_official" else arm.loss
        return default_config_file(LVIS_V1 if self.lvis else "synthetic", config_loss)

    def _num_train_images(self) -> int:
        import json

        from suite.data.layout import SyntheticLayout

        return len(json.loads(SyntheticLayout(self.data_dir).split("train").json_file.read_text())["images"])

    def _train_options(self, arm: Arm, seed: int, output: Path, weights: Optional[Path], resume: bool,
                       machine_rank: int = 0, dist_url: str = "auto"):
        from suite.harness.train import TrainOptions

        overrides = self._protocol_overrides() + self._arm_overrides(arm)
        if weights is not None:
            overrides += ["MODEL.WEIGHTS", str(weights)]
        return TrainOptions(loss=arm.loss, dataset=LVIS_V1 if self.lvis else str(self.data_dir), output=output,
                            config_file=self._config_file(arm), max_iter=self.iterations, device=self.options.device,
                            num_gpus=self.options.num_gpus, num_machines=self.options.num_machines,
                            machine_rank=machine_rank, dist_url=dist_url, resume=resume, seed=seed,
                            record_grad_balance=True, bootstrap_resamples=self.options.bootstrap_resamples,
                            prune_checkpoints=not self.options.keep_checkpoints, protocols=self.options.protocols,
                            overrides=overrides)

    # -- shared parts ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the study set (default) and, with pretraining, the pretraining set."""
        from suite.data.layout import SyntheticLayout
        from suite.data.synth import generate

        if self.lvis:
            return
        if self.options.dataset is None and not SyntheticLayout(self.data_dir).split("train").json_file.exists():
            generate(self.profile.set_spec(), self.data_dir)
        if not SyntheticLayout(self.data_dir).split("train").json_file.exists():
            raise UserError(f"{self.data_dir}: no data set (write one with: suite data synth --out {self.data_dir})")
        if self.pretrained and not SyntheticLayout(self._pretrain_data()).split("train").json_file.exists():
            generate(self._pretrain_spec(), self._pretrain_data())

    def _pretrain_data(self) -> Path:
        return self.out / "pretrain" / "data"

    def _pretrain_spec(self):
        import json

        from suite.data.layout import SyntheticLayout

        train = json.loads(SyntheticLayout(self.data_dir).split("train").json_file.read_text())
        return pretraining.pretrain_set_spec(len(train["categories"]), int(train["images"][0]["height"]),
                                             self.options.pretrain_images)

    def initial_weights_path(self, seed: int) -> Path:
        return self.out / "init" / f"seed{seed}.pth"

    def initial_weights(self, seed: int) -> Path:
        """OUT/init/seed<s>.pth, made once: the pretraining of seed s (synthetic) and the model
        of seed s built on it."""
        path = self.initial_weights_path(seed)
        if path.is_file():
            return path
        pretrained = None  # lvis_v1: the config's MODEL.WEIGHTS (ImageNet), read below
        if self.pretrained and not self.lvis:
            pretrained = str(pretraining.pretrain_backbone(
                self._pretrain_data(), self.out / "pretrain" / f"seed{seed}", seed, self.options.pretrain_iter,
                overrides=self.profile.input_overrides() + list(self.options.overrides), device=self.options.device,
                num_gpus=self.options.num_gpus))
        from suite.data.register import register_dataset
        from suite.harness.train import build_run_cfg

        options = self._train_options(ARMS["ce"], seed, self.out / "init", None, resume=False)
        cfg = build_run_cfg(options, register_dataset(options.dataset))
        if self.lvis:
            pretrained = cfg.MODEL.WEIGHTS
        return pretraining.write_initial_weights(cfg, seed, pretrained, path)

    # -- running --------------------------------------------------------------------------------
    def _val_json(self) -> Path:
        from suite.data.layout import dataset_split

        return dataset_split(LVIS_V1 if self.lvis else str(self.data_dir), "val").json_file

    def run_cell(self, cell: Cell, machine_rank: int = 0, dist_url: str = "auto") -> Optional[Dict[str, Any]]:
        """Train (or resume, or keep) one cell: once its run record is written, its training
        deletes its checkpoints but the last (unless keep_checkpoints), then writes its bootstrap
        from the final evaluation's matching (the bootstrap record marks the cell done, so a done
        cell has been pruned); a cell stopped between the two records does both here, its
        bootstrap from the detections it kept (the same record). Returns its run record.
        On several machines every machine calls it with its rank and machine 0's `dist_url`;
        machine 0 finishes the cell, the others return None once trained."""
        from suite.harness.train import train

        run_dir = cell.run_dir(self.out)
        if not (run_dir / RUN_RECORD).exists():
            weights = self.initial_weights(cell.seed)
            train(self._train_options(cell.arm, cell.seed, run_dir, weights,
                                      resume=(run_dir / "last_checkpoint").exists(), machine_rank=machine_rank,
                                      dist_url=dist_url))
        if machine_rank != 0:
            return None
        record = read_run_record(run_dir)
        if not (run_dir / BOOTSTRAP_RECORD).exists():
            with RunLock(run_dir):  # `suite train` held it while training; these write there too
                if not self.options.keep_checkpoints:
                    prune_checkpoints(run_dir)
                write_run_bootstrap(run_dir, self._val_json(), self.options.bootstrap_resamples,
                                    metric_protocols=record.get("metric_protocols"))
        return record

    def record(self, grid: List[Cell], wall_s: float) -> Dict[str, Any]:
        dataset: Dict[str, Any] = {"name": LVIS_V1} if self.lvis else {"name": "synthetic", "path": str(self.data_dir)}
        if self.options.dataset is None and not self.lvis:
            dataset["spec"] = asdict(self.profile.set_spec())
        if self.pretrained and not self.lvis:
            dataset["pretrain_spec"] = asdict(self._pretrain_spec())
        return {
            "schema_version": SCHEMA_VERSION, "kind": STUDY_KIND,
            "grid": {"arms": list(self.options.arms), "seeds": list(self.options.seeds),
                     "official_seeds": self.options.official_seeds},
            "protocol": self.protocol(),
            "dataset": dataset,
            "cells": [{"arm": cell.arm.name, "loss": cell.arm.loss, "cosine": cell.arm.cosine,
                       "loss_overrides": list(cell.arm.loss_overrides), "seed": cell.seed,
                       "run_dir": str(cell.run_dir(Path("."))),
                       "done": cell.done(self.out)} for cell in grid],
            "wall_s": wall_s,
            "environment": collect(self.options.device),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def previous_wall_s(self) -> float:
        """The time earlier invocations spent; UserError if OUT holds a study of another protocol."""
        path = self.out / STUDY_RECORD
        if not path.exists():
            return 0.0
        previous = read_record(path, STUDY_KIND, STUDY_FIELDS)
        if previous["protocol"] != self.protocol():
            raise UserError(f"{self.out} holds a study with another protocol ({STUDY_RECORD}); "
                            "rerun it with the same options or choose another --out")
        return float(previous["wall_s"])

    def run(self) -> Dict[str, Any]:
        """Every cell not done yet, seed-major, holding OUT's lock (one study per folder; each
        cell's run directory has its own); returns the final study record."""
        if self.options.num_machines > 1:
            raise UserError(f"--num-machines {self.options.num_machines}: a cell on several machines runs as a "
                            "job; add --launcher submitit")
        with RunLock(self.out):
            check_not_held(self.out)
            return self._run()

    def _run(self) -> Dict[str, Any]:
        start = time.perf_counter()
        earlier = self.previous_wall_s()
        self.prepare_data()
        grid = cells(self.options)
        todo = [cell for cell in grid if not cell.done(self.out)]
        print(f"study {self.out}: {len(grid)} cells ({len(grid) - len(todo)} done), "
              f"arms {', '.join(self.options.arms)}, seeds {', '.join(map(str, self.options.seeds))}", flush=True)
        write_json_atomic(self.out / STUDY_RECORD, self.record(grid, earlier))
        for done, cell in enumerate(todo, start=1):
            cell_start = time.perf_counter()
            run = self.run_cell(cell)
            elapsed = time.perf_counter() - start
            write_json_atomic(self.out / STUDY_RECORD, self.record(grid, earlier + elapsed))
            print(progress_line(grid.index(cell) + 1, len(grid), cell, run, time.perf_counter() - cell_start,
                                elapsed, elapsed / done * (len(todo) - done)), flush=True)
        record = self.record(grid, earlier + time.perf_counter() - start)
        write_json_atomic(self.out / STUDY_RECORD, record)
        print(f"study done: {len(grid)} cells, {record['wall_s'] / 60:.1f} min in all; "
              f"report: suite report --results {self.out / 'runs'} --out {self.out / 'report'}", flush=True)
        return record


def _ap(metrics: Dict[str, Any], key: str) -> str:
    return "n/a" if metrics.get(key) is None else f"{metrics[key]:.1f}"


def progress_line(position: int, total: int, cell: Cell, run: Dict[str, Any], cell_s: float, elapsed_s: float,
                  eta_s: float) -> str:
    """One line per finished cell: which, how long, its AP and AP_r, and the study's ETA."""
    bbox, segm = run["metrics"]["bbox"], run["metrics"]["segm"]
    return (f"[{position}/{total}] {cell.arm.name} seed {cell.seed}: {cell_s:.0f} s | bbox AP {_ap(bbox, 'AP')} "
            f"APr {_ap(bbox, 'APr')} | segm AP {_ap(segm, 'AP')} APr {_ap(segm, 'APr')} | study "
            f"{elapsed_s / 60:.1f} min, ETA {eta_s / 60:.1f} min")


def run_study(options: StudyOptions) -> Dict[str, Any]:
    return Study(options).run()
