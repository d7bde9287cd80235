"""Normalisation layers: frozen batch norm, group norm, a factory, and folding frozen BN into convs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from objdet.errors import ConfigError

NORM_KINDS = ("BN", "FrozenBN", "GN")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, so nothing trains).

    Buffer names are torchvision's (``weight``, ``bias``, ``running_mean``, ``running_var``) so its
    state dicts load directly; a ``num_batches_tracked`` entry in a loaded state dict is ignored.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """The per-channel affine map ``y = x * scale + shift`` this layer applies."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def make_norm(kind: str | None, channels: int, groups: int = 32, eps: float = 1e-5) -> nn.Module:
    """Build the norm layer named ``kind`` ("BN" | "FrozenBN" | "GN" | None for identity) with ``eps``."""
    if kind is None:
        return nn.Identity()
    if kind == "BN":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=eps)
    if kind == "GN":
        if channels % groups:
            raise ConfigError(f"GroupNorm needs channels ({channels}) divisible by groups ({groups})",
                              record="norm")
        return nn.GroupNorm(groups, channels, eps=eps)
    raise ConfigError(f"unknown norm {kind!r}; choose one of {NORM_KINDS} or None", record="norm")


def fold_frozen_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))``: the BN's affine map folded into weight and bias."""
    scale, shift = bn.scale_and_shift()
    # torch types Conv2d's normalised sizes as tuple[int, ...] (shared with Conv1d/3d); they are pairs here
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                       conv.padding, conv.dilation, conv.groups, bias=True,  # type: ignore[arg-type]
                       padding_mode=conv.padding_mode, device=conv.weight.device,
                       dtype=conv.weight.dtype)
    assert folded.bias is not None  # built with bias=True
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
        folded.bias.copy_(bias * scale + shift)
    folded.weight.requires_grad_(conv.weight.requires_grad)
    return folded


def fold_frozen_batchnorms(module: nn.Module) -> nn.Module:
    """Fold every FrozenBatchNorm2d registered right after a Conv2d into it, in place (for inference).

    Relies on the convention that a norm is registered directly after the conv it follows (as in
    torchvision's ResNet blocks and in ``nn.Sequential``); the folded BN becomes ``nn.Identity``.
    """
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, FrozenBatchNorm2d)
                    and bn.num_features == conv.out_channels):
                setattr(parent, conv_name, fold_frozen_bn(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return module
