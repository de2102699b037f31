"""Test-session settings shared by every test module."""

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
