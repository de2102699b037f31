"""The study figures the README and docs quote are the generated report's: every difference with
its interval ("+4.2 [+2.6, +5.8]") and every mean ± sd in them appears in reports/README.md, so a
regenerated report that moves a figure fails here until the text follows."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "README.md"
# The files that quote study figures.
QUOTING = ("README.md", "docs/harness.md", "docs/protocols-plan.md")
NUMBER = r"[+-]?\d+\.\d+"
FIGURE = re.compile(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]|{NUMBER} ± {NUMBER}")


def normalized(text: str) -> str:
    """One space for every run of whitespace (markdown wraps lines anywhere), ASCII minus."""
    return " ".join(text.replace("−", "-").split())


def test_the_pattern_finds_intervals_and_spreads():
    assert FIGURE.findall(normalized("a +4.2 [+2.6,\n  +5.8] b 48.4 ± 0.6 c −1.1 [−1.5, −0.8]")) == [
        "+4.2 [+2.6, +5.8]", "48.4 ± 0.6", "-1.1 [-1.5, -0.8]"]


@pytest.mark.parametrize("name", QUOTING)
def test_every_quoted_study_figure_is_the_reports(name):
    figures = FIGURE.findall(normalized((ROOT / name).read_text()))
    assert figures, f"{name} quotes no study figure: drop it from QUOTING"
    report = normalized(REPORT.read_text())
    missing = [figure for figure in figures if figure not in report]
    assert not missing, f"{name} quotes figures the report does not hold: {missing}"
