"""`suite study --status DIR` (the grid: done, running, queued, failed, from the records and the
scheduler) and `suite study --dry-run` (the grid, the jobs and their dependencies, and an
estimate of their hours from the cells this study folder has finished)."""

import json
from pathlib import Path
from typing import Dict, List, Optional

from suite.errors import UserError
from suite.records import read_record
from suite.schema import RUN_RECORD, STUDY_JOBS_RECORD, STUDY_KIND, STUDY_RECORD
from suite.workflows.executor_settings import ExecutorSettings, choose_executor
from suite.workflows.study import ARMS, Cell, Study, StudyOptions, cells
from suite.workflows.study_jobs import (FAILED, FINISHED, LIVE, QUEUED, RUNNING, job_states, latest_jobs, not_done_line,
                                        read_jobs)

DONE, NOT_SUBMITTED = "done", "not submitted"
STATES = (DONE, RUNNING, QUEUED, FAILED, NOT_SUBMITTED)


def cell_states(out: Path, grid: List[Cell]) -> Dict[Cell, str]:
    """Each cell's state: done (its bootstrap record is written), else its latest job's (a cell
    waiting for its seed's job is queued; a job that ended without finishing the cell failed),
    or not submitted."""
    record = read_jobs(out)
    latest = latest_jobs(record)
    states = job_states(out, record, list(latest.values()))
    result = {}
    for cell in grid:
        job = latest.get(("cell", cell.seed, cell.arm.name))
        seed_job = latest.get(("seed", cell.seed, None))
        if cell.done(out):
            result[cell] = DONE
        elif job is not None:
            result[cell] = FAILED if states[job.job_id] == FINISHED else states[job.job_id]
        elif seed_job is not None:
            result[cell] = QUEUED if states[seed_job.job_id] in LIVE else FAILED
        else:
            result[cell] = NOT_SUBMITTED
    return result


def _grid_of(out: Path) -> List[Cell]:
    path = Path(out) / STUDY_RECORD
    if not path.exists():
        raise UserError(f"{out}: no study here ({STUDY_RECORD} is missing)")
    record = read_record(path, STUDY_KIND, ("cells",))
    return [Cell(ARMS[cell["arm"]], cell["seed"]) for cell in record["cells"]]


def _table(grid: List[Cell], text: Dict[Cell, str]) -> List[str]:
    seeds = list(dict.fromkeys(cell.seed for cell in grid))
    arms = list(dict.fromkeys(cell.arm.name for cell in grid))
    width = max(len(arm) for arm in arms) + 2
    column = max([len(value) for value in text.values()] + [8]) + 2
    lines = [("arm".ljust(width) + "".join(f"seed {seed}".ljust(column) for seed in seeds)).rstrip()]
    by_key = {(cell.arm.name, cell.seed): text[cell] for cell in grid}
    for arm in arms:
        lines.append((arm.ljust(width) + "".join(by_key.get((arm, seed), "-").ljust(column) for seed in seeds)).rstrip())
    return lines


def print_status(out: Path) -> int:
    """Print the grid with each cell's state, then a line per failed cell (study_jobs.not_done_line)."""
    out = Path(out)
    grid = _grid_of(out)
    states = cell_states(out, grid)
    record = read_jobs(out)
    counts = ", ".join(f"{sum(state == name for state in states.values())} {name}" for name in STATES
                       if any(state == name for state in states.values()))
    print(f"study {out}: {len(grid)} cells: {counts}"
          + (f" (jobs: {record['executor']}, {out / STUDY_JOBS_RECORD})" if record else " (no jobs submitted)"))
    for line in _table(grid, states):
        print("  " + line)
    latest = latest_jobs(record)
    for cell, state in states.items():
        if state == FAILED:
            print(not_done_line(out, latest, cell.arm.name, cell.seed))
    return 0


def _training_hours(run_dirs: List[Path]) -> Optional[float]:
    """Mean training time in hours of the finished runs among `run_dirs` (None if none)."""
    times = [json.loads((run_dir / RUN_RECORD).read_text())["train"]["wall_s"]
             for run_dir in run_dirs if (run_dir / RUN_RECORD).exists()]
    return sum(times) / len(times) / 3600 if times else None


def print_dry_run(options: StudyOptions, settings: Optional[ExecutorSettings]) -> int:
    """Print what `suite study` with these options would run, and submit or train nothing: the
    local route (`settings` None) or jobs to the executor `settings` name."""
    executor = None if settings is None else choose_executor(settings.executor)
    study = Study(options)
    study.previous_wall_s()  # refuses a folder of another protocol
    grid = cells(options)
    todo = [cell for cell in grid if not cell.done(study.out)]
    print(f"study {study.out}: {len(grid)} cells ({len(grid) - len(todo)} done), arms {', '.join(options.arms)}, "
          f"seeds {', '.join(map(str, options.seeds))}; each cell {options.num_machines} machine(s) x "
          f"{options.num_gpus} process(es), device {options.device}")
    for line in _table(grid, {cell: DONE if cell not in todo else "to run" for cell in grid}):
        print("  " + line)
    seeds = [seed for seed in options.seeds if any(cell.seed == seed for cell in todo)]
    need_start = [seed for seed in seeds if not study.initial_weights_path(seed).is_file()]
    if executor is None:
        print(f"jobs: none; this process runs {len(todo)} cell(s) in turn, seed-major"
              + (f", after the initial weights of seed(s) {', '.join(map(str, need_start))}" if need_start else ""))
    else:
        cluster, why = executor
        print(f"jobs (--launcher submitit) to {'Slurm' if cluster == 'slurm' else 'its LocalExecutor'} ({why}):")
        if need_start:
            print(f"  array 'seed': {len(need_start)} job(s), the pretraining and initial weights of seed(s) "
                  f"{', '.join(map(str, need_start))} (1 node)")
        for seed in seeds:
            arms = [cell.arm.name for cell in todo if cell.seed == seed]
            after = f"after seed {seed}'s job (afterok)" if seed in need_start else "no dependency"
            print(f"  array 'cell' of seed {seed}: {len(arms)} job(s) ({', '.join(arms)}), {options.num_machines} "
                  f"node(s) each, {after}")
        if todo:
            print("  job 'record': the study record once every cell job has ended (afterany; locally the "
                  "submitting process waits and writes it)")
    cell_hours = _training_hours([cell.run_dir(study.out) for cell in grid if cell not in todo])
    pretrain_hours = _training_hours(sorted((study.out / "pretrain").glob("seed*")))
    if cell_hours is None:
        print("estimate: none (no finished cell of this protocol in this study folder to take the time of)")
        return 0
    hours = len(todo) * cell_hours + len(need_start) * (pretrain_hours or 0.0)
    processes = options.num_machines * options.num_gpus
    unit = "GPU" if options.device == "cuda" else "process"
    print(f"estimate: {len(todo)} cell(s) x {cell_hours:.3g} h of training (the mean of this folder's finished cells)"
          + (f" + {len(need_start)} pretraining(s) x {pretrain_hours:.3g} h" if need_start and pretrain_hours else "")
          + f" = {hours:.3g} h of jobs, {hours * processes:.3g} {unit} hours ({processes} per cell); evaluation and "
          "bootstrap not counted")
    return 0
