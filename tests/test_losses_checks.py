"""Loss parameters that are NaN or infinite are refused at construction, and every loss fails
loudly on a label outside [0, num_classes] even with label checking off."""

import math

import pytest
import torch

from losses_helpers import LOSS_NAMES, make_batch, make_loss

PARAMS = {"seesaw": ("p", "q", "eps"), "seesaw_official": ("p", "q", "eps"), "focal": ("alpha", "gamma"), "eql": ("lambda_",),
          "eqlv2": ("gamma", "mu", "alpha"), "fed": ("freq_power",)}


@pytest.mark.parametrize("name, param", [(name, param) for name, params in PARAMS.items() for param in params])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.5"])
def test_non_finite_parameter_is_refused(name, param, value):
    with pytest.raises(ValueError, match=f"{name}: {param} must be a finite number"):
        make_loss(name, 5, **{param: value})


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("bad_label", [6, 9, -1])
def test_out_of_range_label_fails_loudly_without_label_checks(name, bad_label):
    loss = make_loss(name, 5)
    loss.check_labels = False
    logits, labels = make_batch(loss, 8)
    labels[3] = bad_label
    with pytest.raises((IndexError, RuntimeError)):
        sum(loss(logits, labels).values()).backward()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_unchecked_valid_labels_give_the_checked_loss(name):
    # two: Seesaw's counts, EQLv2's sums and fed's step are state
    loss, unchecked_loss = make_loss(name, 5), make_loss(name, 5)
    unchecked_loss.check_labels = False
    logits, labels = make_batch(loss, 16)
    assert {key: value.item() for key, value in unchecked_loss(logits, labels).items()} == \
        {key: value.item() for key, value in loss(logits, labels).items()}
    empty = unchecked_loss(logits[:0], labels[:0])  # an empty batch is still fine
    assert all(torch.equal(value, torch.zeros_like(value)) for value in empty.values())
