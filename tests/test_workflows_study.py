"""`suite study` end to end on a tiny generated set with real Detectron2 (2 arms x 2 seeds, a
pretraining of 1 iteration per seed): the study record and progress lines, paired seeds (the same
initial weights for every shared module and the same first batches across arms), resuming an
interrupted cell while keeping finished ones, a finished cell's checkpoints deleted but the last
(all kept with --keep-checkpoints), and the report's paired statistics against a hand computation
on the records."""

import contextlib
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode
from detectron2.utils.env import seed_all_rng

from suite.cli import main
from suite.data.register import register_dataset
from suite.harness.checkpoint_pruning import prune_checkpoints
from suite.harness.run_lock import RunLock
from suite.harness.trainer import LongTailTrainer
from suite.report import paired, stats
from suite.report.group_balance import SEESAW_COUNTS_KEY, group_balance_rows
from suite.report.records import gather
from suite.workflows.pretrain import LOSS_OWN_PREFIXES

from d2_helpers import TINY
from data_helpers import lay_out_like_lvis_v1, small_set
from test_harness_cli import TINY as TINY_RUN

# The harness tests' tiny runs with the narrower model of tests/d2_helpers.
TINY_OVERRIDES = [*TINY_RUN, "SOLVER.WARMUP_ITERS", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                  "TEST.DETECTIONS_PER_IMAGE", "10", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
                  "MODEL.ROI_MASK_HEAD.CONV_DIM", "16"]
ARMS = ("ce", "seesaw")
SEEDS = (0, 1)


# A checkpoint after every iteration: 4 per cell (model_0000000..2, model_final), of which a
# finished cell keeps only model_final.pth.
CHECKPOINT_EVERY_ITERATION = ["SOLVER.CHECKPOINT_PERIOD", "1"]


def study_args(root: Path):
    return ["study", "--out", str(root / "study"), "--dataset", str(root / "data"), "--losses", ",".join(ARMS),
            "--seeds", ",".join(map(str, SEEDS)), "--max-iter", "3", "--pretrain-iter", "1", "--pretrain-images", "24",
            "--bootstrap-resamples", "10", *TINY_OVERRIDES, *CHECKPOINT_EVERY_ITERATION]


def progress(output: str):
    """The study's progress lines (Detectron2 logs to stdout too)."""
    return [line.split(":")[0] for line in output.splitlines() if re.match(r"\[\d+/\d+\] ", line)]


def run_cli(args):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(args)
    return code, output.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    small_set(root / "data", TINY)
    code, output = run_cli(study_args(root))
    assert code == 0
    return root, output


def test_study_record_and_progress(study):
    root, output = study
    record = json.loads((root / "study" / "study.json").read_text())
    assert record["kind"] == "study" and record["grid"] == {"arms": list(ARMS), "seeds": list(SEEDS), "official_seeds": 0}
    assert [(cell["arm"], cell["seed"], cell["done"]) for cell in record["cells"]] == [
        ("ce", 0, True), ("seesaw", 0, True), ("ce", 1, True), ("seesaw", 1, True)]
    assert record["protocol"]["iterations"] == 3 and record["protocol"]["pretrain_iterations"] == 1
    assert record["dataset"]["pretrain_spec"]["hue_offset"] > 0 and record["wall_s"] > 0
    assert progress(output) == ["[1/4] ce seed 0", "[2/4] seesaw seed 0", "[3/4] ce seed 1", "[4/4] seesaw seed 1"]
    assert all("ETA" in line and "APr" in line for line in output.splitlines() if re.match(r"\[\d+/4\] ", line))
    for arm in ARMS:
        for seed in SEEDS:
            cell = root / "study" / "runs" / arm / f"seed{seed}"
            run = json.loads((cell / "run.json").read_text())
            assert (run["loss"]["name"], run["seed"]) == (arm, seed)
            assert run["config"]["MODEL"]["WEIGHTS"] == str(root / "study" / "init" / f"seed{seed}.pth")
            assert run["config"]["MODEL"]["ROI_BOX_HEAD"]["COSINE_CLASSIFIER"] == (arm == "seesaw")
            assert (cell / "inference" / "lvis_instances_results.json").is_file()
            assert json.loads((cell / "bootstrap.json").read_text())["resamples"] == 10
            assert sorted(path.name for path in cell.glob("*.pth")) == ["model_final.pth"]
            assert (cell / "last_checkpoint").read_text() == "model_final.pth"


def _start(cell: Path, tmp_path: Path, weights=None):
    """What `suite train` does before its first iteration, for the cell's own config: the model
    after loading MODEL.WEIGHTS, and the image ids and pixels of the first two batches."""
    cfg = CfgNode.load_cfg((cell / "config.yaml").read_text())
    cfg.defrost()
    cfg.OUTPUT_DIR = str(tmp_path / cell.parent.name / cell.name)  # the trainer's writers go there
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    seed_all_rng(cfg.SEED)
    trainer = LongTailTrainer(cfg)
    trainer.resume_or_load(resume=False)
    loader = iter(trainer.data_loader)
    batches = [next(loader) for _ in range(2)]
    return (trainer.model.state_dict(), [item["image_id"] for batch in batches for item in batch],
            torch.cat([item["image"].flatten() for batch in batches for item in batch]))


def test_seeds_are_paired(study, tmp_path):
    root, _ = study
    register_dataset(str(root / "data"))
    runs = root / "study" / "runs"
    ce, seesaw = _start(runs / "ce" / "seed0", tmp_path), _start(runs / "seesaw" / "seed0", tmp_path)
    shared = [key for key in ce[0] if not key.startswith(LOSS_OWN_PREFIXES)]
    assert any(key.startswith("roi_heads.mask_head.") for key in shared)
    assert all(torch.equal(ce[0][key], seesaw[0][key]) for key in shared)
    assert ce[1] == seesaw[1] and torch.equal(ce[2], seesaw[2])  # data order and augmentation
    other_seed = _start(runs / "ce" / "seed1", tmp_path)
    assert other_seed[1] != ce[1]
    assert not torch.equal(other_seed[0]["roi_heads.mask_head.predictor.weight"], ce[0]["roi_heads.mask_head.predictor.weight"])
    # Without the shared file the classifier's width (7 vs 8 logits) shifts every later draw.
    ce_alone, seesaw_alone = (_start(runs / arm / "seed0", tmp_path / "alone", weights="") for arm in ARMS)
    assert not torch.equal(ce_alone[0]["roi_heads.mask_head.predictor.weight"],
                           seesaw_alone[0]["roi_heads.mask_head.predictor.weight"])


def test_each_seed_starts_from_its_own_pretrained_backbone(study):
    root, _ = study
    for seed in SEEDS:
        backbone = torch.load(root / "study" / "pretrain" / f"seed{seed}" / "backbone.pth", weights_only=False)["model"]
        initial = torch.load(root / "study" / "init" / f"seed{seed}.pth", weights_only=False)["model"]
        assert backbone and all(key.startswith("backbone.bottom_up.") for key in backbone)
        assert all(torch.equal(initial[key], value) for key, value in backbone.items())
        assert not any(key.startswith(LOSS_OWN_PREFIXES) for key in initial)
    pretrain_run = json.loads((root / "study" / "pretrain" / "seed0" / "run.json").read_text())
    assert pretrain_run["loss"]["name"] == "ce" and pretrain_run["dataset"]["path"] == str(
        (root / "study" / "pretrain" / "data").resolve())


def test_errors_are_one_line_and_a_changed_protocol_is_refused(study, capsys):
    root, _ = study
    assert main(["study", "--out", str(root / "other"), "--losses", "ce,nope"]) == 2
    assert "unknown arm(s) nope" in capsys.readouterr().err
    assert main(["study", "--out", str(root / "other"), "--losses", "ce,ce"]) == 2
    assert "distinct arms" in capsys.readouterr().err
    assert main(["study", "--out", str(root / "other"), "--seeds", "1,1"]) == 2
    assert "distinct" in capsys.readouterr().err
    changed = [arg if arg != "3" else "4" for arg in study_args(root)]  # --max-iter 4
    assert main(changed) == 2
    assert "another protocol" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["study", "--out", str(root / "other"), "--device", "cuda", "--num-gpus", "2"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    with RunLock(root / "study"):  # another study at work in that folder
        assert main(study_args(root)) == 2
    assert "in use by another suite process" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(root / "other"), "--iterations", "0"]) == 2
    assert "--iterations must be >= 1" in capsys.readouterr().err
    assert not (root / "other").exists()


def test_lvis_v1_passes_through_with_the_evaluation_protocols(tmp_path, monkeypatch, capsys):
    """--dataset lvis_v1 (here a generated set laid out as LVIS v1 under $DETECTRON2_DATASETS,
    with the small config): no pretraining, the config's MODEL.WEIGHTS as the start. --protocol:
    every cell evaluated and bootstrapped under each protocol, which is part of the study's
    protocol; an unknown one is one line."""
    datasets = tmp_path / "datasets"
    lay_out_like_lvis_v1(small_set(tmp_path / "set", TINY), datasets)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--dataset", "lvis_v1", "--losses", "ce", "--seeds", "0", "--max-iter", "1",
            "--config", "configs/small_cpu.yaml", "--bootstrap-resamples", "3", *TINY_OVERRIDES]
    code, _ = run_cli([*args, "--protocol", "challenge2021,fixed"])
    assert code == 0
    record = json.loads((out / "study.json").read_text())
    assert record["dataset"] == {"name": "lvis_v1"} and record["protocol"]["pretrain_iterations"] is None
    assert record["protocol"]["evaluation_protocols"] == ["standard", "challenge2021", "fixed"]
    run = json.loads((out / "runs" / "ce" / "seed0" / "run.json").read_text())
    assert run["dataset"]["name"] == "lvis_v1" and run["config"]["DATASETS"]["TEST"] == ["lvis_v1_val"]
    assert run["config"]["MODEL"]["RESNETS"]["NORM"] == "BN"  # the config's, not the fine-tuning overrides
    assert set(run["metric_protocols"]) == {"standard", "fixed", "challenge2021"}
    assert not (out / "pretrain").exists()
    cell_bootstrap = json.loads((out / "runs" / "ce" / "seed0" / "bootstrap.json").read_text())
    assert set(cell_bootstrap["replicates"]) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    capsys.readouterr()
    assert main(args) == 2  # the standard protocol alone is another protocol
    assert "another protocol" in capsys.readouterr().err
    assert main([*args, "--protocol", "lvis2020"]) == 2
    assert "--protocol must be one of" in capsys.readouterr().err


def test_rerun_keeps_finished_cells_and_resumes_an_interrupted_one(study, tmp_path):
    root, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    for path in (copy / "study").rglob("config.yaml"):  # the copied configs name the copy's files
        path.write_text(path.read_text().replace(str(root), str(copy)))
    interrupted = copy / "study" / "runs" / "seesaw" / "seed1"
    (interrupted / "run.json").unlink()  # as if killed after its last checkpoint
    (interrupted / "bootstrap.json").unlink()
    between = copy / "study" / "runs" / "ce" / "seed0"
    shared = (between / "bootstrap.json").read_bytes()  # from its final evaluation's own matching
    (between / "bootstrap.json").unlink()  # as if killed between its run record and its bootstrap
    kept = {path: path.stat().st_mtime_ns for path in (copy / "study" / "runs").rglob("run.json")}
    args = study_args(copy)
    code, output = run_cli(args)
    assert code == 0
    assert progress(output) == ["[1/4] ce seed 0", "[4/4] seesaw seed 1"]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())
    assert (between / "bootstrap.json").read_bytes() == shared  # from the detections it kept: the same record
    resumed = json.loads((interrupted / "run.json").read_text())
    assert resumed["train"]["start_iter"] == 3 and (interrupted / "bootstrap.json").is_file()
    record = json.loads((copy / "study" / "study.json").read_text())
    assert all(cell["done"] for cell in record["cells"])


def checkpoints(run_dir: Path):
    return sorted(path.name for path in run_dir.glob("*.pth"))


def test_checkpoints_are_deleted_only_once_a_cell_is_finished_and_not_with_keep_checkpoints(study, tmp_path):
    """--keep-checkpoints keeps all four; a cell interrupted after its checkpoint of iteration 1
    keeps its checkpoints until it is finished, then resumes from them and keeps only the last,
    which `suite eval` evaluates to the same metrics."""
    root, _ = study
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--dataset", str(root / "data"), "--losses", "ce", "--seeds", "0",
            "--max-iter", "3", "--pretrain-iter", "0", "--bootstrap-resamples", "3", *TINY_OVERRIDES,
            *CHECKPOINT_EVERY_ITERATION]
    code, _ = run_cli([*args, "--keep-checkpoints"])
    cell = out / "runs" / "ce" / "seed0"
    assert code == 0
    assert checkpoints(cell) == ["model_0000000.pth", "model_0000001.pth", "model_0000002.pth", "model_final.pth"]

    # As a kill right after the checkpoint of iteration 1 leaves the cell (and a save cut short).
    for name in ("run.json", "bootstrap.json", "model_0000002.pth", "model_final.pth"):
        (cell / name).unlink()
    (cell / "last_checkpoint").write_text("model_0000001.pth")
    (cell / ".model_0000002.pth.abc123.tmp").write_bytes(b"partial")
    assert prune_checkpoints(cell) == []  # unfinished: a resume needs them
    assert checkpoints(cell) == ["model_0000000.pth", "model_0000001.pth"]

    code, output = run_cli(args)
    assert code == 0 and progress(output) == ["[1/1] ce seed 0"]
    run = json.loads((cell / "run.json").read_text())
    assert run["train"]["start_iter"] == 2 and run["train"]["segments"] == 2
    assert checkpoints(cell) == ["model_final.pth"] and not list(cell.glob(".*.tmp"))
    assert (cell / "bootstrap.json").is_file()

    code, _ = run_cli(["eval", "--run", str(cell)])
    assert code == 0
    assert json.loads((cell / "run.json").read_text())["metrics"] == run["metrics"]


def test_seesaw_counts_per_group_from_the_kept_checkpoint(study):
    """The foreground share per frequency group, from the counts in each Seesaw cell's kept
    model_final.pth, by hand; CE cells have no counts."""
    root, _ = study
    rows = {(row["arm"], row["seed"]): row for row in group_balance_rows([root / "study" / "runs"])}
    for seed in SEEDS:
        cell = root / "study" / "runs" / "seesaw" / f"seed{seed}"
        counts = torch.load(cell / "model_final.pth", weights_only=True)["model"][SEESAW_COUNTS_KEY].tolist()
        frequency = {c["id"]: c["frequency"] for c in json.loads((cell / "run.json").read_text())["per_category"]}
        foreground = sum(counts[:-1])
        assert foreground > 0
        for group in "rcf":
            expected = sum(count for label, count in enumerate(counts[:-1]) if frequency[label + 1] == group) / foreground
            assert rows["seesaw+cos", seed][f"share_{group}"] == pytest.approx(expected)
        assert rows["ce", seed]["share_r"] is None and rows["ce", seed]["ratio_f"] is not None


def test_report_statistics_match_a_hand_computation(study, tmp_path):
    """The paired rows of the report from the study's records, and from a copy whose metrics and
    bootstrap replicates are set to known numbers (the tiny runs' AP is mostly 0, which would
    leave the arithmetic unchecked)."""
    root, _ = study
    runs = tmp_path / "runs"
    shutil.copytree(root / "study" / "runs", runs)
    known = {("ce", 0): 10.0, ("ce", 1): 14.0, ("seesaw", 0): 13.0, ("seesaw", 1): 20.0}
    for (arm, seed), value in known.items():
        path = runs / arm / f"seed{seed}" / "run.json"
        record = json.loads(path.read_text())
        record["metrics"]["segm"]["APr"] = value
        path.write_text(json.dumps(record))
        boot_path = path.parent / "bootstrap.json"
        boot = json.loads(boot_path.read_text())
        boot["replicates"]["segm"]["APr"] = [value + offset for offset in range(10)] if arm == "seesaw" else [value] * 10
        boot_path.write_text(json.dumps(boot))

    for results in (root / "study" / "runs", runs):
        (protocol,) = paired.protocols(gather([results]))
        assert set(protocol.runs) == {"ce", "seesaw+cos"}
        frame = paired.comparisons_frame(protocol).set_index(["arm", "reference", "column"])
        for column in paired.COLUMNS:
            task, metric = column.split("_")
            values = {}
            for arm in ARMS:
                for seed in SEEDS:
                    values[arm, seed] = json.loads((results / arm / f"seed{seed}" / "run.json").read_text())["metrics"][task][metric]
            row = frame.loc[("seesaw+cos", "ce", column)]
            differences = [values["seesaw", seed] - values["ce", seed] for seed in SEEDS]
            if any(value is None for value in values.values()):
                continue
            mean = sum(differences) / 2
            sd = abs(differences[0] - differences[1]) / math.sqrt(2)
            half = 12.706205 * sd / math.sqrt(2)  # t_{0.975, 1 df}
            assert (row["n"], row["mean"], row["sd"]) == (2, pytest.approx(mean), pytest.approx(sd))
            assert (row["low"], row["high"]) == (pytest.approx(mean - half, abs=1e-4), pytest.approx(mean + half, abs=1e-4))
    # The known numbers: differences 3 and 6 -> mean 4.5, sd 3/sqrt(2), half 12.706 * 1.5 = 19.06.
    row = frame.loc[("seesaw+cos", "ce", "segm_APr")]
    assert row["verdict"] == stats.NO_DIFFERENCE and row["low"] == pytest.approx(4.5 - 19.0593, abs=1e-3)
    # Bootstrap: replicate b of the difference is mean_s (value_s + b - value_ce_s) = 4.5 + b, b = 0..9.
    assert (row["boot_low"], row["boot_high"]) == (pytest.approx(4.5 + 0.225), pytest.approx(4.5 + 8.775))

    code, _ = run_cli(["report", "--results", str(runs), "--out", str(tmp_path / "report")])
    readme = (tmp_path / "report" / "README.md").read_text()
    assert code == 0 and "## Paired comparisons" in readme
    assert "| seesaw+cos − ce | 2 |" in readme and "+4.5 [-14.6, +23.6] n.d." in readme
    assert "(SE " in readme and "+4.5 [+4.7, +13.3]" in readme


def test_every_loss_has_an_arm_and_eql_and_fed_are_sized_to_the_generated_set(study):
    from suite.workflows.demo import eql_lambda, fed_num_classes
    from suite.workflows.study import ARMS, Study, StudyOptions
    from suite.losses import LOSSES, REFERENCE_LOSSES
    from suite.data.synth import SynthSpec

    assert set(LOSSES) | set(REFERENCE_LOSSES) <= {arm.loss for arm in ARMS.values()}
    root, _ = study
    cells = Study(StudyOptions(out=root / "unused", arms=("eql", "fed"), seeds=(0,), dataset=str(root / "data")))
    spec = SynthSpec(num_train_images=cells._num_train_images())
    assert cells._arm_overrides(ARMS["eql"])[-2:] == ["MODEL.ROI_BOX_HEAD.EQL.LAMBDA", str(eql_lambda(spec))]
    assert cells._arm_overrides(ARMS["fed"])[-2:] == ["MODEL.ROI_BOX_HEAD.FED.NUM_CLASSES", str(fed_num_classes(spec))]


def test_ablation_preset_arms_reach_the_loss_through_the_config(tmp_path):
    """Each arm of --preset ablation builds a run config whose Seesaw exponents and classifier are
    the arm's, and the report names the arm by what it holds; the default study's cells (ce,
    ce_cosine, seesaw) keep their folders and configs, and a default study's protocol is the
    committed study's, so a folder holding them keeps them."""
    from suite.d2 import loss_params_from_cfg
    from suite.workflows.study import ARMS, PRESETS, Cell, Study, StudyOptions
    from suite.harness.train import build_run_cfg
    from suite.report.paired import arm_name

    small_set(tmp_path / "data", TINY)
    grid = Study(StudyOptions(out=tmp_path / "study", arms=PRESETS["ablation"], dataset=str(tmp_path / "data")))
    expected = {"ce": ("ce", None, False), "ce_cosine": ("ce+cos", None, True),
                "seesaw": ("seesaw+cos", (0.8, 2.0), True),
                "seesaw_mitigation": ("seesaw[mitigation]+cos", (0.8, 0.0), True),
                "seesaw_compensation": ("seesaw[compensation]+cos", (0.0, 2.0), True),
                "seesaw_linear": ("seesaw", (0.8, 2.0), False),
                "seesaw_none": ("seesaw[none]+cos", (0.0, 0.0), True),
                "seesaw_none_linear": ("seesaw[none]", (0.0, 0.0), False)}
    assert set(PRESETS["ablation"]) == set(expected)
    dataset = register_dataset(str(tmp_path / "data"))
    for name in PRESETS["ablation"]:
        arm = ARMS[name]
        cfg = build_run_cfg(grid._train_options(arm, 0, tmp_path / name, None, resume=False), dataset)
        params = loss_params_from_cfg(cfg)
        report_name, exponents, cosine = expected[name]
        assert cfg.MODEL.ROI_BOX_HEAD.COSINE_CLASSIFIER is cosine and cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS == arm.loss
        assert (None if arm.loss == "ce" else (params["p"], params["q"])) == exponents
        head = cfg.MODEL.ROI_BOX_HEAD
        record = {"loss": {"name": arm.loss, "params": params}, "config": {"MODEL": {"ROI_BOX_HEAD": {
            "COSINE_CLASSIFIER": head.COSINE_CLASSIFIER, "COSINE_SCALE": head.COSINE_SCALE}}}}
        assert arm_name(record) == report_name

    committed = json.loads(Path("results/study/study.json").read_text())
    for name in ("ce", "ce_cosine", "seesaw"):
        assert ARMS[name].loss_overrides == ()
        for cell in committed["cells"]:
            if cell["arm"] == name:
                assert str(Cell(ARMS[name], cell["seed"]).run_dir(Path("."))) == cell["run_dir"]
                run = json.loads((Path("results/study") / cell["run_dir"] / "run.json").read_text())
                assert arm_name(run) == expected[name][0]
    default = Study(StudyOptions(out=tmp_path / "default", arms=PRESETS["ablation"]))
    assert default.protocol() == committed["protocol"]


def test_an_ablation_cell_records_its_exponent_and_presets_exclude_losses(tmp_path, capsys):
    """One training iteration of seesaw_mitigation end to end: q = 0 in run.json's loss.params and
    in the study record; --preset with --losses is refused in one line."""
    from suite.report.paired import arm_name

    small_set(tmp_path / "data", TINY)
    out = tmp_path / "study"
    code, _ = run_cli(["study", "--out", str(out), "--dataset", str(tmp_path / "data"), "--losses", "seesaw_mitigation",
                       "--seeds", "0", "--max-iter", "1", "--pretrain-iter", "0", "--bootstrap-resamples", "2",
                       *TINY_OVERRIDES])
    assert code == 0
    run = json.loads((out / "runs" / "seesaw_mitigation" / "seed0" / "run.json").read_text())
    assert (run["loss"]["name"], run["loss"]["params"]["p"], run["loss"]["params"]["q"]) == ("seesaw", 0.8, 0.0)
    assert arm_name(run) == "seesaw[mitigation]+cos"
    (cell,) = json.loads((out / "study.json").read_text())["cells"]
    assert cell["loss_overrides"] == ["MODEL.ROI_BOX_HEAD.SEESAW.Q", "0.0"] and cell["done"]
    assert main(["study", "--out", str(tmp_path / "other"), "--preset", "ablation", "--losses", "ce"]) == 2
    assert "suite study: error: --preset ablation and --losses both name the arms" in capsys.readouterr().err
