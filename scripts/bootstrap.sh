#!/usr/bin/env bash
# Sets up everything the suite needs, on a fresh machine with only python3 and pip.
#
# By default it creates .venv/ in the repository and installs the tested torch/torchvision pair,
# Detectron2 (scripts/install_detectron2.py) and the suite with its test tools. To use an
# environment of your own (a GPU machine with its own torch and a source build of Detectron2),
# set SUITE_PYTHON to its interpreter: what is installed there is kept, only what is missing is added.
# Prints the interpreter to use on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${SUITE_PYTHON:-}" ]; then
  py="$SUITE_PYTHON"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  py=.venv/bin/python
fi

if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  # The pair seen working together here (torchvision's ops are needed by Detectron2).
  "$py" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
"$py" scripts/install_detectron2.py >&2
"$py" -m pip install --quiet -e ".[test]" >&2
# The official Seesaw code, the reference of the tests and the benchmarks' peer. Its wheel is pure
# Python; its dependencies (a compiled mmcv) are not needed for the one file used (suite/losses/official.py).
"$py" -m pip install --quiet --no-deps "mmdet==3.3.0" >&2
# lvis==0.5.3's evaluator uses np.float, gone in NumPy 2: a .pth file gives lvis.eval (only it) the
# alias at every start of this interpreter, so Detectron2's LVISEvaluator works for every user.
# (Called as a function: once the .pth exists, `-m` would run a module already imported at start-up.)
"$py" -c "import sys, suite.evaluation.lvis_numpy2 as hook; sys.exit(hook.main(['--install']))" >&2
echo "$py"
