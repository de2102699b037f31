"""The scheduler settings of a study's jobs (`suite study --launcher submitit`): from a yaml
file in the suite's style (its keys are ExecutorSettings' fields) and the command line.

    # slurm.yaml
    partition: learnfair
    time_min: 2880
    account: my_account
    cpus_per_task: 10
    mem_gb: 400
    sbatch: {constraint: volta32gb}
"""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional

from suite.errors import UserError

DEFAULT_TIME_MIN = 3 * 24 * 60  # a cell's time limit: the paper's LVIS cell takes about a day on 8 GPUs


@dataclass
class ExecutorSettings:
    """The scheduler settings of every job; a cell's nodes and GPUs per node are the study's
    --num-machines and --num-gpus. `sbatch`: further sbatch options, {"constraint": "volta32gb"}
    for --constraint=volta32gb."""

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
    return ExecutorSettings(**values)
