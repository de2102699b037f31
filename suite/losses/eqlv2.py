"""Equalization Loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for
Long-tailed Object Detection", CVPR 2021, arXiv 2012.08548), as the official code computes it
(mmdetection's `EQLV2Loss`, the authors' tztztztztz/eqlv2).

Sigmoid cross-entropy over num_classes + 1 logits, the last an objectness (background) column
that is positive on background RoIs. Each class j is re-weighted from the ratio g_j of its
accumulated positive to negative gradient:

    neg_w_j = sigmoid(gamma (g_j - mu)),  pos_w_j = 1 + alpha (1 - neg_w_j)   (1 and 1 for the
    objectness column),  L = 1/N sum_i sum_j w_ij BCE(z_ij, y_ij),

with the weights of the current step taken from the ratio before it (g_j = 100 before the first
step, so that every weight starts at 1). After the loss, the step's gradient magnitudes |dL/dz|
times N (|p - y| w, weighted as in the loss) are added to the per-class sums.
Computed in closed form (suite.losses.kernels.column_weighted_sigmoid_sum).
"""

from typing import Dict

import torch
import torch.distributed as dist
from torch import Tensor

from .base import ClassificationLoss
from .checks import check_finite_params
from .kernels.column_weighted_sigmoid_sum import column_weighted_sigmoid_sum

#: The official ratio before the first step: high enough that every weight starts at 1.
INITIAL_POS_NEG = 100.0
#: The official guard against a zero negative sum in the ratio.
RATIO_EPS = 1e-10


class EqualizationLossV2(ClassificationLoss):
    """EQLv2 over num_classes + 1 logits (class logits, then objectness). Term: `loss_cls`.

    State: persistent float64 buffers (num_classes,) `pos_grad`, `neg_grad` (the accumulated
    weighted gradient magnitudes of each class logit, positive and negative samples) and `pos_neg`
    (their ratio, the official `pos_neg`). In training mode each forward computes the loss with
    the current weights, then adds the step's gradient sums, summed over all ranks when
    torch.distributed is initialised (one all_reduce of the increments, no host sync), so every
    rank re-weights with the same global sums. In eval mode the state is frozen.

    Args:
        num_classes: foreground classes.
        gamma, mu: slope and centre of the mapping from the gradient ratio to the negative
            weight (official defaults 12 and 0.8).
        alpha: how much the positive weight grows as the negative one falls (official 4).
        test_with_obj: inference scores are class sigmoids times (1 - objectness sigmoid), as the
            official default; False gives the plain sigmoids.
    """

    name = "eqlv2"
    config_node = "EQLV2"
    config_keys = {"GAMMA": "gamma", "MU": "mu", "ALPHA": "alpha", "TEST_WITH_OBJ": "test_with_obj"}

    def __init__(self, num_classes: int, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 test_with_obj: bool = True):
        super().__init__(num_classes)
        check_finite_params(self.name, gamma=gamma, mu=mu, alpha=alpha)
        if gamma < 0 or alpha < 0:
            raise ValueError(f"eqlv2: gamma and alpha must be >= 0, got gamma={gamma}, alpha={alpha}")
        self.gamma = float(gamma)
        self.mu = float(mu)
        self.alpha = float(alpha)
        self.test_with_obj = bool(test_with_obj)
        self.register_buffer("pos_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("pos_neg", torch.full((num_classes,), INITIAL_POS_NEG, dtype=torch.float64))

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1

    def column_weights(self):
        """(pos_weight, neg_weight), each (num_classes + 1,) float64, objectness column last (1, 1)."""
        class_neg = torch.sigmoid(self.gamma * (self.pos_neg - self.mu))
        neg_weight = torch.cat([class_neg, class_neg.new_ones(1)])
        return 1 + self.alpha * (1 - neg_weight), neg_weight

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        pos_weight, neg_weight = (w.to(logits.dtype) for w in self.column_weights())
        total, prob_sums = column_weighted_sigmoid_sum(
            logits, labels, pos_weight, neg_weight, with_prob_sums=self.training)
        if self.training:
            self.accumulate(logits.detach(), labels, prob_sums, pos_weight, neg_weight)
        return {"loss_cls": total / max(labels.shape[0], 1)}

    @torch.no_grad()
    def accumulate(self, logits: Tensor, labels: Tensor, prob_sums: Tensor, pos_weight: Tensor,
                   neg_weight: Tensor) -> None:
        """Add the step's weighted gradient magnitudes per class (summed over ranks) to the sums:
        pos: sum over RoIs of the class of pos_w (1 - p), neg: sum over the others of neg_w p."""
        prob_at_label = torch.sigmoid(logits.gather(1, labels[:, None]).squeeze(1))
        prob_of_positives = torch.zeros_like(prob_sums).index_add_(0, labels, prob_at_label)
        count = torch.zeros_like(prob_sums).index_add_(0, labels, torch.ones_like(prob_at_label))
        classes = slice(0, self.num_classes)  # the objectness column is not accumulated
        increments = torch.stack([  # (2, C), contiguous for all_reduce
            (pos_weight * (count - prob_of_positives))[classes],
            (neg_weight * (prob_sums - prob_of_positives))[classes],
        ]).to(torch.float64)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(increments)
        self.pos_grad += increments[0]
        self.neg_grad += increments[1]
        torch.div(self.pos_grad, self.neg_grad + RATIO_EPS, out=self.pos_neg)

    def _scores(self, logits: Tensor) -> Tensor:
        probs = torch.sigmoid(logits)
        if self.test_with_obj:
            probs[:, :-1] *= 1 - probs[:, -1:]
        return probs

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, gamma={self.gamma}, mu={self.mu}, alpha={self.alpha}, "
                f"test_with_obj={self.test_with_obj}")
