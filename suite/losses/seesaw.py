"""Seesaw Loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
arXiv 2008.10032), with the objectness branch of the official implementation."""

from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from suite.schema import IMPLEMENTATION_PARAMS

from .base import ClassificationLoss
from .checks import check_finite_params
from .kernels.seesaw_terms import seesaw_terms



def check_seesaw_params(loss_name: str, p: float, q: float, eps: float) -> None:
    """ValueError naming the parameter unless p, q >= 0 and eps > 0, all finite (for `seesaw` and
    `seesaw_official` alike)."""
    check_finite_params(loss_name, p=p, q=q, eps=eps)
    if p < 0 or q < 0:
        raise ValueError(f"{loss_name}: p and q must be >= 0, got p={p}, q={q}")
    if not eps > 0:
        raise ValueError(f"{loss_name}: eps must be > 0, got {eps}")

class SeesawLoss(ClassificationLoss):
    """Seesaw loss over num_classes + 2 logits: the class logits, then objectness
    (foreground, background).

    Terms: `loss_cls_classes` (Seesaw softmax over the class logits of the foreground RoIs) and
    `loss_cls_objectness` (2-way cross-entropy over all RoIs), each summed over RoIs and divided
    by N, all sampled RoIs, as the official box head does.

    State: `cum_samples`, a persistent int64 buffer of num_classes + 1 counts (background last):
    how many RoIs of each label the loss has seen in training. In training mode each forward adds
    the batch's labels first (summed over all ranks when torch.distributed is initialised, so
    every rank balances with the same global counts), then computes the loss. In eval mode the
    counts are frozen.

    Args:
        num_classes: foreground classes.
        p: mitigation exponent (0.8 in the paper); 0 turns mitigation off.
        q: compensation exponent (2.0 in the paper); 0 turns compensation off.
        eps: lower clamp of the true class's probability in the compensation factor (1e-2).
        compiled: run the class kernels through `torch.compile` (built once per process). None,
            the default: on the CPU, where the fused kernels keep their speed
            when other processes compete for the cores (seesaw_terms_cpu), and not on
            accelerators. False: the eager kernels, the same values.
    """

    name = "seesaw"
    config_node = "SEESAW"
    config_keys = {"P": "p", "Q": "q", "EPS": "eps", "COMPILED": "compiled"}
    implementation_params = IMPLEMENTATION_PARAMS[name]

    def __init__(self, num_classes: int, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 compiled: Optional[bool] = None):
        super().__init__(num_classes)
        check_seesaw_params(self.name, p, q, eps)
        self.p = float(p)
        self.q = float(q)
        self.eps = float(eps)
        self.compiled = None if compiled is None else bool(compiled)
        self.register_buffer("cum_samples", torch.zeros(num_classes + 1, dtype=torch.int64))

    @property
    def num_logits(self) -> int:
        return self.num_classes + 2

    @torch.no_grad()
    def update_counts(self, labels: Tensor) -> None:
        """Add the batch's label counts (summed over all ranks) to `cum_samples`, without a host sync."""
        batch_counts = torch.zeros_like(self.cum_samples)
        batch_counts.index_add_(0, labels, torch.ones_like(labels))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch_counts)
        self.cum_samples += batch_counts

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        if self.training:
            self.update_counts(labels)
        log_counts = self.cum_samples[: self.num_classes].clamp(min=1).to(logits.dtype).log()
        loss_classes, loss_objectness = seesaw_terms(
            logits, labels, log_counts, self.p, self.q, self.eps, compiled=self.compiled
        )
        return {"loss_cls_classes": loss_classes, "loss_cls_objectness": loss_objectness}

    def _scores(self, logits: Tensor) -> Tensor:
        class_probs = F.softmax(logits[:, :-2], dim=1)
        objectness = F.softmax(logits[:, -2:], dim=1)
        return torch.cat([class_probs * objectness[:, :1], objectness[:, 1:]], dim=1)

    @torch.no_grad()
    def accuracies(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """The official statistics, in percent as mmdet logs them: `acc_objectness` over all RoIs and
        `acc_classes` over the foreground RoIs (NaN when there is none), plus the base class's."""
        stats = super().accuracies(logits, labels)
        foreground = labels < self.num_classes
        class_hit = logits[:, :-2].argmax(dim=1) == labels
        objectness_hit = logits[:, -2:].argmax(dim=1) == (~foreground).long()
        stats["acc_classes"] = class_hit[foreground].float().mean() * 100
        stats["acc_objectness"] = objectness_hit.float().mean() * 100
        return stats

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}, q={self.q}, eps={self.eps}, compiled={self.compiled}"
