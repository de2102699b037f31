"""The official Seesaw and EQLv2 implementations (mmdetection's `mmdet/models/losses/seesaw_loss.py`
and `eqlv2_loss.py`), loaded from the installed mmdet wheel without importing mmdet (whose
`__init__` needs a compiled mmcv).

Used as the reference in the tests and as the peer in the benchmarks; nothing else depends on it.
Install it with `pip install --no-deps mmdet==3.3.0` (scripts/bootstrap.sh does).
"""

import importlib.util
import pathlib
import sys
import types

OFFICIAL_VERSION = "3.3.0"
_PACKAGE = "_suite_official_mmdet_losses"
_MODULES = ("utils", "accuracy", "cross_entropy_loss", "seesaw_loss")
# The one line of each file that needs mmdet beyond the four files above: its model registry.
_REGISTRY_IMPORT = "from mmdet.registry import MODELS"
# EQLv2's one further import: mmengine's logger, which it calls once to print its parameters.
_LOGGING_IMPORT = "from mmengine.logging import print_log"


class _Registry:
    """Stands in for mmdet's MODELS registry: `register_module()` leaves the class as it is."""

    @staticmethod
    def register_module(*args, **kwargs):
        return lambda cls: cls


def official_losses_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("mmdet")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the official Seesaw code comes from mmdet=={OFFICIAL_VERSION}: "
            f"pip install --no-deps mmdet=={OFFICIAL_VERSION}"
        )
    return pathlib.Path(spec.submodule_search_locations[0]) / "models" / "losses"


def load_official_seesaw() -> types.ModuleType:
    """Return the official `seesaw_loss` module (with `SeesawLoss` and `seesaw_ce_loss`)."""
    if f"{_PACKAGE}.seesaw_loss" in sys.modules:
        return sys.modules[f"{_PACKAGE}.seesaw_loss"]
    losses_dir = official_losses_dir()
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(losses_dir)]
    sys.modules[_PACKAGE] = package
    module = None
    for name in _MODULES:
        path = losses_dir / f"{name}.py"
        module = types.ModuleType(f"{_PACKAGE}.{name}")
        module.__file__ = str(path)
        module.__package__ = _PACKAGE
        module.MODELS = _Registry
        source = _read_source(path)
        sys.modules[module.__name__] = module
        exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def _read_source(path: pathlib.Path) -> str:
    """The file's source without its imports of mmdet's registry and mmengine's logger (both
    supplied by the loader: a registry that leaves classes as they are, a silent print_log)."""
    return path.read_text().replace(_REGISTRY_IMPORT, "").replace(_LOGGING_IMPORT, "")


def _silent_print_log(*args, **kwargs) -> None:
    """Stands in for mmengine.logging.print_log."""


def load_official_eqlv2() -> types.ModuleType:
    """Return the official `eqlv2_loss` module (with `EQLV2Loss`)."""
    name = f"{_PACKAGE}_eqlv2_loss"
    if name in sys.modules:
        return sys.modules[name]
    path = official_losses_dir() / "eqlv2_loss.py"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.MODELS = _Registry
    module.print_log = _silent_print_log
    sys.modules[name] = module
    exec(compile(_read_source(path), str(path), "exec"), module.__dict__)
    return module
