#!/usr/bin/env bash
# The test command: sets everything up (scripts/bootstrap.sh), then runs the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/bootstrap.sh | tail -n 1)
exec "$py" -m pytest "$@"
