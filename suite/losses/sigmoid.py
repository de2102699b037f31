"""Helpers shared by the losses that score each class with its own sigmoid."""

import torch
import torch.nn.functional as F
from torch import Tensor


def one_hot_targets(labels: Tensor, num_columns: int, dtype: torch.dtype) -> Tensor:
    """(N,) labels -> (N, num_columns) 0/1 targets; a label >= num_columns gives an all-zero row."""
    columns = torch.arange(num_columns, device=labels.device)
    return (labels[:, None] == columns[None, :]).to(dtype)


def independent_background_scores(class_logits: Tensor) -> Tensor:
    """(N, C) sigmoid logits -> (N, C + 1): each class's sigmoid, then the probability that no
    class is present if the classes are independent, prod_j (1 - sigmoid(z_j)), last."""
    background = F.logsigmoid(-class_logits).sum(dim=1, keepdim=True).exp()
    return torch.cat([torch.sigmoid(class_logits), background], dim=1)
