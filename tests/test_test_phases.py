"""scripts/test.sh's two phases (tests/conftest.py): the second, `--timing-phase`, collects only
conftest.TIMING_FILES and keeps their tests marked `timing` or `threads`; a test so marked in any
other file stops the collection, so that neither phase leaves it out. A test that needs a
reference source tree or Slurm is deselected (counted, and named in the header) without its
variable, and runs with it."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
MARKED = "import pytest\n\n@pytest.mark.timing\ndef test_timed():\n    pass\n\ndef test_plain():\n    pass\n"


@pytest.fixture
def tree(pytester, monkeypatch):
    """A test tree with the suite's conftest; run in a fresh interpreter (runpytest_subprocess), as
    its test_bench_guard.py would clash with the module of that name this process may hold."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # none is needed: a faster start
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    timing: t\n    threads: t\n    d2_source: d\n    lvis_source: l\n"
                     "    lvdevil_source: v\n    slurm: s\n")
    pytester.makepyfile(test_bench_guard=MARKED, test_other="def test_elsewhere():\n    pass\n")
    return pytester


def test_timing_phase_collects_only_the_timing_files_and_their_marked_tests(tree):
    result = tree.runpytest_subprocess("--timing-phase", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_bench_guard.py::test_timed PASSED*"])
    assert "test_other" not in result.stdout.str()


def test_a_marked_test_outside_the_timing_files_stops_the_collection(tree):
    tree.makepyfile(test_stray=MARKED)
    result = tree.runpytest_subprocess("-m", "not timing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*outside conftest.TIMING_FILES*test_stray.py::test_timed*"])


@pytest.mark.parametrize("marker, variable, value", [
    ("d2_source", "SUITE_D2_SOURCE", "/somewhere"), ("lvis_source", "SUITE_LVIS_SOURCE", "/somewhere"),
    ("lvdevil_source", "SUITE_LVDEVIL_SOURCE", "/somewhere"), ("slurm", "SUITE_SLURM", "1")])
def test_a_test_that_needs_what_a_machine_may_lack_is_deselected_without_its_variable(tree, monkeypatch, marker,
                                                                                      variable, value):
    tree.makepyfile(test_reference=f"import pytest\n\n@pytest.mark.{marker}\ndef test_ref():\n    pass\n")
    for name in ("SUITE_D2_SOURCE", "SUITE_LVIS_SOURCE", "SUITE_LVDEVIL_SOURCE", "SUITE_SLURM"):
        monkeypatch.delenv(name, raising=False)
    result = tree.runpytest_subprocess("test_reference.py")
    result.assert_outcomes(deselected=1)
    result.stdout.fnmatch_lines([f"deselected here (their variable is unset): *{marker} ({variable})*"])
    monkeypatch.setenv(variable, value)
    result = tree.runpytest_subprocess("test_reference.py")
    result.assert_outcomes(passed=1)
    assert f"{marker} ({variable})" not in result.stdout.str()
