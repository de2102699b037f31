"""`pip install .` without -e, as a user adds the plugin to an environment of their own: a wheel
built from a fresh clone of this checkout, installed into a folder of its own, run from a folder
outside the checkout (the clone removed), with this run's interpreter and its torch and
Detectron2. It trains on a generated set with the config it ships, reports, loads the plugin
onto a Detectron2 config, and the commands that need a checkout say so in one line."""

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from clone_helpers import fresh_clone
from suite.environment import REPO_ROOT
from suite.report.fidelity import lvis_v1_statistics

from test_harness_cli import TINY

# The files the package reads, in the repository (their one home) and in the installed package.
SHIPPED = {"configs": "suite/configs", "baselines": "suite/baselines"}
CHECKOUT_ONLY = {"baselines/speed_guard.json"}
# What a user's code reads through the package: the plugin on Detectron2's defaults with an LVIS
# v1 recipe (its _BASE_ beside it), a LazyConfig recipe, and the baselines the report and the LVIS
# profile read. Run by the installed package and by this checkout, which must agree.
FACTS = """
import dataclasses, json
import suite
from detectron2.config import LazyConfig, get_cfg
from suite.d2 import add_longtail_config
from suite.data.synth import lvis_profile_spec
from suite.environment import IN_CHECKOUT, code_version
from suite.package_data import CONFIGS_DIR
from suite.report.readme import load_published

def facts():
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(str(CONFIGS_DIR / "lvis_v1" / "mask_rcnn_R_50_FPN_2x_seesaw.yaml"))
    lazy = LazyConfig.load(str(CONFIGS_DIR / "lazy" / "mask_rcnn_R_50_FPN_2x_seesaw.py"))
    predictor = lazy.model.roi_heads.box_predictor
    return {"suite": suite.__file__, "in_checkout": IN_CHECKOUT, "git_commit": code_version()["git_commit"],
            "cfg": json.loads(json.dumps(cfg)),
            "lazy": [lazy.model.roi_heads._target_.__name__, predictor.loss_name, lazy.train.max_iter],
            "published": load_published().to_dict("records"),
            "lvis_profile": dataclasses.asdict(lvis_profile_spec())}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site, workdir, env): the folder the wheel was installed into, an empty folder outside the
    checkout to run in, and an environment whose PYTHONPATH leads to `site`, not to this checkout."""
    root = tmp_path_factory.mktemp("install")
    # A repository with a commit around the installed package, as a venv inside a clone has: its
    # commit is not the installed suite's.
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=test", "-c", "user.email=test@example.org", "-c",
                    "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "around the installed package"],
                   check=True)
    clone = fresh_clone(root / "clone")
    # --isolated: no user pip settings (--user would clash with --target); --no-index: nothing from a
    # registry; --no-build-isolation: this interpreter's setuptools (pyproject.toml's test extra).
    pip = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(root / "wheel"), str(clone)], check=True, cwd=root)
    (wheel,) = (root / "wheel").glob("seesaw_suite-*.whl")
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", "--target", str(root / "site"), str(wheel)],
                   check=True, cwd=root)
    shutil.rmtree(clone)
    workdir = root / "work"
    workdir.mkdir()
    # The installed folder first; of what this run has on PYTHONPATH (e.g. a Detectron2 source tree), all but
    # this checkout.
    others = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if entry and Path(entry).resolve() != REPO_ROOT]
    return root / "site", workdir, dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "site"), *others]))


def run(installed, *argv: str) -> subprocess.CompletedProcess:
    _, workdir, env = installed
    return subprocess.run([sys.executable, *argv], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def _files(folder: Path) -> List[str]:
    """Every file under `folder` (compiled Python left out), relative to it, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


def test_the_package_ships_configs_and_baselines_and_not_the_checkouts_files(installed):
    site = installed[0]
    for source, target in SHIPPED.items():
        shipped = _files(site / target)
        assert not (site / target).is_symlink()
        assert shipped == [name for name in _files(REPO_ROOT / source) if f"{source}/{name}" not in CHECKOUT_ONLY]
        assert all(filecmp.cmp(REPO_ROOT / source / name, site / target / name, shallow=False) for name in shipped)


def test_the_plugin_and_the_data_read_the_same_installed_as_in_the_checkout(installed):
    site = installed[0]
    result = run(installed, "-c", FACTS + "print(json.dumps(facts()))")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found.pop("suite") == str(site / "suite" / "__init__.py")  # the installed copy, not this checkout
    assert found.pop("in_checkout") is False and found.pop("git_commit") is None  # not the repository's around it
    namespace = {}
    exec(FACTS, namespace)
    expected = json.loads(json.dumps(namespace["facts"]()))  # tuples as the subprocess printed them
    assert expected["in_checkout"] is True
    assert found == {key: expected[key] for key in found}
    assert found["cfg"]["MODEL"]["ROI_BOX_HEAD"]["CLS_LOSS"] == "seesaw"


def test_the_installed_package_trains_on_a_generated_set_and_reports(installed):
    workdir = installed[1]
    synth = run(installed, "-m", "suite", "data", "synth", "--out", "data", "--images", "40", "--val-images", "8",
                "--classes", "6", "--size", "64")
    assert synth.returncode == 0, synth.stderr[-3000:]
    # No --config: the default, configs/small_cpu.yaml, from the package.
    train = run(installed, "-m", "suite", "train", "--loss", "seesaw", "--dataset", "data", "--output", "runs/seesaw",
                "--max-iter", "2", *TINY, "MODEL.ROI_BOX_HEAD.SEESAW.COMPILED", "False")
    assert train.returncode == 0, train.stderr[-3000:]
    report = run(installed, "-m", "suite", "report", "--results", "runs", "--out", "report")
    assert report.returncode == 0, report.stderr[-3000:]
    readme = (workdir / "report" / "README.md").read_text()
    lvis = lvis_v1_statistics()  # from this checkout's baselines
    assert "| seesaw | 1 | 0 | 2 |" in readme and f"| training images | 40 | {lvis['num_images']} |" in readme


@pytest.mark.parametrize("argv, what", [(["bench", "guard"], "the speed guard"),
                                        (["data", "lvis-baseline"], "writing the committed baseline (no --out)")])
def test_a_command_that_needs_a_checkout_says_so_in_one_line(installed, argv, what):
    result = run(installed, "-m", "suite", *argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"suite {argv[0]}: error: {what} needs a checkout"), lines
    assert str(installed[0] / "suite") in lines[0]
