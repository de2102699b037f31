"""GradientBalance: exact sums against the closed form of cross-entropy and against EQLv2's own
gradient statistics, and the imbalance that Seesaw removes on a long-tailed label mix."""

import numpy as np
import pytest
import torch

from suite.d2.grad_balance import GradientBalance
from suite.losses import build_loss


def test_closed_form_with_cross_entropy_over_batches():
    num_classes, generator = 5, torch.Generator().manual_seed(0)
    balance = GradientBalance(num_classes)
    expected_pos, expected_neg = np.zeros(num_classes), np.zeros(num_classes)
    loss = build_loss("ce", num_classes)
    for n in (7, 12):
        logits = torch.randn(n, num_classes + 1, generator=generator, dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, num_classes + 1, (n,), generator=generator)
        balance.observe(logits, labels)
        sum(loss(logits, labels).values()).backward()
        # d(mean CE)/dz = (softmax - onehot) / N
        grad = (torch.softmax(logits.detach(), 1).numpy() - np.eye(num_classes + 1)[labels.numpy()]) / n
        for j in range(num_classes):
            own = labels.numpy() == j
            expected_pos[j] += np.abs(grad[own, j]).sum()
            expected_neg[j] += np.abs(grad[~own, j]).sum()
    record = balance.as_record()
    assert record["class_ids"] == list(range(num_classes))
    np.testing.assert_allclose(record["pos_grad"], expected_pos, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(record["neg_grad"], expected_neg, rtol=1e-12, atol=1e-15)
    assert min(record["neg_grad"]) > 0


def test_eqlv2_own_sums_are_the_recorded_balance_times_n():
    """EQLv2 accumulates sum w |p - y| per class, the gradient of its loss times N: over batches
    of one size N, the record's sums times N are the loss's pos_grad and neg_grad."""
    num_classes, num_rois, generator = 6, 16, torch.Generator().manual_seed(2)
    loss = build_loss("eqlv2", num_classes).double().train()
    balance = GradientBalance(num_classes)
    for _ in range(4):
        logits = torch.randn(num_rois, num_classes + 1, generator=generator, dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, num_classes + 1, (num_rois,), generator=generator)
        balance.observe(logits, labels)
        sum(loss(logits, labels).values()).backward()
    record = balance.as_record()
    np.testing.assert_allclose(np.array(record["pos_grad"]) * num_rois, loss.pos_grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.array(record["neg_grad"]) * num_rois, loss.neg_grad.numpy(), rtol=1e-12)


def test_only_the_class_columns_are_observed():
    balance = GradientBalance(3)
    logits = torch.zeros(4, 5, requires_grad=True)  # 3 class logits + 2 more (Seesaw's objectness)
    balance.observe(logits, torch.tensor([0, 1, 3, 3]))
    (logits * torch.arange(1.0, 6.0)).sum().backward()  # dL/dz_j = j + 1 on every row
    record = balance.as_record()
    assert record["pos_grad"] == [1.0, 2.0, 0.0]
    assert record["neg_grad"] == [3.0, 6.0, 12.0]


def _rare_ratio(loss_name: str, **params) -> float:
    """pos/neg of the rarest class after 20 batches of a long-tailed label mix: class 0 on half
    the foreground RoIs, class 9 on one RoI in every other batch, three quarters background."""
    num_classes, generator = 10, torch.Generator().manual_seed(1)
    loss = build_loss(loss_name, num_classes, **params).train()
    balance = GradientBalance(num_classes)
    weights = torch.tensor([2.0 ** -k for k in range(num_classes - 1)])
    for step in range(20):
        foreground = torch.multinomial(weights, 127, replacement=True, generator=generator)
        rare = torch.full((step % 2,), num_classes - 1)
        labels = torch.cat([foreground, rare, torch.full((384,), num_classes)])
        logits = (0.1 * torch.randn(labels.numel(), loss.num_logits, generator=generator)).requires_grad_()
        balance.observe(logits, labels)
        sum(loss(logits, labels).values()).backward()
    record = balance.as_record()
    return record["pos_grad"][-1] / record["neg_grad"][-1]


def test_seesaw_lifts_the_rare_class_balance_that_cross_entropy_suppresses():
    ce, seesaw = _rare_ratio("ce"), _rare_ratio("seesaw")
    assert ce < 0.05
    assert seesaw > 10 * ce


def test_eqlv2_lifts_the_rare_class_balance_that_plain_sigmoid_suppresses():
    """EQLv2 with alpha = 0 and gamma = 0 weighs every negative 1/2 and positive 1; its defaults
    (the rare class's ratio falls below mu, so its negatives are down-weighted) lift the ratio."""
    assert _rare_ratio("eqlv2") > 10 * _rare_ratio("eqlv2", gamma=0.0, alpha=0.0)


@pytest.mark.parametrize("logits, labels, message", [
    (torch.zeros(3, 2, requires_grad=True), torch.zeros(3, dtype=torch.int64), "N, >= 4"),
    (torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64), "require grad"),
    (torch.zeros(3, 5, requires_grad=True), torch.zeros(2, dtype=torch.int64), "3 entries"),
    (torch.zeros(3, 5, requires_grad=True), torch.zeros(3), "int64"),
])
def test_bad_inputs_are_refused(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        GradientBalance(4).observe(logits, labels)
