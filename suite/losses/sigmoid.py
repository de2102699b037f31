"""The per-class sigmoid losses' common part (focal, EQL, federated): num_classes logits and no
background logit, a background RoI's target all zeros, the loss summed over RoIs and classes and
divided by N; and their two ways of turning the class sigmoids into scores with background last.
"""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassificationLoss


class SigmoidClassificationLoss(ClassificationLoss):
    """Base of the per-class sigmoid losses. Term: `loss_cls` = `_sum(logits, labels)` / N (zero,
    still connected to `logits`, for an empty batch).

    Subclasses implement `_sum(logits, labels)`: (N, num_classes) logits, (N,) labels -> the loss
    summed over RoIs and classes, a scalar; and `_scores` (one of the functions below)."""

    @property
    def num_logits(self) -> int:
        return self.num_classes

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        num_rois = labels.shape[0]
        if num_rois == 0:
            return {"loss_cls": logits.sum() * 0.0}
        return {"loss_cls": self._sum(logits, labels) / num_rois}

    def _sum(self, logits: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


def independent_background_scores(class_logits: Tensor) -> Tensor:
    """(N, C) sigmoid logits -> (N, C + 1): each class's sigmoid, then the probability that no
    class is present if the classes are independent, prod_j (1 - sigmoid(z_j)), last."""
    background = F.logsigmoid(-class_logits).sum(dim=1, keepdim=True).exp()
    return torch.cat([torch.sigmoid(class_logits), background], dim=1)


def zero_background_scores(class_logits: Tensor) -> Tensor:
    """(N, C) sigmoid logits -> (N, C + 1): each class's sigmoid, then a zero background column
    (EQL's authors' inference: detections are ranked by the class sigmoids alone)."""
    return torch.cat([torch.sigmoid(class_logits), class_logits.new_zeros(class_logits.shape[0], 1)], dim=1)
