"""`suite demo`: the README's main job on the CPU. Generates the default synthetic set, trains and
evaluates every loss on it with the small model, and writes the report."""

import logging
from pathlib import Path
from typing import Dict, List

from suite.d2.config import loss_param_key
from suite.harness.run_record import read_run_record
from suite.harness.train import TrainOptions, train
from suite.schema import GROUP_METRICS, RUN_RECORD, TASKS

DEMO_LOSSES = ("ce", "focal", "eql", "seesaw")
# The demo's default losses and iterations are tuned so that the runs and their evaluation fit in
# 15 minutes on 2 CPU cores; every loss of suite.losses.LOSSES can be added (`--losses`), at about
# 2.5 minutes each.
DEMO_ITERATIONS = 160
# The study's protocol (a pretrained start per seed, 250 iterations, 480 validation images, the
# bootstrap) takes about 5 minutes per loss and seed: it does not fit the demo's 15 minutes.
STUDY_POINTER = (
    "One seed per loss, 160 iterations from scratch, a 100-image validation set: the demo shows the "
    "losses and the machinery at work, not which loss is better. The comparison, with paired seeds, "
    "a pretrained start and confidence intervals, is the loss study: `suite study` (docs/harness.md, "
    "\"Loss study\"; its committed records are in results/study/ and its report in "
    "reports/README.md, \"Paired comparisons\").")
logger = logging.getLogger("suite.demo")


def eql_lambda(spec) -> float:
    """EQL's threshold for a generated set: just above its common classes, as LVIS v1's 1.1e-3
    (110 of 100,170 training images) is just above LVIS's 100-image common limit. LVIS's own
    value would call no class of a 400-image set rare (one image is already 2.5e-3)."""
    from suite.data.synth import frequency_thresholds

    _, common_max = frequency_thresholds(spec.num_train_images)
    return (common_max + 1) / spec.num_train_images


def fed_num_classes(spec) -> int:
    """The federated loss's classes per step for a generated set: the share of the classes that
    Detectron2's 50 are of LVIS v1's 1203 (4 %). With 50 every class of a 24-class set would be
    in every step, and the loss would be plain sigmoid cross-entropy."""
    return max(1, round(spec.num_classes * 50 / 1203))


def run_demo(output: Path, max_iter: int = DEMO_ITERATIONS, losses=DEMO_LOSSES) -> List[Dict]:
    """Data in OUTPUT/data, runs in OUTPUT/runs/<loss>, report in OUTPUT/report. A finished run
    is kept and an interrupted one resumed, so running the demo again continues where it stopped."""
    from suite.data.layout import SyntheticLayout
    from suite.data.synth import SynthSpec, generate

    output = Path(output)
    data_dir = output / "data"
    spec = SynthSpec()
    if not SyntheticLayout(data_dir).split("train").json_file.exists():
        generate(spec, data_dir)
    records = []
    for loss in losses:
        run_dir = output / "runs" / loss
        overrides = ["SOLVER.STEPS", f"({int(max_iter * 0.8)},)"]
        if loss == "eql":
            overrides += [loss_param_key("eql", "lambda_"), str(eql_lambda(spec))]
        if loss == "fed":
            overrides += [loss_param_key("fed", "num_sampled_classes"), str(fed_num_classes(spec))]
        if not (run_dir / RUN_RECORD).exists():
            train(TrainOptions(loss=loss, dataset=str(data_dir), output=run_dir, max_iter=max_iter,
                               resume=(run_dir / "last_checkpoint").exists(), record_grad_balance=True,
                               overrides=overrides))
        records.append(read_run_record(run_dir))
    _write_report(output)
    _print_summary(records)
    print(STUDY_POINTER)
    return records


def _write_report(output: Path) -> None:
    from suite.report import generate_report

    generate_report([output / "runs"], output / "report", note=STUDY_POINTER)
    logger.info("report: %s", output / "report" / "README.md")


def _print_summary(records: List[Dict]) -> None:
    print(f"{'loss':8s} {'bbox AP':>8s} {'APr':>6s} {'APc':>6s} {'APf':>6s} {'segm AP':>8s} {'APr':>6s} {'APc':>6s} {'APf':>6s}")
    for record in records:
        values = [record["metrics"][task].get(key) for task in TASKS for key in GROUP_METRICS]
        cells = ["   n/a" if value is None else f"{value:6.1f}" for value in values]
        print(f"{record['loss']['name']:8s} {cells[0]:>8s} {cells[1]} {cells[2]} {cells[3]} {cells[4]:>8s} {cells[5]} {cells[6]} {cells[7]}")
