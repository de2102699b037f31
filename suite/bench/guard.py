"""The loss-speed guard: every loss of the working tree timed beside the same loss at a pinned
reference commit, in one run on the machine at hand, and checked against one limit that holds on
every machine.

The reference is code, not a number. baselines/speed_guard.json names a commit (`reference`: why
it was chosen, and how it was pinned). The guard extracts that commit's `suite/` with `git archive`
into a temporary folder and starts one measuring process (suite/bench/guard_worker.py) that imports
the suite of both trees, each as its own set of modules, and builds every loss of GUARD_LOSSES at
GUARD_SHAPE with each tree's own code. It times ROUNDS rounds of one forward + backward per loss
and side, the two sides of a loss one after the other (the working tree first in every other
round), in the process's CPU time on GUARD_THREADS intra-op threads, with freed memory kept in the
process; per loss and side it keeps the median, and the ratio is the working tree's over the
reference's. One process, because two processes of the same code measured up to 25 % apart on
every loss (docs/benchmarks.md). The CPU time leaves out the time a competing process holds the
cores, and a loss doing twice the work takes twice the CPU time. It measures twice: quiet, and
beside a competing process (suite.bench.contention).

The limit (`limit` in the same file) is derived by `suite bench guard --derive-limit` from A/A
runs, the reference measured against itself as above (two copies of its modules in one process):
with lo and hi the smallest and largest A/A ratio over every loss, condition and recorded machine
and thread count, the limit is sqrt(2 * lo * hi), so a
correct working tree passes while its ratio stays a margin sqrt(2 * lo / hi) above hi, and a loss
made twice as slow fails while twice its ratio stays the same margin under 2 * lo. A ratio is
dimensionless and both sides run on the same processor, so the one limit holds on every machine.

The guard checks its own power on every run: a working tree so much faster than the reference
that twice its ratio would pass the limit fails as stale, naming the command that re-pins the
reference (PIN_COMMAND): a change that makes a kernel faster re-pins in the same commit.
"""

import contextlib
import io
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
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

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
PIN_COMMAND = "suite bench guard --pin COMMIT --why TEXT"
DERIVE_COMMAND = "suite bench guard --derive-limit"
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
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            # The "data" filter where this Python has it (3.12, and 3.8.17+ ... 3.11.4+): no links
            # or paths out of the folder; the archive is this checkout's own commit either way.
            tar.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        yield Path(folder)


class GuardProcess:
    """A running guard_worker.py process timing the losses of the working tree ("work") and the
    reference ("reference") side by side (see its docstring for the protocol)."""

    def __init__(self, work_tree: Path, reference: Path, losses: Sequence[str] = GUARD_LOSSES,
                 threads: int = GUARD_THREADS, shape: Mapping[str, Any] = GUARD_SHAPE):
        self.log = tempfile.TemporaryFile(mode="w+")
        # A waiting intra-op thread sleeps rather than spins: CPU time would count the spinning.
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), "--work", str(work_tree), "--reference", str(reference),
             "--losses", ",".join(losses), "--threads", str(threads), "--num-rois", str(shape["num_rois"]),
             "--num-classes", str(shape["num_classes"]), "--dtype", shape["dtype"], "--warmup", str(WARMUP)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1, env=env)
        try:
            self.ready = self._read()
            for side, tree in (("work", work_tree), ("reference", reference)):
                if Path(self.ready["suites"][side]).resolve() != (Path(tree) / "suite").resolve():
                    raise RuntimeError(f"the guard's {side} side imported the suite at {self.ready['suites'][side]}, "
                                       f"not the one in {tree}")
        except BaseException:
            self.close()
            raise

    def measure(self, contended: bool = False, slower: Sequence[str] = (), rounds: int = ROUNDS,
                warmup: int = WARMUP) -> Dict[str, Dict[str, float]]:
        """Per loss {"work_ms", "reference_ms", "ratio"}: each side's median CPU time over `rounds`
        rounds of calls taking turns (guard_worker.py), beside a competing process when
        `contended`, the working tree's losses in `slower` computing their forward twice."""
        with competing_process() if contended else contextlib.nullcontext():
            self.process.stdin.write(json.dumps({"rounds": rounds, "warmup": warmup, "slower": list(slower)}) + "\n")
            samples = self._read()["samples_ms"]
        result = {}
        for loss in samples["work"]:
            work_ms, reference_ms = (statistics.median(samples[side][loss]) for side in ("work", "reference"))
            result[loss] = {"work_ms": work_ms, "reference_ms": reference_ms, "ratio": work_ms / reference_ms}
        return result

    def _read(self) -> Dict[str, Any]:
        line = self.process.stdout.readline()
        message = json.loads(line) if line.strip() else {}
        if "error" in message:
            raise ValueError(f"the speed guard: {message['error']}")
        if not message:
            self.log.seek(0)
            raise RuntimeError(f"the speed guard's measuring process stopped (exit code {self.process.poll()}):\n"
                               f"{self.log.read()[-3000:]}")
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


@contextlib.contextmanager
def guard_process(work_tree: Path, reference: Path, threads: int = GUARD_THREADS) -> Iterator[GuardProcess]:
    """A ready GuardProcess, stopped on leaving the block."""
    process = GuardProcess(work_tree, reference, threads=threads)
    try:
        yield process
    finally:
        process.close()


def run_guard(threads: int = GUARD_THREADS, demo_slower: Sequence[str] = (), path: Path = GUARD_FILE,
              progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """The guard's measurement: the working tree against the reference of `path`, in each condition
    as it is (with the losses of `demo_slower` made twice as slow, a failure demonstration) and with
    every loss made twice as slow (the guard's check of its own power). {"reference", "limit",
    "threads", "machine", "conditions": {condition: {"as_is", "slowed"}: GuardProcess.measure}}.
    ReferenceUnavailable (one line) where the reference commit cannot be read."""
    body = load_guard_file(path)
    commit, limit = body["reference"]["commit"], body["limit"]["limit"]
    conditions = {}
    with reference_tree(commit) as reference, guard_process(REPO_ROOT, reference, threads=threads) as process:
        for condition in CONDITIONS:
            contended = condition == "contended"
            conditions[condition] = {"as_is": process.measure(contended, slower=demo_slower),
                                     "slowed": process.measure(contended, slower=GUARD_LOSSES)}
            if progress:
                progress(f"{condition}: " + ", ".join(f"{loss} {row['ratio']:.2f}"
                                                      for loss, row in conditions[condition]["as_is"].items()))
        ready = process.ready
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
    """One line per loss of `losses` whose ratio (GuardProcess.measure) is above `limit`, missing, or
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
    """The machine a measurement ran on as this process sees it: processor, cores, Python (never
    the host name); the measuring process adds the vector extensions ATen uses and torch."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}


def settings() -> Dict[str, Any]:
    """How every guard measurement is taken (the threads are an evidence row's own)."""
    return {"shape": dict(GUARD_SHAPE), "rounds": ROUNDS, "warmup": WARMUP, "clock": "cpu", "min_margin": MIN_MARGIN}


def derive_evidence(reference: Path, runs: int, threads: int = GUARD_THREADS,
                    progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """A/A evidence: the reference tree measured against itself `runs` times per condition, each
    run a fresh measuring process. {"machine", "threads", "runs", "ratios": {condition: {loss: [every
    run's ratio]}}, "command", "commit", "dirty", "date"}."""
    if runs < 2:
        raise ValueError(f"--runs {runs}: the limit needs at least 2 A/A runs per condition")
    ratios = {condition: {loss: [] for loss in GUARD_LOSSES} for condition in CONDITIONS}
    worker_machine = None
    for index in range(runs):
        with guard_process(reference, reference, threads=threads) as process:
            worker_machine = {key: process.ready[key] for key in ("cpu_capability", "torch", "threads")}
            for condition in CONDITIONS:
                measured = process.measure(contended=condition == "contended")
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
    recorded = _read_guard_file(path).get("limit", {}).get("evidence", [])
    rows = [row for row in recorded if evidence_key(row) != evidence_key(evidence)]
    rows = sorted(rows + [dict(evidence)], key=evidence_key)
    return _write_section(path, "limit", {**limit_from_evidence(rows), "settings": settings(), "evidence": rows})


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
    return _write_section(path, "reference", reference)


def _read_guard_file(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_section(path: Path, section: str, value: Dict[str, Any]) -> Dict[str, Any]:
    """Replace one section of the guard file atomically, keeping the other; returns `value`."""
    write_json_atomic(path, {**_read_guard_file(path), "about": ABOUT, section: value})
    return value


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def guard_table(ratios: Mapping[str, Mapping[str, float]]) -> str:
    """The measured rows (GuardProcess.measure), one line each: both sides' CPU-time medians and
    their ratio."""
    return "\n".join(f"{loss:8s} working tree {row['work_ms']:8.2f} ms  reference {row['reference_ms']:8.2f} ms  "
                     f"ratio {row['ratio']:.3f}" for loss, row in ratios.items())
