#!/usr/bin/env bash
# The main job: sets everything up (scripts/bootstrap.sh), then runs `suite demo` on the CPU:
# a generated long-tailed LVIS-format set, ce / focal / eql / eqlv2 / fed / seesaw trained and evaluated with
# the official lvis API, and the report in output/demo/report/README.md. Extra arguments go to
# `suite demo` (e.g. --output DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/bootstrap.sh | tail -n 1)
exec "$py" -m suite demo "$@"
