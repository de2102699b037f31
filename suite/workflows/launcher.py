"""`suite study --launcher submitit`: every cell of a study a job on a scheduler.

Slurm through submitit, or submitit's LocalExecutor, which runs each job as real processes on
this machine with the same pickled job, job folder and logs: as `--executor` names it, or by
submitit's AutoExecutor rule, Slurm where `srun` is on PATH (suite.workflows.executor_settings).
What a job runs is what the local route runs (suite.workflows.study): a seed's pretraining and
initial weights (`Study.initial_weights`), a cell (`Study.run_cell`, which resumes from the
cell's last checkpoint), the study record. So a cell is the same config, seed, start, data
order, run record and lock on either route.

The jobs, in OUT/jobs/ (submitit's folder) and listed in OUT/jobs.json (suite.workflows.study_jobs):
one array of the seeds whose initial weights are missing; per seed, the array of its cells not
done yet, after its seed's job (Slurm: `--dependency=afterok:<seed job>`; locally the
submitting process waits for it); on Slurm, a last job that writes OUT/study.json once every
cell has ended (`afterany`), where the local route writes it itself after waiting for all. A
job preempted or timed out is requeued by submitit (the job is `Checkpointable`: it is submitted
again as it is, and resumes from the cell's checkpoint); a job that fails for good leaves its
cell not done, the other cells go on, and the study record's writer names it with its log.
Running the same command again submits what is not done. A cell on `--num-machines M` is one
job of M nodes, one task each, which runs Detectron2's launch with `--num-gpus` processes per node
and machine 0's address from the Slurm environment.
"""

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit
from submitit.helpers import Checkpointable

from suite.errors import UserError
from suite.harness.run_lock import RunLock
from suite.records import write_json_atomic
from suite.schema import STUDY_RECORD
from suite.workflows.executor_settings import ExecutorSettings, choose_executor
from suite.workflows.study import ARMS, Cell, Study, StudyOptions, cells
from suite.workflows.study_jobs import (FINISHED, JOBS_FOLDER, LIVE, JobEntry, append_jobs, check_not_held, job_states,
                                        latest_jobs, not_done_line, read_jobs)

POLL_S = 2.0


def rendezvous(num_machines: int) -> Tuple[int, str]:
    """This task's machine rank and machine 0's tcp:// address (the Slurm job's first node)."""
    if num_machines == 1:
        return 0, "auto"
    from submitit.helpers import TorchDistributedEnvironment

    environment = TorchDistributedEnvironment()
    return environment.rank, f"tcp://{environment.master_addr}:{environment.master_port}"


class StudyJob(Checkpointable):
    """A job of the study: the pretraining and initial weights of `seed` (arm None), or the
    cell `arm` x `seed`. Requeued as it is when preempted (submitit's Checkpointable): it
    resumes from what the interrupted one left on disk."""

    def __init__(self, options: StudyOptions, seed: int, arm: Optional[str] = None):
        self.options, self.seed, self.arm = options, seed, arm

    def __call__(self) -> str:
        study = Study(self.options)
        if self.arm is None:
            return str(study.initial_weights(self.seed))
        cell = Cell(ARMS[self.arm], self.seed)
        study.run_cell(cell, *rendezvous(self.options.num_machines))
        return str(cell.run_dir(study.out))


class RecordJob(Checkpointable):
    """The last job (Slurm): the study record once every cell has ended, and the failures."""

    def __init__(self, options: StudyOptions, earlier_wall_s: float, started_at: float):
        self.options, self.earlier_wall_s, self.started_at = options, earlier_wall_s, started_at

    def __call__(self) -> List[str]:
        study = Study(self.options)
        return finish(study, self.earlier_wall_s + time.time() - self.started_at)


def finish(study: Study, wall_s: float) -> List[str]:
    """Write OUT/study.json and print a line per cell that is not done (study_jobs.not_done_line:
    its job, the job's last error line and its log); the lines."""
    grid = cells(study.options)
    write_json_atomic(study.out / STUDY_RECORD, study.record(grid, wall_s))
    latest = latest_jobs(read_jobs(study.out))
    failures = [not_done_line(study.out, latest, cell.arm.name, cell.seed) for cell in grid if not cell.done(study.out)]
    done = sum(cell.done(study.out) for cell in grid)
    for line in failures:
        print(line, flush=True)
    print(f"study {study.out}: {done} of {len(grid)} cells done, {wall_s / 60:.1f} min in all"
          + (f"; run the same command again to resubmit the {len(grid) - done} others" if failures else
             f"; report: suite report --results {study.out / 'runs'} --out {study.out / 'report'}"), flush=True)
    return failures


class Submitter:
    """Submits a study's jobs to one executor and lists them in OUT/jobs.json."""

    def __init__(self, study: Study, settings: ExecutorSettings, cluster: str):
        self.study, self.settings, self.cluster = study, settings, cluster
        self.executor = submitit.AutoExecutor(folder=study.out / JOBS_FOLDER, cluster=cluster)
        self.gpus_per_node = study.options.num_gpus if study.options.device == "cuda" else 0
        self.executor.update_parameters(
            name=f"study-{study.out.name}", timeout_min=settings.time_min, tasks_per_node=1,
            gpus_per_node=self.gpus_per_node,
            cpus_per_task=settings.cpus_per_task, mem_gb=settings.mem_gb, slurm_partition=settings.partition,
            slurm_account=settings.account)

    def submit(self, what: str, jobs: Sequence[Checkpointable], nodes: int = 1,
               dependency: Optional[str] = None) -> List[Tuple[Any, JobEntry]]:
        """Submit `jobs` as one array on `nodes` nodes each, after `dependency` (Slurm's syntax)."""
        if not jobs:
            return []
        sbatch = dict(self.settings.sbatch)
        if dependency:
            sbatch.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
        self.executor.update_parameters(nodes=nodes, slurm_additional_parameters=sbatch)
        submitted = self.executor.submit_array(list(jobs))
        out = self.study.out.absolute()  # as submitit makes its job paths
        entries = [JobEntry(job.job_id, what, getattr(callable_, "seed", None), getattr(callable_, "arm", None),
                            stdout=str(job.paths.stdout.relative_to(out)), stderr=str(job.paths.stderr.relative_to(out)))
                   for job, callable_ in zip(submitted, jobs)]
        append_jobs(self.study.out, self.cluster, entries)
        return list(zip(submitted, entries))


def submit_study(options: StudyOptions, settings: ExecutorSettings) -> int:
    """`suite study --launcher submitit`: 0 once submitted (Slurm) or once every cell is done
    (LocalExecutor); 1 if a cell failed there."""
    study = Study(options)
    cluster, why = choose_executor(settings.executor)
    if cluster == "local" and options.num_machines > 1:
        raise UserError(f"--num-machines {options.num_machines}: {why}, and submitit's LocalExecutor runs jobs on "
                        "this machine only")
    with RunLock(study.out):
        check_not_held(study.out)
        started_at = time.time()
        earlier = study.previous_wall_s()
        study.prepare_data()
        grid = cells(options)
        todo = [cell for cell in grid if not cell.done(study.out)]
        write_json_atomic(study.out / STUDY_RECORD, study.record(grid, earlier))
        if cluster == "local":
            print(f"{why}: the jobs run on this machine through submitit's LocalExecutor", flush=True)
        print(f"study {study.out}: {len(grid)} cells ({len(grid) - len(todo)} done), {len(todo)} to submit "
              f"to {cluster}; jobs in {study.out / JOBS_FOLDER}", flush=True)
        if not todo:
            finish(study, earlier + time.time() - started_at)
            return 0
        submitter = Submitter(study, settings, cluster)
        seeds = [seed for seed in options.seeds if any(cell.seed == seed for cell in todo)]
        need_start = [seed for seed in seeds if not study.initial_weights_path(seed).is_file()]
        seed_jobs = dict(zip(need_start, submitter.submit("seed", [StudyJob(options, seed) for seed in need_start])))
        if cluster == "local":
            return _run_locally(study, submitter, todo, seeds, seed_jobs, earlier, started_at)
        cell_jobs = []
        for seed in seeds:
            after = f"afterok:{seed_jobs[seed][0].job_id}" if seed in seed_jobs else None
            cell_jobs += submitter.submit("cell", [StudyJob(options, seed, cell.arm.name) for cell in todo
                                                   if cell.seed == seed], nodes=options.num_machines, dependency=after)
        # One GPU where the cells use GPUs: Study checks that the device it records is there.
        submitter.executor.update_parameters(gpus_per_node=min(1, submitter.gpus_per_node))
        ((record_job, _),) = submitter.submit("record", [RecordJob(options, earlier, started_at)], dependency="afterany:"
                                              + ":".join(job.job_id for job, _ in cell_jobs))
        print(f"submitted {len(seed_jobs)} seed job(s), {len(cell_jobs)} cell job(s) and the study record's job "
              f"{record_job.job_id}; progress: suite study --status {study.out}", flush=True)
        return 0


def _run_locally(study: Study, submitter: Submitter, todo: List[Cell], seeds: List[int], seed_jobs: Dict,
                 earlier: float, started_at: float) -> int:
    """LocalExecutor has no dependencies: submit each seed's cells once its seed job has ended
    well, wait for every job, then write the study record."""
    pending = list(seed_jobs.values())
    cell_jobs = {seed: submitter.submit("cell", [StudyJob(study.options, seed, cell.arm.name)
                                                 for cell in todo if cell.seed == seed])
                 for seed in seeds if seed not in seed_jobs}
    pending += [job for jobs in cell_jobs.values() for job in jobs]
    while pending:
        time.sleep(POLL_S)
        states = job_states(study.out, read_jobs(study.out), [entry for _, entry in pending])
        for job, entry in [item for item in pending if states[item[1].job_id] not in LIVE]:
            pending.remove((job, entry))
            state = states[entry.job_id]
            name = f"seed {entry.seed} (pretraining)" if entry.what == "seed" else f"cell {entry.arm} seed {entry.seed}"
            print(f"{name}: {'done' if state == FINISHED else 'failed'} (job {entry.job_id})", flush=True)
            if entry.what == "seed" and state == FINISHED:
                submitted = submitter.submit("cell", [StudyJob(study.options, entry.seed, cell.arm.name)
                                                      for cell in todo if cell.seed == entry.seed])
                pending += submitted
    failures = finish(study, earlier + time.time() - started_at)
    return 1 if failures else 0

