"""Accumulated positive and negative classification gradient per class: the imbalance that
motivates Seesaw (a rare class receives far more negative gradient, from the samples of other
classes, than positive gradient from its own). Pure torch; the box predictor calls `observe`.

Conventions (Detectron2's): `num_classes` foreground classes, labels int64 in [0, num_classes],
num_classes is background. For every loss of the suite the first num_classes logit columns are
the class logits (CE adds a background column, EQLv2 an objectness column, Seesaw an objectness
pair; focal, EQL and the federated loss have none), so only those are observed.
"""

from typing import Dict, List

import torch
import torch.distributed as dist
from torch import Tensor, nn


class GradientBalance(nn.Module):
    """Per foreground class j, over every observed batch:

        pos_grad[j] = sum over RoIs labelled j          of |dL/dz_j|
        neg_grad[j] = sum over RoIs with another label  of |dL/dz_j|   (background RoIs included)

    accumulated in float64 buffers (num_classes,), with no host sync during training. As a
    submodule of the box predictor the buffers follow the model's device and are saved in its
    checkpoints, so a resumed run continues its sums. Each process sums its own batches;
    `as_record(all_ranks=True)` adds up the processes of a distributed run.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.register_buffer("pos_grad", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(num_classes, dtype=torch.float64))

    def observe(self, class_logits: Tensor, labels: Tensor) -> None:
        """Register a hook on `class_logits` ((N, >= num_classes) float, requires grad) that adds
        this batch's gradient to the sums when backward reaches it. `labels`: (N,) int64."""
        if not isinstance(class_logits, Tensor) or class_logits.dim() != 2 or class_logits.shape[1] < self.num_classes:
            raise ValueError(f"class_logits must be (N, >= {self.num_classes}), got "
                             + (str(tuple(class_logits.shape)) if isinstance(class_logits, Tensor) else repr(type(class_logits))))
        if not class_logits.requires_grad:
            raise ValueError("class_logits must require grad: the balance is read from its gradient")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.int64 \
                or labels.shape[0] != class_logits.shape[0]:
            raise ValueError(f"labels must be a 1-D int64 tensor of {class_logits.shape[0]} entries, got "
                             + (f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else repr(type(labels))))
        foreground = torch.nonzero(labels.detach() < self.num_classes).squeeze(1)
        own_class = labels.detach()[foreground]

        def accumulate(grad: Tensor) -> None:
            magnitude = grad[:, : self.num_classes].detach().abs().to(torch.float64)  # (N, C)
            # Each foreground RoI's gradient on its own class logit (no (N, C) one-hot).
            pos = torch.zeros_like(self.pos_grad).index_add_(0, own_class, magnitude[foreground, own_class])
            self.pos_grad += pos
            self.neg_grad += magnitude.sum(dim=0) - pos

        class_logits.register_hook(accumulate)

    def as_record(self, all_ranks: bool = False) -> Dict[str, List]:
        """The run record's `grad_balance` (docs/records.md): class_ids are the labels 0..C-1.

        all_ranks: when torch.distributed is initialised, sum the sums of every process (a
        collective: every rank must call it); the module's own buffers are left as they are."""
        sums = torch.stack([self.pos_grad, self.neg_grad])
        if all_ranks and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        pos_grad, neg_grad = sums.cpu().tolist()
        return {"class_ids": list(range(self.num_classes)), "pos_grad": pos_grad, "neg_grad": neg_grad}
