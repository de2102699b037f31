"""The speed guard's evidence: the guard (`suite bench guard --threads T`, the same measurement and
checks as tests/test_bench_guard.py) run QUIET_RUNS times on the machine as it is and
CONTENDED_RUNS times beside a competing process (suite.bench.contention, started before and stopped
after each run), each run in a fresh process, on the working tree against its reference commit.
Prints one markdown row per run as it finishes (the load average before it, wall time, the
failed checks), then per loss and condition: the range of the working tree's ratio to the
reference, as it is and with the loss made twice as slow, the limit, and how often the guard
caught the slowed loss. Exit status 1 when a check failed. The processor's vector extensions
are ATen's: run it with ATEN_CPU_CAPABILITY=avx2 to hold ATen to AVX2.

    python scripts/guard_demo.py [--quiet-runs 20] [--contended-runs 10] [--threads 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from suite.bench.contention import competing_process  # noqa: E402


def run_guard(threads: int, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite", "bench", "guard", "--threads", str(threads),
                           "--json", str(output)], cwd=REPO, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet-runs", type=int, default=20)
    parser.add_argument("--contended-runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print("| run | machine | load avg (1 min) | wall s | failed checks |\n|---|---|---|---|---|", flush=True)
    ratios = defaultdict(list)  # (kind, condition, loss) -> ratios
    caught = defaultdict(int)  # (condition, loss) -> runs that caught the slowed loss
    failures, started, limit, described = 0, time.time(), None, None
    plan = ["quiet"] * args.quiet_runs + ["contended"] * args.contended_runs
    with tempfile.TemporaryDirectory() as folder:
        for index, machine in enumerate(plan, 1):
            output = Path(folder) / f"run{index}.json"
            load = os.getloadavg()[0]
            begin = time.time()
            if machine == "contended":
                with competing_process():
                    completed = run_guard(args.threads, output)
            else:
                completed = run_guard(args.threads, output)
            wall = time.time() - begin
            if not output.exists():
                print(completed.stdout + completed.stderr, file=sys.stderr)
                return 1
            result = json.loads(output.read_text())
            limit, described = result["limit"], result["machine"]
            failed = [line[len("FAIL: "):] for line in completed.stdout.splitlines() if line.startswith("FAIL: ")]
            failures += bool(failed)
            for condition, measured in result["conditions"].items():
                for kind, rows in measured.items():
                    for loss, row in rows.items():
                        ratios[(kind, condition, loss)].append(row["ratio"])
                for loss, row in measured["slowed"].items():
                    caught[(condition, loss)] += row["ratio"] > limit
            print(f"| {index} | {machine} | {load:.2f} | {wall:.0f} | {'; '.join(failed) or '-'} |", flush=True)
    print(f"\n{described['cpu']}, ATen {described['cpu_capability']}, torch {described['torch']}, "
          f"{args.threads} thread(s); limit {limit:.3f}\n")
    print("| condition | loss | ratio to the reference, as is | twice as slow | slowed caught |\n|---|---|---|---|---|")
    for condition in ("quiet", "contended"):
        for loss in sorted({loss for _, named, loss in ratios if named == condition}):
            def span(kind):
                values = ratios[(kind, condition, loss)]
                return f"{min(values):.2f}-{max(values):.2f}"
            print(f"| {condition} | {loss} | {span('as_is')} | {span('slowed')} | {caught[(condition, loss)]}/{len(plan)} |")
    print(f"\n{len(plan)} runs ({args.quiet_runs} quiet, {args.contended_runs} beside a competing process) in "
          f"{time.time() - started:.0f} s; runs with a failed check: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
