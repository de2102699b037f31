"""suite.report.stats against tables and hand computations."""

import math

import pytest

from suite.report import stats

# Student's t 0.975 quantiles from printed tables (df: value).
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_t_cdf_closed_forms():
    # df 1 is the Cauchy distribution; df 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-3.0, -0.4, 0.7, 5.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-10)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-10)


def test_paired_difference_by_hand():
    loss, reference = [12.0, 15.0, 11.0], [10.0, 11.0, 10.0]
    # differences 2, 4, 1: mean 7/3, sd sqrt(((2-7/3)^2 + (4-7/3)^2 + (1-7/3)^2) / 2) = sqrt(7/3)
    result = stats.paired_difference(loss, reference)
    sd = math.sqrt(7 / 3)
    half = 4.302653 * sd / math.sqrt(3)
    assert (result.n, result.mean, result.sd) == (3, pytest.approx(7 / 3), pytest.approx(sd))
    assert (result.low, result.high) == (pytest.approx(7 / 3 - half, abs=1e-5), pytest.approx(7 / 3 + half, abs=1e-5))
    assert result.verdict == stats.NO_DIFFERENCE  # 7/3 - 3.79 < 0


def test_verdicts_and_missing_pairs():
    assert stats.paired_difference([5.0, 5.2, 5.1], [1.0, 1.1, 1.0]).verdict == stats.BETTER
    assert stats.paired_difference([1.0, 1.1, 1.0], [5.0, 5.2, 5.1]).verdict == stats.WORSE
    one_pair = stats.paired_difference([3.0, None], [1.0, 2.0])
    assert (one_pair.n, one_pair.mean, one_pair.verdict) == (1, 2.0, stats.UNDECIDED)
    with pytest.raises(ValueError, match="length"):
        stats.paired_difference([1.0], [1.0, 2.0])


def test_bootstrap_interval_pairs_resamples():
    # Two seeds, five resamples; mean difference per resample: 1, 2, 3, 4, 5.
    loss = [[2, 3, 4, 5, 6], [2, 3, 4, 5, 6]]
    reference = [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    low, high = stats.bootstrap_interval(loss, reference)
    assert (low, high) == (pytest.approx(1.1), pytest.approx(4.9))  # numpy's linear percentiles
    result = stats.paired_difference([4.0, 4.0], [1.0, 1.0], loss, reference)
    assert (result.boot_low, result.boot_high) == (pytest.approx(1.1), pytest.approx(4.9))
    assert math.isnan(stats.bootstrap_interval(loss, [[1, 1]] * 2)[0])  # different B


def test_mean_sd_and_bootstrap_se():
    summary = stats.mean_sd([1.0, 2.0, None, 6.0])
    assert (summary.n, summary.mean, summary.sd) == (3, 3.0, pytest.approx(math.sqrt(7)))
    assert math.isnan(stats.mean_sd([4.0]).sd)
    assert stats.bootstrap_se([1.0, 3.0, None]) == pytest.approx(math.sqrt(2))


def test_t_quantile_at_whole_and_fractional_degrees_of_freedom():
    """Welch's degrees of freedom are real numbers: the quantile at 2.5 lies between those at 2
    and 3, and the CDF there still integrates to 1."""
    between = stats.t_quantile(0.975, 2.5)
    assert T_TABLE[3] < between < T_TABLE[2]
    assert stats.t_cdf(between, 2.5) == pytest.approx(0.975, abs=1e-9)
    assert stats.t_cdf(1e6, 2.5) == pytest.approx(1.0, abs=1e-6)


def test_welch_change_by_hand():
    # Equal n and sd: Welch's degrees of freedom are 2 (n - 1), its standard error sd sqrt(2 / n).
    first = stats.paired_difference([2.0, 6.0], [1.0, 3.0])  # differences 1, 3: mean 2, sd sqrt(2)
    second = stats.paired_difference([9.0, 10.0], [4.0, 3.0])  # differences 5, 7: mean 6, sd sqrt(2)
    change = stats.welch_change(first, second)
    assert (change.change, change.df) == (pytest.approx(4.0), pytest.approx(2.0))
    half = T_TABLE[2] * math.sqrt(2 / 2 + 2 / 2)
    assert (change.low, change.high) == (pytest.approx(4.0 - half, abs=1e-3), pytest.approx(4.0 + half, abs=1e-3))
    assert change.verdict == stats.NO_DIFFERENCE  # 4 -+ 6.08
    # Unequal: n 2 and 3, variances of the means 1 and 4/3; nu = (7/3)^2 / (1 / 1 + (4/3)^2 / 2).
    third = stats.paired_difference([4.0, 8.0, 6.0], [0.0, 0.0, 0.0])  # mean 6, sd 2
    change = stats.welch_change(first, third)
    nu = (7 / 3) ** 2 / (1 + (4 / 3) ** 2 / 2)
    assert change.df == pytest.approx(nu)
    assert change.high - change.change == pytest.approx(stats.t_quantile(0.975, nu) * math.sqrt(7 / 3))
    assert math.isnan(stats.welch_change(first, stats.paired_difference([1.0], [0.0])).low)  # one seed: no interval
    assert stats.welch_change(second, stats.paired_difference([30.0, 31.0], [0.0, 1.0])).verdict == stats.BETTER
