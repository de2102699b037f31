"""Property tests (hypothesis) over N (0 included), class counts, label mixes and dtypes."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suite.losses.official import load_official_seesaw
from suite.losses.kernels.seesaw_terms import seesaw_terms

from losses_helpers import LOSS_NAMES, make_loss

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


@st.composite
def batches(draw, max_classes=12, max_rois=24):
    num_classes = draw(st.integers(1, max_classes))
    num_rois = draw(st.integers(0, max_rois))
    mix = draw(st.sampled_from(["random", "all_background", "one_class", "no_background"]))
    seed = draw(st.integers(0, 2 ** 16))
    generator = torch.Generator().manual_seed(seed)
    if mix == "all_background":
        labels = torch.full((num_rois,), num_classes)
    elif mix == "one_class":
        labels = torch.full((num_rois,), draw(st.integers(0, num_classes - 1)))
    elif mix == "no_background":
        labels = torch.randint(0, num_classes, (num_rois,), generator=generator)
    else:
        labels = torch.randint(0, num_classes + 1, (num_rois,), generator=generator)
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    return num_classes, labels, scale, seed


def logits_for(loss, num_rois, scale, seed, dtype):
    generator = torch.Generator().manual_seed(seed + 1)
    values = torch.randn(num_rois, loss.num_logits, generator=generator, dtype=torch.float64) * scale
    return values.to(dtype).requires_grad_()


@settings(max_examples=40, deadline=None)
@given(batch=batches(), name=st.sampled_from(LOSS_NAMES), dtype=st.sampled_from(sorted(DTYPES)))
def test_terms_finite_nonnegative_with_finite_gradients(batch, name, dtype):
    num_classes, labels, scale, seed = batch
    loss = make_loss(name, num_classes).train()
    logits = logits_for(loss, labels.shape[0], scale, seed, DTYPES[dtype])
    terms = loss(logits, labels)
    for value in terms.values():
        assert value.dim() == 0 and torch.isfinite(value) and value.item() >= 0
    sum(terms.values()).backward()
    assert logits.grad.shape == logits.shape and torch.isfinite(logits.grad).all()
    scores = loss.scores(logits)
    assert scores.shape == (labels.shape[0], num_classes + 1)
    assert ((scores >= 0) & (scores <= 1)).all()


@settings(max_examples=40, deadline=None)
@given(batch=batches(max_classes=40, max_rois=40), counts_seed=st.integers(0, 1000))
def test_seesaw_matches_official_in_float64(batch, counts_seed):
    num_classes, labels, scale, seed = batch
    ours = make_loss("seesaw", num_classes).double().train()
    theirs = load_official_seesaw().SeesawLoss(num_classes=num_classes).double()
    prior = torch.randint(0, 300, (num_classes + 1,), generator=torch.Generator().manual_seed(counts_seed))
    ours.cum_samples.copy_(prior)
    theirs.cum_samples.copy_(prior)
    logits = logits_for(ours, labels.shape[0], scale, seed, torch.float64)
    our_terms = ours(logits, labels)
    their_terms = theirs(logits, labels, avg_factor=labels.shape[0])
    scale_mmdet = labels.shape[0] / (labels.shape[0] + torch.finfo(torch.float32).eps)
    for key in our_terms:
        torch.testing.assert_close(our_terms[key] * scale_mmdet, their_terms[key].double(), rtol=1e-12, atol=1e-14)
    if labels.shape[0]:
        (our_grad,) = torch.autograd.grad(sum(our_terms.values()), logits)
        (their_grad,) = torch.autograd.grad(sum(their_terms.values()), logits)
        torch.testing.assert_close(our_grad * scale_mmdet, their_grad, rtol=1e-11, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(batch=batches(max_classes=30, max_rois=30), p=st.floats(0, 2), q=st.floats(0, 3))
def test_seesaw_row_paths_agree(batch, p, q):
    """Foreground-rows (CPU) and all-rows-masked (accelerator) paths compute the same thing."""
    num_classes, labels, scale, seed = batch
    if labels.shape[0] == 0:
        return
    loss = make_loss("seesaw", num_classes)
    logits = logits_for(loss, labels.shape[0], scale, seed, torch.float64)
    log_counts = torch.rand(num_classes, dtype=torch.float64) * 8
    results = []
    for compact_rows in (True, False):
        terms = seesaw_terms(logits, labels, log_counts, p, q, compact_rows=compact_rows)
        results.append((terms, torch.autograd.grad(sum(terms), logits)[0]))
    (compact_terms, compact_grad), (masked_terms, masked_grad) = results
    for compact_value, masked_value in zip(compact_terms, masked_terms):
        torch.testing.assert_close(compact_value, masked_value, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(compact_grad, masked_grad, rtol=1e-13, atol=1e-15)
