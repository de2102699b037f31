"""`suite study --launcher submitit` on real parts: submitit's LocalExecutor (`--executor local`,
whether or not this machine has Slurm) runs every seed's pretraining and every cell as real
processes with real pickling and job folders. The tiny study of tests/test_workflows_study.py (2
arms x 2 seeds) through the launcher, with one cell's job SIGKILLed mid-training and another's
preempted (Slurm's signal, which submitit answers by requeuing the job): the other cells go on,
the preempted cell resumes in its requeued job, the killed cell is reported by name with its log,
`--status` shows the grid, and the same command again resubmits that cell alone, which resumes
from its checkpoint. Then every cell's records and final weights equal the local route's bit for
bit, and the study records are equal but for times; a folder that another submission holds is
refused in one line. tests/test_workflows_study_slurm.py runs the study on a real Slurm and
checks it with this module's helpers."""

import contextlib
import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import submitit
import torch

from suite.cli import main
from suite.harness.run_lock import RunLock, holder_pid
from suite.workflows.study_jobs import JobEntry, append_jobs, read_jobs

from d2_helpers import TINY
from data_helpers import small_set
from test_workflows_study import ARMS, SEEDS, study_args

KILLED = ("seesaw", 1)  # the cell whose job is SIGKILLed
PREEMPTED = ("ce", 1)  # the cell whose job gets Slurm's preemption signal (submitit's USR2)
RECORD_FIELDS = ("loss", "dataset", "iterations", "seed", "metrics", "per_category", "grad_balance")
TIMES = ("wall_s", "environment", "updated_at")  # what two routes' study records may differ in
LOCAL_EXECUTOR = ("--launcher", "submitit", "--executor", "local")


def args_for(root: Path, out: Path, *extra):
    args = study_args(root)
    args[args.index("--out") + 1] = str(out)
    return [*args, *extra]


def run_cli(args):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(args)
    return code, output.getvalue()


def wait_for_checkpoint(run_dir: Path, deadline_s: float = 600) -> Optional[int]:
    """The process that trains `run_dir`, once it has saved its first checkpoint (None if it has not
    within `deadline_s`)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (run_dir / "last_checkpoint").exists():
            pid = holder_pid(run_dir)
            if pid:
                return pid
        time.sleep(0.005)
    return None


def signal_when_checkpointed(run_dir: Path, signum: int, sent: list) -> None:
    """Send `signum` to the process that trains `run_dir` once it has saved its first checkpoint."""
    pid = wait_for_checkpoint(run_dir)
    if pid:
        os.kill(pid, signum)
        sent.append(signum)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread here and in the jobs, so that both routes sum alike."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher")
    small_set(root / "data", TINY)
    with one_thread():
        local_code, _ = run_cli(args_for(root, root / "local"))
        assert local_code == 0
        jobs = root / "jobs"
        signals = []
        senders = [threading.Thread(target=signal_when_checkpointed, args=(jobs / "runs" / arm / f"seed{seed}", signum,
                                                                           signals))
                   for (arm, seed), signum in ((KILLED, signal.SIGKILL), (PREEMPTED, signal.SIGUSR2))]
        for sender in senders:
            sender.start()
        first = run_cli(args_for(root, jobs, *LOCAL_EXECUTOR))
        for sender in senders:
            sender.join()
        first_record = json.loads((jobs / "study.json").read_text())
        status = run_cli(["study", "--status", str(jobs)])
        submitted_first = read_jobs(jobs)["jobs"]
        second = run_cli(args_for(root, jobs, *LOCAL_EXECUTOR))
    return root, (*first, first_record), status, submitted_first, second, signals


def test_a_killed_job_is_reported_and_the_other_cells_go_on(routes):
    root, (code, output, record), _, submitted, _, signals = routes
    assert sorted(signals) == sorted([signal.SIGKILL, signal.SIGUSR2]), "a cell was never checkpointed"
    assert code == 1
    assert output.splitlines()[0] == "--executor local: the jobs run on this machine through submitit's LocalExecutor"
    assert [entry["what"] for entry in submitted] == ["seed", "seed", "cell", "cell", "cell", "cell"]
    killed_job = next(entry for entry in submitted if (entry["arm"], entry["seed"]) == KILLED)
    line = next(line for line in output.splitlines() if line.startswith("cell seesaw seed 1 not done"))
    assert f"job {killed_job['job_id']} failed: " in line and line.endswith(f"log: {root / 'jobs' / killed_job['stderr']}")
    assert [(cell["arm"], cell["seed"], cell["done"]) for cell in record["cells"]] == [
        ("ce", 0, True), ("seesaw", 0, True), ("ce", 1, True), ("seesaw", 1, False)]
    assert "3 of 4 cells done" in output and "run the same command again" in output


def test_a_preempted_job_is_requeued_and_resumes(routes):
    """Slurm's preemption signal as submitit configures it (USR2): submitit checkpoints the job
    (StudyJob is Checkpointable) and requeues it, and the cell resumes from its checkpoint
    within the first submission."""
    root, (_, output, record), _, submitted, _, _ = routes
    arm, seed = PREEMPTED
    assert [entry for entry in submitted if (entry["arm"], entry["seed"]) == PREEMPTED][0]["what"] == "cell"
    run = json.loads((root / "jobs" / "runs" / arm / f"seed{seed}" / "run.json").read_text())
    assert run["train"]["segments"] == 2 and run["train"]["start_iter"] > 0
    log = (root / "jobs" / next(entry["stderr"] for entry in submitted if (entry["arm"], entry["seed"]) == PREEMPTED))
    assert "this job is preempted" in log.read_text()


def test_status_shows_the_grid_and_the_failed_cell_with_its_log(routes):
    root, _, (code, output), submitted, _, _ = routes
    killed_job = next(entry for entry in submitted if (entry["arm"], entry["seed"]) == KILLED)
    lines = output.splitlines()
    assert code == 0
    assert lines[0].startswith(f"study {root / 'jobs'}: 4 cells: 3 done, 1 failed (jobs: local")
    assert [line.split() for line in lines[1:4]] == [["arm", "seed", "0", "seed", "1"], ["ce", "done", "done"],
                                                      ["seesaw", "done", "failed"]]
    assert lines[4].startswith(f"cell seesaw seed 1 not done: job {killed_job['job_id']} failed: ")
    assert lines[4].endswith(f"; log: {root / 'jobs' / killed_job['stderr']}") and len(lines) == 5


def test_the_same_command_resubmits_only_the_killed_cell_which_resumes(routes):
    root, _, _, submitted_first, (code, output), _ = routes
    assert code == 0 and "4 of 4 cells done" in output
    added = read_jobs(root / "jobs")["jobs"][len(submitted_first):]
    assert [(entry["what"], entry["arm"], entry["seed"]) for entry in added] == [("cell", *KILLED)]
    arm, seed = KILLED
    run = json.loads((root / "jobs" / "runs" / arm / f"seed{seed}" / "run.json").read_text())
    assert run["train"]["segments"] == 2 and run["train"]["start_iter"] > 0


def check_cells_equal(local: Path, launched: Path) -> None:
    """Every cell of the study folders `local` and `launched`: the same records, loss curve, final
    weights (bit for bit) and bootstrap."""
    for arm in ARMS:
        for seed in SEEDS:
            cells = [study / "runs" / arm / f"seed{seed}" for study in (local, launched)]
            first, second = (json.loads((cell / "run.json").read_text()) for cell in cells)
            for name in RECORD_FIELDS:
                assert first[name] == second[name], (arm, seed, name)
            for config in (first["config"], second["config"]):  # the only keys that name the study folder
                del config["OUTPUT_DIR"], config["MODEL"]["WEIGHTS"]
            assert first["config"] == second["config"]
            assert first["train"]["loss_curve"] == second["train"]["loss_curve"]
            assert first["train"]["weights_sha256"] == second["train"]["weights_sha256"]
            weights = [torch.load(cell / "model_final.pth", weights_only=True)["model"] for cell in cells]
            assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
            boots = [json.loads((cell / "bootstrap.json").read_text()) for cell in cells]
            assert boots[0] == boots[1]


def check_study_records_equal(local: Path, launched: Path) -> None:
    """The study records of `local` and `launched` are equal but for times, every cell done."""
    first, second = (json.loads((study / "study.json").read_text()) for study in (local, launched))
    assert {key: value for key, value in first.items() if key not in TIMES} == {
        key: value for key, value in second.items() if key not in TIMES}
    assert all(cell["done"] for cell in second["cells"]) and second["wall_s"] > 0


def test_every_cell_equals_the_local_route_bit_for_bit(routes):
    root = routes[0]
    check_cells_equal(root / "local", root / "jobs")


def test_the_study_records_are_equal_but_for_times(routes):
    root = routes[0]
    check_study_records_equal(root / "local", root / "jobs")


def test_a_held_folder_is_refused_in_one_line_and_status_shows_live_jobs(routes, capsys):
    """Held by a submitting process (its lock), or by a submission's job that still runs (a real
    LocalExecutor job, listed in jobs.json as a cell's and as a seed's): submitting there and the
    local route are refused in one line; --status shows that cell running and the cells of that
    seed queued behind it."""
    root = routes[0]
    args = args_for(root, root / "jobs", *LOCAL_EXECUTOR)
    with RunLock(root / "jobs"):  # a submitting process at work there
        assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another suite process" in err[0]
    held = root / "held"
    executor = submitit.AutoExecutor(folder=held / "jobs", cluster="local")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(time.sleep, 120)
    try:
        append_jobs(held, "local", [JobEntry(job.job_id, "cell", 0, "ce", stderr=str(job.paths.stderr)),
                                    JobEntry(job.job_id, "seed", 1, None, stderr=str(job.paths.stderr))])
        for command in (args_for(root, held, *LOCAL_EXECUTOR), args_for(root, held)):
            assert main(command) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and re.search(rf"{held} is held by a submission whose 1 job\(s\) are queued or "
                                               rf"running \({job.job_id}; local\)", err[0]), err
        assert not (held / "study.json").exists()
        (held / "study.json").write_text((root / "jobs" / "study.json").read_text())  # the grid, no cell done here
        code, output = run_cli(["study", "--status", str(held)])
        lines = output.splitlines()
        assert code == 0 and lines[0].startswith(f"study {held}: 4 cells: 1 running, 2 queued, 1 not submitted")
        table = {row.split()[0]: row for row in lines[2:4]}
        assert table["ce"].split()[1:] == ["running", "queued"]
        assert table["seesaw"].split()[1:] == ["not", "submitted", "queued"]
    finally:  # as Slurm's scancel: SIGTERM, which the job's controller passes to its task
        deadline = time.monotonic() + 60
        while not job.paths.stdout.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(int(job.job_id), signal.SIGTERM)


def test_the_reports_are_equal(routes, tmp_path):
    """`suite report` on either route's cells writes the same files, the same bytes (but the
    results folder's path where the report names it)."""
    root = routes[0]
    reports = {}
    for route in ("local", "jobs"):
        code, _ = run_cli(["report", "--results", str(root / route / "runs"), "--out", str(tmp_path / route)])
        assert code == 0
        reports[route] = {path.relative_to(tmp_path / route): path.read_bytes().replace(str(root / route).encode(), b"ROUTE")
                          for path in sorted((tmp_path / route).rglob("*")) if path.is_file()}
    assert reports["local"].keys() == reports["jobs"].keys() and Path("README.md") in reports["local"]
    differing = [str(path) for path, content in reports["local"].items() if reports["jobs"][path] != content]
    assert not differing


def test_dry_run_shows_the_jobs_and_an_estimate_from_the_finished_cells(routes, tmp_path):
    root = routes[0]
    jobs = root / "jobs"
    args = args_for(root, jobs, *LOCAL_EXECUTOR, "--dry-run")
    args[args.index("--seeds") + 1] = "0,1,2"
    submitted = (jobs / "jobs.json").read_text()
    code, output = run_cli(args)
    lines = output.splitlines()
    assert code == 0 and (jobs / "jobs.json").read_text() == submitted and not (jobs / "init" / "seed2.pth").exists()
    assert [line.split() for line in lines[1:4]] == [["arm", "seed", "0", "seed", "1", "seed", "2"],
                                                      ["ce", "done", "done", "to", "run"],
                                                      ["seesaw", "done", "done", "to", "run"]]
    assert "jobs (--launcher submitit) to its LocalExecutor (--executor local):" in lines
    assert "  array 'seed': 1 job(s), the pretraining and initial weights of seed(s) 2 (1 node)" in lines
    assert "  array 'cell' of seed 2: 2 job(s) (ce, seesaw), 1 node(s) each, after seed 2's job (afterok)" in lines
    cell_h = sum(json.loads((jobs / "runs" / arm / f"seed{seed}" / "run.json").read_text())["train"]["wall_s"]
                 for arm in ARMS for seed in SEEDS) / 4 / 3600
    pretrain_h = sum(json.loads((jobs / "pretrain" / f"seed{seed}" / "run.json").read_text())["train"]["wall_s"]
                     for seed in SEEDS) / 2 / 3600
    total = 2 * cell_h + pretrain_h
    assert lines[-1] == (f"estimate: 2 cell(s) x {cell_h:.3g} h of training (the mean of this folder's finished cells) "
                         f"+ 1 pretraining(s) x {pretrain_h:.3g} h = {total:.3g} h of jobs, {total:.3g} process hours "
                         "(1 per cell); evaluation and bootstrap not counted")
    code, output = run_cli(args_for(root, tmp_path / "new", "--dry-run"))
    assert code == 0 and output.splitlines()[-1].startswith("estimate: none (no finished cell")
    assert "jobs: none; this process runs 4 cell(s) in turn" in output and not (tmp_path / "new").exists()


def test_executor_settings_from_a_file_and_the_command_line(tmp_path):
    from suite.errors import UserError
    from suite.workflows.executor_settings import ExecutorSettings, executor_settings

    path = tmp_path / "slurm.yaml"
    path.write_text("executor: slurm\npartition: learnfair\ntime_min: 2880\nsbatch: {constraint: volta32gb}\n")
    assert executor_settings(path, partition="dev", account=None, sbatch={"qos": "high"}) == ExecutorSettings(
        executor="slurm", partition="dev", time_min=2880, sbatch={"constraint": "volta32gb", "qos": "high"})
    assert executor_settings(path, executor="local").executor == "local"
    path.write_text("executor: pbs\n")
    with pytest.raises(UserError, match=f"--executor-config {path}: executor 'pbs' is none of auto, slurm, local"):
        executor_settings(path)


def test_errors_are_one_line_before_anything_is_written(routes, tmp_path, capsys, monkeypatch):
    root = routes[0]
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, whether or not this machine has Slurm
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: 2\n")
    new = tmp_path / "new"
    cases = [(args_for(root, new, "--num-machines", "2"), "a cell on several machines runs as a job; add --launcher submitit"),
             (args_for(root, new, "--num-machines", "2", *LOCAL_EXECUTOR),
              "--num-machines 2: --executor local, and submitit's LocalExecutor runs jobs on this machine only"),
             (args_for(root, new, "--launcher", "submitit", "--executor", "slurm"), "--executor slurm: no Slurm here"),
             (args_for(root, new, *LOCAL_EXECUTOR, "--executor-config", str(bad)),
              f"--executor-config {bad}: unknown key(s) nodes"),
             (["study", "--status", str(new)], f"{new}: no study here"),
             (["study", "--losses", "ce"], "--out OUT is required")]
    for args, fragment in cases:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("suite study: error: ") and fragment in err[0], err
    assert not new.exists()
