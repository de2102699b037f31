"""Gradient correctness in float64: autograd vs finite differences (gradcheck), Seesaw's gradient
vs the paper's closed form, and the special cases that must reduce to known losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from suite.losses.kernels.seesaw_terms import seesaw_terms

from losses_helpers import LOSS_NAMES, assert_value_and_gradient_close, make_batch, make_loss


def frozen_seesaw(num_classes, counts, **params):
    """A Seesaw loss in eval mode (counts frozen) with the given accumulated counts."""
    loss = make_loss("seesaw", num_classes, **params).double().eval()
    loss.cum_samples.copy_(torch.as_tensor(counts))
    return loss


def long_tail_counts(num_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(0, 5000, (num_classes,), generator=generator), torch.tensor([90000])])


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck(name):
    if name == "seesaw":
        # With q > 0 the balance factor depends on the logits but is a constant by definition (no
        # gradient through it), so finite differences of the full loss differ from it on purpose;
        # q > 0 is checked against finite differences with the factor held fixed, below.
        loss = frozen_seesaw(6, long_tail_counts(6), q=0.0)
    elif name in ("eqlv2", "fed"):
        # Their state (EQLv2's gradient sums, the federated draw's step) moves with every training
        # forward; frozen in eval mode, after a few steps so that EQLv2's weights are not all 1.
        loss = make_loss(name, 6).double().train()
        for seed in range(3):
            loss(*make_batch(loss, 12, seed=20 + seed))
        loss.eval()
    else:
        loss = make_loss(name, 6).double()
    logits, labels = make_batch(loss, 12, seed=1)
    assert torch.autograd.gradcheck(lambda x: sum(loss(x, labels).values()), (logits,))


def balance_factor_log(logits, labels, counts, p, q, eps):
    """log S_yj per RoI (N, C) from the definitions, 0 on the label's own column and background rows."""
    num_classes = logits.shape[1] - 2
    counts = counts[:num_classes].double().clamp(min=1)
    y = labels.clamp(max=num_classes - 1)
    ratio_counts = counts[None, :] / counts[y][:, None]
    mitigation = torch.where(ratio_counts < 1, ratio_counts ** p, 1.0)
    sigma = torch.softmax(logits[:, :num_classes], 1)
    ratio_scores = sigma / sigma.gather(1, y[:, None]).clamp(min=eps)
    compensation = torch.where(ratio_scores > 1, ratio_scores ** q, 1.0)
    log_balance = (mitigation * compensation).log()
    log_balance.scatter_(1, y[:, None], 0.0)
    return log_balance * (labels < num_classes)[:, None]


def class_term_with_fixed_balance(x, labels, log_balance):
    """Cross-entropy on z + log S with S held fixed: the function whose derivative Seesaw defines."""
    num_classes = x.shape[1] - 2
    fg = labels < num_classes
    shifted = x[:, :num_classes] + log_balance
    return F.cross_entropy(shifted[fg], labels[fg], reduction="sum") / x.shape[0]


def central_differences(function, x, step=1e-6):
    grad = torch.zeros_like(x)
    flat, grad_flat = x.view(-1), grad.view(-1)
    for k in range(flat.numel()):
        original = flat[k].item()
        flat[k] = original + step
        upper = function(x).item()
        flat[k] = original - step
        lower = function(x).item()
        flat[k] = original
        grad_flat[k] = (upper - lower) / (2 * step)
    return grad


@pytest.mark.parametrize("compact_rows", [True, False])
@pytest.mark.parametrize("p,q", [(0.8, 2.0), (0.0, 2.0), (0.8, 0.0), (1.5, 0.5)])
def test_seesaw_gradient_matches_finite_differences_with_balance_fixed(compact_rows, p, q):
    """Both row paths (foreground rows on CPU, all rows masked on accelerators), each term."""
    num_classes, eps = 5, 1e-2
    counts = long_tail_counts(num_classes)
    log_counts = counts[:num_classes].clamp(min=1).double().log()
    logits, labels = make_batch(frozen_seesaw(num_classes, counts), 14, seed=2)
    classes, objectness = seesaw_terms(logits, labels, log_counts, p, q, eps, compact_rows=compact_rows)
    (grad_classes,) = torch.autograd.grad(classes, logits, retain_graph=True)
    (grad_objectness,) = torch.autograd.grad(objectness, logits)

    log_balance = balance_factor_log(logits.detach(), labels, counts, p, q, eps)
    x = logits.detach().clone()
    torch.testing.assert_close(
        classes.detach(), class_term_with_fixed_balance(x, labels, log_balance), rtol=1e-13, atol=0)
    expected_classes = central_differences(lambda v: class_term_with_fixed_balance(v, labels, log_balance), x)
    torch.testing.assert_close(grad_classes, expected_classes, rtol=1e-6, atol=1e-8)
    assert torch.autograd.gradcheck(
        lambda v: seesaw_terms(v, labels, log_counts, p, q, eps, compact_rows=compact_rows)[1], (logits,))
    assert (grad_objectness[:, :num_classes] == 0).all() and (grad_classes[:, num_classes:] == 0).all()


def paper_gradient(logits, labels, counts, p, q, eps):
    """dL/dz from the paper, row by row: S_yj exp(z_j) / exp(z_y) p_y for j != y, p_y - 1 for j = y,
    with S = M * C built from the definitions (not from the suite's kernel), divided by N."""
    num_rois, num_classes = logits.shape[0], logits.shape[1] - 2
    counts = counts.double().clamp(min=1)
    grad = torch.zeros_like(logits)
    for i in range(num_rois):
        y = int(labels[i])
        if y == num_classes:
            continue
        z = logits[i, :num_classes]
        sigma = torch.softmax(z, 0)
        mitigation = torch.where(counts[y] > counts[:num_classes], (counts[:num_classes] / counts[y]) ** p, 1.0)
        ratio = sigma / sigma[y].clamp(min=eps)
        compensation = torch.where(ratio > 1, ratio ** q, 1.0)
        balance = mitigation * compensation
        balance[y] = 1.0
        p_y = torch.exp(z[y]) / (balance * torch.exp(z)).sum()
        row = balance * torch.exp(z) / torch.exp(z[y]) * p_y
        row[y] = p_y - 1
        grad[i, :num_classes] = row / num_rois
    return grad


@pytest.mark.parametrize("p,q,eps", [(0.8, 2.0, 1e-2), (0.5, 1.0, 0.3), (2.0, 3.0, 1e-4)])
def test_seesaw_gradient_is_the_papers_closed_form(p, q, eps):
    counts = long_tail_counts(7, seed=3)
    loss = frozen_seesaw(7, counts, p=p, q=q, eps=eps)
    logits, labels = make_batch(loss, 25, seed=4)
    (grad,) = torch.autograd.grad(loss(logits, labels)["loss_cls_classes"], logits)
    expected = paper_gradient(logits.detach(), labels, counts, p, q, eps)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("compiled", [False, None])
def test_seesaw_without_factors_is_foreground_cross_entropy_and_objectness(compiled):
    """The control arm `seesaw_none` (p = q = 0), training on long-tailed counts, eager and fused
    kernels: the class term and its gradient are a plain softmax CE's over the C class logits of
    the foreground RoIs (background RoIs push no class logit), the objectness term and its gradient
    a 2-way CE's over all RoIs, each summed and divided by all N RoIs."""
    num_classes, num_rois = 9, 40
    loss = make_loss("seesaw", num_classes, p=0.0, q=0.0, compiled=compiled).double().train()
    loss.cum_samples.copy_(long_tail_counts(num_classes))
    logits, labels = make_batch(loss, num_rois, seed=5)
    fg = labels < num_classes
    foreground_ce = F.cross_entropy(logits[fg, :num_classes], labels[fg], reduction="sum") / num_rois
    assert_value_and_gradient_close(loss(logits, labels)["loss_cls_classes"], foreground_ce, logits,
                                    rtol=1e-13, grad_rtol=1e-12, grad_atol=1e-15)
    objectness_ce = F.cross_entropy(logits[:, num_classes:], (~fg).long(), reduction="sum") / num_rois
    assert_value_and_gradient_close(loss(logits, labels)["loss_cls_objectness"], objectness_ce, logits,
                                    rtol=1e-13, grad_rtol=1e-12, grad_atol=1e-15)


def test_mitigation_with_equal_counts_is_a_no_op():
    equal = torch.full((9,), 250)
    with_mitigation = frozen_seesaw(8, equal, p=0.8, q=2.0)
    without = frozen_seesaw(8, equal, p=0.0, q=2.0)
    logits, labels = make_batch(with_mitigation, 30, seed=6)
    for key, value in with_mitigation(logits, labels).items():
        torch.testing.assert_close(value, without(logits, labels)[key], rtol=1e-14, atol=0)


def test_mitigation_only_lowers_the_penalty_on_rarer_classes():
    """With q = 0: a head-class sample's loss drops when the other classes are rarer; a tail-class
    sample's loss is unchanged (M_ij = 1 when N_i <= N_j)."""
    counts = torch.tensor([1000, 10, 10, 0])
    loss = frozen_seesaw(3, counts, q=0.0)
    plain = frozen_seesaw(3, counts, p=0.0, q=0.0)
    logits = torch.zeros(2, 5, dtype=torch.float64)
    head, tail = torch.tensor([0, 3]), torch.tensor([1, 3])
    assert loss(logits, head)["loss_cls_classes"] < plain(logits, head)["loss_cls_classes"]
    torch.testing.assert_close(loss(logits, tail)["loss_cls_classes"], plain(logits, tail)["loss_cls_classes"])


def test_saturated_logits_closed_form():
    """Class 0 (count 1000) predicted as class 1 (count 10) at +-100: p_y is tiny, so the
    compensation factor (sigma_1 / eps)^q and the loss can be written by hand:
    L = log(1 + S_01 exp(z_1 - z_0) + ...) ~ (z_1 - z_0) + log S_01, S_01 = (10/1000)^p (1/eps)^q."""
    p, q, eps = 0.8, 2.0, 1e-2
    loss = frozen_seesaw(2, torch.tensor([1000, 10, 0]), p=p, q=q, eps=eps)
    logits = torch.tensor([[-100.0, 100.0, 0.0, 0.0]], dtype=torch.float64)
    expected = 200.0 + p * math.log(10 / 1000.0) + q * math.log(1 / eps)
    value = loss(logits, torch.tensor([0]))["loss_cls_classes"].item()
    assert value == pytest.approx(expected, rel=1e-12)


def test_eql_without_rare_classes_is_sigmoid_bce():
    loss = make_loss("eql", 6, class_freq=torch.full((6,), 0.5)).double()
    logits, labels = make_batch(loss, 30, seed=7)
    targets = F.one_hot(labels, 7)[:, :6].double()  # background RoIs: all-zero target
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 30
    torch.testing.assert_close(loss(logits, labels)["loss_cls"], expected, rtol=1e-14, atol=0)


def test_eql_drops_only_rare_negatives_of_foreground_rois():
    freq = torch.tensor([0.5, 1e-4, 0.5, 1e-4])  # classes 1 and 3 rare
    loss = make_loss("eql", 4, class_freq=freq).double()
    logits, labels = make_batch(loss, 30, seed=8)
    (grad,) = torch.autograd.grad(loss(logits, labels)["loss_cls"], logits)
    fg = labels < 4
    for rare in (1, 3):
        dropped = fg & (labels != rare)
        assert (grad[dropped, rare] == 0).all()
        assert (grad[~fg, rare] != 0).all()  # background RoIs keep the negative gradient
        assert (grad[labels == rare, rare] != 0).all()  # positives are kept
    assert (grad[:, [0, 2]] != 0).all()


def test_focal_with_gamma_zero_is_weighted_bce():
    loss = make_loss("focal", 6, alpha=0.25, gamma=0.0).double()
    logits, labels = make_batch(loss, 30, seed=9)
    targets = F.one_hot(labels, 7)[:, :6].double()
    weights = 0.25 * targets + 0.75 * (1 - targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="sum") / 30
    torch.testing.assert_close(loss(logits, labels)["loss_cls"], expected, rtol=1e-14, atol=0)


def test_focal_modulation_matches_definition():
    loss = make_loss("focal", 3, alpha=-1, gamma=2.0).double()
    logits, labels = make_batch(loss, 10, seed=10)
    prob = torch.sigmoid(logits)
    targets = F.one_hot(labels, 4)[:, :3].double()
    p_t = torch.where(targets == 1, prob, 1 - prob)
    expected = (-(1 - p_t) ** 2 * torch.log(p_t)).sum() / 10
    torch.testing.assert_close(loss(logits, labels)["loss_cls"], expected, rtol=1e-12, atol=0)


def _focal_definition(logits, labels, alpha, gamma):
    """torchvision's sigmoid_focal_loss (autograd through its elementwise formula), summed / N."""
    from torchvision.ops import sigmoid_focal_loss

    targets = F.one_hot(labels, logits.shape[1] + 1)[:, :-1].to(logits.dtype)
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum") / logits.shape[0]


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.6, 0.5), (-1, 1.5), (0.25, 0.0)])
def test_focal_closed_form_matches_torchvision_and_its_autograd(alpha, gamma):
    loss = make_loss("focal", 7, alpha=alpha, gamma=gamma).double()
    logits, labels = make_batch(loss, 40, seed=11)
    logits = (logits * 4).detach().requires_grad_()  # confident and wrong entries too
    value = loss(logits, labels)["loss_cls"]
    expected = _focal_definition(logits, labels, alpha, gamma)
    assert_value_and_gradient_close(value, expected, logits, rtol=1e-12, grad_rtol=1e-10, grad_atol=1e-15)


def test_eql_closed_form_matches_masked_bce_and_its_autograd():
    freq = torch.tensor([0.5, 1e-4, 0.5, 1e-4, 2e-3, 1e-5])  # classes 1, 3 and 5 rare
    loss = make_loss("eql", 6, class_freq=freq).double()
    logits, labels = make_batch(loss, 50, seed=12)
    logits = (logits * 4).detach().requires_grad_()
    targets = F.one_hot(labels, 7)[:, :6].double()
    rare = torch.tensor([False, True, False, True, False, True])
    weights = 1.0 - (labels < 6).double()[:, None] * rare.double()[None, :] * (1 - targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="sum") / 50
    value = loss(logits, labels)["loss_cls"]
    assert_value_and_gradient_close(value, expected, logits, rtol=1e-12, grad_rtol=1e-10, grad_atol=1e-15)
