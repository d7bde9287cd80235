"""ResNet-18/34/50/101 trunks (torchvision's classification ResNet) returning C2..C5 feature maps.

Parameter names are torchvision's under ``body.`` (``body.conv1``, ``body.bn1``, ``body.layer1`` ...),
exactly the keys torchvision's detection models use under ``backbone.body.``, so checkpoint
converters only swap prefixes. The classifier (``fc``) and global pool are removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from objdet import fused
from objdet.errors import CheckpointError, ConfigError
from objdet.norm import make_norm

DEPTHS = {18: tv_resnet.resnet18, 34: tv_resnet.resnet34, 50: tv_resnet.resnet50,
          101: tv_resnet.resnet101}
# torchvision's trainable_layers order: the last N of these train, the rest are frozen
_STAGES_FROM_TOP = ("layer4", "layer3", "layer2", "layer1", "conv1")


def imagenet_state(source: str | Path, depth: int) -> dict[str, Tensor]:
    """torchvision's ImageNet weights of ResNet-`depth` without the classifier: `"imagenet"` is the published file
    (IMAGENET1K_V1, through torch.hub's cache), anything else a local file."""
    from torchvision.models import get_model_weights

    from objdet.hub import fetch

    if source == "imagenet":
        url = get_model_weights(f"resnet{depth}")["IMAGENET1K_V1"].url
        source = fetch(url, f"torchvision's ImageNet ResNet-{depth} weights")
    path = Path(source)
    if not path.is_file():
        raise CheckpointError("file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / unsafe files
        raise CheckpointError(f"cannot read as a weights-only checkpoint ({exc})", path=path) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError("not a state dict of tensors", path=path)
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def check_fits(module: nn.Module, state: Mapping[str, Tensor], origin: object) -> dict[str, Tensor]:
    """`state` ready to load into `module` if it fits exactly (num_batches_tracked aside); otherwise a
    CheckpointError naming the first offending key."""
    own = module.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"shape {tuple(value.shape)} does not fit the trunk's {tuple(own[key].shape)}",
                                  path=origin, record=key)
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    problems = [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
    if problems:
        raise CheckpointError("does not fit the trunk: " + ", ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""),
                              path=origin, record=(missing + unexpected)[0])
    return state


def load_checked(module: nn.Module, state: Mapping[str, Tensor], origin: object) -> None:
    """Load `state` into `module` only if it fits exactly (`check_fits`); nothing is loaded otherwise."""
    module.load_state_dict(check_fits(module, state, origin), strict=False)


def load_imagenet_weights(body: nn.Module, source: str | Path, depth: int = 50) -> None:
    """Load ImageNet weights (`"imagenet"` or a local torchvision-style file) into a ResNet body; stages the body
    does not have (res5 of the C4 trunk) are left out. Raises CheckpointError naming the file and the key."""
    state = imagenet_state(source, depth)
    stages = {name for name, _ in body.named_children()}
    load_checked(body, {k: v for k, v in state.items() if k.split(".")[0] in stages}, source)


def resnet_body(depth: int, norm: str, frozen_bn_eps: float = 1e-5,
                weights: str | Path | None = None) -> tv_resnet.ResNet:
    """torchvision's ResNet of `depth` with `norm` layers and no classifier; ImageNet `weights` (a local .pth)
    loaded when given."""
    if depth not in DEPTHS:
        raise ConfigError(f"unknown ResNet depth {depth}; choose one of {sorted(DEPTHS)}", record="depth")
    eps = frozen_bn_eps if norm == "FrozenBN" else 1e-5
    body = DEPTHS[depth](weights=None, norm_layer=partial(make_norm, norm, eps=eps))
    del body.fc, body.avgpool
    if weights is not None:
        load_imagenet_weights(body, weights, depth)
    return body


def res5_stage(depth: int, norm: str, frozen_bn_eps: float = 1e-5, weights: str | Path | None = None,
               trainable: bool = True) -> nn.Module:
    """The res5 stage of a ResNet (`layer4`), on its own: the C4 detector's RoI head runs it on pooled RoIs."""
    stage = resnet_body(depth, norm, frozen_bn_eps, weights).layer4
    stage.requires_grad_(trainable)
    return stage


class ResNetBackbone(nn.Module):
    """ResNet trunk: ``forward(x) -> {"C2": stride 4, .., "C5": stride 32}``; ``out_channels`` per key.

    ``norm`` is "BN" | "FrozenBN" | "GN"; ``trainable_layers`` (0..5) follows torchvision: the last
    N of (conv1, layer1..layer4) train and the rest are frozen (5 also trains the stem's norm).
    ``weights`` is an optional local ImageNet ``.pth`` (torchvision key names); ``frozen_bn_eps`` is the
    eps of FrozenBN layers (torchvision runs its released v1 detection weights with 0). ``top_level`` 4
    ends the trunk at res4 (the C4 detector, whose RoI head is res5) and returns C2..C4.
    """

    def __init__(self, depth: int = 50, norm: str = "FrozenBN", trainable_layers: int = 3,
                 weights: str | Path | None = None, frozen_bn_eps: float = 1e-5, top_level: int = 5):
        super().__init__()
        if not 0 <= trainable_layers <= 5:
            raise ConfigError(f"trainable_layers must be in 0..5, got {trainable_layers}",
                              record="trainable_layers")
        if top_level not in (4, 5):
            raise ConfigError(f"a ResNet trunk ends at C4 or C5, not C{top_level}", record="top_level")
        body = resnet_body(depth, norm, frozen_bn_eps, weights)
        if top_level == 4:
            del body.layer4
        trainable = list(_STAGES_FROM_TOP[:trainable_layers])
        if trainable_layers == 5:
            trainable.append("bn1")
        for name, param in body.named_parameters():
            if not name.startswith(tuple(trainable)):
                param.requires_grad_(False)
        self.body = body
        self.depth = depth
        width = 64 if depth < 50 else 256
        self.out_channels = {f"C{i + 2}": width * 2 ** i for i in range(top_level - 1)}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        b = self.body
        fast = fused.active(self, x)
        x = b.maxpool(fused.conv(x, b.conv1, b.bn1, b.relu) if fast else b.relu(b.bn1(b.conv1(x))))
        features = {}
        for level, stage in zip(self.out_channels, (b.layer1, b.layer2, b.layer3, getattr(b, "layer4", None))):
            if fast:
                for block in stage:
                    x = fused_block(block, x)
                features[level] = x
            else:
                x = features[level] = stage(x)
        return features


def fused_block(block: tv_resnet.BasicBlock | tv_resnet.Bottleneck, x: Tensor) -> Tensor:
    """torchvision's Bottleneck or BasicBlock in eval mode as fused calls: each conv with its norm folded and
    its ReLU, the last one with the residual sum too (`objdet.fused`)."""
    down = block.downsample
    identity = x if down is None else fused.conv(x, down[0], down[1] if len(down) > 1 else None)
    out = fused.conv(x, block.conv1, block.bn1, block.relu)
    if hasattr(block, "conv3"):
        out = fused.conv(out, block.conv2, block.bn2, block.relu)
        return fused.conv(out, block.conv3, block.bn3, block.relu, residual=identity)
    return fused.conv(out, block.conv2, block.bn2, block.relu, residual=identity)
