"""ImageNet weights for a detector's trunk (`backbone_weights=`, `--backbone-weights`): `"imagenet"` is
torchvision's published ResNet weights (through torch.hub's cache) or timm's for EfficientNet trunks (through
timm's own mechanism); anything else is a local file. Nothing is loaded unless all of it fits."""

from __future__ import annotations

import os
from typing import Mapping

from torch import Tensor, nn

from objdet.backbones.efficientnet import EfficientNetBackbone
from objdet.backbones.resnet import ResNetBackbone, check_fits, imagenet_state
from objdet.detectors.faster_rcnn import Res5Head
from objdet.errors import ConfigError


def _trunk_parts(model: nn.Module, source: str) -> list[tuple[nn.Module, Mapping[str, Tensor]]]:
    """(module, its part of the ImageNet state) for the trunk and, in the C4 detector, the res5 RoI head."""
    backbone = model.backbone
    if isinstance(backbone, ResNetBackbone):
        state = imagenet_state(source, backbone.depth)
        stages = {name for name, _ in backbone.body.named_children()}
        parts: list[tuple[nn.Module, Mapping[str, Tensor]]] = [
            (backbone.body, {k: v for k, v in state.items() if k.split(".")[0] in stages})]
        for module in model.modules():
            if isinstance(module, Res5Head):
                parts.append((module.res5, {k[len("layer4."):]: v for k, v in state.items() if k.startswith("layer4.")}))
        return parts
    if isinstance(backbone, EfficientNetBackbone):
        if source == "imagenet":
            state = backbone.imagenet_state()
        else:
            from objdet.weights.sources import read_state

            state = dict(read_state(source))
        own = backbone.body.state_dict()
        return [(backbone.body, {k: v for k, v in state.items() if k in own})]
    raise ConfigError(f"no ImageNet weights are known for a {type(backbone).__name__} trunk")


def load_backbone_weights(model: nn.Module, source: str | os.PathLike) -> str:
    """Load ImageNet weights into `model`'s trunk; returns a one-line summary."""
    source = os.fspath(source)
    parts = _trunk_parts(model, source)
    checked = [(module, check_fits(module, state, source)) for module, state in parts]  # all, before any loads
    for module, state in checked:
        module.load_state_dict(state, strict=False)
    count = sum(len(state) for _, state in parts)
    return f"backbone weights from {source}: {count} tensors loaded"
