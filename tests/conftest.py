"""Test-session settings shared by every test module."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """Keep the data check's cache (suite.data.check.cache_dir) out of the user's ~/.cache.

    Set in os.environ so that the `suite` subprocesses the tests start inherit it too.
    """
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path_factory.mktemp("suite-cache")))
    yield
    monkeypatch.undo()


def pytest_collection_modifyitems(config, items):
    """Tests marked d2_source need a Detectron2 source tree (SUITE_D2_SOURCE, as `tox -e d2-current`
    sets up); without one they are deselected, and the summary says how many, rather than skipped."""
    if os.environ.get("SUITE_D2_SOURCE"):
        return
    kept = [item for item in items if item.get_closest_marker("d2_source") is None]
    deselected = [item for item in items if item.get_closest_marker("d2_source") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
