"""Federated loss (Zhou et al., "Probabilistic two-stage detection", arXiv 2103.07461, 2021), as
Detectron2 computes it with `MODEL.ROI_BOX_HEAD.USE_FED_LOSS` (`get_fed_loss_classes` and
`sigmoid_cross_entropy_loss` of its FastRCNNOutputLayers).

Sigmoid cross-entropy over num_classes logits (a background RoI's target is all zeros), but only
over a subset S of the classes, drawn anew each step: every class present among the batch's labels,
plus classes drawn without replacement with probability proportional to freq^power until S holds
`num_sampled_classes` (when the batch has fewer present classes; background, when present, takes
one of the places, as in Detectron2):

    L = 1/N sum_i sum_{j in S} BCE(z_ij, y_ij).

The draw is the exponential race (Efraimidis and Spirakis 2006): key_j = E_j / w_j with E_j ~ Exp(1),
the smallest keys win. It gives the same distribution over S as Detectron2's successive
`torch.multinomial(..., replacement=False)`, with fixed shapes, so it stays on the device with no
host sync. Its random stream is seeded from (seed, rank, step), so a resumed run draws what the
uninterrupted run would (the step count travels in the state_dict).
"""

from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from .checks import check_finite_params
from .class_freq import check_class_freq
from .kernels.column_weighted_sigmoid_sum import column_weighted_sigmoid_sum
from .kernels.sigmoid_loss_sum import PRIOR_LOGIT_BIAS
from .sigmoid import SigmoidClassificationLoss, zero_background_scores


class FederatedLoss(SigmoidClassificationLoss):
    """Federated sigmoid cross-entropy over num_classes logits. Term: `loss_cls`.

    Args:
        num_classes: foreground classes.
        class_freq: (num_classes,) fraction of training images that contain each class (LVIS
            `image_count` / number of training images). Required. Only its ratios matter:
            Detectron2 weighs image_count^power, the same distribution.
        num_sampled_classes: size of S when the batch has fewer present classes (Detectron2's
            FED_LOSS_NUM_CLASSES, 50).
        freq_power: exponent of the sampling weights (FED_LOSS_FREQ_WEIGHT_POWER, 0.5).
        seed: seed of the draws (with the rank and the training step).

    State: the number of training steps drawn so far (`get_extra_state`, an int64 tensor (1,)); an
    empty batch draws nothing, as in Detectron2, whose loss returns before its draw.
    """

    name = "fed"
    initial_logit_bias = PRIOR_LOGIT_BIAS
    needs_class_freq = True
    config_node = "FED"
    config_keys = {"NUM_CLASSES": "num_sampled_classes", "FREQ_WEIGHT_POWER": "freq_power", "SEED": "seed"}

    def __init__(self, num_classes: int, class_freq: Sequence[float] = None, num_sampled_classes: int = 50,
                 freq_power: float = 0.5, seed: int = 0):
        super().__init__(num_classes)
        class_freq = check_class_freq(self.name, class_freq, num_classes)
        if not isinstance(num_sampled_classes, int) or isinstance(num_sampled_classes, bool) or num_sampled_classes < 1:
            raise ValueError(f"fed: num_sampled_classes must be a positive int, got {num_sampled_classes!r}")
        check_finite_params(self.name, freq_power=freq_power)
        if freq_power < 0:
            raise ValueError(f"fed: freq_power must be >= 0, got {freq_power!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"fed: seed must be an int >= 0, got {seed!r}")
        self.num_sampled_classes = num_sampled_classes
        self.freq_power = float(freq_power)
        self.seed = seed
        self.steps = 0
        self.register_buffer("sampling_weight", class_freq ** self.freq_power, persistent=False)

    def step_generator(self, device: torch.device) -> torch.Generator:
        """A generator on `device` seeded from (seed, rank, step): set on the host, no sync."""
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        seed = np.random.SeedSequence([self.seed, rank, self.steps]).generate_state(1, np.uint64)[0]
        return torch.Generator(device=device).manual_seed(int(seed) >> 1)

    def sample_classes(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        """(num_classes,) bool: the classes present in `labels` plus sampled ones, as above.

        As in Detectron2, background counts as a present class when the batch has background
        RoIs (its `torch.unique(gt_classes)` holds label num_classes), so it takes one of the
        `num_sampled_classes` places; it is never sampled and never in the loss."""
        present = torch.zeros(self.num_classes + 1, dtype=torch.bool, device=labels.device).index_fill(0, labels, True)
        weight = torch.cat([self.sampling_weight, self.sampling_weight.new_zeros(1)])  # background: never drawn
        race = torch.empty_like(weight).exponential_(generator=generator)
        keys = torch.where(weight > 0, race / weight, torch.inf).masked_fill(present, -torch.inf)
        kth_key = keys.kthvalue(min(self.num_sampled_classes, self.num_classes + 1)).values
        return (present | ((keys <= kth_key) & (weight > 0)))[: self.num_classes]

    def _sum(self, logits: Tensor, labels: Tensor) -> Tensor:
        selected = self.sample_classes(labels, self.step_generator(logits.device))
        if self.training:
            self.steps += 1
        column_weight = selected.to(logits.dtype)
        total, _ = column_weighted_sigmoid_sum(logits, labels, column_weight, column_weight)
        return total

    def _scores(self, logits: Tensor) -> Tensor:
        return zero_background_scores(logits)

    def get_extra_state(self) -> Tensor:
        return torch.tensor([self.steps], dtype=torch.int64)

    def set_extra_state(self, state: Tensor) -> None:
        self.steps = int(state.reshape(-1)[0])

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_sampled_classes={self.num_sampled_classes}, "
                f"freq_power={self.freq_power}, seed={self.seed}, steps={self.steps}")
