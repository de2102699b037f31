"""The fused CPU kernels (suite.losses.kernels.cpu_compile) of Seesaw and of EQLv2 and fed: the
default on the CPU, and the same values as the eager kernels. (The fallback where torch.compile
cannot build is tested in test_losses_kernels_cpu_compile, their parallel regions in
test_bench_regions.) Marked `threads`: the gradient kernels are one parallel loop, so they are
checked with torch's default intra-op threads, as users run them (scripts/test.sh runs the other
tests on one thread per worker)."""

import pytest
import torch

from suite.losses.kernels import column_weighted_sigmoid_sum_cpu, seesaw_terms_cpu
from suite.losses.kernels.column_weighted_sigmoid_sum import column_weighted_sigmoid_sum
from suite.losses.kernels.seesaw_terms import seesaw_terms

from losses_helpers import assert_value_and_gradient_close

pytestmark = pytest.mark.threads


def _inputs(num_rois, num_classes, num_foreground, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(num_rois, num_classes + 2, generator=generator, dtype=torch.float64) * 4).requires_grad_()
    labels = torch.full((num_rois,), num_classes)
    labels[torch.randperm(num_rois, generator=generator)[:num_foreground]] = torch.randint(
        0, num_classes, (num_foreground,), generator=generator)
    log_counts = torch.rand(num_classes, generator=generator, dtype=torch.float64) * 8
    return logits, labels, log_counts


def test_the_fused_kernels_build_here():
    # CI has a C++ compiler: the default CPU path must be the fused one there, not the fallback.
    assert seesaw_terms_cpu.fused_cpu_kernels() is not None
    assert column_weighted_sigmoid_sum_cpu.fused_cpu_kernels() is not None


@pytest.mark.parametrize("num_foreground", [0, 1, 2, 37, 300])  # 0 and 1 rows run eagerly
@pytest.mark.parametrize("p,q", [(0.8, 2.0), (0.0, 2.0), (0.8, 0.0), (1.7, 0.3)])
def test_default_cpu_kernels_equal_the_eager_ones(num_foreground, p, q):
    logits, labels, log_counts = _inputs(300, 57, num_foreground)
    for weights in ((1.0, 0.0), (0.0, 1.0), (1.3, -0.7)):  # each term's gradient, and a mix
        fused = seesaw_terms(logits, labels, log_counts, p, q, 1e-2)
        eager = seesaw_terms(logits, labels, log_counts, p, q, 1e-2, compiled=False)
        value, expected = (sum(term * weight for term, weight in zip(terms, weights)) for terms in (fused, eager))
        assert_value_and_gradient_close(value, expected, logits, rtol=1e-13, grad_rtol=1e-12, grad_atol=1e-16)


@pytest.mark.parametrize("num_rois,num_columns", [(1, 5), (5, 1), (2, 2), (300, 57)])  # 1: eager
@pytest.mark.parametrize("with_prob_sums", [False, True])
def test_default_column_weighted_kernels_equal_the_eager_ones(num_rois, num_columns, with_prob_sums):
    generator = torch.Generator().manual_seed(num_rois)
    logits = (torch.randn(num_rois, num_columns, generator=generator, dtype=torch.float64) * 4).requires_grad_()
    labels = torch.randint(0, num_columns + 1, (num_rois,), generator=generator)
    pos_weight, neg_weight = (torch.rand(num_columns, generator=generator, dtype=torch.float64) * 3 for _ in range(2))
    fused_total, fused_sums = column_weighted_sigmoid_sum(logits, labels, pos_weight, neg_weight, with_prob_sums)
    eager_total, eager_sums = column_weighted_sigmoid_sum(logits, labels, pos_weight, neg_weight, with_prob_sums,
                                                          fused=False)
    assert_value_and_gradient_close(fused_total, eager_total, logits, rtol=1e-13, grad_rtol=1e-13, grad_atol=1e-16)
    if with_prob_sums:
        torch.testing.assert_close(fused_sums, eager_sums, rtol=1e-13, atol=1e-13)
    else:
        assert fused_sums is None and eager_sums is None
