"""Equalization Loss (Tan et al., "Equalization Loss for Long-Tailed Object Recognition", CVPR 2020).

As in the authors' Detectron2 code: sigmoid cross-entropy over num_classes + 1 logits (the
background logit is a sigmoid output too, target 1 on background RoIs), and for a foreground RoI
the negative term of every rare class is dropped:

    w_j = 1 - E(r) T_lambda(f_j) (1 - y_j),   E(r) = 1 for foreground RoIs, 0 for background,
    T_lambda(f) = 1 if f < lambda,            f_j = image count of class j / training images.

Computed in closed form (suite.losses.sigmoid_kernel).
"""

from typing import Dict, Sequence

import torch
from torch import Tensor

from .base import ClassificationLoss
from .checks import check_finite_params
from .sigmoid_kernel import PRIOR_LOGIT_BIAS, sigmoid_loss_sum

#: The frequency threshold lambda of the paper and its code for each LVIS version.
LAMBDA_LVIS_V05 = 1.76e-3
LAMBDA_LVIS_V1 = 1.1e-3


class EqualizationLoss(ClassificationLoss):
    """EQL. Term: `loss_cls`.

    Args:
        num_classes: foreground classes.
        class_freq: (num_classes,) fraction of training images that contain each class (LVIS
            `image_count` / number of training images). Required.
        lambda_: frequency threshold below which a class counts as rare (LVIS v1: 1.1e-3).
    """

    name = "eql"
    initial_logit_bias = PRIOR_LOGIT_BIAS

    def __init__(self, num_classes: int, class_freq: Sequence[float] = None, lambda_: float = LAMBDA_LVIS_V1):
        super().__init__(num_classes)
        check_finite_params(self.name, lambda_=lambda_)
        if class_freq is None:
            raise ValueError(
                "eql: class_freq is required: the fraction of training images that contain each "
                "class (LVIS image_count / number of training images), one per class"
            )
        class_freq = torch.as_tensor(class_freq, dtype=torch.float64)
        if class_freq.shape != (num_classes,):
            raise ValueError(
                f"eql: class_freq must have one entry per class ({num_classes}), got shape {tuple(class_freq.shape)}"
            )
        if not torch.isfinite(class_freq).all() or (class_freq < 0).any():
            raise ValueError("eql: class_freq must be finite and >= 0")
        self.lambda_ = float(lambda_)
        # 1 for the rare classes whose negative gradient is dropped; never the background column.
        rare = torch.cat([class_freq < self.lambda_, torch.zeros(1, dtype=torch.bool)])
        self.register_buffer("rare", rare, persistent=False)

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        num_rois = labels.shape[0]
        if num_rois == 0:
            return {"loss_cls": logits.sum() * 0.0}
        total = sigmoid_loss_sum(logits, labels, self.num_classes, dropped_columns=self.rare)
        return {"loss_cls": total / num_rois}

    def _scores(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_={self.lambda_}, rare_classes={int(self.rare.sum())}"
