"""The building blocks heads and necks share: conv (+ norm) (+ activation), activations by name, and
EfficientDet's separable convolution with TensorFlow's BatchNorm defaults."""

from __future__ import annotations

import torch
from torch import nn

from objdet import fused
from objdet.errors import ConfigError
from objdet.norm import make_norm

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "swish": nn.SiLU, "relu6": nn.ReLU6}


def make_act(name: str, inplace: bool = False) -> nn.Module:
    """The activation named `name` (relu, silu / swish, relu6)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=inplace)


class ConvNormAct(nn.Sequential):
    """`kernel` x `kernel` conv, then `norm` (none, "BN", "FrozenBN", "GN"), then `act` (none or a name).

    Children are numbered 0 (conv), 1 (norm, when given), then the activation, the layout of
    torchvision's Conv2dNormActivation, so state-dict keys read `<block>.0.weight`, `<block>.1.weight`.
    With a norm the conv has no bias (the norm's shift replaces it). In eval mode the block runs as one fused
    call (`objdet.fused`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 norm: str | None = None, act: str | None = "relu") -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2,
                                             bias=norm is None)]
        if norm is not None:
            layers.append(make_norm(norm, out_channels))
        if act is not None:
            layers.append(make_act(act, inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels
        self.has_norm, self.has_act = norm is not None, act is not None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """`act(norm(conv(x)) + residual)`; one fused call in eval mode."""
        norm, act = self[1] if self.has_norm else None, self[-1] if self.has_act else None
        if fused.active(self, x):
            return fused.conv(x, self[0], norm, act, residual)
        if residual is None:
            return super().forward(x)
        y = self[0](x)
        y = (y if norm is None else norm(y)) + residual
        return y if act is None else act(y)


def conv_stack(in_channels: int, channels: int, depth: int, norm: str | None = None,
               act: str | None = "relu") -> nn.Sequential:
    """`depth` 3x3 ConvNormAct blocks, the first from `in_channels`, all to `channels` (the heads' towers)."""
    return nn.Sequential(*(ConvNormAct(in_channels if i == 0 else channels, channels, 3, norm=norm, act=act)
                           for i in range(depth)))


def make_bn(channels: int, eps: float = 1e-3, momentum: float = 0.01) -> nn.BatchNorm2d:
    """BatchNorm with TensorFlow's EfficientDet defaults (eps 1e-3, decay 0.99)."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 convolution, optionally followed by BatchNorm (EfficientDet)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False, bn: bool = True,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.bn = make_bn(out_channels, bn_eps, bn_momentum) if bn else None

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None, act: nn.Module | None = None) -> torch.Tensor:
        """`act(norm(bn(pointwise(depthwise(x)))))`, `norm` (a per-level BN of a shared head) and `act` optional;
        one fused call per conv in eval mode."""
        norm = self.bn if norm is None else norm
        if fused.active(self, x):
            return fused.conv(fused.conv(x, self.depthwise), self.pointwise, norm, act)
        x = self.pointwise(self.depthwise(x))
        if norm is not None:
            x = norm(x)
        return x if act is None else act(x)
