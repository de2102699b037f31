#!/usr/bin/env bash
# The main job: sets everything up (scripts/bootstrap.sh), then runs `suite demo` on the CPU:
# a generated long-tailed LVIS-format set, ce / focal / eql / seesaw (suite.workflows.demo.DEMO_LOSSES)
# trained and evaluated with the official lvis API, and the report in output/demo/report/README.md.
# Extra arguments go to `suite demo` (e.g. --output DIR, or --losses ce focal eql eqlv2 fed seesaw for
# every loss, about 1.5x the time).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/bootstrap.sh | tail -n 1)
exec "$py" -m suite demo "$@"
