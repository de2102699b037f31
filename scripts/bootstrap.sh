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

# A set-up already done is not done again (tox runs this script before every environment): the
# environment's prefix holds a stamp with a digest of every file that decides the set-up and the
# checkout it was done for, written last; with the stamp current and every package found (the
# suite in this checkout), nothing is installed and nothing is started but one interpreter.
setup_digest=$(cat pyproject.toml scripts/bootstrap.sh scripts/install_detectron2.py suite/evaluation/lvis_numpy2.py | sha256sum)
setup_key="${setup_digest%% *} $PWD"
stamp="$("$py" -c 'import sys; print(sys.prefix)' 2>/dev/null || true)/seesaw-suite-setup"
if [ "$(cat "$stamp" 2>/dev/null)" = "$setup_key" ] && "$py" - "$PWD" <<'CHECK' 2>/dev/null
import importlib.util, os, sys
found = [importlib.util.find_spec(name) for name in ("torch", "torchvision", "detectron2", "lvis", "mmdet", "pytest", "suite")]
sys.exit(None in found or not found[-1].origin.startswith(os.path.join(sys.argv[1], "suite", "")))
CHECK
then
  echo "bootstrap: $py is set up for this checkout (nothing installed)" >&2
  echo "$py"
  exit 0
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
echo "$setup_key" > "$stamp" 2>/dev/null || echo "bootstrap: cannot write $stamp: the next run sets up again" >&2
echo "$py"
