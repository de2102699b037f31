"""Validation of the per-class training frequencies that EQL and the federated loss read (LVIS
`image_count` / number of training images)."""

from typing import Sequence

import torch
from torch import Tensor


def check_class_freq(loss_name: str, class_freq: Sequence[float], num_classes: int) -> Tensor:
    """Return class_freq as a float64 (num_classes,) tensor, or raise ValueError naming the problem."""
    if class_freq is None:
        raise ValueError(
            f"{loss_name}: class_freq is required: the fraction of training images that contain each "
            "class (LVIS image_count / number of training images), one per class"
        )
    class_freq = torch.as_tensor(class_freq, dtype=torch.float64)
    if class_freq.shape != (num_classes,):
        raise ValueError(
            f"{loss_name}: class_freq must have one entry per class ({num_classes}), got shape {tuple(class_freq.shape)}"
        )
    if not torch.isfinite(class_freq).all() or (class_freq < 0).any():
        raise ValueError(f"{loss_name}: class_freq must be finite and >= 0")
    return class_freq
