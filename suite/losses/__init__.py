"""Classification losses for the box head, one interface (see `base.ClassificationLoss`).

    loss = build_loss("seesaw", num_classes=1203)
    terms = loss(logits, labels)        # logits (N, loss.num_logits), labels (N,) in [0, 1203]
    probs = loss.scores(logits)         # (N, 1204), background last
"""

from typing import Dict, Type

from .base import ClassificationLoss
from .ce import CrossEntropyLoss
from .eql import LAMBDA_LVIS_V05, LAMBDA_LVIS_V1, EqualizationLoss
from .focal import SigmoidFocalLoss
from .seesaw import SeesawLoss

LOSSES: Dict[str, Type[ClassificationLoss]] = {
    cls.name: cls for cls in (CrossEntropyLoss, SigmoidFocalLoss, EqualizationLoss, SeesawLoss)
}


def build_loss(name: str, num_classes: int, **params) -> ClassificationLoss:
    """Build the loss called `name` ("ce", "focal", "eql", "seesaw") for `num_classes` foreground
    classes, with its own keyword parameters (see each class)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](num_classes, **params)
    except TypeError as error:  # an unknown or missing keyword argument
        raise ValueError(f"{name}: bad parameters {sorted(params)}: {error}") from None


__all__ = [
    "LOSSES", "build_loss", "ClassificationLoss", "CrossEntropyLoss", "SigmoidFocalLoss",
    "EqualizationLoss", "SeesawLoss", "LAMBDA_LVIS_V05", "LAMBDA_LVIS_V1",
]
