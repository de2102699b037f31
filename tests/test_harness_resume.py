"""Runs you can trust: a `suite train` killed with SIGKILL and resumed ends bit for bit where the
uninterrupted run ends; two runs with one seed are identical; one run per directory."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from suite.cli import main
from suite.harness.run_lock import LOCK_FILE, RunLock
from suite.harness.run_record import read_run_record
from suite.harness.run_state import TrainingTime

from data_helpers import RUN_SET, small_set
from test_harness_cli import TINY, one_error_line

REPO = Path(__file__).resolve().parents[1]
# Checkpoints every 2 iterations, so that a kill lands between two of them.
EVERY_2 = ["SOLVER.CHECKPOINT_PERIOD", "2"]
MAX_ITER = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    small_set(root, RUN_SET)
    return root


def train_args(dataset, output, *extra, loss="seesaw", max_iter=MAX_ITER):
    return ["train", "--loss", loss, "--dataset", str(dataset), "--output", str(output),
            "--max-iter", str(max_iter), "--record-grad-balance", *extra, *TINY, *EVERY_2]


@contextlib.contextmanager
def stopped_on_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """`process`, killed on leaving the block if it still runs (also when an assertion fails)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def suite_process(args, tmp_path) -> subprocess.Popen:
    """`python -m suite ARGS` in its own process, importing this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def final_weights(run_dir):
    return torch.load(run_dir / "model_final.pth", weights_only=True)["model"]


def assert_same_run(first_dir, second_dir):
    """Weights (with Seesaw's counts and every buffer), loss curve, metrics, per-category AP and
    gradient balance identical, bit for bit."""
    first, second = final_weights(first_dir), final_weights(second_dir)
    assert first.keys() == second.keys()
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert not differing, f"weights differ in {differing[:5]}"
    assert first["roi_heads.box_predictor.cls_loss.cum_samples"].sum() > 0
    first_record, second_record = read_run_record(first_dir), read_run_record(second_dir)
    assert first_record["train"]["loss_curve"] == second_record["train"]["loss_curve"]
    for field in ("metrics", "per_category", "grad_balance", "iterations"):
        assert first_record[field] == second_record[field], field
    return first_record, second_record


def test_sigkilled_run_resumes_bit_for_bit(dataset, tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    assert main(train_args(dataset, uninterrupted)) == 0

    killed = tmp_path / "killed"
    with stopped_on_exit(suite_process(train_args(dataset, killed), tmp_path)) as process:
        deadline = time.monotonic() + 120
        while not (killed / "last_checkpoint").exists():  # the first checkpoint, after iteration 2
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    assert not (killed / "run.json").exists() and not (killed / "model_final.pth").exists(), "killed too late"

    assert main(train_args(dataset, killed, "--resume")) == 0
    first, resumed = assert_same_run(uninterrupted, killed)
    assert first["train"]["segments"] == 1 and resumed["train"]["segments"] == 2
    assert resumed["train"]["start_iter"] in range(2, MAX_ITER, 2)
    assert resumed["train"]["wall_s"] > 0 and [point["iter"] for point in resumed["train"]["loss_curve"]] == [MAX_ITER]


def test_a_resumed_segment_counts_on_from_the_checkpointed_time():
    clock = TrainingTime()
    clock.load_state_dict({"segments": 1, "wall_s": 5.0})  # what the checkpoint held
    before = time.perf_counter()
    clock.start()
    clock.stop()
    elapsed = time.perf_counter() - before
    assert clock.segments == 2 and 5.0 <= clock.wall_s <= 5.0 + elapsed
    assert clock.state_dict() == {"segments": 2, "wall_s": clock.wall_s}


def test_two_runs_with_one_seed_are_identical(dataset, tmp_path):
    assert main(train_args(dataset, tmp_path / "a", max_iter=2)) == 0
    assert main(train_args(dataset, tmp_path / "b", max_iter=2)) == 0
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_resume_refuses_other_options_naming_the_keys(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(train_args(dataset, run_dir, max_iter=2)) == 0
    (run_dir / "run.json").unlink()  # as if killed after its last checkpoint
    config_before = (run_dir / "config.yaml").read_text()
    assert main(train_args(dataset, run_dir, "--resume", "SOLVER.BASE_LR", "0.5", loss="ce", max_iter=4)) == 2
    one_error_line(capsys, "--resume", "MODEL.ROI_BOX_HEAD.CLS_LOSS", "SOLVER.BASE_LR")
    assert (run_dir / "config.yaml").read_text() == config_before
    assert main(train_args(dataset, run_dir, "--resume", max_iter=3)) == 0  # a new budget is fine
    assert read_run_record(run_dir)["iterations"] == 3


def test_a_locked_run_directory_is_refused_and_a_killed_holder_is_stale(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from suite.harness.run_lock import RunLock; "
            f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(600)")
    with stopped_on_exit(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)) as holder:
        assert holder.stdout.readline().strip() == "locked"
        assert main(train_args(dataset, run_dir, max_iter=1)) == 2
        one_error_line(capsys, str(run_dir), "in use", f"pid {holder.pid}")
        assert main(["eval", "--run", str(run_dir)]) == 2  # no config yet: refused before locking
    assert (run_dir / LOCK_FILE).exists()  # left behind by the killed holder, and stale
    assert main(train_args(dataset, run_dir, max_iter=1)) == 0
    assert not (run_dir / LOCK_FILE).exists()
    with RunLock(run_dir):
        assert main(["eval", "--run", str(run_dir)]) == 2
        one_error_line(capsys, "in use")


def test_two_concurrent_starts_make_one_run(dataset, tmp_path):
    run_dir = tmp_path / "run"
    # CE: the run lock is under test, not the loss (Seesaw would build its fused kernels first)
    with stopped_on_exit(suite_process(train_args(dataset, run_dir, max_iter=2, loss="ce"), tmp_path)) as first, \
            stopped_on_exit(suite_process(train_args(dataset, run_dir, max_iter=2, loss="ce"), tmp_path)) as second:
        results = sorted((process.wait(), process.stderr.read()) for process in (first, second))
    assert [code for code, _ in results] == [0, 2], results
    refusal = results[1][1].strip().splitlines()[-1]
    assert "in use" in refusal or "already holds a finished run" in refusal
    assert read_run_record(run_dir)["iterations"] == 2
