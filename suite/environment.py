"""What a measurement ran on, recorded with every run and benchmark (never the host name)."""

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Dict, Optional

from suite.errors import UserError

#: The folder that holds the package: the suite's repository where it runs from a checkout (a
#: clone, an editable install, PYTHONPATH), else the folder an installed copy lies in.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Whether REPO_ROOT is the suite's repository (its pyproject.toml beside the package) rather than
#: e.g. site-packages: the git commit, repository-relative paths and the speed guard need it.
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()


def require_checkout(what: str, why: str) -> Path:
    """REPO_ROOT; UserError (one line: `what` needs a checkout, for `why`) where the suite runs as
    an installed package."""
    if not IN_CHECKOUT:
        raise UserError(f"{what} needs a checkout of the suite's repository (git clone), for {why}; this suite "
                        f"is an installed package at {REPO_ROOT / 'suite'}")
    return REPO_ROOT


def repo_relative(path) -> str:
    """`path` relative to this repository where the suite runs from a checkout and `path` lies in
    it (so that what names it reads the same however it was given), else as given."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if IN_CHECKOUT and resolved.is_relative_to(REPO_ROOT) else str(path)


def _git(*args: str) -> Optional[str]:
    if not IN_CHECKOUT:  # an installed copy: a repository around site-packages is not the suite's
        return None
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version() -> Dict[str, Optional[object]]:
    """This checkout's {"git_commit", "git_dirty"} (None where git cannot tell, and for an installed
    package) as this process first asked: the code it loaded, not what the checkout holds by the
    time a long run writes its record (`suite.cli.main` and scripts/train_net.py ask at start). A
    fresh dict each call."""
    return dict(_code_version())


@functools.lru_cache(maxsize=None)
def _code_version() -> Dict[str, Optional[object]]:
    status = _git("status", "--porcelain")
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None}


def _git_commit(folder: Path) -> Optional[str]:
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _distributions_of(package: str):
    """Names of the installed distributions that say they provide the top-level `package` in their
    top_level.txt; where none does, those importlib.metadata infers from every distribution's file
    list (0.2-0.6 s)."""
    named = [dist.metadata["Name"] for dist in importlib.metadata.distributions()
             if package in (dist.read_text("top_level.txt") or "").split()]
    return named or importlib.metadata.packages_distributions().get(package, [])


def detectron2_install() -> Optional[Dict[str, Optional[str]]]:
    """Which Detectron2 was imported: {"version", "path" (the folder holding the detectron2
    package), "distribution" ("<name> <version>" of the installed distribution it came from, None
    for a source tree on the path), "commit" (the source tree's git commit, None when not a git
    checkout)}. Its `__version__` alone says 0.6 for the release and for today's main branch.
    Found once per process (the imported package does not change; every run record asks), a
    fresh dict each call."""
    install = _detectron2_install()
    return dict(install) if install else None


@functools.lru_cache(maxsize=None)
def _detectron2_install() -> Optional[Dict[str, Optional[str]]]:
    try:
        import detectron2
    except ImportError:
        return None
    package_init = Path(detectron2.__file__).resolve()
    distribution = None
    for name in _distributions_of("detectron2"):
        dist = importlib.metadata.distribution(name)
        if Path(dist.locate_file("detectron2/__init__.py")).resolve() == package_init:
            distribution = f"{dist.metadata['Name']} {dist.version}"
            break
    root = package_init.parent.parent
    return {"version": detectron2.__version__, "path": str(root), "distribution": distribution,
            "commit": None if distribution else _git_commit(root)}


def collect(device: str = "cpu") -> Dict[str, object]:
    """The environment record described in docs/records.md."""
    import torch  # here, not at the top: `suite report` reads REPO_ROOT without loading torch
    import torchvision

    install = detectron2_install()
    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": install["version"] if install else None,
        "detectron2_install": install,
        "cuda": torch.version.cuda if on_cuda else None,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if on_cuda else cpu_name(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **code_version(),
    }
