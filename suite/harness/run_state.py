"""What a checkpoint carries besides Detectron2's own model, optimizer, scheduler and iteration,
so that a run resumed from it continues exactly as the uninterrupted run would (CPU, bit for bit):

    RandomStates   python, numpy and torch (CPU and CUDA) random states of every process at the
                   checkpoint, restored after the data loader has been fast-forwarded
    TrainingTime   how many segments the run has been trained in, and their total training time
    LossCurve      the loss curve so far (a hook: means of each loss term over windows of
                   `period` iterations), with the open window's partial sums

Each is a Detectron2 checkpointable (`state_dict()`/`load_state_dict()`); the states hold only
tensors, numbers, strings and lists, so `torch.load(weights_only=True)` reads them.
"""

import random
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm


def _capture() -> Dict[str, Any]:
    """This process's random states."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "python": [version, list(python_state), gauss_next],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore(state: Dict[str, Any]) -> None:
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStates(HookBase):
    """A hook and a checkpointable. After each iteration at which the checkpointer saves
    (`is_checkpoint_iteration(iter)`), every process's random states are gathered (a collective:
    every rank runs hooks), so that rank 0's checkpoint holds one state per rank. Loading keeps
    them; `restore()` puts this rank's back once the data loader has caught up."""

    def __init__(self, is_checkpoint_iteration):
        self._is_checkpoint_iteration = is_checkpoint_iteration
        self._gathered: List[Dict[str, Any]] = []
        self._loaded: Optional[List[Dict[str, Any]]] = None

    def after_step(self):
        if self._is_checkpoint_iteration(self.trainer.iter):
            self._gathered = comm.all_gather(_capture())

    def state_dict(self) -> Dict[str, Any]:
        return {"ranks": self._gathered}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._loaded = state["ranks"]

    def restore(self) -> bool:
        """Restore this rank's states from the loaded checkpoint; False if it had none (a
        checkpoint written before the suite saved them)."""
        if not self._loaded or comm.get_rank() >= len(self._loaded):
            return False
        _restore(self._loaded[comm.get_rank()])
        return True


class TrainingTime:
    """A checkpointable: the run's segments (1 + the number of resumes) and its training time
    (seconds of `trainer.train()` up to the last checkpoint of each earlier segment, plus this
    one's). Time spent after an interrupted segment's last checkpoint is not counted: those
    iterations are run again."""

    def __init__(self):
        self.previous_segments = 0
        self.previous_wall_s = 0.0
        self._segment_start: Optional[float] = None
        self._segment_end: Optional[float] = None

    def start(self) -> None:
        self._segment_start = time.perf_counter()

    def stop(self) -> None:
        self._segment_end = time.perf_counter()

    @property
    def segment_wall_s(self) -> float:
        if self._segment_start is None:
            return 0.0
        return (self._segment_end or time.perf_counter()) - self._segment_start

    @property
    def segments(self) -> int:
        return self.previous_segments + 1

    @property
    def wall_s(self) -> float:
        return self.previous_wall_s + self.segment_wall_s

    def state_dict(self) -> Dict[str, Any]:
        return {"segments": self.segments, "wall_s": self.wall_s}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.previous_segments = int(state["segments"])
        self.previous_wall_s = float(state["wall_s"])


class LossCurve(HookBase):
    """A hook and a checkpointable: the loss curve of the run record. A point closes every
    `period` iterations and at the last one: {"iter": iterations run so far, "total_loss" and
    each "loss_*": the mean of that term over the point's iterations}. The terms are the
    values the trainer put into the event storage this iteration (rank 0: the mean over ranks)."""

    def __init__(self, period: int = 20):
        self.period = period
        self.points: List[Dict[str, float]] = []
        self._sums: Dict[str, float] = {}
        self._count = 0

    def after_step(self):
        storage = self.trainer.storage
        iteration = self.trainer.iter
        terms = {name: value for name, (value, at) in storage.latest().items()
                 if at == iteration and (name == "total_loss" or name.startswith("loss_"))}
        if not terms:
            return  # ranks other than 0 do not write metrics
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1
        if (iteration + 1) % self.period == 0 or iteration == self.trainer.max_iter - 1:
            point = {"iter": iteration + 1}
            point.update({name: total / self._count for name, total in sorted(self._sums.items())})
            self.points.append(point)
            self._sums, self._count = {}, 0

    def state_dict(self) -> Dict[str, Any]:
        return {"period": self.period, "points": self.points, "sums": dict(self._sums), "count": self._count}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.period = int(state["period"])
        self.points = [dict(point) for point in state["points"]]
        self._sums = dict(state["sums"])
        self._count = int(state["count"])
