"""EfficientDet class/box head: separable convs shared across pyramid levels, with a BatchNorm per level."""

from __future__ import annotations

import math

import torch
from torch import nn

from objdet.layers import SeparableConv2d, make_act, make_bn


class EffDetHead(nn.Module):
    """`depth` separable convs (weights shared by all levels, BN per level) then a separable predictor.

    Returns one map per level of shape [B, num_anchors * num_outputs, H, W], channels ordered
    (anchor, output) as effdet orders them.
    """

    def __init__(self, channels: int, num_outputs: int, num_anchors: int, depth: int, num_levels: int,
                 act: str = "silu", conv_bias: bool = False, prior_prob: float | None = None,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv2d(channels, channels, bias=conv_bias, bn=False) for _ in range(depth))
        self.norms = nn.ModuleList(
            nn.ModuleList(make_bn(channels, bn_eps, bn_momentum) for _ in range(num_levels)) for _ in range(depth)
        )
        self.act = make_act(act)
        self.predict = SeparableConv2d(channels, num_outputs * num_anchors, bias=True, bn=False)
        self.output_params = ("predict.pointwise.weight", "predict.pointwise.bias")  # dim 0: (anchor, output)
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float | None) -> None:
        """TF EfficientDet's head init: fan-in normal weights; the class bias at the prior -log((1-pi)/pi)."""
        for conv in [*self.convs, self.predict]:
            for m in (conv.depthwise, conv.pointwise):
                fan_in = m.weight[0].numel()
                nn.init.normal_(m.weight, std=math.sqrt(1.0 / fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if prior_prob is not None:
            nn.init.constant_(self.predict.pointwise.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for level, x in enumerate(features):
            for conv, norms in zip(self.convs, self.norms):
                x = conv(x, norms[level], self.act)
            outputs.append(self.predict(x))
        return outputs
