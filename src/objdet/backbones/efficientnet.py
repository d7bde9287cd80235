"""EfficientNet trunks (B0..B7, and the `tf_` variants with TensorFlow "same" padding) through timm."""

from __future__ import annotations

from typing import cast

import timm
import torch
from timm.models import FeatureInfo
from torch import nn

from objdet import fused
from objdet.errors import CheckpointError, ConfigError


class EfficientNetBackbone(nn.Module):
    """A timm EfficientNet cut at strides 8, 16, 32; returns {"C3", "C4", "C5"} as the backbone contract asks."""

    def __init__(self, name: str = "efficientnet_b0", drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if "efficientnet" not in name:
            raise ConfigError(f"not an EfficientNet trunk: {name!r}")
        try:
            self.body = timm.create_model(name, features_only=True, out_indices=(2, 3, 4),
                                          pretrained=False, drop_path_rate=drop_path_rate)
        except RuntimeError as err:  # timm's "Unknown model" error
            raise ConfigError(f"unknown EfficientNet trunk {name!r}: {err}") from None
        self.name = name
        # timm types create_model as returning nn.Module; a features_only trunk carries its FeatureInfo
        channels = cast(FeatureInfo, self.body.feature_info).channels()
        self.out_channels = {f"C{level}": c for level, c in zip((3, 4, 5), channels)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.body.parameters())
        body = fused.folded_copy(self.body) if fused.active(self, x) and not needs_grad else self.body
        return dict(zip(self.out_channels, body(x)))

    def imagenet_state(self) -> dict[str, torch.Tensor]:
        """The trunk's ImageNet weights through timm's own mechanism (its pretrained tag and Hugging Face cache)."""
        try:
            pretrained = timm.create_model(self.name, features_only=True, out_indices=(2, 3, 4), pretrained=True)
        except Exception as err:  # timm raises hub, HTTP and OS errors alike when it cannot fetch
            raise CheckpointError(f"timm cannot load ImageNet weights for {self.name} ({type(err).__name__}: {err}); "
                                  "on a machine without network, give the downloaded file as a path") from None
        return pretrained.state_dict()
