"""The scheduler settings of a study's jobs (`suite study --launcher submitit`): from a yaml
file in the suite's style (its keys are ExecutorSettings' fields) and the command line; and the
executor they name.

    # slurm.yaml
    executor: slurm
    partition: learnfair
    time_min: 2880
    account: my_account
    cpus_per_task: 10
    mem_gb: 400
    sbatch: {constraint: volta32gb}
"""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from suite.errors import UserError

DEFAULT_TIME_MIN = 3 * 24 * 60  # a cell's time limit: the paper's LVIS cell takes about a day on 8 GPUs
# Where the jobs go: auto is submitit's AutoExecutor rule (Slurm where `srun` is on PATH, else its
# LocalExecutor); slurm and local name one.
EXECUTORS = ("auto", "slurm", "local")


@dataclass
class ExecutorSettings:
    """The scheduler settings of every job; a cell's nodes and GPUs per node are the study's
    --num-machines and --num-gpus. `executor`: one of EXECUTORS. `sbatch`: further sbatch
    options, {"constraint": "volta32gb"} for --constraint=volta32gb."""

    executor: str = "auto"
    partition: Optional[str] = None
    time_min: int = DEFAULT_TIME_MIN
    account: Optional[str] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    sbatch: Dict[str, str] = field(default_factory=dict)


def executor_settings(path: Optional[Path], **given: Any) -> ExecutorSettings:
    """The settings of the yaml file at `path` (keys: ExecutorSettings' fields), then those
    `given` on the command line that are not None (they win; `sbatch` options are merged);
    UserError for an unknown key."""
    import yaml

    values: Dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise UserError(f"--executor-config {path}: cannot be read ({error})") from None
        known = {item.name for item in fields(ExecutorSettings)}
        unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not a mapping)"]
        if unknown:
            raise UserError(f"--executor-config {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    sbatch = {**(values.get("sbatch") or {}), **given.pop("sbatch", {})}
    values.update({key: value for key, value in given.items() if value is not None})
    values["sbatch"] = {str(key): str(value) for key, value in sbatch.items()}
    if values.get("executor", "auto") not in EXECUTORS:
        raise UserError(f"--executor-config {path}: executor {values['executor']!r} is none of {', '.join(EXECUTORS)}")
    return ExecutorSettings(**values)


def choose_executor(executor: str) -> Tuple[str, str]:
    """submitit's executor for `executor` (one of EXECUTORS), "slurm" or "local", and why, in
    words; UserError (one line) for slurm where there is no Slurm (no `srun` on PATH)."""
    import submitit

    has_slurm = submitit.SlurmExecutor.affinity() > 0  # submitit's test: srun on PATH
    if executor == "auto":
        return ("slurm", "srun on PATH") if has_slurm else ("local", "no Slurm here (no srun on PATH)")
    if executor == "slurm" and not has_slurm:
        raise UserError("--executor slurm: no Slurm here (no srun on PATH)")
    return executor, f"--executor {executor}"
