"""The loss-speed guard: ratios measured in one run against the limits in baselines/bench_limits.json.

Only ratios are compared (a loss against `torch_cross_entropy`, the memory floor and the official
Seesaw, all timed side by side), so a slower machine moves every time alike and passes, while a
loss that became slower does not.

On a busy machine (a CI runner shared with other jobs) a single median can still be caught by a
burst of load that hits one row more than another. So the guard times the rows round-robin in
BLOCKS separate blocks, the order rotated from block to block (so that no row always follows the
same one), and keeps, per row, the smallest of its block medians: a burst inflates one block, a
slower loss is slower in every block.

It times on GUARD_THREADS intra-op thread ("pinned threads"): with two threads every parallel
region ends in a barrier that waits for whichever thread a competing process descheduled, which on
a loaded 2-core machine moved Seesaw's ratio to F.cross_entropy from about 0.5 to 1.2-1.3 (its
eleven regions against cross-entropy's four) and made the guard fail correct code. One thread
waits on no barrier, so every row slows alike under load; what contention does to the
multi-threaded kernels is measured by `suite bench kernel --contended` instead.

And it keeps freed memory in the process (glibc's malloc: no mmap, no trimming, for the duration
of the measurement; elsewhere the allocator is left as it is). By default every (N, C) buffer of
40 MB is a fresh mapping whose pages the kernel faults in and zeroes on first touch; on the loaded
machine that cost swung from run to run by up to 3x for the same F.cross_entropy (two identical
rows measured 38 and 100 ms in one run), more than any loss's own compute, and it dragged every
ratio with it. With the pages reused, identical rows agree within about 15 %.
"""

import contextlib
import ctypes
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from suite.bench.contention import competing_process
from suite.bench.kernel import add_ratios, build_kernel, timing_record
from suite.bench.timing import Timing, time_calls

LIMITS_FILE = Path(__file__).resolve().parents[2] / "baselines" / "bench_limits.json"
#: Every row the limits name, and the references their ratios need.
GUARD_ROWS = ("ce", "focal", "eql", "eqlv2", "fed", "seesaw", "torch_cross_entropy", "memory_floor", "seesaw_official",
              "eqlv2_official")
GUARD_THREADS = 1
BLOCKS = 3
REPEATS_PER_BLOCK = 7
WARMUP = 2


def load_limits(path: Path = LIMITS_FILE) -> Dict[str, Any]:
    """The limits file: {"shape": {num_rois, num_classes, dtype, device},
    "max_ratio": {ratio field: {row name: limit}}}."""
    limits = json.loads(Path(path).read_text())
    for key in ("shape", "max_ratio"):
        if key not in limits:
            raise ValueError(f"{path}: no {key!r} in the limits file")
    return limits


def min_of_block_medians(kernels: Mapping[str, Callable[[], object]], device: str, blocks: int = BLOCKS,
                         repeats: int = REPEATS_PER_BLOCK, warmup: int = WARMUP) -> Dict[str, Timing]:
    """Per name: the smallest of `blocks` medians, each over `repeats` round-robin calls
    (time_calls) in an order rotated by one name per block; iqr_ms is the spread (largest minus
    smallest) of the block medians, repeats the number of timed calls."""
    names = list(kernels)
    medians = {name: [] for name in names}
    for block in range(blocks):
        order = names[block % len(names):] + names[:block % len(names)]
        timings = time_calls({name: kernels[name] for name in order}, device=device,
                             warmup=warmup if block == 0 else 0, repeats=repeats)
        for name, timing in timings.items():
            medians[name].append(timing.median_ms)
    return {name: Timing(min(values), max(values) - min(values), blocks * repeats) for name, values in medians.items()}


# glibc mallopt parameters and their defaults.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def reused_heap():
    """Inside the block, glibc's malloc serves every allocation from the heap and returns nothing
    to the system, so that freed pages are reused rather than faulted in again; after it, the
    defaults are set back and the free memory is returned (malloc_trim). Yields whether that took
    effect (False without glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
    except (OSError, AttributeError):
        yield False
        return
    try:
        yield applied
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


@contextlib.contextmanager
def intra_op_threads(count: int):
    """torch's intra-op thread count set to `count` inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_guard(limits: Dict[str, Any], rows=GUARD_ROWS, blocks: int = BLOCKS, contended: bool = False,
                  replace: Optional[Mapping[str, Callable[[], object]]] = None,
                  threads: int = GUARD_THREADS) -> List[Dict[str, Any]]:
    """Kernel records (suite.bench.kernel) of `rows` at the limits' shape, timed by
    min_of_block_medians on `threads` intra-op threads with the heap reused (reused_heap), with
    their ratios. `replace` swaps in
    callables for some rows (the failure demonstrations); `contended` times them beside a
    competing process."""
    shape = limits["shape"]
    kernels = {name: build_kernel(name, shape["num_rois"], shape["num_classes"], shape["dtype"], shape["device"])
               for name in rows}
    kernels.update(replace or {})
    with competing_process() if contended else contextlib.nullcontext(), intra_op_threads(threads), reused_heap():
        timings = min_of_block_medians(kernels, shape["device"], blocks)
    records = [timing_record(name, "kernel", shape["device"], shape["dtype"], shape["num_rois"], shape["num_classes"],
                             timing, contended) for name, timing in timings.items()]
    add_ratios(records)
    return records


def limit_violations(records: List[Dict[str, Any]], limits: Dict[str, Any]) -> List[str]:
    """One line per ratio above its limit, or missing, among the kernel records (suite.bench.kernel)
    of the limits' shape; empty when every limit holds."""
    shape = limits["shape"]
    by_name = {record["name"]: record for record in records
               if all(record[key] == value for key, value in shape.items())}
    violations = []
    for field, row_limits in limits["max_ratio"].items():
        for name, limit in sorted(row_limits.items()):
            ratio = by_name.get(name, {}).get(field)
            if ratio is None:
                violations.append(f"{name}: {field} not measured")
            elif ratio > limit:
                violations.append(f"{name}: {field} = {ratio:.2f} > limit {limit}")
    return violations


def slower(kernel: Callable[[], object], times: int) -> Callable[[], None]:
    """`kernel` run `times` times per call: the same work, `times` times as slow (the guard's
    failure demonstration)."""
    def run():
        for _ in range(times):
            kernel()
    return run


def guard_table(records: List[Dict[str, Any]]) -> str:
    """The measured rows, one line each: median and the three ratios."""
    def fmt(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"
    return "\n".join(f"{r['name']:20s} {r['median_ms']:8.2f} ms  to CE {fmt(r['ratio_to_ce'], 2)}  "
                     f"to floor {fmt(r['ratio_to_floor'], 1)}  to official {fmt(r['ratio_to_official'], 2)}"
                     for r in records)
