"""`suite study --launcher submitit --executor slurm` on a real Slurm: a single-node cluster on
this machine (tests/slurm_cluster.py; the tests are marked `slurm`, tests/conftest.py). The tiny
study of tests/test_workflows_study.py (2 arms x 2 seeds) is submitted: an array of seed jobs, an
array of cell jobs per seed after its seed's job (`afterok`, as squeue lists it) and the record
job after every cell job (`afterany`); the command returns at once and `--status` reads squeue
and the job folder. One cell's job is preempted through Slurm once the cell has a checkpoint
(`scancel --signal=USR2`, the signal submitit asks Slurm for): submitit has Slurm requeue the job
and the cell resumes. Then every cell and the study record, written by the record job, equal the
local route's, as in tests/test_workflows_study_launcher.py (whose helpers this module uses)."""

import json
import subprocess
import time

import pytest

from suite.workflows.study_jobs import LIVE, job_states, latest_jobs, read_jobs

from d2_helpers import TINY
from data_helpers import small_set
from slurm_cluster import single_node_slurm
from test_workflows_study_launcher import (args_for, check_cells_equal, check_study_records_equal, one_thread, run_cli,
                                           wait_for_checkpoint)

pytestmark = pytest.mark.slurm

SLURM = ("--launcher", "submitit", "--executor", "slurm")
PREEMPTED = ("seesaw", 0)  # the cell whose job Slurm signals as at preemption
STUDY_S = 1200  # the longest the submitted study may take (a deadline, not an estimate)


def wait_for_the_record_job(out, deadline_s: float = STUDY_S) -> None:
    """Until the study's record job has ended (squeue, then its result file)."""
    deadline = time.monotonic() + deadline_s
    record = read_jobs(out)
    entry = latest_jobs(record)[("record", None, None)]
    while job_states(out, record, [entry])[entry.job_id] in LIVE:
        assert time.monotonic() < deadline, f"the study on Slurm did not end within {deadline_s} s"
        time.sleep(1)


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    """The local route, then the same study on the single-node Slurm; what each step printed."""
    root = tmp_path_factory.mktemp("slurm")
    small_set(root / "data", TINY)
    jobs = root / "jobs"
    with one_thread():
        assert run_cli(args_for(root, root / "local"))[0] == 0
        with single_node_slurm(root / "cluster"):
            started = time.monotonic()
            submitted = run_cli(args_for(root, jobs, *SLURM))
            dependencies = subprocess.run(["squeue", "--array", "--noheader", "--format=%i|%E"], capture_output=True,
                                          text=True, check=True).stdout
            queued = run_cli(["study", "--status", str(jobs)])
            arm, seed = PREEMPTED
            preempted_job = latest_jobs(read_jobs(jobs))[("cell", seed, arm)].job_id
            assert wait_for_checkpoint(jobs / "runs" / arm / f"seed{seed}"), "the cell was never checkpointed"
            subprocess.run(["scancel", "--signal=USR2", preempted_job], check=True)
            wait_for_the_record_job(jobs)
            wall_s = time.monotonic() - started
            done = run_cli(["study", "--status", str(jobs)])
    print(f"the study on Slurm: {wall_s:.0f} s from its submission to its record job's end")
    return root, submitted, dependencies, queued, done


def test_the_jobs_are_submitted_with_their_dependencies(routes):
    root, (code, output), dependencies, _, _ = routes
    jobs = read_jobs(root / "jobs")
    assert code == 0 and jobs["executor"] == "slurm"
    assert "to submit to slurm" in output and "LocalExecutor" not in output
    entries = list(latest_jobs(jobs).values())
    assert sorted(entry.what for entry in entries) == ["cell"] * 4 + ["record"] + ["seed"] * 2
    record = next(entry for entry in entries if entry.what == "record")
    assert f"submitted 2 seed job(s), 4 cell job(s) and the study record's job {record.job_id}" in output
    after = dict(line.split("|", 1) for line in dependencies.splitlines())
    seed_jobs = {entry.seed: entry.job_id for entry in entries if entry.what == "seed"}
    for entry in entries:
        if entry.what == "cell":
            assert after[entry.job_id] == f"afterok:{seed_jobs[entry.seed]}(unfulfilled)", entry
    cell_jobs = sorted(entry.job_id for entry in entries if entry.what == "cell")
    assert sorted(part.split("(")[0] for part in after[record.job_id].replace("afterany:", "").split(",")) == cell_jobs


def test_status_reads_squeue_then_the_job_folder(routes):
    root, _, _, (queued_code, queued), (done_code, done) = routes
    out = root / "jobs"
    assert queued_code == 0 and queued.splitlines()[0].startswith(f"study {out}: 4 cells: 4 queued (jobs: slurm")
    assert done_code == 0 and done.splitlines()[0].startswith(f"study {out}: 4 cells: 4 done (jobs: slurm")


def test_the_preempted_job_is_requeued_by_slurm_and_the_cell_resumes(routes):
    root = routes[0]
    arm, seed = PREEMPTED
    run = json.loads((root / "jobs" / "runs" / arm / f"seed{seed}" / "run.json").read_text())
    assert run["train"]["segments"] == 2 and run["train"]["start_iter"] > 0
    job = latest_jobs(read_jobs(root / "jobs"))[("cell", seed, arm)]
    log = (root / "jobs" / job.stderr).read_text()
    assert "this job is preempted" in log and "Requeued job" in log, log[-2000:]


def test_the_record_job_writes_the_study_record(routes):
    root = routes[0]
    record = latest_jobs(read_jobs(root / "jobs"))[("record", None, None)]
    log = (root / "jobs" / record.stdout).read_text()
    assert f"study {root / 'jobs'}: 4 of 4 cells done" in log


def test_every_cell_and_the_study_record_equal_the_local_route(routes):
    root = routes[0]
    check_cells_equal(root / "local", root / "jobs")
    check_study_records_equal(root / "local", root / "jobs")
