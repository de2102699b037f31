"""Closed-form forward and backward of a sigmoid cross-entropy with one weight per column for the
positive entries and one for the negative ones (EQLv2, the federated loss).

Each of the K logit columns is an independent binary problem; row i has at most one positive
entry, column labels[i] (none when labels[i] >= K). With p = sigmoid(x), softplus(x) = -log(1 - p):

    sum_ij w_ij BCE(x_ij, t_ij),  w_ij = pos_weight[j] if t_ij = 1 else neg_weight[j]
          = sum_j neg_weight[j] sum_i softplus(x_ij)
            + sum_i [pos_weight[y_i] softplus(-x_iy) - neg_weight[y_i] softplus(x_iy)]  (rows with y_i < K)
    d/dx_ij = neg_weight[j] p_ij, and pos_weight[y_i] (p_iy - 1) on the positive entries.

The dense part is a column sum, so it costs one softplus and one sigmoid over the (N, K) logits;
the positives are corrected by a gather over all rows (no nonzero, so no host sync on CUDA). The
forward keeps p for the backward and can return its column sums, which EQLv2's gradient
statistics are made of. These are the eager kernels; on the CPU the default is the same maths in
fused kernels (column_weighted_sigmoid_sum_cpu), which keep their speed when other processes compete
for the cores.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from .column_weighted_sigmoid_sum_cpu import FusedColumnWeightedSigmoidSum, fused_cpu_kernels
from .sigmoid_loss_sum import _softplus


class ColumnWeightedSigmoidSum(torch.autograd.Function):
    """forward(logits (N, K) float, labels (N,) int64, pos_weight (K,), neg_weight (K,),
    with_prob_sums bool) -> (loss sum (scalar), column sums of sigmoid(logits) (K,) or None).

    The weights are constants (no gradient flows to them); the column sums are not differentiable.
    """

    @staticmethod
    def forward(ctx, logits, labels, pos_weight, neg_weight, with_prob_sums):
        num_columns = logits.shape[1]
        has_positive = labels < num_columns
        columns = labels.clamp(max=num_columns - 1)[:, None]  # (N, 1), a dummy column when none
        softplus = _softplus(logits)
        x_pos = logits.gather(1, columns).squeeze(1)
        softplus_pos = softplus.gather(1, columns).squeeze(1)
        # softplus(-x) = softplus(x) - x
        correction = pos_weight[columns[:, 0]] * (softplus_pos - x_pos) - neg_weight[columns[:, 0]] * softplus_pos
        total = softplus.sum(dim=0) @ neg_weight + torch.where(has_positive, correction, 0.0).sum()
        prob = torch.sigmoid(logits)
        prob_sums = prob.sum(dim=0) if with_prob_sums else None
        ctx.save_for_backward(prob, columns, has_positive, pos_weight, neg_weight)
        if prob_sums is not None:
            ctx.mark_non_differentiable(prob_sums)
        return total, prob_sums

    @staticmethod
    def backward(ctx, grad_total, grad_prob_sums):
        prob, columns, has_positive, pos_weight, neg_weight = ctx.saved_tensors
        grad = prob * neg_weight
        prob_pos = prob.gather(1, columns).squeeze(1)
        weights = columns[:, 0]
        at_label = torch.where(has_positive, pos_weight[weights] * (prob_pos - 1), neg_weight[weights] * prob_pos)
        grad.scatter_(1, columns, at_label[:, None])
        return grad.mul_(grad_total), None, None, None, None


def column_weighted_sigmoid_sum(logits: Tensor, labels: Tensor, pos_weight: Tensor, neg_weight: Tensor,
                                with_prob_sums: bool = False, fused: Optional[bool] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """See ColumnWeightedSigmoidSum. logits (N, K); labels (N,) int64 >= 0, column `label` is a
    row's positive (none when label >= K); pos_weight, neg_weight (K,) in the logits' dtype.
    fused: the kernels of column_weighted_sigmoid_sum_cpu where they build, else the eager ones, as
    Seesaw's `compiled` (default: on the CPU; torch.compile specialises sizes 0 and 1, so those few
    shapes run eagerly)."""
    if fused is None:
        fused = logits.device.type == "cpu" and min(logits.shape) > 1
    if fused and fused_cpu_kernels() is not None:
        function = FusedColumnWeightedSigmoidSum
    else:
        function = ColumnWeightedSigmoidSum
    return function.apply(logits, labels, pos_weight, neg_weight, bool(with_prob_sums))
