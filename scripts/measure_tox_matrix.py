"""Time the tox matrix as a new user meets it: `git clone`, then `tox` (every default environment)
and a second `tox` right after it, optionally beside a competing process; write what each run
took, per environment, whether its set-up installed anything, and the peak disk of the clone.

    python scripts/measure_tox_matrix.py --out results/tox/quiet.json
    python scripts/measure_tox_matrix.py --out results/tox/contended.json --competitor-threads 1

Run it with the interpreter that has tox and the suite (this checkout's `.venv`). The clone and
its temporary folder (`TMPDIR` of the runs: torch's inductor cache starts empty, as on a new
machine) are made under a new folder and removed at the end; pip's cache is the machine's own.
The competitor is `python -m suite.bench.contention` (matrix products), started before the clone
and stopped after the last run. docs/harness.md ("The tox matrix") quotes the figures.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from suite.bench.contention import competing_process  # noqa: E402
from suite.records import write_text_atomic  # noqa: E402

# tox 4's summary line of an environment: "  NAME: OK (TOTAL=setup[S]+cmd[C1,C2,...] seconds)".
SUMMARY = re.compile(r"^\s+(?P<env>\S+): (?P<status>OK|FAIL|SKIP)\S* \((?P<total>[\d.]+)=setup\[(?P<setup>[\d.]+)\]"
                     r"(?:\+cmd\[(?P<cmd>[\d.,]*)\])? seconds\)")
NOTHING_INSTALLED = "set up for this checkout (nothing installed)"
DISK_SAMPLE_S = 5.0


class PeakDisk:
    """The largest `du` of some folders, sampled every DISK_SAMPLE_S seconds in a thread."""

    def __init__(self, folders: List[Path]):
        self.folders, self.peak_bytes = folders, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def current_bytes(self) -> int:
        out = subprocess.run(["du", "-sbc", *map(str, self.folders)], capture_output=True, text=True).stdout
        return int(out.strip().splitlines()[-1].split()[0])

    def _sample(self) -> None:
        while not self._stop.wait(DISK_SAMPLE_S):
            self.peak_bytes = max(self.peak_bytes, self.current_bytes())

    def __enter__(self) -> "PeakDisk":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes())


def environments(log: str) -> Dict[str, dict]:
    """Per environment of one tox run's output: its status, seconds (total, set-up, each
    command) and whether scripts/bootstrap.sh installed anything before it."""
    envs = {}
    for line in log.splitlines():
        match = SUMMARY.match(line)
        if match:
            envs[match["env"]] = {"status": match["status"], "total_s": float(match["total"]),
                                  "setup_s": float(match["setup"]),
                                  "commands_s": [float(value) for value in (match["cmd"] or "").split(",") if value]}
    # tox prefixes every line it runs with "NAME: commands_pre[0]> ..."; the bootstrap's own
    # lines follow until the environment's first command.
    pre = re.compile(r"^(?P<env>\S+): commands_pre\[0\]> bash scripts/bootstrap.sh")
    current = None
    for line in log.splitlines():
        start = pre.match(line)
        if start:
            current = start["env"]
            envs.setdefault(current, {})["installed"] = True
        elif current and NOTHING_INSTALLED in line:
            envs[current]["installed"] = False
        elif current and line.startswith(f"{current}: commands["):
            current = None
    return envs


def run_tox(clone: Path, tmp: Path, log_path: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SUITE_", "TOX_", "PYTHONPATH"))}
    env["TMPDIR"] = str(tmp)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.run([sys.executable, "-m", "tox"], cwd=clone, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    return {"exit_code": code, "wall_s": round(wall, 1), "environments": environments(log_path.read_text()),
            "log": log_path.name}


def measure(out: Path, runs: int, competitor_threads: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tox-matrix-"))
    clone, tmp = work / "clone", work / "tmp"
    tmp.mkdir()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    record = {"what": "tox (every default environment) on a fresh clone of commit, then again", "commit": commit,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
              "tox": subprocess.run([sys.executable, "-m", "tox", "--version"], capture_output=True,
                                    text=True).stdout.split()[0],
              "competitor_threads": competitor_threads, "command": " ".join(sys.argv), "runs": []}
    competitor = competing_process(competitor_threads) if competitor_threads else _nothing()
    try:
        with competitor:
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
            for index in range(runs):
                with PeakDisk([clone, tmp]) as disk:
                    result = run_tox(clone, tmp, out.parent / f"{out.stem}.run{index + 1}.log")
                result["peak_disk_bytes"] = disk.peak_bytes
                result["disk_after"] = {**{name: _du(clone / name) for name in (".venv", ".tox", "output")},
                                        "TMPDIR": _du(tmp)}
                record["runs"].append(result)
                write_text_atomic(out, json.dumps(record, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="the JSON record (no `kind`: the report does not read it); each run's tox log beside it")
    parser.add_argument("--runs", type=int, default=2, help="tox runs one after the other (default 2)")
    parser.add_argument("--competitor-threads", type=int, default=0,
                        help="threads of a competing process for the whole measurement (default 0: none)")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = measure(args.out, args.runs, args.competitor_threads)
    for index, run in enumerate(record["runs"], 1):
        print(f"run {index}: exit {run['exit_code']}, {run['wall_s']:.0f} s, peak disk "
              f"{run['peak_disk_bytes'] / 1e9:.1f} GB")
    return 0 if all(run["exit_code"] == 0 for run in record["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
