"""Disk for finished runs: keep only the checkpoint a finished run is evaluated from.

A run directory collects one checkpoint every SOLVER.CHECKPOINT_PERIOD iterations plus
`model_final.pth` (the small CPU model: about 100 MB each, six per study cell). Once the run
record (`run.json`) is written, only the checkpoint that `last_checkpoint` names is still read:
`suite eval` loads it, and `suite train --resume` of a finished run is refused. Before that, every
checkpoint may be what a resume needs, so an unfinished run is never touched.
"""

import logging
from pathlib import Path
from typing import List

from suite.schema import RUN_RECORD

LAST_CHECKPOINT = "last_checkpoint"  # Detectron2's file naming the newest checkpoint
logger = logging.getLogger("suite.study")


def _is_checkpoint(path: Path) -> bool:
    """A checkpoint (`<name>.pth`) or what an interrupted atomic save of one left behind
    (`.<name>.pth.<random>.tmp`, suite.records.open_atomic)."""
    name = path.name
    return name.endswith(".pth") or (name.startswith(".") and ".pth." in name and name.endswith(".tmp"))


def prune_checkpoints(run_dir: Path) -> List[Path]:
    """Delete every checkpoint file directly in `run_dir` but the one `last_checkpoint` names;
    return the deleted paths (sorted). Deletes nothing when the run has no `run.json` (not finished)
    or when `last_checkpoint` is missing or names no file (nothing would be left to evaluate).
    The caller holds the run directory's lock (suite.harness.run_lock.RunLock)."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_RECORD).is_file():
        return []
    pointer = run_dir / LAST_CHECKPOINT
    kept = pointer.read_text().strip() if pointer.is_file() else ""
    if not kept or not (run_dir / kept).is_file():
        logger.warning("%s: %s names no checkpoint file; keeping every checkpoint", run_dir, LAST_CHECKPOINT)
        return []
    deleted = sorted(path for path in run_dir.iterdir()
                     if path.is_file() and not path.is_symlink() and _is_checkpoint(path) and path.name != kept)
    for path in deleted:
        path.unlink()
    return deleted
