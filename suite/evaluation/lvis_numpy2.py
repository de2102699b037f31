"""The official `lvis` API (lvis==0.5.3) on NumPy >= 1.24, for every user of the environment.

`lvis/eval.py` (LVISEval.accumulate) calls `astype(dtype=np.float)`; NumPy 1.24 removed that
alias of the builtin `float`, so LVISEval - and Detectron2's LVISEvaluator, which calls it - fails
on NumPy 2. `install()` adds an import hook that gives the module `lvis.eval`, and it alone, a
view of NumPy with `float` = the builtin `float` (float64, what the alias meant): NumPy itself is
not changed, so no other code sees the alias. `scripts/bootstrap.sh` installs a .pth file that
calls `install()` when Python starts (`python -m suite.evaluation.lvis_numpy2 --install`), so Detectron2's
tools and any script get it without importing the suite. Standard library only: it runs at
interpreter start-up.
"""

import builtins
import importlib.abc
import importlib.machinery
import sys
import sysconfig
import types
from pathlib import Path

PATCHED_MODULE = "lvis.eval"
PTH_NAME = "suite_lvis_numpy2.pth"
# One line, as .pth files run them: nothing happens where the suite is not importable.
PTH_LINE = ("import sys; exec('try:\\n import suite.evaluation.lvis_numpy2 as _m\\nexcept ImportError:\\n pass\\n"
            "else:\\n _m.install()')\n")


class NumpyWithFloat(types.ModuleType):
    """`numpy` as seen by lvis.eval: every attribute NumPy's, plus `float` (the builtin)."""

    def __init__(self, numpy_module: types.ModuleType):
        super().__init__(numpy_module.__name__, numpy_module.__doc__)
        self.__numpy = numpy_module
        self.float = builtins.float

    def __getattr__(self, name):
        return getattr(self.__numpy, name)


def patch(module: types.ModuleType) -> None:
    """Give an imported lvis.eval the NumPy view (idempotent)."""
    numpy_module = getattr(module, "np", None)
    if numpy_module is not None and not isinstance(numpy_module, NumpyWithFloat) and not hasattr(numpy_module, "float"):
        module.np = NumpyWithFloat(numpy_module)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        patch(module)


class LvisEvalFinder(importlib.abc.MetaPathFinder):
    """Finds lvis.eval as the regular path finder does, and patches it once executed."""

    def find_spec(self, name, path, target=None):
        if name != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    """Put the hook first on sys.meta_path (once) and patch lvis.eval if already imported."""
    if not any(isinstance(finder, LvisEvalFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LvisEvalFinder())
    if PATCHED_MODULE in sys.modules:
        patch(sys.modules[PATCHED_MODULE])


def pth_path() -> Path:
    """Where the .pth file goes: this interpreter's site-packages (purelib)."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--install"]:
        print("usage: python -m suite.evaluation.lvis_numpy2 --install", file=sys.stderr)
        return 2
    path = pth_path()
    path.write_text(PTH_LINE)
    print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
