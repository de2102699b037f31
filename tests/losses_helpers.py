"""Shared inputs for the loss tests."""

import torch

from suite.losses import build_loss

LOSS_NAMES = ("ce", "focal", "eql", "eqlv2", "fed", "seesaw")
#: The losses that read class frequencies from the training set.
FREQUENCY_LOSSES = ("eql", "fed")


def zipf_class_freq(num_classes: int) -> torch.Tensor:
    """Image-frequency per class falling as 1/rank, so that some classes are rare (< 1.1e-3)."""
    return 0.05 / torch.arange(1, num_classes + 1, dtype=torch.float64)


def make_loss(name: str, num_classes: int, **params):
    if name in FREQUENCY_LOSSES and "class_freq" not in params:
        params["class_freq"] = zipf_class_freq(num_classes)
    return build_loss(name, num_classes, **params)


def make_batch(loss, num_rois: int, seed: int = 0, dtype=torch.float64, scale: float = 3.0, fg_fraction: float = 0.5):
    """Random logits (requires grad) and labels with about fg_fraction foreground."""
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(num_rois, loss.num_logits, generator=generator, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, loss.num_classes, (num_rois,), generator=generator)
    background = torch.rand(num_rois, generator=generator) > fg_fraction
    labels[background] = loss.num_classes
    return logits.requires_grad_(), labels


def assert_value_and_gradient_close(value, expected, logits, rtol, grad_rtol, grad_atol):
    """A loss value equals a reference's (rtol, atol 0), and so does its gradient with respect to
    `logits` (each differentiated with autograd). Returns our gradient for further checks."""
    torch.testing.assert_close(value, expected, rtol=rtol, atol=0)
    (grad,) = torch.autograd.grad(value, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=grad_rtol, atol=grad_atol)
    return grad
