"""Checks every loss shares: finite parameters, and labels that fail loudly when unchecked."""

import math
from numbers import Real

import torch
from torch import Tensor


def check_finite_params(loss_name: str, **params) -> None:
    """ValueError naming the first parameter that is not a finite real number (NaN, an infinity,
    a string, a bool): a NaN slips through every `p < 0`-style range check."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{loss_name}: {name} must be a finite number, got {value!r}")


def fail_on_out_of_range_labels(labels: Tensor, num_classes: int) -> None:
    """Fail on a label outside [0, num_classes] as cross-entropy's own indexing does (IndexError
    on the CPU, a device-side assert on CUDA), without reading anything back from the device:
    an index_select of the labels into a (num_classes + 1,) tensor. For losses whose kernels
    would otherwise read such a label as "no positive" and train on it silently (the sigmoid ones)."""
    torch.index_select(labels.new_empty(num_classes + 1), 0, labels)
