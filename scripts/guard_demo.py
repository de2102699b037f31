"""The speed guard's demonstration: RUNS guard runs beside a competing process and RUNS quiet ones on
the code as it is (every one should pass), then SLOWER_RUNS runs per condition with Seesaw made
twice as slow (every one should fail). Prints one markdown table row per run as it finishes, with
the machine's load average before the run, then the counts; exit status 1 when a correct run
failed or a slowed run passed.

    python scripts/guard_demo.py [--runs 10] [--slower-runs 2]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.bench.guard import limit_violations, load_limits, measure_guard, slower  # noqa: E402
from suite.bench.kernel import build_kernel  # noqa: E402

COLUMNS = ("run", "condition", "Seesaw", "load avg (1 min)", "seesaw × CE", "seesaw × official", "focal × CE",
           "eql × CE", "ce × CE", "result")


def one_run(limits, contended: bool, slower_times: int):
    shape = limits["shape"]
    replace = {}
    if slower_times > 1:
        seesaw = build_kernel("seesaw", shape["num_rois"], shape["num_classes"], shape["dtype"], shape["device"])
        replace["seesaw"] = slower(seesaw, slower_times)
    load = os.getloadavg()[0]
    records = measure_guard(limits, contended=contended, replace=replace)
    by_name = {record["name"]: record for record in records}
    return load, by_name, limit_violations(records, limits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--slower-runs", type=int, default=2)
    args = parser.parse_args()
    limits = load_limits()
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    plan = [(contended, 1) for _ in range(args.runs) for contended in (True, False)]
    plan += [(contended, 2) for _ in range(args.slower_runs) for contended in (True, False)]
    wrong = []
    started = time.time()
    for index, (contended, times) in enumerate(plan, 1):
        load, rows, violations = one_run(limits, contended, times)
        expected_to_pass = times == 1
        if bool(violations) == expected_to_pass:
            wrong.append(index)
        cells = [str(index), "contended" if contended else "quiet", "as is" if times == 1 else f"{times}x slower",
                 f"{load:.2f}", f"{rows['seesaw']['ratio_to_ce']:.2f}", f"{rows['seesaw']['ratio_to_official']:.3f}",
                 f"{rows['focal']['ratio_to_ce']:.2f}", f"{rows['eql']['ratio_to_ce']:.2f}",
                 f"{rows['ce']['ratio_to_ce']:.2f}", "FAIL: " + "; ".join(violations) if violations else "pass"]
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{len(plan)} runs in {time.time() - started:.0f} s; "
          f"{'all as expected' if not wrong else 'NOT as expected: runs ' + ', '.join(map(str, wrong))}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
