"""The loss-speed guard: every loss's speed ratio, measured in one run, against limits derived by a
command (`suite bench guard --derive`) and kept with their provenance in baselines/bench_limits.json.

What it measures. Every loss of suite.losses.LOSSES, forward + backward at GUARD_SHAPE, beside the
reference rows of suite.bench.kernel, timed round-robin in BLOCKS blocks (the order rotated from
block to block), each row's smallest block median kept. Three choices make a ratio hold still on a
shared 2-core machine:
- the process's CPU time (`time.process_time`), not wall time: the time a competing process holds
  the cores is not counted, and a loss doing twice the work takes twice the CPU time. With wall
  time, beside a competing process, the suite's own `ce` measured 0.4x to 1.9x F.cross_entropy over
  four runs; with CPU time 1.00x to 1.03x;
- one intra-op thread: no parallel region, so no barrier whose wait is spent spinning;
- freed memory kept in the process (reused_heap): no fresh pages to fault in and zero, a cost that
  swung from run to run by up to 3x and dragged every ratio with it.

What it holds. Per machine (a processor and its vector extensions, and torch: MACHINE_KEYS), one
ratio field for every loss, the one `--derive` found steadiest over its runs
(`field`, e.g. ratio_to_ce), in two conditions (quiet, and beside a competing process), each under
its own limits. The derivation puts each limit at sqrt(2 * lo * hi), where lo and hi are the
smallest and largest ratio it measured: a correct run passes while its ratio stays below the limit
(the margin over hi), and a 2x slower loss fails while twice its ratio exceeds the limit (the same
margin under 2 * lo), margin = sqrt(2 * lo / hi) on both sides. A row too noisy for a margin of
MIN_MARGIN is refused.

The guard checks its own power on every run: a measured ratio so far below its limit that twice it
would pass means the loss became faster and the limit no longer catches a 2x regression; that fails
as stale, so a speed-up re-derives the limits in the same commit.
"""

import contextlib
import ctypes
import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch

from suite.bench.contention import competing_process
from suite.bench.kernel import OFFICIAL_ROWS, RATIO_FIELDS, REFERENCE_ROWS, add_ratios, build_kernel, timing_record
from suite.bench.timing import Timing, time_calls
from suite.environment import REPO_ROOT, code_version, cpu_name
from suite.losses import LOSSES
from suite.records import write_json_atomic

LIMITS_FILE = REPO_ROOT / "baselines" / "bench_limits.json"
#: The losses the guard holds: the suite's own, every one.
GUARD_LOSSES = tuple(LOSSES)
CONDITIONS = ("quiet", "contended")
#: The shape of every guard measurement: LVIS v1's classes, 4 images x 512 RoIs (the official
#: recipes' batch on two GPUs). The benchmarks (suite bench kernel) also time 16 images.
GUARD_SHAPE = {"num_rois": 2048, "num_classes": 1203, "dtype": "float32", "device": "cpu"}
GUARD_CLOCK = "cpu"
GUARD_THREADS = 1
BLOCKS = 3
REPEATS_PER_BLOCK = 7
WARMUP = 2
#: The least factor between a row's limit and its measured ratios (above the largest, below twice
#: the smallest) that --derive accepts.
MIN_MARGIN = 1.15
DERIVE_COMMAND = "suite bench guard --derive"
LIMITS_ABOUT = ("Upper limits of the loss-speed ratios that the CI guard (tests/test_bench_guard.py, suite bench "
                "guard) checks, one entry per machine, each derived there by the command in its provenance "
                "(suite.bench.guard says how each limit follows from the measured ratios). Re-derive after any "
                "change to a kernel's speed, in the same commit.")


def load_limits(path: Path = LIMITS_FILE, here: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The limits of this machine (or of `here`, a machine()) from the limits file, which holds one
    entry per machine that derive_limits measured: {"shape", "field", "reference", "conditions":
    {condition: {loss: {"limit", "measured_min", "measured_max", "margin"}}}, "references",
    "provenance"}. ValueError naming the machine when the file has no entry for it."""
    entries = json.loads(Path(path).read_text()).get("machines")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: no 'machines' in the limits file; re-derive it with `{DERIVE_COMMAND}`")
    here = here or machine()
    for entry in entries:
        if same_machine(entry["provenance"]["machine"], here):
            return entry
    known = "; ".join(describe(entry["provenance"]["machine"]) for entry in entries) or "none"
    raise ValueError(f"{path}: no speed limits for this machine ({describe(here)}; limits exist for: {known}): "
                     f"a kernel's speed ratios differ between processors, so derive them here with "
                     f"`{DERIVE_COMMAND}` and commit the file")


#: What a kernel's speed ratio depends on besides the code, and so what tells machines apart.
MACHINE_KEYS = ("cpu", "cpu_capability", "torch")


def same_machine(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return all(one.get(key) == other.get(key) for key in MACHINE_KEYS)


def describe(machine_info: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {machine_info.get(key)}" for key in MACHINE_KEYS)


def min_of_block_medians(kernels: Mapping[str, Callable[[], object]], device: str, blocks: int = BLOCKS,
                         repeats: int = REPEATS_PER_BLOCK, warmup: int = WARMUP,
                         clock: str = GUARD_CLOCK) -> Dict[str, Timing]:
    """Per name: the smallest of `blocks` medians, each over `repeats` round-robin calls
    (time_calls on `clock`) in an order rotated by one name per block; iqr_ms is the spread (largest
    minus smallest) of the block medians, repeats the number of timed calls."""
    names = list(kernels)
    medians = {name: [] for name in names}
    for block in range(blocks):
        order = names[block % len(names):] + names[:block % len(names)]
        timings = time_calls({name: kernels[name] for name in order}, device=device,
                             warmup=warmup if block == 0 else 0, repeats=repeats, clock=clock)
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


@contextlib.contextmanager
def losses_doing_more_work(names: Iterable[str], times: int = 2) -> Iterator[None]:
    """Inside the block, each loss of `names` (LOSSES) computes its terms `times` times per call and
    returns their mean: the same values for `times` times the work, forward and backward, as a
    regression inside the loss would cost (the guard's failure demonstrations)."""
    if times < 1:
        raise ValueError(f"losses_doing_more_work: times must be >= 1, got {times}")
    unknown = sorted(set(names) - set(LOSSES))
    if unknown:
        raise ValueError(f"losses_doing_more_work: unknown losses {unknown}; known: {', '.join(LOSSES)}")
    originals = {LOSSES[name]: LOSSES[name].__dict__["_terms"] for name in set(names)}

    def repeated(original):
        def _terms(self, logits, labels):
            runs = [original(self, logits, labels) for _ in range(times)]
            return {term: sum(run[term] for run in runs) / times for term in runs[0]}
        return _terms

    try:
        for cls, original in originals.items():
            cls._terms = repeated(original)
        yield
    finally:
        for cls, original in originals.items():
            cls._terms = original


def measure_guard(rows: Sequence[str], contended: bool = False,
                  shape: Mapping[str, Any] = GUARD_SHAPE) -> List[Dict[str, Any]]:
    """Kernel records (suite.bench.kernel) of `rows` at `shape`, timed by min_of_block_medians on
    GUARD_THREADS intra-op threads in CPU time with the heap reused, beside a competing process when
    `contended`, with their ratios."""
    kernels = {name: build_kernel(name, shape["num_rois"], shape["num_classes"], shape["dtype"], shape["device"])
               for name in rows}
    with competing_process() if contended else contextlib.nullcontext(), intra_op_threads(GUARD_THREADS), \
            reused_heap():
        timings = min_of_block_medians(kernels, shape["device"])
    records = [timing_record(name, "kernel", shape["device"], shape["dtype"], shape["num_rois"], shape["num_classes"],
                             timing, contended) for name, timing in timings.items()]
    add_ratios(records)
    return records


def limit_for(measured: Sequence[float]) -> Dict[str, float]:
    """The limit of one row in one condition from its measured ratios: sqrt(2 * lo * hi), with the
    margin sqrt(2 * lo / hi) it leaves above hi and below 2 * lo."""
    lo, hi = min(measured), max(measured)
    if lo <= 0:
        raise ValueError(f"measured ratios must be positive, got {list(measured)}")
    return {"limit": math.sqrt(2 * lo * hi), "measured_min": lo, "measured_max": hi,
            "margin": math.sqrt(2 * lo / hi)}


def spread(values: Sequence[float]) -> float:
    """Largest over smallest of positive values."""
    return max(values) / min(values)


def steadiest_field(ratios: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]) -> str:
    """Of {field: {condition: {loss: ratios over runs}}}, the field whose worst spread over losses
    and conditions is smallest."""
    return min(ratios, key=lambda field: max(spread(values) for per_loss in ratios[field].values()
                                             for values in per_loss.values()))


def limits_from_measurements(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
                             losses: Sequence[str] = GUARD_LOSSES) -> Dict[str, Any]:
    """The limits file's body from guard measurements {condition: [records of one run, ...]}: the
    steadiest ratio field, each loss's limit per condition (limit_for), and how much every
    reference row and every loss's ratio to it moved over the runs. ValueError naming the rows
    whose ratios spread too far for a margin of MIN_MARGIN."""
    def by_name(records):
        return {record["name"]: record for record in records}

    per_run = {condition: [by_name(records) for records in measured] for condition, measured in runs.items()}
    measured_fields = [field for field, row in RATIO_FIELDS.items()
                       if all(row in run for measured in per_run.values() for run in measured)]
    if not measured_fields:
        raise ValueError(f"no reference row measured; the guard's ratios need one of {sorted(RATIO_FIELDS.values())}")
    ratios = {field: {condition: {loss: [run[loss][field] for run in measured] for loss in losses}
                      for condition, measured in per_run.items()}
              for field in measured_fields}
    field = steadiest_field(ratios)
    conditions = {condition: {loss: limit_for(values) for loss, values in per_loss.items()}
                  for condition, per_loss in ratios[field].items()}
    too_noisy = [f"{loss} ({condition}): ratios {row['measured_min']:.3f}-{row['measured_max']:.3f}"
                 for condition, rows in conditions.items() for loss, row in rows.items() if row["margin"] < MIN_MARGIN]
    if too_noisy:
        raise ValueError(f"too noisy to guard (margin under {MIN_MARGIN}): " + "; ".join(too_noisy))
    references = {reference: {condition: reference_movement(reference, measured, losses)
                              for condition, measured in per_run.items()}
                  for reference in REFERENCE_ROWS if all(reference in run for measured in per_run.values()
                                                         for run in measured)}
    return {"field": field, "reference": RATIO_FIELDS[field], "conditions": conditions, "references": references}


def reference_movement(reference: str, runs: Sequence[Mapping[str, Mapping[str, Any]]],
                       losses: Sequence[str]) -> Dict[str, Any]:
    """How much reference row `reference` moved over `runs` (each {row name: record}): its median
    time's range and spread, and the spread of each loss's ratio to it (for an official row, of the
    losses it is the official code of)."""
    median_ms = [run[reference]["median_ms"] for run in runs]
    fields = {row: field for field, row in RATIO_FIELDS.items()}
    field = fields.get(reference, "ratio_to_official")
    compared = [loss for loss in losses if field != "ratio_to_official" or OFFICIAL_ROWS.get(loss) == reference]
    return {"median_ms_min": min(median_ms), "median_ms_max": max(median_ms), "median_ms_spread": spread(median_ms),
            "ratio_field": field,
            "loss_ratio_spread": {loss: spread([run[loss][field] for run in runs]) for loss in compared}}


def provenance(runs: int) -> Dict[str, Any]:
    """Where and when limits were derived: the command, the commit (and whether the tree was
    dirty), the date, the machine (never its host name) and the measurement's settings."""
    version = code_version()
    return {
        "command": f"{DERIVE_COMMAND} --runs {runs}", "runs": runs,
        "commit": version["git_commit"], "dirty": version["git_dirty"],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "clock": GUARD_CLOCK, "threads": GUARD_THREADS, "blocks": BLOCKS, "repeats_per_block": REPEATS_PER_BLOCK,
        "min_margin": MIN_MARGIN,
    }


def machine() -> Dict[str, Any]:
    """The machine a measurement ran on: processor, its vector extensions as torch uses them, core
    count, Python and torch (MACHINE_KEYS tell machines apart)."""
    return {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def derive_limits(runs: int, progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Measure every loss and reference `runs` times per condition and return this machine's entry of
    the limits file."""
    if runs < 2:
        raise ValueError(f"--runs {runs}: the limits need at least 2 runs per condition")
    rows = GUARD_LOSSES + REFERENCE_ROWS
    measured = {condition: [] for condition in CONDITIONS}
    for index in range(runs):
        for condition in CONDITIONS:
            records = measure_guard(rows, contended=condition == "contended")
            measured[condition].append(records)
            if progress:
                progress(f"run {index + 1}/{runs} {condition}: " + ", ".join(
                    f"{r['name']} {r['ratio_to_ce']:.2f}" for r in records))
    return {"shape": dict(GUARD_SHAPE), **limits_from_measurements(measured), "provenance": provenance(runs)}


def write_limits(limits: Dict[str, Any], path: Path = LIMITS_FILE) -> None:
    """Put one machine's limits (derive_limits) into the limits file atomically, replacing that
    machine's earlier entry and keeping the other machines'."""
    entries = json.loads(path.read_text()).get("machines", []) if path.exists() else []
    derived_on = limits["provenance"]["machine"]
    entries = [entry for entry in entries if not same_machine(entry["provenance"]["machine"], derived_on)]
    write_json_atomic(path, {"about": LIMITS_ABOUT, "machines": entries + [limits]})


def guard_rows(limits: Mapping[str, Any]) -> tuple:
    """The rows one guard measurement needs: every loss the limits hold and their reference."""
    losses = sorted({loss for rows in limits["conditions"].values() for loss in rows})
    return tuple(losses) + (limits["reference"],)


def limit_violations(records: List[Dict[str, Any]], limits: Mapping[str, Any], condition: str) -> List[str]:
    """One line per loss of the limits whose ratio in `condition` is above its limit, missing, or so
    far below it that twice the ratio would pass (a stale limit); empty when every limit holds."""
    if condition not in limits["conditions"]:
        raise ValueError(f"no limits for condition {condition!r}; known: {', '.join(limits['conditions'])}")
    shape, field = limits["shape"], limits["field"]
    by_name = {record["name"]: record for record in records
               if all(record[key] == value for key, value in shape.items())}
    violations = []
    for name, row in sorted(limits["conditions"][condition].items()):
        ratio, limit = by_name.get(name, {}).get(field), row["limit"]
        if ratio is None:
            violations.append(f"{name} ({condition}): {field} not measured")
        elif ratio > limit:
            violations.append(f"{name} ({condition}): {field} = {ratio:.2f} > limit {limit:.2f}")
        elif 2 * ratio <= limit:
            violations.append(f"limits for {name} ({condition}) are stale: measured {ratio:.2f}, limit {limit:.2f} "
                              f"(a 2x regression would pass); re-derive with `{DERIVE_COMMAND}`")
    return violations


def guard_table(records: List[Dict[str, Any]]) -> str:
    """The measured rows, one line each: CPU-time median and the ratios."""
    def fmt(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"
    return "\n".join(f"{r['name']:20s} {r['median_ms']:8.2f} ms  to CE {fmt(r['ratio_to_ce'], 2)}  "
                     f"to floor {fmt(r['ratio_to_floor'], 1)}  to official {fmt(r['ratio_to_official'], 2)}"
                     for r in records)
