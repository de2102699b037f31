"""The speed guard's evidence: `pytest tests/test_bench_guard.py` run QUIET_RUNS times on the machine
as it is and CONTENDED_RUNS times beside a competing process (suite.bench.contention, started
before and stopped after each run), each in a fresh process. Prints one markdown row per run as it
finishes (the load average before it, wall time, counts, what failed), then per loss and
condition: the range of ratios measured on the code as it is and on the loss made twice as slow,
the limit, and how often the guard caught the slowed loss. Exit status 1 when a test failed.

    python scripts/guard_demo.py [--quiet-runs 20] [--contended-runs 10]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from suite.bench.contention import competing_process  # noqa: E402
from suite.bench.guard import load_limits  # noqa: E402

TEST_FILE = "tests/test_bench_guard.py"


def run_tests(junit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", TEST_FILE, "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}"], cwd=REPO, capture_output=True, text=True)


def read_junit(junit: Path):
    """[(test name, outcome, {property: value})] of one pytest run."""
    cases = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        properties = {prop.get("name"): prop.get("value") for prop in case.iter("property")}
        cases.append((case.get("name"), outcome, properties))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet-runs", type=int, default=20)
    parser.add_argument("--contended-runs", type=int, default=10)
    args = parser.parse_args()
    limits = load_limits()
    field = limits["field"]
    print("| run | machine | load avg (1 min) | wall s | passed | failed | failed tests |\n|---|---|---|---|---|---|---|",
          flush=True)
    ratios = defaultdict(list)  # (kind, condition, loss) -> ratios
    caught = defaultdict(int)  # (condition, loss) -> runs that caught the slowed loss
    failures, started = 0, time.time()
    plan = ["quiet"] * args.quiet_runs + ["contended"] * args.contended_runs
    with tempfile.TemporaryDirectory() as folder:
        for index, machine in enumerate(plan, 1):
            junit = Path(folder) / f"run{index}.xml"
            load = os.getloadavg()[0]
            begin = time.time()
            if machine == "contended":
                with competing_process():
                    run_tests(junit)
            else:
                run_tests(junit)
            cases = read_junit(junit)
            failed = [name for name, outcome, _ in cases if outcome != "passed"]
            failures += len(failed)
            for name, outcome, properties in cases:
                if "measured" in properties:
                    kind, condition = properties["kind"], properties["condition"]
                    for loss, ratio in json.loads(properties["measured"]).items():
                        ratios[(kind, condition, loss)].append(ratio)
                if name.startswith("test_guard_catches_a_loss_twice_as_slow") and outcome == "passed":
                    params = name[name.index("[") + 1:-1].split("-")
                    condition = next(part for part in params if part in limits["conditions"])
                    caught[(condition, next(part for part in params if part != condition))] += 1
            print(f"| {index} | {machine} | {load:.2f} | {time.time() - begin:.0f} | {len(cases) - len(failed)} | "
                  f"{len(failed)} | {', '.join(failed) or '-'} |", flush=True)
    print(f"\n| condition | loss | {field}, as is | twice as slow | limit | slowed caught |\n|---|---|---|---|---|---|")
    for condition, rows in limits["conditions"].items():
        for loss, row in sorted(rows.items()):
            def span(kind):
                values = ratios[(kind, condition, loss)]
                return f"{min(values):.2f}-{max(values):.2f}" if values else "-"
            print(f"| {condition} | {loss} | {span('as_is')} | {span('slowed')} | {row['limit']:.2f} | "
                  f"{caught[(condition, loss)]}/{len(plan)} |")
    print(f"\n{len(plan)} runs ({args.quiet_runs} quiet, {args.contended_runs} beside a competing process) in "
          f"{time.time() - started:.0f} s; failed tests: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
