"""Seesaw loss forward and backward in closed form, as one autograd Function.

With the balance factor S (a constant, no gradient through it), the class term of a foreground RoI
with label y is ordinary cross-entropy on shifted logits (Wang et al., CVPR 2021, eq. 2-3):

    z'_j = z_j + log S_yj,   log S_yj = p min(0, a_j - a_y) + q max(0, z_j - t_y)   (S_yy = 1)
    a_k  = log max(N_k, 1)                    (mitigation: log of the accumulated counts)
    t_y  = max(z_y, logsumexp(z) + log eps)   (compensation: sigma_j / max(sigma_y, eps)
                                               = exp(z_j - t_y), the official eps clamp)
    L    = logsumexp(z') - z_y,   dL/dz_j = softmax(z')_j - [j = y]
         = S_yj exp(z_j) / exp(z_y) p_y  for j != y,  p_y - 1 for j = y  (the paper's gradient).

The kernels work on u = z' + p a_y + q t_y = z + p min(a, a_y) + q max(z, t_y), which differs from z'
by a constant per row, so softmax(z') = softmax(u) and L = -log_softmax(u)_y. The threshold comes
from one fused log_softmax: t_y = z_y + max(0, log eps - log_softmax(z)_y).

The objectness term is 2-way cross-entropy over all RoIs (column 0 foreground, 1 background, as in
the official code), computed on the (N,) logit difference. Both terms are summed over RoIs and
divided by N, all sampled RoIs.

There is no C x C matrix and no Python loop over labels. On the CPU the class term runs on the
foreground rows only (a quarter of the rows at LVIS's 25 % foreground), all in one block, and
keeps log_softmax(u) for the backward; on an accelerator it runs on all rows, masked, because
selecting rows would cost a host sync, and the backward recomputes u from the logits and a saved
vector rather than keep an N x C tensor.

Speed on a busy machine: every operation over an (n, C) block is one OpenMP parallel region,
ending in a barrier; when another process keeps the cores busy, each barrier waits for a
descheduled thread. So on the CPU the class term runs by default as two fused kernels
(seesaw_terms_cpu: a single-threaded forward, a gradient in one parallel loop), and with the
zero-filled gradient and the scatter of the foreground rows into it a forward + backward opens
three regions. The eager
kernels here (`compiled=False`, or where torch.compile cannot build) use as few block operations
as the maths allows (seven in the forward, four in the backward, against 147 when the rows were
processed in chunks of 256 with logsumexp); the objectness term works on (N,) vectors, below
torch's parallel grain, in both.
"""

import functools
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .seesaw_terms_cpu import fused_cpu_kernels


def _balanced_logits(z: Tensor, y: Tensor, t: Tensor, log_counts: Tensor, p: float, q: float,
                     out: Optional[Tensor] = None, z_is_scratch: bool = False) -> Tensor:
    """u = z + p min(a, a_y) + q max(z, t) for (n, C) logits z, (n,) labels y and thresholds t, in
    at most four block operations: into `out` when given, else a new tensor (never z itself).
    z_is_scratch: z may be overwritten (with max(z, t)), saving a buffer."""
    if p != 0:
        scaled_counts = log_counts * p
        u = torch.clamp(scaled_counts.expand(z.shape[0], -1), max=scaled_counts[y][:, None], out=out).add_(z)
    else:
        u = z.clone() if out is None else out.copy_(z)
    if q != 0:
        u.add_(z.clamp_(min=t[:, None]) if z_is_scratch else torch.clamp(z, min=t[:, None]), alpha=q)
    return u


def _class_forward(z: Tensor, y: Tensor, log_counts: Tensor, p: float, q: float, log_eps: float,
                   z_is_scratch: bool = False):
    """(n, C) logits, (n,) labels in [0, C) -> (per-row loss (n,), t (n,), log_softmax(u) (n, C)).

    t = max(z_y, logsumexp(z) + log eps) = z_y + max(0, log eps - log_softmax(z)_y): one fused
    row-wise pass where logsumexp takes four. u is built in log_softmax(z)'s buffer, and when z
    may be overwritten (a copy of the foreground rows) log_softmax(u) goes into z's: two fresh
    (n, C) buffers instead of five, which on the CPU saves page faults (about 15 % of the time)."""
    y_col = y[:, None]
    log_prob = torch.log_softmax(z, dim=1)
    log_prob_y = log_prob.gather(1, y_col).squeeze(1)
    t = z.gather(1, y_col).squeeze(1) + (log_eps - log_prob_y).clamp_(min=0)
    u = _balanced_logits(z, y, t, log_counts, p, q, out=log_prob, z_is_scratch=z_is_scratch)
    log_prob_u = torch.log_softmax(u, dim=1, out=z) if z_is_scratch else torch.log_softmax(u, dim=1)
    # logsumexp(z') - z_y = -log_softmax(u)_y: <= 0 in floating point, so the loss is >= 0
    row_loss = log_prob_u.gather(1, y_col).squeeze(1).neg_()
    return row_loss, t, log_prob_u


def _class_backward(prob_u: Tensor, y: Tensor, row_scale: Tensor) -> Tensor:
    """d(sum_i row_scale_i * row_loss_i)/dz = (softmax(u) - onehot(y)) * row_scale: (n, C),
    in place on prob_u = softmax(u); row_scale (n,) or a scalar."""
    prob_u.scatter_add_(1, y[:, None], torch.full_like(y, -1, dtype=prob_u.dtype)[:, None])
    return prob_u.mul_(row_scale[:, None] if row_scale.dim() else row_scale)


def _class_backward_kept(log_prob_u: Tensor, y: Tensor, row_scale: Tensor) -> Tensor:
    """The gradient from the kept log_softmax(u) (left unchanged)."""
    return _class_backward(log_prob_u.exp(), y, row_scale)


def _class_backward_recomputed(z: Tensor, y: Tensor, log_counts: Tensor, t: Tensor,
                               row_scale: Tensor, p: float, q: float) -> Tensor:
    """The same gradient with u recomputed from z, for when log_softmax(u) was not kept."""
    return _class_backward(torch.softmax(_balanced_logits(z, y, t, log_counts, p, q), dim=1), y, row_scale)


@functools.lru_cache(maxsize=None)
def _masked_kernels(compiled: bool):
    """(forward, backward recomputing u) of the all-rows path, eager or through torch.compile."""
    kernels = (_class_forward, _class_backward_recomputed)
    if not compiled:
        return kernels
    return tuple(torch.compile(kernel, dynamic=True) for kernel in kernels)


def _objectness_loss_and_grad(objectness: Tensor, background: Tensor, num_rois: int):
    """Summed 2-way cross-entropy / N and its gradient (before the upstream scale): (N, 2).

    With d = o_fg - o_bg and s = d on background rows, -d on foreground rows, the loss of a row is
    softplus(s) = max(s, 0) + log(1 + exp(-|s|)) and d loss/d d = sigmoid(s) sign, sign = +1 on
    background rows and -1 on foreground rows; everything is an (N,) vector."""
    sign = background.to(objectness.dtype).mul_(2).sub_(1)
    s = (objectness[:, 0] - objectness[:, 1]).mul_(sign)
    # F.softplus of a value <= 0 (exact there) and sigmoid run serially on (N,) vectors, where
    # exp, log and log1p open parallel regions
    loss = (s.clamp(min=0) + F.softplus(s.abs().neg_())).sum() / num_rois
    grad_d = torch.sigmoid(s).mul_(sign).div_(num_rois)
    return loss, torch.stack([grad_d, grad_d.neg()], dim=1)


def _compact_forward(logits: Tensor, foreground: Tensor, labels: Tensor, log_counts: Tensor, p: float, q: float,
                     log_eps: float, fused: bool):
    """The class term over the foreground rows only: (summed loss, kept (rows, y, log_softmax(u)),
    the gradient kernel for the backward). fused: the compiled kernels of seesaw_terms_cpu where
    they build, else the eager ones."""
    rows = foreground.nonzero().squeeze(1)
    y = labels.index_select(0, rows)
    # torch.compile specialises 0 and 1 rows: those few run eagerly rather than build twice more
    kernels = fused_cpu_kernels() if fused and rows.shape[0] > 1 else None
    if kernels is not None:
        loss_classes, log_prob_u = kernels[0](logits, rows, y, log_counts, p, q, log_eps)
        return loss_classes, (rows, y, log_prob_u), kernels[1]
    class_logits = logits.narrow(1, 0, log_counts.shape[0]).index_select(0, rows)
    row_loss, _, log_prob_u = _class_forward(class_logits, y, log_counts, p, q, log_eps, z_is_scratch=True)
    return row_loss.sum(), (rows, y, log_prob_u), _class_backward_kept


class _SeesawFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, log_counts, p, q, log_eps, compiled, compact_rows):
        num_rois, num_classes = logits.shape[0], logits.shape[1] - 2
        foreground = labels < num_classes
        if compact_rows:
            # log_softmax(u) of the foreground rows is kept for the backward.
            loss_classes, kept, ctx.gradient_kernel = _compact_forward(logits, foreground, labels, log_counts, p, q,
                                                                       log_eps, compiled)
        else:
            # All rows, masked; the backward recomputes u from the logits.
            y = torch.where(foreground, labels, 0)  # background rows: any class, masked out
            row_loss, t, _ = _masked_kernels(compiled)[0](logits.narrow(1, 0, num_classes), y, log_counts, p, q,
                                                          log_eps)
            loss_classes = torch.where(foreground, row_loss, 0.0).sum()
            kept = (logits, y, log_counts, t, foreground)
        loss_classes = loss_classes / num_rois
        loss_objectness, unit_grad_objectness = _objectness_loss_and_grad(logits[:, -2:], ~foreground, num_rois)
        ctx.save_for_backward(unit_grad_objectness, *kept)
        ctx.num_rois, ctx.num_classes = num_rois, num_classes
        ctx.p, ctx.q, ctx.compiled, ctx.compact_rows = p, q, compiled, compact_rows
        return loss_classes, loss_objectness

    @staticmethod
    def backward(ctx, grad_classes, grad_objectness):
        unit_grad_objectness, *kept = ctx.saved_tensors
        num_rois, num_classes = ctx.num_rois, ctx.num_classes
        grad_o = unit_grad_objectness * grad_objectness
        row_scale = grad_classes / num_rois
        if ctx.compact_rows:
            rows, y, log_prob_u = kept
            grad_z = ctx.gradient_kernel(log_prob_u, y, row_scale)
            grad_logits = grad_o.new_zeros((num_rois, num_classes + 2))
            grad_logits.narrow(1, 0, num_classes).index_put_((rows,), grad_z)
            grad_logits[:, num_classes:] = grad_o
        else:
            logits, y, log_counts, t, foreground = kept
            grad_z = _masked_kernels(ctx.compiled)[1](logits[:, :num_classes], y, log_counts, t,
                                                      torch.where(foreground, row_scale, 0.0), ctx.p, ctx.q)
            grad_logits = torch.cat([grad_z, grad_o], dim=1)
        return grad_logits, None, None, None, None, None, None, None


def seesaw_terms(logits: Tensor, labels: Tensor, log_counts: Tensor, p: float = 0.8, q: float = 2.0,
                 eps: float = 1e-2, compiled: Optional[bool] = None,
                 compact_rows: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
    """Seesaw class and objectness terms, each summed over RoIs and divided by N.

    Args:
        logits: (N, C + 2) float32 or float64: C class logits, then objectness (foreground,
            background).
        labels: (N,) int64 in [0, C]; C is background. Not checked here.
        log_counts: (C,) log of the accumulated per-class counts, clamped at 1 before the log,
            in the dtype of logits.
        p, q, eps: mitigation exponent, compensation exponent, lower clamp of sigma_y.
        compiled: run the class kernels through `torch.compile`: with compact rows, the fused
            kernels of seesaw_terms_cpu (eager where they cannot be built), else
            the masked kernels compiled. Default: with compact rows.
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
    if compiled is None:
        compiled = compact_rows
    return _SeesawFunction.apply(logits, labels, log_counts, float(p), float(q), math.log(eps),
                                 bool(compiled), bool(compact_rows))
