"""Statistics of a loss comparison: mean and sample standard deviation over seeds, the paired
difference to a reference loss with its 95 % t-interval over seeds, a percentile bootstrap
interval over validation images, and the verdict they give.

Pairing: seed s of every loss in a study starts from the same initial weights and sees the same
data order (suite.workflows.study), so the per-seed difference d_s = metric(loss, s) - metric(ref, s)
removes what the seed does to both. With n paired seeds, mean d and sample sd s_d:

    interval = mean d -+ t_{0.975, n-1} * s_d / sqrt(n)

The bootstrap interval measures the other source of noise, the finite validation set: every run
of one validation set stores its metric on the same B resampled image sets
(suite.evaluation.bootstrap), so replicate b of the difference is mean_s [rep_b(loss, s) -
rep_b(ref, s)], and the interval is its 2.5th and 97.5th percentile.

Two protocols' paired differences (e.g. on two data sets) share no seeds: other data, other
pretraining. How a difference changes from one to the other, mean d_B - mean d_A, gets Welch's
interval: -+ t_{0.975, nu} * sqrt(s_A^2 / n_A + s_B^2 / n_B), nu the Welch-Satterthwaite degrees
of freedom (a real number).

A family of such tests (docs/ablation-plan.md) gets Holm's step-down adjusted p-values
(`holm`), each test's two-sided p from its t statistic (`PairedDifference.p`, `Change.p`). A
difference per seed and per category gets an interval over both (`seed_category_interval`).

No SciPy: Student's t quantile is found by bisection on its CDF, integrated numerically
(Simpson's rule on the closed-form density; accurate to about 1e-9, checked against tables).
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

CONFIDENCE = 0.95
BETTER, WORSE, NO_DIFFERENCE, UNDECIDED = "better", "worse", "no detectable difference", "n/a"


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` >= 1 degrees of freedom (not necessarily whole)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if t == 0:
        return 0.5
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    # Integrate over u = atan(x) on [0, atan|t|]: the integrand is smooth and bounded there.
    steps = 4000
    u = np.linspace(0.0, math.atan(abs(t)), steps + 1)
    x = np.tan(u)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df)) * (1 + x * x)
    weights = np.ones(steps + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    area = float(np.dot(weights, density)) * (u[1] - u[0]) / 3
    return 0.5 + math.copysign(area, t)


def t_quantile(probability: float, df: float) -> float:
    """The t with P(T <= t) = `probability` (0 < probability < 1), by bisection."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability < 0.5:
        return -t_quantile(1 - probability, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class MeanSd:
    n: int
    mean: float
    sd: float  # sample standard deviation (ddof 1); NaN for fewer than 2 values


def mean_sd(values: Sequence[float]) -> MeanSd:
    """Mean and sample sd of the finite values (NaN/None dropped)."""
    kept = np.array([value for value in values if value is not None and math.isfinite(value)], float)
    if kept.size == 0:
        return MeanSd(0, math.nan, math.nan)
    return MeanSd(int(kept.size), float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else math.nan)


@dataclass(frozen=True)
class PairedDifference:
    """loss minus reference over `n` paired seeds: mean, sd, the 95 % t-interval (NaN below 2
    pairs) and, where detections were kept, the bootstrap interval over validation images."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    boot_low: float = math.nan
    boot_high: float = math.nan

    @property
    def verdict(self) -> str:
        """better / worse when the t-interval excludes 0, else no detectable difference."""
        return verdict(self.low, self.high)

    @property
    def p(self) -> float:
        """Two-sided p of the paired t-test of a mean of 0: 2 (1 - F_{n-1}(|mean| sqrt(n) / sd));
        NaN below 2 pairs."""
        return _two_sided_p(self.mean, self.sd / math.sqrt(self.n) if self.n > 1 else math.nan, self.n - 1)


def _two_sided_p(estimate: float, se: float, df: float) -> float:
    if math.isnan(se) or math.isnan(estimate):
        return math.nan
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return 2 * (1 - t_cdf(abs(estimate) / se, df))


def verdict(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def paired_difference(loss: Sequence[Optional[float]], reference: Sequence[Optional[float]],
                      loss_replicates: Optional[Sequence[Sequence[float]]] = None,
                      reference_replicates: Optional[Sequence[Sequence[float]]] = None) -> PairedDifference:
    """The paired difference of two equally long per-seed lists (element s of each is seed s;
    a pair with a missing value is dropped). `*_replicates`: per seed, the metric on the same B
    bootstrap resamples of the validation images (None: no bootstrap interval)."""
    if len(loss) != len(reference):
        raise ValueError(f"paired values differ in length: {len(loss)} and {len(reference)}")
    pairs = [index for index, (a, b) in enumerate(zip(loss, reference))
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    differences = np.array([loss[index] - reference[index] for index in pairs], float)
    n = int(differences.size)
    if n == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1)) if n > 1 else math.nan
    low = high = math.nan
    if n > 1:
        half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    boot_low = boot_high = math.nan
    if loss_replicates is not None and reference_replicates is not None:
        boot_low, boot_high = bootstrap_interval([loss_replicates[index] for index in pairs],
                                                 [reference_replicates[index] for index in pairs])
    return PairedDifference(n, mean, sd, low, high, boot_low, boot_high)


@dataclass(frozen=True)
class Change:
    """How a paired difference changes between two independent sets of seeds: `change` = mean B -
    mean A with Welch's 95 % interval (NaN where either side has fewer than 2 seeds or both sds
    are 0), and `df`, its degrees of freedom."""

    change: float
    low: float
    high: float
    df: float
    se: float = math.nan

    @property
    def verdict(self) -> str:
        """better (larger in B) / worse (smaller in B) when the interval excludes 0."""
        return verdict(self.low, self.high)

    @property
    def p(self) -> float:
        """Two-sided p of Welch's test of no change: 2 (1 - F_df(|change| / se))."""
        return _two_sided_p(self.change, self.se, self.df)


def welch_change(first: PairedDifference, second: PairedDifference) -> Change:
    """second.mean - first.mean with Welch's interval from each side's n, mean and sd."""
    change = second.mean - first.mean
    if first.n < 2 or second.n < 2:
        return Change(change, math.nan, math.nan, math.nan)
    variances = [first.sd ** 2 / first.n, second.sd ** 2 / second.n]
    se2 = sum(variances)
    if se2 == 0:
        return Change(change, math.nan, math.nan, math.nan)
    df = se2 ** 2 / (variances[0] ** 2 / (first.n - 1) + variances[1] ** 2 / (second.n - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * math.sqrt(se2)
    return Change(change, change - half, change + half, df, math.sqrt(se2))


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values of a family, in its order: with the p-values ascending,
    p_(1) <= ... <= p_(m), adjusted p_(k) = max over j <= k of min(1, (m + 1 - j) p_(j)). A
    member without a p (NaN: not run) counts in m, is placed last and stays NaN: the others are
    adjusted for the whole declared family."""
    m = len(p_values)
    order = sorted(range(m), key=lambda index: (math.isnan(p_values[index]), p_values[index]))
    adjusted = [math.nan] * m
    running = 0.0
    for rank, index in enumerate(order, start=1):
        if math.isnan(p_values[index]):
            break
        running = max(running, min(1.0, (m + 1 - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class TwoWayInterval:
    """The mean of an (S seeds, C categories) table of differences with its 95 % interval over seeds
    and categories, `df` its Satterthwaite degrees of freedom (NaN below 2 seeds or 2 categories)."""

    seeds: int
    categories: int
    mean: float
    low: float
    high: float
    df: float


def seed_category_interval(differences: np.ndarray) -> TwoWayInterval:
    """d̄ -+ t_{0.975, nu} sqrt((MS_seed + MS_category) / (S C)) for differences d_sc of S seeds
    (rows) and C categories (columns), MS_seed = C var_s(d̄_s.), MS_category = S var_c(d̄_.c),
    nu = (MS_seed + MS_category)^2 / (MS_seed^2 / (S - 1) + MS_category^2 / (C - 1)): the
    seed x category model d_sc = mu + a_s + b_c + e_sc with the residual's share counted in full
    (docs/ablation-plan.md, "The interval over categories"): its variance is never below either
    one-way interval's, its nu never below min(S - 1, C - 1)."""
    d = np.asarray(differences, float)
    seeds, categories = d.shape
    mean = float(d.mean()) if d.size else math.nan
    if seeds < 2 or categories < 2:
        return TwoWayInterval(seeds, categories, mean, math.nan, math.nan, math.nan)
    ms_seed, ms_category = categories * d.mean(1).var(ddof=1), seeds * d.mean(0).var(ddof=1)
    total = ms_seed + ms_category
    if total == 0:
        return TwoWayInterval(seeds, categories, mean, mean, mean, math.nan)
    df = total ** 2 / (ms_seed ** 2 / (seeds - 1) + ms_category ** 2 / (categories - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * math.sqrt(total / (seeds * categories))
    return TwoWayInterval(seeds, categories, mean, mean - half, mean + half, float(df))


def bootstrap_interval(loss_replicates: Sequence[Sequence[float]],
                       reference_replicates: Sequence[Sequence[float]]) -> tuple:
    """Percentile interval of mean_s [loss_s[b] - reference_s[b]] over resamples b; (NaN, NaN)
    when a seed lacks replicates or their numbers differ. A resample where a value is missing
    (no ground truth of a group in it) is dropped."""
    if not loss_replicates or any(rep is None for rep in [*loss_replicates, *reference_replicates]):
        return math.nan, math.nan
    lengths = {len(rep) for rep in [*loss_replicates, *reference_replicates]}
    if len(lengths) != 1:
        return math.nan, math.nan
    difference = (np.array(loss_replicates, float) - np.array(reference_replicates, float)).mean(axis=0)
    difference = difference[np.isfinite(difference)]
    if difference.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(difference, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def bootstrap_se(replicates: Optional[Sequence[float]]) -> float:
    """Sample sd of one run's bootstrap replicates: the standard error of its metric over
    validation images (NaN when absent)."""
    if not replicates:
        return math.nan
    values = np.array([value for value in replicates if value is not None], float)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else math.nan
