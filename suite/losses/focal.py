"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

from torch import Tensor

from .checks import check_finite_params
from .kernels.sigmoid_loss_sum import PRIOR_LOGIT_BIAS, sigmoid_loss_sum
from .sigmoid import SigmoidClassificationLoss, independent_background_scores


class SigmoidFocalLoss(SigmoidClassificationLoss):
    """Per-class sigmoid focal loss over num_classes logits; background is the all-zero target.

    FL = -alpha_t (1 - p_t)^gamma log(p_t), summed over classes and RoIs, divided by N.
    alpha weights the positive targets and 1 - alpha the negative ones (alpha < 0 disables the
    weighting). Defaults alpha = 0.25, gamma = 2.0, as in the paper. Term: `loss_cls`.
    Computed in closed form (suite.losses.kernels.sigmoid_loss_sum).
    """

    name = "focal"
    initial_logit_bias = PRIOR_LOGIT_BIAS
    config_node = "FOCAL"
    config_keys = {"ALPHA": "alpha", "GAMMA": "gamma"}

    def __init__(self, num_classes: int, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__(num_classes)
        check_finite_params(self.name, alpha=alpha, gamma=gamma)
        if gamma < 0:
            raise ValueError(f"focal: gamma must be >= 0, got {gamma}")
        if alpha > 1:
            raise ValueError(f"focal: alpha must be <= 1 (negative disables it), got {alpha}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def _sum(self, logits: Tensor, labels: Tensor) -> Tensor:
        w_pos, w_neg = (self.alpha, 1 - self.alpha) if self.alpha >= 0 else (1.0, 1.0)
        return sigmoid_loss_sum(logits, labels, self.num_classes, w_pos=w_pos, w_neg=w_neg, gamma=self.gamma)

    def _scores(self, logits: Tensor) -> Tensor:
        return independent_background_scores(logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, gamma={self.gamma}"
