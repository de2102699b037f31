"""Test-session settings shared by every test module."""

import os

import pytest

#: The test files that hold every test marked `timing` or `threads` (pyproject.toml's markers):
#: scripts/test.sh's second phase (`--timing-phase`) collects only these, so that it imports no
#: other test module; a marked test anywhere else is a collection error.
TIMING_FILES = ("test_bench_guard.py", "test_losses_kernels_cpu.py")
TIMING_MARKERS = ("timing", "threads")


def pytest_addoption(parser):
    parser.addoption("--timing-phase", action="store_true",
                     help=f"run only the tests marked {' or '.join(TIMING_MARKERS)}, collected from {TIMING_FILES}")


def pytest_ignore_collect(collection_path, config):
    if (config.getoption("--timing-phase") and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_") and collection_path.name not in TIMING_FILES):
        return True
    return None


def _is_timed(item) -> bool:
    return any(item.get_closest_marker(marker) for marker in TIMING_MARKERS)


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """Keep the data check's cache (suite.data.check.cache_dir) out of the user's ~/.cache.

    Set in os.environ so that the `suite` subprocesses the tests start inherit it too.
    """
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path_factory.mktemp("suite-cache")))
    yield
    monkeypatch.undo()


def _deselect(config, items, drop) -> None:
    deselected = [item for item in items if drop(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not drop(item)]


#: Markers of the tests that need what a machine may lack, and the variable that says it is there
#: (pyproject.toml's markers): a reference source tree, which the variable names (tox.ini's
#: environments set them up), or Slurm's programs and root (SUITE_SLURM=1; .ci/run installs them
#: with scripts/install_slurm.sh and sets it).
ENVIRONMENT_MARKERS = {"d2_source": "SUITE_D2_SOURCE", "lvis_source": "SUITE_LVIS_SOURCE",
                       "lvdevil_source": "SUITE_LVDEVIL_SOURCE", "slurm": "SUITE_SLURM"}


def pytest_report_header(config):
    unset = [f"{marker} ({variable})" for marker, variable in ENVIRONMENT_MARKERS.items()
             if not os.environ.get(variable)]
    return [f"deselected here (their variable is unset): the tests marked {', '.join(unset)}"] if unset else []


def pytest_collection_modifyitems(config, items):
    """Tests marked d2_source need a Detectron2 source tree (SUITE_D2_SOURCE, as `tox -e d2-current`
    sets up), lvis_source and lvdevil_source the reference trees of the LVIS protocols
    (`tox -e eval-references`), slurm a single-node Slurm (SUITE_SLURM=1, tests/slurm_cluster.py);
    without its variable a test is deselected, and the header and the summary say so, rather than
    skipped; with it, the test runs, and fails where what it needs is missing. With --timing-phase
    only the timed tests are kept."""
    misplaced = [item.nodeid for item in items if _is_timed(item) and item.path.name not in TIMING_FILES]
    if misplaced:
        raise pytest.UsageError(f"tests marked {' or '.join(TIMING_MARKERS)} outside conftest.TIMING_FILES "
                                f"(scripts/test.sh's second phase would not run them): {misplaced}")
    for marker, variable in ENVIRONMENT_MARKERS.items():
        if not os.environ.get(variable):
            _deselect(config, items, lambda item, marker=marker: item.get_closest_marker(marker) is not None)
    if config.getoption("--timing-phase"):
        _deselect(config, items, lambda item: not _is_timed(item))
