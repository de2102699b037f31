"""The interface every classification loss of the suite implements.

Conventions (Detectron2's): `num_classes` foreground classes, labels are int64 in
`[0, num_classes]` and the label `num_classes` is background. A loss owns the meaning of the
classifier's output: it says how many logits it needs (`num_logits`), turns them into named loss
terms (summed over RoIs and divided by N, the number of all sampled RoIs), and into probabilities
for inference (`scores`, background last).
"""

from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from .checks import fail_on_out_of_range_labels


def _compute_dtype(logits: Tensor) -> torch.dtype:
    """float32 for half-precision logits (autocast), float64 kept for gradient checks."""
    return torch.promote_types(logits.dtype, torch.float32)


class ClassificationLoss(nn.Module):
    """Base class: input checks, float32 computation under autocast, generic accuracies.

    Subclasses set `name`, implement `num_logits`, `_terms(logits, labels)` (logits already
    checked, float32 or float64) and `_scores(logits)`.
    """

    name: str = ""
    #: The bias a classifier should start its logits from. 0 for the softmax losses; the
    #: sigmoid losses start every class at a small prior probability instead (see sigmoid_loss_sum).
    initial_logit_bias: float = 0.0
    # What the loss declares for those who build it from a config and record it (the plugin's
    # config and predictor, the benchmarks, the run record):
    #: whether its constructor takes `class_freq`, (num_classes,) the fraction of training images
    #: holding each class: data the plugin reads from the training set's metadata, not a setting;
    needs_class_freq: bool = False
    #: its node under MODEL.ROI_BOX_HEAD in a Detectron2 yaml config (None: no parameters) and the
    #: node's keys, KEY -> constructor parameter; the node's defaults are the constructor's;
    config_node: Optional[str] = None
    config_keys: Mapping[str, str] = {}
    #: the parameters that choose how it is computed, not what (the same values either way): its
    #: entry of suite.schema.IMPLEMENTATION_PARAMS, which the report reads without importing torch.
    implementation_params: Tuple[str, ...] = ()

    def __init__(self, num_classes: int):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        # Check that labels lie in [0, num_classes]: one host sync per call on CUDA. A caller
        # whose labels are valid by construction (Detectron2's matcher) may turn it off.
        self.check_labels = True

    @property
    def num_logits(self) -> int:
        """How many logits per RoI the classifier must output for this loss."""
        raise NotImplementedError

    def forward(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Classification loss terms.

        Args:
            logits: (N, num_logits) float tensor, any float dtype.
            labels: (N,) int64 in [0, num_classes]; num_classes is background.

        Returns:
            dict of named float32 (float64 for float64 logits) scalars whose sum is the classification loss. An empty batch
            (N = 0) gives zeros that are still connected to `logits`.
        """
        self.check_inputs(logits, labels)
        with torch.autocast(logits.device.type, enabled=False):
            return self._terms(logits.to(_compute_dtype(logits)), labels)

    @torch.no_grad()
    def scores(self, logits: Tensor) -> Tensor:
        """Probabilities for inference: (N, num_logits) -> (N, num_classes + 1), background last."""
        self.check_logits(logits)
        with torch.autocast(logits.device.type, enabled=False):
            return self._scores(logits.to(_compute_dtype(logits)))

    @torch.no_grad()
    def accuracies(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Training statistics: `cls_accuracy` over all RoIs and `fg_cls_accuracy` over the
        foreground ones (NaN when there is none), from the argmax of `scores`."""
        self.check_inputs(logits, labels)
        predicted = self.scores(logits).argmax(dim=1)
        correct = (predicted == labels).float()
        fg = labels < self.num_classes
        return {
            "cls_accuracy": correct.mean(),
            "fg_cls_accuracy": correct[fg].mean(),
        }

    def check_logits(self, logits: Tensor) -> None:
        if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() != 2:
            raise ValueError(
                f"{self.name}: logits must be a 2-D float tensor (N, {self.num_logits}), got "
                + (f"{tuple(logits.shape)} {logits.dtype}" if isinstance(logits, Tensor) else repr(type(logits)))
            )
        if logits.shape[1] != self.num_logits:
            raise ValueError(
                f"{self.name}: logits have {logits.shape[1]} columns but this loss needs "
                f"num_logits = {self.num_logits} for num_classes = {self.num_classes}"
            )

    def check_inputs(self, logits: Tensor, labels: Tensor) -> None:
        """Raise ValueError naming the problem for a bad shape, dtype or label value.

        The label range check (skipped when `check_labels` is False) reads two numbers back from
        the device: one host sync on CUDA.
        """
        self.check_logits(logits)
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
            raise ValueError(
                f"{self.name}: labels must be a 1-D int64 tensor, got "
                + (f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else repr(type(labels)))
            )
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"{self.name}: logits have N = {logits.shape[0]} rows but labels have {labels.shape[0]}"
            )
        if self.check_labels and labels.numel():
            low, high = torch.stack(torch.aminmax(labels)).tolist()
            if low < 0 or high > self.num_classes:
                raise ValueError(
                    f"{self.name}: labels must lie in [0, {self.num_classes}] ({self.num_classes} is "
                    f"background), got values in [{low}, {high}]"
                )
        elif labels.numel():  # unchecked: still no silent training on a bad label
            fail_on_out_of_range_labels(labels, self.num_classes)

    def _terms(self, logits: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        raise NotImplementedError

    def _scores(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_logits={self.num_logits}"
