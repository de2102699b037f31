"""Equalization Loss (Tan et al., "Equalization Loss for Long-Tailed Object Recognition", CVPR 2020).

As the authors wrote it (tztztztztz/eql.detectron2, projects/EQL/eql/fast_rcnn.py): sigmoid
cross-entropy over num_classes logits, no background logit; a background RoI's target is all
zeros. For a foreground RoI the negative term of every rare class is dropped:

    L = 1/N sum_i sum_j w_ij BCE(z_ij, y_ij),
    w_ij = 1 - E(r_i) T_lambda(f_j) (1 - y_ij),  E(r) = 1 for foreground RoIs, 0 for background,
    T_lambda(f) = 1 if f < lambda,               f_j = image count of class j / training images.

The classifier bias starts at prior probability 0.001 (`initial_logit_bias`), and inference scores
are the class sigmoids with a zero background column appended, as the authors' code does.
Computed in closed form (suite.losses.kernels.sigmoid_loss_sum).
"""

import math
from typing import Sequence

from torch import Tensor

from .checks import check_finite_params
from .class_freq import check_class_freq
from .kernels.sigmoid_loss_sum import sigmoid_loss_sum
from .sigmoid import SigmoidClassificationLoss, zero_background_scores

#: The frequency threshold lambda of the paper and its code for each LVIS version.
LAMBDA_LVIS_V05 = 1.76e-3
LAMBDA_LVIS_V1 = 1.1e-3
#: The authors' initial sigmoid probability of every class ("roughly 1 / num_classes").
EQL_PRIOR_PROBABILITY = 0.001


class EqualizationLoss(SigmoidClassificationLoss):
    """EQL over num_classes logits. Term: `loss_cls`.

    Args:
        num_classes: foreground classes.
        class_freq: (num_classes,) fraction of training images that contain each class (LVIS
            `image_count` / number of training images). Required.
        lambda_: frequency threshold below which a class counts as rare (LVIS v1: 1.1e-3).
    """

    name = "eql"
    initial_logit_bias = math.log(EQL_PRIOR_PROBABILITY / (1 - EQL_PRIOR_PROBABILITY))
    needs_class_freq = True
    config_node = "EQL"
    config_keys = {"LAMBDA": "lambda_"}

    def __init__(self, num_classes: int, class_freq: Sequence[float] = None, lambda_: float = LAMBDA_LVIS_V1):
        super().__init__(num_classes)
        check_finite_params(self.name, lambda_=lambda_)
        class_freq = check_class_freq(self.name, class_freq, num_classes)
        self.lambda_ = float(lambda_)
        # 1 for the rare classes whose negative gradient foreground RoIs drop.
        self.register_buffer("rare", class_freq < self.lambda_, persistent=False)

    def _sum(self, logits: Tensor, labels: Tensor) -> Tensor:
        return sigmoid_loss_sum(logits, labels, self.num_classes, dropped_columns=self.rare)

    def _scores(self, logits: Tensor) -> Tensor:
        return zero_background_scores(logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_={self.lambda_}, rare_classes={int(self.rare.sum())}"
