"""RetinaNet subnets: a stack of 3x3 convs (+ optional GroupNorm) + ReLU and a 3x3 predictor, shared by all levels."""

from __future__ import annotations

import math

import torch
from torch import nn

from objdet.layers import conv_stack


class RetinaSubnet(nn.Module):
    """One RetinaNet subnet (classification or box); the two subnets of a detector share no parameters.

    Returns one map per level of shape [B, num_anchors * num_outputs, H, W], channels ordered
    (anchor, output). `prior_prob` sets the predictor bias so every sigmoid starts at pi (the seed's
    class-imbalance initialisation); without it the bias starts at zero.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_outputs: int, depth: int = 4,
                 norm: str | None = None, prior_prob: float | None = None) -> None:
        super().__init__()
        self.convs = conv_stack(in_channels, in_channels, depth, norm)
        self.predict = nn.Conv2d(in_channels, num_anchors * num_outputs, 3, padding=1)
        self.output_params = ("predict.weight", "predict.bias")  # dim 0: (anchor, output) channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if prior_prob is not None:
            nn.init.constant_(self.predict.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.predict(self.convs(x)) for x in features]
