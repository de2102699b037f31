"""What a measurement ran on, recorded with every run and benchmark (never the host name)."""

import platform
import subprocess
from pathlib import Path
from typing import Dict, Optional

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> Optional[str]:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: str = "cpu") -> Dict[str, object]:
    """The environment record described in docs/records.md."""
    try:
        import detectron2

        detectron2_version = detectron2.__version__
    except ImportError:
        detectron2_version = None
    import torchvision

    on_cuda = device.startswith("cuda") and torch.cuda.is_available()
    status = _git("status", "--porcelain")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2_version,
        "cuda": torch.version.cuda if on_cuda else None,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if on_cuda else _cpu_name(),
        "cpu": _cpu_name(),
        "num_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }
