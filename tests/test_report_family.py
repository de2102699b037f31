"""The ablation's declared contrasts (`suite.report.family`) and their statistics
(`suite.report.stats`: the tests' p-values, Holm's correction, the seed x category interval)."""

import math
from pathlib import Path

import numpy as np
import pytest
from test_report_paired import records, study_run

from suite.report import family, stats
from suite.report.records import gather

REPO = Path(__file__).resolve().parents[1]


def test_holm_adjusts_for_the_whole_declared_family():
    # ascending 0.01, 0.03, 0.04 of m = 4 (one not run): 4 x 0.01, max(0.04, 3 x 0.03), max(0.09, 2 x 0.04)
    assert stats.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(stats.holm([0.01, 0.04, 0.03, math.nan])[3])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1, never below an earlier step
    assert stats.holm([]) == []


def test_the_p_values_agree_with_their_intervals():
    difference = stats.paired_difference([1.0, 2.0, 3.0, 4.0], [0.0] * 4)
    assert difference.p == pytest.approx(0.0305, abs=5e-4)  # t = 3.873 on 3 df (tables)
    rng = np.random.default_rng(0)
    for _ in range(200):  # p < 0.05 exactly where the 95 % interval leaves out 0
        first = stats.paired_difference(list(rng.normal(0.5, 1, 5)), [0.0] * 5)
        second = stats.paired_difference(list(rng.normal(1.5, 2, 4)), [0.0] * 4)
        for test in (first, stats.welch_change(first, second)):
            assert (test.p < 0.05) == (test.low > 0 or test.high < 0)
    assert math.isnan(stats.paired_difference([1.0], [0.0]).p)


def test_the_seed_by_category_interval_is_the_plan_s():
    """docs/ablation-plan.md ("The interval over categories") printed, from the committed LVIS-profile
    records: seesaw_mitigation - ce_cosine bbox (4 seeds x 9 categories) +4.2 [+0.6, +7.8] (9.6 df),
    segm +3.8 [-0.1, +7.8] (9.0 df)."""
    gathered = gather([REPO / "results" / "ablation-lvis"])
    contrast = family.Paired(99, family.LVIS_320, "seesaw[mitigation]+cos", "ce+cos", "")
    outcome = family._paired_outcome(contrast, family.paired.all_protocols(gathered), dict(gathered.runs))
    for interval, printed in ((outcome.tested_two_way, (4.2, 0.6, 7.8, 9.6)), (outcome.shown_two_way, (3.8, -0.1, 7.8, 9.0))):
        assert (interval.seeds, interval.categories) == (4, 9)
        assert [round(value, 1) for value in (interval.mean, interval.low, interval.high, interval.df)] == list(printed)
    assert outcome.tested.mean == pytest.approx(outcome.tested_two_way.mean)  # AP_r is the mean over the rare classes


def test_two_way_variance_is_never_below_the_one_way_ones():
    """Its variance is at least either one-way interval's, its degrees of freedom at least the
    smaller of theirs (so the interval itself can be the narrower one: more df)."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        table = rng.normal(2, 1, (4, 9)) + rng.normal(0, 2, (1, 9)) + rng.normal(0, 1, (4, 1))
        two_way = stats.seed_category_interval(table)
        se = (two_way.high - two_way.mean) / stats.t_quantile(0.975, two_way.df)
        over_seeds = stats.paired_difference(list(table.mean(1)), [0.0] * 4)
        over_categories = stats.paired_difference(list(table.mean(0)), [0.0] * 9)
        assert se >= max(over_seeds.sd / 2, over_categories.sd / 3) - 1e-12
        assert two_way.df >= 3 - 1e-9
        assert two_way.mean == pytest.approx(over_seeds.mean)
    assert math.isnan(stats.seed_category_interval(np.zeros((1, 9))).low)


def lvis_run(loss, seed, apr, p=0.8, q=2.0, rare=(0.0, 0.0)):
    record = study_run(loss, seed, apr, cosine=True, iterations=family.LVIS_320.iterations)
    record["loss"]["params"] = {"p": p, "q": q}
    record["dataset"]["num_classes"] = family.LVIS_320.num_classes
    for category, value in zip([c for c in record["per_category"] if c["frequency"] == "r"], rare):
        category["bbox_AP"] = category["segm_AP"] = value
    return record


def test_the_section_shows_the_primary_and_the_family_with_holm():
    runs = []
    for seed, (gain, rare) in enumerate([(4.0, (3.0, 5.0)), (5.0, (4.0, 6.0)), (6.0, (7.0, 5.0))]):
        runs.append(lvis_run("seesaw", seed, 10.0 + gain, q=0.0, rare=(10 + rare[0], 10 + rare[1])))  # mitigation
        runs.append(lvis_run("seesaw", seed, 10.0, p=0.0, q=0.0, rare=(10.0, 10.0)))  # none
        runs.append(lvis_run("seesaw", seed, 10.0 + gain / 2, rare=(10 + rare[0] / 2, 10 + rare[1] / 2)))  # both
    found = family.outcomes(records(*runs))
    primary, both = found[0], found[1]
    assert primary.tested.mean == pytest.approx(5.0) and primary.seeds == "3"
    assert primary.tested_two_way.mean == pytest.approx(5.0)
    assert both.tested.mean == pytest.approx(2.5)
    assert all(outcome.tested is None for outcome in found[2:])  # not run
    section = "\n".join(family.family_section(records(*runs)))
    adjusted = stats.holm([outcome.p for outcome in found[1:]])
    assert f"| 1 | LVIS, 320 it | seesaw+cos − seesaw[none]+cos | 3 | +2.5 [" in section
    assert f"| {both.p:.3f} | {adjusted[0]:.3f} | " in section
    assert adjusted[0] == pytest.approx(min(1.0, 12 * both.p))  # the first of 12, the others not run
    assert "| primary | LVIS, 320 it | seesaw[mitigation]+cos − seesaw[none]+cos | 3 | +5.0 [" in section
    assert section.count("| not run |") == 2 * 11  # box and mask of members 2-12
    assert family.family_section(records(*runs[2::3])) == []  # no declared contrast has records
