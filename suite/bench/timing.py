"""Timing of several callables side by side: warm-up, then one measurement per call, taken in
round-robin order (A B C A B C ...) so that a load change on the machine hits every callable alike
and their ratios stay fair; median and interquartile range per callable.

On CUDA every call is bracketed by CUDA events (device time) and the host synchronises once, after
the last call; on the CPU each call is timed with `time.perf_counter` (wall time, `clock="wall"`) or
with `time.process_time` (`clock="cpu"`: the CPU time of every thread of this process, which leaves
out the time the process waited while another process held the cores).
"""

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping

import torch


@dataclass(frozen=True)
class Timing:
    """`median_ms` and `iqr_ms` (75th minus 25th percentile) over `repeats` timed calls."""

    median_ms: float
    iqr_ms: float
    repeats: int


#: The host clocks of time_calls, in seconds: wall time and this process's CPU time.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def summarize(samples_ms: List[float]) -> Timing:
    """Median and interquartile range of per-call times in milliseconds (at least one sample)."""
    if not samples_ms:
        raise ValueError("summarize: no samples")
    if len(samples_ms) == 1:
        return Timing(samples_ms[0], 0.0, 1)
    low, _, high = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return Timing(statistics.median(samples_ms), high - low, len(samples_ms))


def time_calls(fns: Mapping[str, Callable[[], object]], *, device: str, warmup: int,
               repeats: int, clock: str = "wall") -> Dict[str, Timing]:
    """Call each of `fns` `warmup` times untimed, then `repeats` rounds in which each is called and
    timed once, round r starting at the (r mod len(fns))-th name: no callable always follows the
    same one (on the CPU a call's time depends on what its predecessor freed: two identical
    `F.cross_entropy` rows in a fixed order measured 33 and 43 ms). `clock` ("wall" or "cpu",
    CLOCKS) applies on the CPU; CUDA is timed by events. Returns a Timing per name."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"time_calls: warmup must be >= 0 and repeats >= 1, got {warmup}, {repeats}")
    if clock not in CLOCKS:
        raise ValueError(f"time_calls: clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.synchronize(device)
    samples = {name: [] for name in fns}
    names = list(fns)
    for round_index in range(repeats):
        first = round_index % len(names)
        for name in names[first:] + names[:first]:
            fn = fns[name]
            if on_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                samples[name].append((start, end))
            else:
                start_s = now()
                fn()
                samples[name].append((now() - start_s) * 1e3)
    if on_cuda:
        torch.cuda.synchronize(device)
        samples = {name: [start.elapsed_time(end) for start, end in pairs] for name, pairs in samples.items()}
    return {name: summarize(values) for name, values in samples.items()}
