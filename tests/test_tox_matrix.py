"""The tox matrix installs torch and Detectron2 at most once (tox.ini, scripts/bootstrap.sh): two
environments in a row on a fresh clone, then the same two again, with real tox; only the first
environment of the first run sets anything up, and no tox environment holds a package of its own.

The interpreter is one tox did not install, as a GPU machine's own environment would be
(SUITE_PYTHON): a virtual environment that sees this test run's packages (torch, Detectron2,
lvis, tox) through a .pth file but has no suite until the clone's set-up installs it there, so
the test leaves this run's own environment as it was.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from clone_helpers import fresh_clone

ENVIRONMENTS = "report,bench-kernel-cpu"
NOTHING_INSTALLED = "is set up for this checkout (nothing installed)"


def _interpreter_sharing_our_packages(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site_packages = Path(sysconfig.get_paths(vars={"base": str(folder), "platbase": str(folder)})["purelib"])
    (site_packages / "shared_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


def _tox(clone: Path, python: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SUITE_", "TOX_", "VIRTUAL_ENV"))}
    env["SUITE_PYTHON"] = str(python)
    # `-- --help`: each environment's command prints its usage, so the environments cost their set-up alone.
    return subprocess.run([sys.executable, "-m", "tox", "-e", ENVIRONMENTS, "--", "--help"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=900)


def test_two_environments_on_a_fresh_clone_set_up_once_and_a_second_run_installs_nothing(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    python = _interpreter_sharing_our_packages(tmp_path / "env")

    first = _tox(clone, python)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert "usage: suite report" in output and "usage: suite bench kernel" in output
    assert "recreate env" not in output
    second_environment = output.index("bench-kernel-cpu: commands_pre")
    assert NOTHING_INSTALLED not in output[:second_environment], output[-4000:]  # the first one sets up
    assert NOTHING_INSTALLED in output[second_environment:], output[-4000:]  # the second installs nothing
    installed_suite = subprocess.run([str(python), "-c", "import suite; print(suite.__file__)"],
                                     capture_output=True, text=True, check=True).stdout.strip()
    assert installed_suite == str(clone / "suite" / "__init__.py")

    second = _tox(clone, python)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert output.count(NOTHING_INSTALLED) == 2 and "recreate env" not in output, output[-4000:]

    for name in ENVIRONMENTS.split(","):  # tox's own environments stay empty: no torch, no suite
        site_packages = list((clone / ".tox" / name).glob("lib/python*/site-packages"))
        assert site_packages and not any((folder / "torch").exists() for folder in site_packages)
    tox_bytes = sum(path.stat().st_size for path in (clone / ".tox").rglob("*") if path.is_file())
    assert tox_bytes < 200 * 2 ** 20, f".tox holds {tox_bytes / 2 ** 20:.0f} MiB"
