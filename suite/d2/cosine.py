"""The normalized (cosine) classifier and mask predictor of the official Seesaw configs (mmdet's
`NormedLinear` and `NormedConv2d`, temperature 20)."""

import torch.nn.functional as F
from torch import Tensor, nn


class CosineLinear(nn.Linear):
    """logits = scale * <x / |x|, w_k / |w_k|> + b_k: (N, in_features) -> (N, out_features).

    The official configs use scale (temperature) 20; eps keeps zero vectors finite."""

    def __init__(self, in_features: int, out_features: int, scale: float = 20.0, eps: float = 1e-6):
        super().__init__(in_features, out_features)
        self.scale = scale
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x_unit = x / (x.norm(dim=1, keepdim=True) + self.eps)
        weight_unit = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        return F.linear(x_unit * self.scale, weight_unit, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


class CosineConv2d(nn.Conv2d):
    """A 1x1 convolution over unit vectors: at each pixel, logits = scale * <x / |x|, w_k / |w_k|> + b_k,
    (N, in_channels, H, W) -> (N, out_channels, H, W), the norms taken over the channels.

    The mask predictor of the official "normed mask" Seesaw configs (NormedConv2d, temperature 20)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float = 20.0, eps: float = 1e-6):
        super().__init__(in_channels, out_channels, kernel_size=1)
        self.scale = scale
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x_unit = x / (x.norm(dim=1, keepdim=True) + self.eps)
        weight_unit = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        return self._conv_forward(x_unit * self.scale, weight_unit, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"
