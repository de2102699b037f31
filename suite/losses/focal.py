"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassificationLoss
from .checks import check_finite_params
from .kernels.sigmoid_loss_sum import PRIOR_LOGIT_BIAS, sigmoid_loss_sum


def independent_background_scores(class_logits: Tensor) -> Tensor:
    """(N, C) sigmoid logits -> (N, C + 1): each class's sigmoid, then the probability that no
    class is present if the classes are independent, prod_j (1 - sigmoid(z_j)), last."""
    background = F.logsigmoid(-class_logits).sum(dim=1, keepdim=True).exp()
    return torch.cat([torch.sigmoid(class_logits), background], dim=1)


class SigmoidFocalLoss(ClassificationLoss):
    """Per-class sigmoid focal loss over num_classes logits; background is the all-zero target.

    FL = -alpha_t (1 - p_t)^gamma log(p_t), summed over classes and RoIs, divided by N.
    alpha weights the positive targets and 1 - alpha the negative ones (alpha < 0 disables the
    weighting). Defaults alpha = 0.25, gamma = 2.0, as in the paper. Term: `loss_cls`.
    Computed in closed form (suite.losses.kernels.sigmoid_loss_sum).
    """

    name = "focal"
    initial_logit_bias = PRIOR_LOGIT_BIAS

    def __init__(self, num_classes: int, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__(num_classes)
        check_finite_params(self.name, alpha=alpha, gamma=gamma)
        if gamma < 0:
            raise ValueError(f"focal: gamma must be >= 0, got {gamma}")
        if alpha > 1:
            raise ValueError(f"focal: alpha must be <= 1 (negative disables it), got {alpha}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    @property
    def num_logits(self) -> int:
        return self.num_classes

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        num_rois = labels.shape[0]
        if num_rois == 0:
            return {"loss_cls": logits.sum() * 0.0}
        w_pos, w_neg = (self.alpha, 1 - self.alpha) if self.alpha >= 0 else (1.0, 1.0)
        total = sigmoid_loss_sum(logits, labels, self.num_classes, w_pos=w_pos, w_neg=w_neg, gamma=self.gamma)
        return {"loss_cls": total / num_rois}

    def _scores(self, logits: Tensor) -> Tensor:
        return independent_background_scores(logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, gamma={self.gamma}"
