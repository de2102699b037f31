"""Seesaw loss forward and backward in closed form, as one autograd Function.

With the balance factor S (a constant, no gradient through it), the class term of a foreground RoI
with label y is ordinary cross-entropy on shifted logits (Wang et al., CVPR 2021, eq. 2-3):

    z'_j = z_j + log S_yj,   log S_yj = p min(0, a_j - a_y) + q max(0, z_j - t_y)   (S_yy = 1)
    a_k  = log max(N_k, 1)                    (mitigation: log of the accumulated counts)
    t_y  = max(z_y, logsumexp(z) + log eps)   (compensation: sigma_j / max(sigma_y, eps)
                                               = exp(z_j - t_y), the official eps clamp)
    L    = logsumexp(z') - z_y,   dL/dz_j = softmax(z')_j - [j = y]
         = S_yj exp(z_j) / exp(z_y) p_y  for j != y,  p_y - 1 for j = y  (the paper's gradient).

The kernels work on u = z' + p a_y = z + p min(a, a_y) + q max(0, z - t_y), which differs from z'
by a constant per row: logsumexp(z') = logsumexp(u) - p a_y and softmax(z') = softmax(u).

The objectness term is 2-way cross-entropy over all RoIs (column 0 foreground, 1 background, as in
the official code). Both terms are summed over RoIs and divided by N, all sampled RoIs.

There is no C x C matrix and no Python loop over labels. On the CPU the class term runs on the
foreground rows only (a quarter of the rows at LVIS's 25 % foreground), in chunks of rows that
stay in cache, and keeps u for the backward; on an accelerator it runs on all rows, masked, because selecting rows would cost a host
sync, and the backward recomputes u from the logits and two saved vectors rather than keep an
N x C tensor. The same kernels run eagerly or through `torch.compile`, which fuses each
into a pass or two over the logits.
"""

import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor


def _balanced_logits(z: Tensor, y: Tensor, t: Tensor, log_counts: Tensor, p: float, q: float) -> Tensor:
    """u = z + p min(a, a_y) + q max(0, z - t) for (n, C) logits z, (n,) labels y and thresholds t.
    Returns a new tensor (never z itself)."""
    if q != 0:
        u = torch.sub(z, t[:, None]).clamp_(min=0)
        u = torch.add(z, u, alpha=q, out=u)
    else:
        u = z.clone()
    if p != 0:
        u.add_(torch.minimum(log_counts[None, :], log_counts[y][:, None]), alpha=p)
    return u


def _class_forward(z: Tensor, y: Tensor, log_counts: Tensor, p: float, q: float, log_eps: float):
    """(n, C) logits, (n,) labels in [0, C) -> (per-row loss (n,), t (n,), u (n, C), logsumexp(u) (n,))."""
    z_y = z.gather(1, y[:, None]).squeeze(1)
    t = torch.maximum(z_y, torch.logsumexp(z, dim=1) + log_eps)
    u = _balanced_logits(z, y, t, log_counts, p, q)
    lse_u = torch.logsumexp(u, dim=1)
    # u_y = z_y + p a_y: the loss logsumexp(z') - z_y, taken from u so that it is >= 0 in floating point
    row_loss = lse_u - u.gather(1, y[:, None]).squeeze(1)
    return row_loss, t, u, lse_u


def _class_backward(u: Tensor, y: Tensor, lse_u: Tensor, row_scale: Tensor) -> Tensor:
    """d(sum_i row_scale_i * row_loss_i)/dz = (softmax(u) - onehot(y)) * row_scale: (n, C)."""
    grad = torch.sub(u, lse_u[:, None]).exp_()
    grad.scatter_add_(1, y[:, None], torch.full_like(lse_u, -1.0)[:, None])
    return grad.mul_(row_scale[:, None])


def _class_backward_recomputed(z: Tensor, y: Tensor, log_counts: Tensor, t: Tensor, lse_u: Tensor,
                               row_scale: Tensor, p: float, q: float) -> Tensor:
    """The same gradient with u recomputed from z, for when u was not kept."""
    return _class_backward(_balanced_logits(z, y, t, log_counts, p, q), y, lse_u, row_scale)


@functools.lru_cache(maxsize=None)
def _class_kernels(compiled: bool):
    """(forward, backward from the kept u, backward recomputing u), eager or compiled."""
    kernels = (_class_forward, _class_backward, _class_backward_recomputed)
    if not compiled:
        return kernels
    return tuple(torch.compile(kernel, dynamic=True) for kernel in kernels)


def _objectness_loss_and_grad(objectness: Tensor, background: Tensor, num_rois: int):
    """Summed 2-way cross-entropy / N and its gradient (before the upstream scale): (N, 2)."""
    target = background.long()[:, None]
    log_prob = torch.log_softmax(objectness, dim=1)
    loss = -log_prob.gather(1, target).sum() / num_rois
    grad = log_prob.exp_().scatter_add_(1, target, torch.full_like(log_prob[:, :1], -1.0))
    return loss, grad.div_(num_rois)


# Foreground rows per chunk on the CPU: the temporaries of a chunk (256 x 1203 floats, 1.2 MB) stay
# in cache and their memory is reused from chunk to chunk (about 25 % faster than one pass at LVIS shape).
CPU_CHUNK_ROWS = 256


class _SeesawFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, log_counts, p, q, log_eps, compiled, compact_rows):
        num_rois, num_classes = logits.shape[0], logits.shape[1] - 2
        forward_kernel = _class_kernels(compiled)[0]
        foreground = labels < num_classes
        if compact_rows:
            # Foreground rows only, in chunks; each chunk's u is kept for the backward.
            rows = foreground.nonzero().squeeze(1)
            ctx.chunks = []
            loss_classes = logits.new_zeros(())
            for chunk_rows in rows.split(CPU_CHUNK_ROWS):
                y = labels[chunk_rows]
                row_loss, _, u, lse_u = forward_kernel(logits[chunk_rows, :num_classes], y, log_counts, p, q, log_eps)
                loss_classes = loss_classes + row_loss.sum()
                ctx.chunks.append((chunk_rows, y, u, lse_u))
            kept = ()
        else:
            # All rows, masked; the backward recomputes u from the logits.
            y = torch.where(foreground, labels, 0)  # background rows: any class, masked out
            row_loss, t, _, lse_u = forward_kernel(logits[:, :num_classes], y, log_counts, p, q, log_eps)
            loss_classes = torch.where(foreground, row_loss, 0.0).sum()
            ctx.chunks = None
            kept = (logits, y, log_counts, t, lse_u, foreground)
        loss_classes = loss_classes / num_rois
        loss_objectness, unit_grad_objectness = _objectness_loss_and_grad(logits[:, -2:], ~foreground, num_rois)
        ctx.save_for_backward(unit_grad_objectness, *kept)
        ctx.num_rois, ctx.num_classes = num_rois, num_classes
        ctx.p, ctx.q, ctx.compiled = p, q, compiled
        return loss_classes, loss_objectness

    @staticmethod
    def backward(ctx, grad_classes, grad_objectness):
        unit_grad_objectness, *kept = ctx.saved_tensors
        num_rois, num_classes = ctx.num_rois, ctx.num_classes
        _, backward_kernel, backward_recomputed_kernel = _class_kernels(ctx.compiled)
        grad_o = unit_grad_objectness * grad_objectness
        row_scale = grad_classes / num_rois
        if ctx.chunks is not None:
            grad_logits = grad_o.new_zeros((num_rois, num_classes + 2))
            grad_classes_part = grad_logits[:, :num_classes]
            for chunk_rows, y, u, lse_u in ctx.chunks:
                grad_z = backward_kernel(u, y, lse_u, row_scale.expand(chunk_rows.shape[0]))
                grad_classes_part.index_copy_(0, chunk_rows, grad_z)
            grad_logits[:, num_classes:] = grad_o
        else:
            logits, y, log_counts, t, lse_u, foreground = kept
            grad_z = backward_recomputed_kernel(logits[:, :num_classes], y, log_counts, t, lse_u,
                                                torch.where(foreground, row_scale, 0.0), ctx.p, ctx.q)
            grad_logits = torch.cat([grad_z, grad_o], dim=1)
        return grad_logits, None, None, None, None, None, None, None


def seesaw_terms(logits: Tensor, labels: Tensor, log_counts: Tensor, p: float = 0.8, q: float = 2.0,
                 eps: float = 1e-2, compiled: bool = False,
                 compact_rows: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
    """Seesaw class and objectness terms, each summed over RoIs and divided by N.

    Args:
        logits: (N, C + 2) float32 or float64: C class logits, then objectness (foreground,
            background).
        labels: (N,) int64 in [0, C]; C is background. Not checked here.
        log_counts: (C,) log of the accumulated per-class counts, clamped at 1 before the log,
            in the dtype of logits.
        p, q, eps: mitigation exponent, compensation exponent, lower clamp of sigma_y.
        compiled: run the class kernels through `torch.compile`.
        compact_rows: run the class term on the foreground rows only (needs a host sync to select
            them); default: on the CPU only.

    Returns:
        (loss_classes, loss_objectness), scalars differentiable w.r.t. logits.
    """
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return zero, zero.clone()
    if compact_rows is None:
        compact_rows = logits.device.type == "cpu"
    return _SeesawFunction.apply(logits, labels, log_counts, float(p), float(q), math.log(eps),
                                 bool(compiled), bool(compact_rows))
