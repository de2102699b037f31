"""Closed-form forward and backward of the per-class sigmoid losses (focal, EQL).

Each of the K logit columns is an independent binary problem; a row has at most one positive
column, its label (none when the label is >= K: focal's background). So the loss is computed
densely as if every entry were negative, and the <= N positive entries are then corrected by a
gather/scatter. With p = sigmoid(x), softplus(x) = -log(1 - p) = -logsigmoid(-x):

    negative entry: w_neg p^gamma softplus(x)          d/dx =  w_neg p^gamma (p + gamma (1 - p) softplus(x))
    positive entry: w_pos (1 - p)^gamma softplus(-x)   d/dx = -w_pos (1 - p)^gamma (1 - p + gamma p softplus(-x))

and, for EQL, the negative entries of `dropped_columns` in foreground rows (label < num_classes)
are left out. This touches the (N, K) logits a handful of times instead of the dozen temporaries
that autograd keeps for the same expression; the backward recomputes p instead of storing it.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Initial sigmoid probability of every class (Lin et al. 2017, section 4.1): with a zero bias each
#: of the K sigmoids starts at 0.5 and the summed negative terms (K log 2 per RoI) swamp training;
#: focal and EQL start their classifier bias at log(PRIOR / (1 - PRIOR)).
PRIOR_PROBABILITY = 0.01
PRIOR_LOGIT_BIAS = math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY))


def _negative_mask(labels: Tensor, num_classes: int, dropped_columns: Optional[Tensor]) -> Optional[Tensor]:
    """(N, K) bool: the negative entries left out (foreground rows x dropped columns), or None."""
    if dropped_columns is None:
        return None
    return (labels < num_classes)[:, None] & dropped_columns[None, :]


def _positive_entries(labels: Tensor, num_columns: int) -> Tuple[Tensor, Tensor]:
    """Row and column indices of the positive entries: rows whose label is < num_columns."""
    rows = torch.nonzero(labels < num_columns).squeeze(1)
    return rows, labels[rows]


def _softplus(logits: Tensor) -> Tensor:
    """(N, K) softplus(x) = max(x, 0) + log(1 + exp(-|x|)), written max(x, 0) - log(sigmoid(|x|)):
    stable for any |x|, and vectorised (log1p and logsigmoid are not, on the CPU: 4-5x slower)."""
    log_sigmoid_abs = logits.abs().sigmoid_().log_()
    return logits.clamp(min=0).sub_(log_sigmoid_abs)


class SigmoidLossSum(torch.autograd.Function):
    """sum over entries of the weighted, focal-modulated sigmoid loss above (not divided by N).

    forward(logits (N, K) float, labels (N,) int64, num_classes, w_pos, w_neg, gamma,
            dropped_columns (K,) bool or None) -> scalar.
    Works in place on at most two fresh (N, K) buffers in each direction.
    """

    @staticmethod
    def forward(ctx, logits, labels, num_classes, w_pos, w_neg, gamma, dropped_columns):
        rows, cols = _positive_entries(labels, logits.shape[1])
        negative = _softplus(logits)
        if gamma != 0:
            negative.mul_(torch.sigmoid(logits).pow_(gamma))
        mask = _negative_mask(labels, num_classes, dropped_columns)
        if mask is not None:
            negative.masked_fill_(mask, 0.0)
        x_pos = logits[rows, cols]
        positive = -F.logsigmoid(x_pos) * torch.sigmoid(-x_pos).pow(gamma)
        # The positive entries were counted as negatives above (as 0 where masked).
        total = w_neg * (negative.sum() - negative[rows, cols].sum()) + w_pos * positive.sum()
        ctx.save_for_backward(logits, labels, rows, cols)
        ctx.constants = num_classes, w_pos, w_neg, gamma, dropped_columns
        return total

    @staticmethod
    def backward(ctx, grad_total):
        logits, labels, rows, cols = ctx.saved_tensors
        num_classes, w_pos, w_neg, gamma, dropped_columns = ctx.constants
        if gamma == 0:
            grad = torch.sigmoid(logits)
        else:  # p^gamma (p + gamma (1 - p) softplus(x)), in two buffers
            grad = _softplus(logits)
            prob = torch.neg(logits).sigmoid_()  # 1 - p
            grad.mul_(prob).mul_(gamma)
            torch.sigmoid(logits, out=prob)
            grad.add_(prob).mul_(prob.pow_(gamma))
        grad.mul_(w_neg)
        mask = _negative_mask(labels, num_classes, dropped_columns)
        if mask is not None:
            grad.masked_fill_(mask, 0.0)
        x_pos = logits[rows, cols]
        p_pos, not_p = torch.sigmoid(x_pos), torch.sigmoid(-x_pos)
        grad[rows, cols] = -w_pos * not_p.pow(gamma) * (not_p - gamma * p_pos * F.logsigmoid(x_pos))
        return grad.mul_(grad_total), None, None, None, None, None, None


def sigmoid_loss_sum(logits: Tensor, labels: Tensor, num_classes: int, *, w_pos: float = 1.0,
                     w_neg: float = 1.0, gamma: float = 0.0, dropped_columns: Optional[Tensor] = None) -> Tensor:
    """See SigmoidLossSum. logits (N, K); labels (N,) int64 in [0, num_classes], column `label`
    is a row's positive (none when label >= K); dropped_columns (K,) bool or None."""
    return SigmoidLossSum.apply(logits, labels, num_classes, float(w_pos), float(w_neg), float(gamma),
                                dropped_columns)
