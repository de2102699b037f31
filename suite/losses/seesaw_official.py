"""`seesaw_official`: mmdet 3.3.0's own SeesawLoss (suite.losses.official loads it from the
installed wheel) behind the suite's loss interface, so that `suite train` and `suite study` can
train with the reference code beside ours. A reference, not a default.

What it keeps of the official code: its loss, its float32 counts updated by a Python loop over
the batch's labels, its inference scores and accuracies. What the interface adds: input checks,
the float32 computation under autocast, N (all sampled RoIs) as `avg_factor` (as mmdet's box
head passes it), and counts frozen in eval mode (the official forward always counts; mmdet calls
it in training only). Its counts are not summed across processes (the official code's own
behaviour): with several GPUs each rank balances with its own counts.
"""

from typing import Dict

import torch
from torch import Tensor

from .base import ClassificationLoss
from .official import load_official_seesaw
from .seesaw import check_seesaw_params


class OfficialSeesawLoss(ClassificationLoss):
    """mmdet's SeesawLoss over num_classes + 2 logits (classes, then objectness fg/bg). Terms:
    `loss_cls_classes`, `loss_cls_objectness`; state: the official module's float32
    `cum_samples` buffer (num_classes + 1, background last) under `official.`.

    Args: as `SeesawLoss` (num_classes, p 0.8, q 2.0, eps 1e-2).
    """

    name = "seesaw_official"
    config_node = "SEESAW"  # SeesawLoss's node, without its choice of kernels
    config_keys = {"P": "p", "Q": "q", "EPS": "eps"}

    def __init__(self, num_classes: int, p: float = 0.8, q: float = 2.0, eps: float = 1e-2):
        super().__init__(num_classes)
        check_seesaw_params(self.name, p, q, eps)
        try:
            official = load_official_seesaw()
        except ImportError as error:
            raise ValueError(f"seesaw_official: {error}") from None
        self.official = official.SeesawLoss(num_classes=num_classes, p=p, q=q, eps=eps, return_dict=True)

    @property
    def num_logits(self) -> int:
        return self.num_classes + 2

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        counts = None if self.training else self.official.cum_samples.clone()
        terms = self.official(logits, labels, avg_factor=logits.shape[0])
        if counts is not None:
            self.official.cum_samples.copy_(counts)
        return {"loss_cls_classes": terms["loss_cls_classes"], "loss_cls_objectness": terms["loss_cls_objectness"]}

    def _scores(self, logits: Tensor) -> Tensor:
        return self.official.get_activation(logits)

    @torch.no_grad()
    def accuracies(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """The base class's statistics plus the official `acc_classes` and `acc_objectness`."""
        stats = super().accuracies(logits, labels)
        stats.update(self.official.get_accuracy(logits, labels))
        return stats
