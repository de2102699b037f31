"""Softmax cross-entropy: Detectron2's default box classification loss."""

from typing import Dict

import torch.nn.functional as F
from torch import Tensor

from .base import ClassificationLoss


class CrossEntropyLoss(ClassificationLoss):
    """Softmax cross-entropy over num_classes + 1 logits (background last), mean over RoIs.

    Identical to `F.cross_entropy(logits, labels)`. Term: `loss_cls`.
    """

    name = "ce"

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        if labels.numel() == 0:
            return {"loss_cls": logits.sum() * 0.0}
        return {"loss_cls": F.cross_entropy(logits, labels)}

    def _scores(self, logits: Tensor) -> Tensor:
        return F.softmax(logits, dim=1)
