"""The files the package reads at run time, found from the package itself so that an installed
copy (`pip install .`, no checkout) reads them as a checkout does.

In the repository, `suite/configs` and `suite/baselines` are links to `configs/` and `baselines/`,
the files' one home; building the package copies the files it reads into it (pyproject.toml,
`[tool.setuptools.package-data]`): every yaml config and LazyConfig recipe, and the LVIS v1
baselines below. The speed guard's `baselines/speed_guard.json` is not among them: the guard
needs the checkout's git history anyway (suite.bench.guard).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: Detectron2 configs: small_cpu.yaml, the LVIS v1 recipes (lvis_v1/*.yaml), LazyConfig (lazy/*.py).
CONFIGS_DIR = PACKAGE_DIR / "configs"
#: Published and derived LVIS v1 numbers the report and the LVIS profile read.
BASELINES_DIR = PACKAGE_DIR / "baselines"
