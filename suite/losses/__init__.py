"""Classification losses for the box head, one interface (see `base.ClassificationLoss`).

    loss = build_loss("seesaw", num_classes=1203)
    terms = loss(logits, labels)        # logits (N, loss.num_logits), labels (N,) in [0, 1203]
    probs = loss.scores(logits)         # (N, 1204), background last
"""

import inspect
from typing import Any, Dict, Mapping, Type

from .base import ClassificationLoss
from .ce import CrossEntropyLoss
from .eql import LAMBDA_LVIS_V05, LAMBDA_LVIS_V1, EqualizationLoss
from .eqlv2 import EqualizationLossV2
from .fed import FederatedLoss
from .focal import SigmoidFocalLoss
from .seesaw import SeesawLoss
from .seesaw_official import OfficialSeesawLoss
from .sigmoid import SigmoidClassificationLoss

LOSSES: Dict[str, Type[ClassificationLoss]] = {
    cls.name: cls for cls in (
        CrossEntropyLoss, SigmoidFocalLoss, EqualizationLoss, EqualizationLossV2, FederatedLoss, SeesawLoss)
}
# Reference implementations: trainable like LOSSES, but not part of the suite's own set (no
# benchmark limits or property tests of their own; they are what ours is checked against).
REFERENCE_LOSSES: Dict[str, Type[ClassificationLoss]] = {OfficialSeesawLoss.name: OfficialSeesawLoss}


def trainable_losses() -> Dict[str, Type[ClassificationLoss]]:
    """Every loss `build_loss` (and so `suite train`) accepts: LOSSES and REFERENCE_LOSSES."""
    return {**LOSSES, **REFERENCE_LOSSES}


def build_loss(name: str, num_classes: int, **params) -> ClassificationLoss:
    """Build the loss called `name` (a name of LOSSES or REFERENCE_LOSSES) for `num_classes`
    foreground classes, with its own keyword parameters (see each class)."""
    known = trainable_losses()
    if name not in known:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(known))}")
    try:
        return known[name](num_classes, **params)
    except TypeError as error:  # an unknown or missing keyword argument
        raise ValueError(f"{name}: bad parameters {sorted(params)}: {error}") from None


def params_with_defaults(name: str, params: Mapping[str, Any]) -> Dict[str, Any]:
    """The keyword parameters loss `name` is built with from `params`: every one of its
    constructor's, `params`' value or else the default (e.g. Seesaw's {"p", "q", "eps",
    "compiled"}), without `class_freq`, which is data, not a setting. What a run record lists."""
    signature = inspect.signature(trainable_losses()[name].__init__)
    defaults = {parameter.name: parameter.default for parameter in signature.parameters.values()
                if parameter.default is not inspect.Parameter.empty}
    merged = {**defaults, **params}
    merged.pop("class_freq", None)
    return merged


__all__ = [
    "LOSSES", "REFERENCE_LOSSES", "trainable_losses", "build_loss", "params_with_defaults", "OfficialSeesawLoss",
    "ClassificationLoss", "SigmoidClassificationLoss", "CrossEntropyLoss", "SigmoidFocalLoss",
    "EqualizationLoss", "EqualizationLossV2", "FederatedLoss", "SeesawLoss", "LAMBDA_LVIS_V05", "LAMBDA_LVIS_V1",
]
