"""Seesaw against the official implementation (mmdet 3.3.0's seesaw_loss.py) in float64, and the
counts' state: training-mode updates, int64 buffer, state_dict, eval mode."""

import pytest
import torch

from suite.losses.official import load_official_seesaw

from losses_helpers import make_batch, make_loss

# mmdet's weight_reduce_loss divides by avg_factor + float32 eps, not by avg_factor.
MMDET_AVG_EPS = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def official():
    return load_official_seesaw()


@pytest.mark.parametrize("num_classes,num_rois", [(5, 40), (60, 300), (1203, 512)])
def test_matches_official_loss_gradient_and_counts_over_steps(official, num_classes, num_rois):
    ours = make_loss("seesaw", num_classes).double().train()
    theirs = official.SeesawLoss(num_classes=num_classes).double()
    for step in range(4):
        logits, labels = make_batch(ours, num_rois, seed=step, fg_fraction=0.3)
        if step == 2:
            labels[:] = num_classes  # an all-background batch in between
        our_terms = ours(logits, labels)
        their_terms = theirs(logits, labels, avg_factor=num_rois)
        scale = num_rois / (num_rois + MMDET_AVG_EPS)
        for key in ("loss_cls_classes", "loss_cls_objectness"):
            torch.testing.assert_close(our_terms[key] * scale, their_terms[key].double(), rtol=1e-13, atol=1e-15)
        (our_grad,) = torch.autograd.grad(sum(our_terms.values()), logits)
        (their_grad,) = torch.autograd.grad(sum(their_terms.values()), logits)
        torch.testing.assert_close(our_grad * scale, their_grad, rtol=1e-12, atol=1e-16)
        assert torch.equal(ours.cum_samples, theirs.cum_samples.long())


def test_matches_official_scores_and_accuracy(official):
    ours = make_loss("seesaw", 8).double()
    theirs = official.SeesawLoss(num_classes=8).double()
    logits, labels = make_batch(ours, 50, seed=3)
    torch.testing.assert_close(ours.scores(logits), theirs.get_activation(logits).detach(), rtol=1e-14, atol=0)
    our_acc, their_acc = ours.accuracies(logits, labels), theirs.get_accuracy(logits, labels)
    for key in ("acc_classes", "acc_objectness"):
        assert our_acc[key].item() == pytest.approx(their_acc[key].item(), rel=1e-6)


def test_counts_update_before_the_loss_in_training_only():
    loss = make_loss("seesaw", 4)
    assert loss.cum_samples.dtype == torch.int64 and loss.cum_samples.shape == (5,)
    logits, _ = make_batch(loss, 6, dtype=torch.float32)
    labels = torch.tensor([0, 0, 2, 4, 4, 4])
    loss.train()
    first = loss(logits, labels)
    assert loss.cum_samples.tolist() == [2, 0, 1, 0, 3]
    loss(logits, labels)
    assert loss.cum_samples.tolist() == [4, 0, 2, 0, 6]
    loss.eval()
    frozen = loss(logits, labels)
    assert loss.cum_samples.tolist() == [4, 0, 2, 0, 6]
    # the first batch was balanced with its own counts (class 1 and 3 unseen, clamped to 1)
    assert not torch.equal(first["loss_cls_classes"], frozen["loss_cls_classes"])


def test_counts_are_exact_beyond_float32_range():
    """float32 counts stop at 2^24 (the official buffer's weak spot); int64 keeps counting."""
    loss = make_loss("seesaw", 2).train()
    loss.cum_samples[0] = 2 ** 24
    loss(torch.zeros(1, 4), torch.tensor([0]))
    assert loss.cum_samples[0].item() == 2 ** 24 + 1


def test_counts_round_trip_through_state_dict():
    loss = make_loss("seesaw", 3).train()
    loss(torch.zeros(4, 5), torch.tensor([0, 1, 1, 3]))
    state = loss.state_dict()
    assert list(state) == ["cum_samples"]
    restored = make_loss("seesaw", 3)
    restored.load_state_dict(state)
    assert restored.cum_samples.tolist() == [1, 2, 0, 1]


def test_compiled_kernels_match_eager():
    eager = make_loss("seesaw", 30, compiled=False).double().train()
    compiled = make_loss("seesaw", 30, compiled=True).double().train()
    for step, num_rois in enumerate((64, 100)):  # two sizes: one dynamic-shape compile
        logits, labels = make_batch(eager, num_rois, seed=step)
        eager_terms, compiled_terms = eager(logits, labels), compiled(logits, labels)
        for key in eager_terms:
            torch.testing.assert_close(compiled_terms[key], eager_terms[key], rtol=1e-12, atol=1e-14)
        grads = [torch.autograd.grad(sum(t.values()), logits)[0] for t in (eager_terms, compiled_terms)]
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)
