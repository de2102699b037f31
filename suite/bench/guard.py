"""The loss-speed guard: every loss of the working tree timed beside the same loss at a pinned
reference commit, in one run on the machine at hand, and checked against one limit that holds on
every machine.

The reference is code, not a number. baselines/speed_guard.json names a commit (`reference`: why
it was chosen, and how it was pinned). The guard extracts that commit's `suite/` with `git archive`
into a temporary folder and starts two worker processes (suite/bench/guard_worker.py), one on the
working tree and one on the reference, each building every loss of GUARD_LOSSES at GUARD_SHAPE with
its own tree's code. It then asks them for BLOCKS blocks in turn, the side that goes first
alternating (A B B A ...), each block REPEATS_PER_BLOCK round-robin rounds of one forward +
backward per loss in the worker's CPU time, on GUARD_THREADS intra-op threads, with freed memory
kept in the process. Per loss and side it keeps the smallest block median; the ratio is the
working tree's over the reference's. The CPU time leaves out the time a competing process holds
the cores, and a loss doing twice the work takes twice the CPU time. It measures twice: quiet, and
beside a competing process (suite.bench.contention).

The limit (`limit` in the same file) is derived by `suite bench guard --derive-limit` from A/A
runs, the reference measured against itself as above: with lo and hi the smallest and largest A/A
ratio over every loss, condition and recorded machine, the limit is sqrt(2 * lo * hi), so a
correct working tree passes while its ratio stays a margin sqrt(2 * lo / hi) above hi, and a loss
made twice as slow fails while twice its ratio stays the same margin under 2 * lo. A ratio is
dimensionless and both sides run on the same processor, so the one limit holds on every machine.

The guard checks its own power on every run: a working tree so much faster than the reference
that twice its ratio would pass the limit fails as stale, naming the command that re-pins the
reference (PIN_COMMAND): a change that makes a kernel faster re-pins in the same commit.
"""

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from suite.bench.contention import competing_process
from suite.environment import REPO_ROOT, code_version, cpu_name
from suite.losses import LOSSES
from suite.records import write_json_atomic

GUARD_FILE = REPO_ROOT / "baselines" / "speed_guard.json"
WORKER = Path(__file__).with_name("guard_worker.py")
#: The losses the guard holds: the suite's own, every one.
GUARD_LOSSES = tuple(LOSSES)
CONDITIONS = ("quiet", "contended")
#: The shape of every guard measurement: LVIS v1's classes, 4 images x 512 RoIs (the official
#: recipes' batch on two GPUs).
GUARD_SHAPE = {"num_rois": 2048, "num_classes": 1203, "dtype": "float32"}
GUARD_THREADS = 1
ROUNDS = 28
WARMUP = 2
#: The least factor between the limit and the A/A ratios (above the largest, below twice the
#: smallest) that --derive-limit accepts.
MIN_MARGIN = 1.15
PIN_COMMAND = "suite bench guard --pin --why TEXT"
DERIVE_COMMAND = "suite bench guard --derive-limit"
WORKER_START_TIMEOUT_S = 600
ABOUT = ("The CI speed guard's reference and limit (suite.bench.guard, tests/test_bench_guard.py): the working "
         "tree's losses are timed beside the same losses at `reference.commit`, in the same run, and fail above "
         "`limit.limit` times the reference's CPU time. `reference` is written by `suite bench guard --pin`, "
         "`limit` by `suite bench guard --derive-limit` from A/A runs (the reference against itself), with the "
         "evidence of every machine it was derived on.")


class ReferenceUnavailable(Exception):
    """The reference commit cannot be read here; the message is one line saying what to do."""


GUARD_FILE_FIELDS = {"reference": ("commit", "why", "provenance"),
                     "limit": ("limit", "measured_min", "measured_max", "margin", "settings", "evidence")}


def load_guard_file(path: Path = GUARD_FILE, sections: Sequence[str] = tuple(GUARD_FILE_FIELDS)) -> Dict[str, Any]:
    """The guard file {"about", "reference": {"commit", "why", "provenance"}, "limit": {"limit",
    "measured_min", "measured_max", "margin", "settings", "evidence"}}; ValueError naming what of
    `sections` is missing."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the speed guard's file: {error}") from None
    for section in sections:
        fields = GUARD_FILE_FIELDS[section]
        missing = [field for field in fields if field not in body.get(section, {})]
        if missing:
            command = PIN_COMMAND if section == "reference" else DERIVE_COMMAND
            raise ValueError(f"{path}: no {section} {', '.join(missing)}; write it with `{command}`")
    return body


def _git(repo: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=not binary)


def resolve_commit(revision: str, repo: Path = REPO_ROOT) -> str:
    """The full hash of `revision` in the checkout at `repo`; ReferenceUnavailable (one line) where
    git, the checkout or the commit is missing."""
    try:
        inside = _git(repo, "rev-parse", "--is-inside-work-tree")
    except OSError:
        raise ReferenceUnavailable("the speed guard needs git, to read its reference commit: install git") from None
    if inside.returncode != 0 or not (repo / ".git").exists():
        raise ReferenceUnavailable(
            f"{repo} is not a git checkout, so the speed guard cannot read its reference commit {revision[:12]} "
            f"({GUARD_FILE.relative_to(REPO_ROOT)}): run it in a clone (`git clone`), not an exported tree")
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if found.returncode != 0:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        how = ("this clone is shallow: get the history with `git fetch --unshallow`" if shallow
               else f"get it with `git fetch origin {revision}` (or a full `git clone`)")
        raise ReferenceUnavailable(f"the speed guard's reference commit {revision[:12]} is not in this checkout; "
                                   f"{how}")
    return found.stdout.strip()


@contextlib.contextmanager
def reference_tree(commit: str, repo: Path = REPO_ROOT) -> Iterator[Path]:
    """A temporary folder holding `suite/` as it was at `commit` (git archive), removed on leaving;
    ReferenceUnavailable where the commit cannot be read."""
    full = resolve_commit(commit, repo)
    with tempfile.TemporaryDirectory(prefix=f"guard-reference-{full[:10]}-") as folder:
        archive = _git(repo, "archive", "--format=tar", full, "suite", binary=True)
        if archive.returncode != 0:
            raise ReferenceUnavailable(f"git archive {full[:12]} failed: {archive.stderr.decode().strip()}")
        with tempfile.TemporaryFile() as tar_file:
            tar_file.write(archive.stdout)
            tar_file.seek(0)
            with tarfile.open(fileobj=tar_file) as tar:
                tar.extractall(folder, filter="data")
        yield Path(folder)


class Worker:
    """A running guard_worker.py process on one source tree (see its docstring for the protocol)."""

    def __init__(self, tree: Path, losses: Sequence[str], threads: int, shape: Mapping[str, Any]):
        self.tree = Path(tree)
        cpus = shared_cpus(threads)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), "--tree", str(self.tree), "--losses", ",".join(losses),
             "--threads", str(threads), "--num-rois", str(shape["num_rois"]),
             "--num-classes", str(shape["num_classes"]), "--dtype", shape["dtype"], "--warmup", str(WARMUP),
             "--cpus", ",".join(map(str, cpus))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.ready: Optional[Dict[str, Any]] = None

    def wait_ready(self) -> Dict[str, Any]:
        """The worker's ready message, after checking that it timed the package of its tree."""
        self.ready = self._read()
        expected = (self.tree / "suite").resolve()
        if Path(self.ready["suite"]).resolve() != expected:
            raise RuntimeError(f"the guard's worker for {self.tree} imported the suite at {self.ready['suite']}, "
                               f"not {expected}")
        return self.ready

    def samples_ms(self, offset: int, rounds: int, warmup: int, slower: Sequence[str]) -> Dict[str, List[float]]:
        self.process.stdin.write(json.dumps({"offset": offset, "rounds": rounds, "warmup": warmup,
                                             "slower": list(slower)}) + "\n")
        return self._read()["samples_ms"]

    def _read(self) -> Dict[str, Any]:
        line = self.process.stdout.readline()
        message = json.loads(line) if line.strip() else {}
        if "error" in message:
            raise ValueError(f"the speed guard's worker on {self.tree}: {message['error']}")
        if not message:
            self.log.seek(0)
            tail = self.log.read()[-3000:]
            raise RuntimeError(f"the speed guard's worker on {self.tree} stopped (exit code {self.process.poll()}):"
                               f"\n{tail}")
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.log.close()


def shared_cpus(threads: int) -> List[int]:
    """The CPUs both workers run on once warmed up: the first `threads` this process may use. On
    one CPU a worker's CPU time does not depend on which core of a shared, noisy machine it got
    (the A/A ratio of two unpinned workers once came out at 0.75-0.89 on a quiet machine)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return allowed[:threads]


class GuardPair:
    """Two workers, the working tree's ("work") and the reference's ("reference"), measured in turn."""

    def __init__(self, work: Worker, reference: Worker):
        self.sides = {"work": work, "reference": reference}

    def measure(self, contended: bool = False, slower: Sequence[str] = (), rounds: int = ROUNDS,
                warmup: int = WARMUP) -> Dict[str, Dict[str, float]]:
        """Per loss {"work_ms", "reference_ms", "ratio"}: each side's median CPU time over `rounds`
        rounds, the sides taking turns round by round (the one going first alternating in pairs:
        A B, B A, A B, ...), beside a competing process when `contended`, the working tree's losses
        in `slower` computing their forward twice."""
        samples = {side: {} for side in self.sides}
        with competing_process() if contended else contextlib.nullcontext():
            for side in self.sides:
                self.sides[side].samples_ms(offset=0, rounds=0, warmup=warmup,
                                            slower=slower if side == "work" else ())
            for index in range(rounds):
                order = ("work", "reference") if index % 4 in (0, 3) else ("reference", "work")
                for side in order:
                    measured = self.sides[side].samples_ms(offset=index, rounds=1, warmup=0,
                                                           slower=slower if side == "work" else ())
                    for loss, values in measured.items():
                        samples[side].setdefault(loss, []).extend(values)
        result = {}
        for loss in samples["work"]:
            work_ms, reference_ms = statistics.median(samples["work"][loss]), statistics.median(
                samples["reference"][loss])
            result[loss] = {"work_ms": work_ms, "reference_ms": reference_ms, "ratio": work_ms / reference_ms}
        return result


@contextlib.contextmanager
def guard_pair(work_tree: Path, reference: Path, losses: Sequence[str] = GUARD_LOSSES,
               threads: int = GUARD_THREADS, shape: Mapping[str, Any] = GUARD_SHAPE) -> Iterator[GuardPair]:
    """Both workers started (side by side), ready, and stopped on leaving the block."""
    workers = []
    try:
        for tree in (work_tree, reference):
            workers.append(Worker(tree, losses, threads, shape))
        for worker in workers:
            worker.wait_ready()
        yield GuardPair(*workers)
    finally:
        for worker in workers:
            worker.close()


def run_guard(threads: int = GUARD_THREADS, demo_slower: Sequence[str] = (), path: Path = GUARD_FILE,
              progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """The guard's measurement: the working tree against the reference of `path`, in each condition
    as it is (with the losses of `demo_slower` made twice as slow, a failure demonstration) and with
    every loss made twice as slow (the guard's check of its own power). {"reference", "limit",
    "threads", "machine", "conditions": {condition: {"as_is", "slowed"}: GuardPair.measure}}.
    ReferenceUnavailable (one line) where the reference commit cannot be read."""
    body = load_guard_file(path)
    commit, limit = body["reference"]["commit"], body["limit"]["limit"]
    conditions = {}
    with reference_tree(commit) as reference, guard_pair(REPO_ROOT, reference, threads=threads) as pair:
        for condition in CONDITIONS:
            contended = condition == "contended"
            conditions[condition] = {"as_is": pair.measure(contended, slower=demo_slower),
                                     "slowed": pair.measure(contended, slower=GUARD_LOSSES)}
            if progress:
                progress(f"{condition}: " + ", ".join(f"{loss} {row['ratio']:.2f}"
                                                      for loss, row in conditions[condition]["as_is"].items()))
        ready = pair.sides["work"].ready
    described = {**machine(), **{key: ready[key] for key in ("cpu_capability", "torch")}}
    return {"reference": commit, "limit": limit, "threads": threads, "machine": described, "conditions": conditions}


def failures(result: Mapping[str, Any]) -> List[str]:
    """One line per failed check of run_guard's result: a ratio of the code as it is above the
    limit, missing or stale (violations), and a loss made twice as slow that passed."""
    lines = []
    for condition, measured in result["conditions"].items():
        lines += violations(measured["as_is"], result["limit"], condition, result["reference"])
        lines += [f"{loss} made twice as slow passed the guard ({condition}): {row['ratio']:.2f}x the reference, "
                  f"limit {result['limit']:.2f}"
                  for loss, row in measured["slowed"].items() if row["ratio"] <= result["limit"]]
    return lines


def limit_for(measured: Sequence[float]) -> Dict[str, float]:
    """The limit from A/A ratios: sqrt(2 * lo * hi), with the margin sqrt(2 * lo / hi) it leaves
    above hi and below 2 * lo."""
    lo, hi = min(measured), max(measured)
    if lo <= 0:
        raise ValueError(f"measured ratios must be positive, got {list(measured)}")
    return {"limit": math.sqrt(2 * lo * hi), "measured_min": lo, "measured_max": hi,
            "margin": math.sqrt(2 * lo / hi)}


def violations(ratios: Mapping[str, Mapping[str, float]], limit: float, condition: str, commit: str,
               losses: Sequence[str] = GUARD_LOSSES) -> List[str]:
    """One line per loss of `losses` whose ratio (GuardPair.measure) is above `limit`, missing, or
    so far below it that twice the ratio would pass (a stale reference); empty when all hold."""
    lines = []
    for loss in sorted(losses):
        ratio = ratios.get(loss, {}).get("ratio")
        if ratio is None:
            lines.append(f"{loss} ({condition}): not measured")
        elif ratio > limit:
            lines.append(f"{loss} ({condition}): {ratio:.2f}x the CPU time of the reference {commit[:10]}, "
                         f"above the limit {limit:.2f}")
        elif 2 * ratio <= limit:
            lines.append(f"the reference {commit[:10]} is stale for {loss} ({condition}): the working tree takes "
                         f"{ratio:.2f}x its time, so a 2x regression would pass the limit {limit:.2f}; re-pin "
                         f"with `{PIN_COMMAND}`")
    return lines


def machine() -> Dict[str, Any]:
    """The machine a measurement ran on, as a worker reported it: processor, the vector extensions
    ATen uses, cores, Python and torch (never the host name)."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}


def settings() -> Dict[str, Any]:
    """How every guard measurement is taken (the threads are an evidence row's own)."""
    return {"shape": dict(GUARD_SHAPE), "rounds": ROUNDS, "warmup": WARMUP, "clock": "cpu", "min_margin": MIN_MARGIN}


def derive_evidence(reference: Path, runs: int, threads: int = GUARD_THREADS,
                    progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """A/A evidence: the reference tree measured against itself `runs` times per condition, each
    run a fresh pair of workers. {"machine", "threads", "runs", "ratios": {condition: {loss: [every
    run's ratio]}}, "command", "commit", "dirty", "date"}."""
    if runs < 2:
        raise ValueError(f"--runs {runs}: the limit needs at least 2 A/A runs per condition")
    ratios = {condition: {loss: [] for loss in GUARD_LOSSES} for condition in CONDITIONS}
    worker_machine = None
    for index in range(runs):
        with guard_pair(reference, reference, threads=threads) as pair:
            worker_machine = {key: pair.sides["work"].ready[key] for key in ("cpu_capability", "torch", "threads")}
            for condition in CONDITIONS:
                measured = pair.measure(contended=condition == "contended")
                for loss, row in measured.items():
                    ratios[condition][loss].append(row["ratio"])
                if progress:
                    progress(f"A/A run {index + 1}/{runs} {condition}: " + ", ".join(
                        f"{loss} {row['ratio']:.3f}" for loss, row in measured.items()))
    version = code_version()
    return {"machine": {**machine(), **worker_machine}, "threads": threads, "runs": runs, "ratios": ratios,
            "command": f"{DERIVE_COMMAND} --runs {runs} --threads {threads}", "commit": version["git_commit"],
            "dirty": version["git_dirty"], "date": _now()}


def evidence_key(evidence: Mapping[str, Any]) -> tuple:
    """What tells two evidence rows apart: the processor, ATen's vector extensions, torch, threads."""
    described = evidence["machine"]
    return described["cpu"], described["cpu_capability"], described["torch"], evidence["threads"]


def limit_from_evidence(evidence: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The `limit` section from A/A evidence rows: limit_for over every ratio of every row, loss and
    condition; ValueError when the margin is under MIN_MARGIN."""
    ratios = [ratio for row in evidence for per_loss in row["ratios"].values() for values in per_loss.values()
              for ratio in values]
    if not ratios:
        raise ValueError("no A/A evidence to derive the limit from")
    limit = limit_for(ratios)
    if limit["margin"] < MIN_MARGIN:
        raise ValueError(f"A/A ratios {limit['measured_min']:.3f}-{limit['measured_max']:.3f} leave a margin of "
                         f"{limit['margin']:.3f}, under {MIN_MARGIN}: too noisy to catch a 2x regression")
    return limit


def write_evidence(evidence: Mapping[str, Any], path: Path = GUARD_FILE) -> Dict[str, Any]:
    """Put one A/A evidence row into the guard file (replacing the row of the same evidence_key,
    keeping the others) and re-derive the limit from all rows, atomically; returns the limit section."""
    body = json.loads(path.read_text()) if path.exists() else {}
    rows = [row for row in body.get("limit", {}).get("evidence", []) if evidence_key(row) != evidence_key(evidence)]
    rows = sorted(rows + [dict(evidence)], key=evidence_key)
    body["limit"] = {**limit_from_evidence(rows), "settings": settings(), "evidence": rows}
    write_json_atomic(path, {**body, "about": ABOUT})
    return body["limit"]


def pin(revision: str, why: str, path: Path = GUARD_FILE) -> Dict[str, Any]:
    """Make `revision` (a commit of this checkout) the guard's reference, with `why` and the
    provenance; returns the reference section."""
    if not why.strip():
        raise ValueError("--why: say why this commit is the reference (for instance: the last commit whose "
                         "kernels are the working tree's)")
    commit = resolve_commit(revision)
    version = code_version()
    reference = {"commit": commit, "why": why.strip(), "provenance": {
        "command": f"suite bench guard --pin {revision} --why ...", "date": _now(),
        "head": version["git_commit"], "dirty": version["git_dirty"]}}
    body = json.loads(path.read_text()) if path.exists() else {}
    write_json_atomic(path, {**body, "about": ABOUT, "reference": reference})
    return reference


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def guard_table(ratios: Mapping[str, Mapping[str, float]], out: IO[str] = sys.stdout) -> None:
    """The measured rows, one line each: both sides' CPU-time medians and their ratio."""
    for loss, row in ratios.items():
        print(f"{loss:8s} working tree {row['work_ms']:8.2f} ms  reference {row['reference_ms']:8.2f} ms  "
              f"ratio {row['ratio']:.3f}", file=out)
