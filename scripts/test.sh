#!/usr/bin/env bash
# The test command: sets everything up (scripts/bootstrap.sh), then runs the whole test suite in two
# phases, and exits 0 only when both pass:
#   1. every test not marked `timing` or `threads`, on all cores (pytest-xdist, one test file per
#      worker), each worker and the processes it starts on one intra-op thread (OMP_NUM_THREADS=1):
#      two workers of two OpenMP threads each on two cores wait on each other at every barrier
#      (a 64 px training step took 6.3 s instead of 0.33 s);
#   2. the tests marked `timing` (the speed guard) or `threads` (the multi-threaded CPU kernels), in
#      one process with torch's default threads, so that no other test shares the cores with them
#      (`--timing-phase`: only the files that hold them are collected, tests/conftest.py); the guard
#      times the working tree beside its reference commit, so it needs the git history (docs/benchmarks.md).
# Extra arguments go to pytest, which then runs once, as given (e.g. `bash scripts/test.sh
# tests/test_bench_guard.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/bootstrap.sh | tail -n 1)
if [ "$#" -gt 0 ]; then
  exec "$py" -m pytest "$@"
fi
status=0
OMP_NUM_THREADS=1 "$py" -m pytest -n "${SUITE_TEST_WORKERS:-auto}" --dist loadfile -m "not timing and not threads" --durations=15 \
  || status=$?
"$py" -m pytest --timing-phase --durations=10 || status=$?
exit "$status"
