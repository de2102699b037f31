"""Seesaw loss forward and backward in closed form, as one autograd Function.

With the balance factor S (a constant, no gradient through it), the class term of a foreground RoI
with label y is ordinary cross-entropy on shifted logits (Wang et al., CVPR 2021, eq. 2-3):

    z'_j = z_j + log S_yj,   log S_yj = p min(0, a_j - a_y) + q max(0, z_j - t_y)   (S_yy = 1)
    a_k  = log max(N_k, 1)                    (mitigation: log of the accumulated counts)
    t_y  = max(z_y, logsumexp(z) + log eps)   (compensation: sigma_j / max(sigma_y, eps)
                                               = exp(z_j - t_y), the official eps clamp)
    L    = logsumexp(z') - z_y,   dL/dz_j = softmax(z')_j - [j = y]
         = S_yj exp(z_j) / exp(z_y) p_y  for j != y,  p_y - 1 for j = y  (the paper's gradient).

The objectness term is 2-way cross-entropy over all RoIs (column 0 foreground, 1 background, as in
the official code). Both terms are summed over RoIs and divided by N, all sampled RoIs.

Nothing of size N x C is kept between forward and backward but the input itself: the backward
recomputes z' from it and two saved (N,) vectors and writes the whole (N, C + 2) gradient at
once. There is no C x C matrix, no Python loop over labels and no host sync. The same two kernels
run eagerly or through `torch.compile`, which fuses each into one pass over the logits.
"""

import functools
from typing import Tuple

import torch
from torch import Tensor


def _shifted_class_logits(z: Tensor, y: Tensor, t: Tensor, log_counts: Tensor, p: float, q: float) -> Tensor:
    """z' = z + log S_y. for (N, C) logits z, (N,) labels y and thresholds t."""
    shifted = z
    if p != 0:
        shifted = shifted + (log_counts[None, :] - log_counts[y][:, None]).clamp(max=0) * p
    if q != 0:
        shifted = shifted + (z - t[:, None]).clamp(min=0) * q
    return shifted


def _forward(logits: Tensor, labels: Tensor, log_counts: Tensor, p: float, q: float, log_eps: float):
    """(N, C + 2) logits -> (class term, objectness term, t (N,), logsumexp(z') (N,))."""
    z = logits[:, :-2]
    objectness = logits[:, -2:]
    num_classes = z.shape[1]
    num_rois = z.shape[0]
    foreground = labels < num_classes
    y = torch.where(foreground, labels, 0)  # background rows: any valid class, masked below
    z_y = z.gather(1, y[:, None]).squeeze(1)
    t = torch.maximum(z_y, torch.logsumexp(z, dim=1) + log_eps)
    lse_shifted = torch.logsumexp(_shifted_class_logits(z, y, t, log_counts, p, q), dim=1)
    loss_classes = torch.where(foreground, lse_shifted - z_y, 0.0).sum() / num_rois
    # objectness target: 0 = foreground, 1 = background
    o_target = objectness.gather(1, (~foreground).long()[:, None]).squeeze(1)
    loss_objectness = (torch.logsumexp(objectness, dim=1) - o_target).sum() / num_rois
    return loss_classes, loss_objectness, t, lse_shifted


def _backward(logits: Tensor, labels: Tensor, log_counts: Tensor, t: Tensor, lse_shifted: Tensor,
              grad_classes: Tensor, grad_objectness: Tensor, p: float, q: float) -> Tensor:
    """The gradient of grad_classes * class term + grad_objectness * objectness term: (N, C + 2)."""
    z = logits[:, :-2]
    objectness = logits[:, -2:]
    num_classes = z.shape[1]
    num_rois = z.shape[0]
    foreground = labels < num_classes
    y = torch.where(foreground, labels, 0)
    class_ids = torch.arange(num_classes, device=z.device)
    prob_shifted = torch.exp(_shifted_class_logits(z, y, t, log_counts, p, q) - lse_shifted[:, None])
    row_scale = torch.where(foreground, grad_classes / num_rois, 0.0)
    grad_z = (prob_shifted - (class_ids[None, :] == y[:, None]).to(z.dtype)) * row_scale[:, None]
    objectness_ids = torch.arange(2, device=z.device)
    grad_o = torch.softmax(objectness, dim=1) - (objectness_ids[None, :] == (~foreground).long()[:, None]).to(z.dtype)
    grad_o = grad_o * (grad_objectness / num_rois)
    return torch.cat([grad_z, grad_o], dim=1)


@functools.lru_cache(maxsize=None)
def _kernels(compiled: bool):
    if not compiled:
        return _forward, _backward
    return (torch.compile(_forward, dynamic=True), torch.compile(_backward, dynamic=True))


class _SeesawFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, log_counts, p, q, log_eps, compiled):
        forward_kernel, _ = _kernels(compiled)
        loss_classes, loss_objectness, t, lse_shifted = forward_kernel(logits, labels, log_counts, p, q, log_eps)
        ctx.save_for_backward(logits, labels, log_counts, t, lse_shifted)
        ctx.p, ctx.q, ctx.compiled = p, q, compiled
        return loss_classes, loss_objectness

    @staticmethod
    def backward(ctx, grad_classes, grad_objectness):
        logits, labels, log_counts, t, lse_shifted = ctx.saved_tensors
        _, backward_kernel = _kernels(ctx.compiled)
        grad_logits = backward_kernel(logits, labels, log_counts, t, lse_shifted,
                                      grad_classes, grad_objectness, ctx.p, ctx.q)
        return grad_logits, None, None, None, None, None, None


def seesaw_terms(logits: Tensor, labels: Tensor, log_counts: Tensor, p: float = 0.8, q: float = 2.0,
                 eps: float = 1e-2, compiled: bool = False) -> Tuple[Tensor, Tensor]:
    """Seesaw class and objectness terms, each summed over RoIs and divided by N.

    Args:
        logits: (N, C + 2) float32 or float64: C class logits, then objectness (foreground,
            background).
        labels: (N,) int64 in [0, C]; C is background. Not checked here.
        log_counts: (C,) log of the accumulated per-class counts, clamped at 1 before the log.
        p, q, eps: mitigation exponent, compensation exponent, lower clamp of sigma_y.
        compiled: run the kernels through `torch.compile`.

    Returns:
        (loss_classes, loss_objectness), float32 scalars differentiable w.r.t. logits.
    """
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return zero, zero.clone()
    log_eps = float(torch.log(torch.tensor(eps, dtype=torch.float64)))
    return _SeesawFunction.apply(logits, labels, log_counts, float(p), float(q), log_eps, bool(compiled))
