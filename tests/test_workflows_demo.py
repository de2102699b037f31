"""`suite demo`'s command line: its default losses fit its 15-minute budget, and it takes others."""

import pytest


def test_demo_defaults_to_the_four_losses_that_fit_its_budget_and_takes_others():
    from suite.cli import build_parser
    from suite.losses import LOSSES
    from suite.workflows.demo import DEMO_LOSSES

    assert DEMO_LOSSES == ("ce", "focal", "eql", "seesaw") and set(DEMO_LOSSES) <= set(LOSSES)
    assert build_parser().parse_args(["demo"]).losses is None
    assert build_parser().parse_args(["demo", "--losses", "eqlv2", "fed"]).losses == ["eqlv2", "fed"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--losses", "seesaw_official"])
