"""The jobs of a study submitted through a scheduler (`suite study --launcher submitit`) and
their states.

OUT/jobs.json (kind "study_jobs", docs/records.md) lists every job submitted for the study
folder, oldest first: its scheduler id, what it runs (a seed's pretraining and initial weights, a
cell, or the final study record) and its log files. The latest job of each seed or cell is the
one that counts. A job's state comes from the scheduler while it holds the job (Slurm's squeue;
for submitit's LocalExecutor, whose job id is its controller's process id, that process), then
from the result submitit leaves in the job folder (none: the job was killed).
"""

import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from suite.errors import UserError
from suite.records import read_record, write_json_atomic
from suite.schema import SCHEMA_VERSION, STUDY_JOBS_FIELDS, STUDY_JOBS_KIND, STUDY_JOBS_RECORD

JOBS_FOLDER = "jobs"  # submitit's folder in OUT: submission scripts, pickles, logs

# What a job's state means for the study.
QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"
LIVE = (QUEUED, RUNNING)
# Slurm's job states of a job it still runs or will run (squeue --format=%T); any other is an end.
SLURM_LIVE_STATES = {"RUNNING": RUNNING, "COMPLETING": RUNNING, "CONFIGURING": RUNNING, "PENDING": QUEUED,
                     "REQUEUED": QUEUED, "REQUEUE_HOLD": QUEUED, "REQUEUE_FED": QUEUED, "RESIZING": QUEUED,
                     "SUSPENDED": QUEUED, "STOPPED": QUEUED}


@dataclass(frozen=True)
class JobEntry:
    """One submitted job: `what` is "seed" (pretraining and initial weights of `seed`), "cell"
    (the cell `arm` x `seed`) or "record" (the study record once every cell has ended); `stdout`
    and `stderr` are its log files (task 0), relative to the study folder."""

    job_id: str
    what: str
    seed: Optional[int] = None
    arm: Optional[str] = None
    stdout: str = ""
    stderr: str = ""

    @property
    def key(self) -> Tuple[str, Optional[int], Optional[str]]:
        return self.what, self.seed, self.arm


def read_jobs(out: Path) -> Optional[Dict]:
    """OUT/jobs.json (None if no submission was made there)."""
    path = Path(out) / STUDY_JOBS_RECORD
    return read_record(path, STUDY_JOBS_KIND, STUDY_JOBS_FIELDS) if path.exists() else None


def append_jobs(out: Path, executor: str, entries: List[JobEntry]) -> None:
    """Add `entries` to OUT/jobs.json (atomically), noting the executor they went to."""
    previous = read_jobs(out) or {"jobs": []}
    write_json_atomic(Path(out) / STUDY_JOBS_RECORD, {
        "schema_version": SCHEMA_VERSION, "kind": STUDY_JOBS_KIND, "executor": executor, "folder": JOBS_FOLDER,
        "jobs": previous["jobs"] + [{**asdict(entry), "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                                    for entry in entries]})


def latest_jobs(record: Optional[Dict]) -> Dict[Tuple[str, Optional[int], Optional[str]], JobEntry]:
    """The latest job of each seed, cell and the record, by JobEntry.key."""
    latest = {}
    for job in (record or {"jobs": []})["jobs"]:
        entry = JobEntry(**{key: value for key, value in job.items() if key != "submitted_at"})
        latest[entry.key] = entry
    return latest


def _ended_state(folder: Path, job_id: str) -> str:
    """A job no longer queued or running: finished or failed by the result submitit pickled
    (none: the job was killed, or its node lost)."""
    result = folder / f"{job_id}_0_result.pkl"
    if not result.exists():
        return FAILED
    from submitit.core.utils import pickle_load

    return FINISHED if pickle_load(result)[0] == "success" else FAILED


def _local_alive(job_id: str) -> bool:
    """Whether a LocalExecutor job's controller process (its id is the job's) still runs."""
    try:
        return b"submitit" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def _slurm_live() -> Dict[str, str]:
    """{job id: state} of this user's jobs Slurm still holds (array tasks one by one); squeue,
    which needs no accounting database."""
    listing = subprocess.run(["squeue", "--me", "--array", "--noheader", "--format=%i|%T"], capture_output=True,
                             text=True, check=True).stdout
    return dict(line.split("|", 1) for line in listing.splitlines() if "|" in line)


def job_states(out: Path, record: Optional[Dict], entries: List[JobEntry]) -> Dict[str, str]:
    """{job_id: QUEUED, RUNNING, FINISHED or FAILED}: from the scheduler while it holds the job,
    then from the result submitit left in the job folder."""
    if not entries:
        return {}
    folder = Path(out) / record.get("folder", JOBS_FOLDER)
    if record["executor"] == "local":
        return {entry.job_id: RUNNING if _local_alive(entry.job_id) else _ended_state(folder, entry.job_id)
                for entry in entries}
    live = _slurm_live()
    return {entry.job_id: SLURM_LIVE_STATES.get(live.get(entry.job_id, ""))
            or _ended_state(folder, entry.job_id) for entry in entries}


def check_not_held(out: Path) -> None:
    """UserError (one line) if a submission's jobs in OUT are still queued or running."""
    record = read_jobs(out)
    if record is None:
        return
    entries = list(latest_jobs(record).values())
    live = [job_id for job_id, state in job_states(out, record, entries).items() if state in LIVE]
    if live:
        raise UserError(f"{out} is held by a submission whose {len(live)} job(s) are queued or running "
                        f"({', '.join(live[:5])}{', ...' if len(live) > 5 else ''}; {record['executor']}); "
                        f"see suite study --status {out}, or wait for them")


def _last_error_line(path: Path) -> str:
    """The last line a job wrote to its stderr `path` (the exception, as a rule)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.exists() else []
    return lines[-1].strip() if lines else "no error output"


def not_done_line(out: Path, latest: Dict[Tuple[str, Optional[int], Optional[str]], JobEntry], arm: str,
                  seed: int) -> str:
    """One line on the cell `arm` x `seed`, not done: the job that decided it (the cell's latest
    job, else its seed's pretraining job; `latest` as latest_jobs gives), that job's last error
    line and its log; or that no job was submitted for it."""
    job = latest.get(("cell", seed, arm)) or latest.get(("seed", seed, None))
    if job is None:
        return f"cell {arm} seed {seed} not done: never submitted"
    log = Path(out) / job.stderr
    what = "job" if job.what == "cell" else "pretraining job of the seed"
    return f"cell {arm} seed {seed} not done: {what} {job.job_id} failed: {_last_error_line(log)}; log: {log}"

