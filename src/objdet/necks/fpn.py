"""Feature Pyramid Network: lateral 1x1 + top-down nearest upsampling + 3x3 output convs, P6/P7 extras.

Extra levels: "maxpool" (P6 = 1x1 max-pool stride 2 of P5, for the RPN), "p6p7" (P6 = 3x3 s2 conv
of C5, P7 = 3x3 s2 conv of ReLU(P6), RetinaNet paper) and "p6p7_p5" (the same convs fed P5 instead
of C5, as torchvision's RetinaNet v1 does, where its LastLevelP6P7 has in_channels == out_channels).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from objdet import fused
from objdet.errors import ConfigError
from objdet.layers import ConvNormAct

EXTRA_LEVELS = (None, "maxpool", "p6p7", "p6p7_p5")


class FPN(nn.Module):
    """FPN neck: ``{"C2": .., "C5": ..} -> {"P2": .., "P5": ..[, "P6"[, "P7"]]}``, fine to coarse.

    ``in_channels`` maps the input levels used (consecutive, e.g. C3..C5 for RetinaNet) to their
    channels; output level i comes from input level i. ``norm`` (None | "GN" | "BN" ...) follows
    each conv, which then has no bias (torchvision's Conv2dNormActivation layout).
    """

    def __init__(self, in_channels: Mapping[str, int], out_channels: int = 256,
                 extra: str | None = "maxpool", norm: str | None = None):
        super().__init__()
        if extra not in EXTRA_LEVELS:
            raise ConfigError(f"unknown FPN extra levels {extra!r}; choose one of {EXTRA_LEVELS}",
                              record="extra")
        self.in_keys = list(in_channels)
        numbers = [int(k[1:]) for k in self.in_keys]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise ConfigError(f"FPN input levels must be consecutive C-levels, got {self.in_keys}",
                              record="in_channels")
        self.lateral = nn.ModuleList(ConvNormAct(c, out_channels, 1, norm=norm, act=None)
                                     for c in in_channels.values())
        self.output = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, norm=norm, act=None)
                                    for _ in in_channels)
        self.extra = extra
        n_extra = {None: 0, "maxpool": 1}.get(extra, 2)
        self.out_keys = [f"P{n}" for n in range(numbers[0], numbers[-1] + 1 + n_extra)]
        self.out_channels = out_channels
        if extra in ("p6p7", "p6p7_p5"):
            p6_in = in_channels[self.in_keys[-1]] if extra == "p6p7" else out_channels
            self.p6 = nn.Conv2d(p6_in, out_channels, 3, stride=2, padding=1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        xs = [features[k] for k in self.in_keys]
        inner = self.lateral[-1](xs[-1])
        outs = [self.output[-1](inner)]
        fast = fused.active(self, inner)
        for i in range(len(xs) - 2, -1, -1):
            if fast:  # the upsampled map added inside the lateral conv's call
                inner = self.lateral[i](xs[i], residual=fused.upsample_nearest(inner, xs[i].shape[-2:]))
            else:
                lateral = self.lateral[i](xs[i])
                inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](inner))
        if self.extra == "maxpool":
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        elif self.extra is not None:
            p6 = self.p6(xs[-1] if self.extra == "p6p7" else outs[-1])
            outs += [p6, self.p7(F.relu(p6))]
        return dict(zip(self.out_keys, outs))


_TV_BLOCK = {"inner_blocks": "lateral", "layer_blocks": "output"}


def fpn_state_dict_from_torchvision(state_dict: Mapping[str, Tensor],
                                    prefix: str = "") -> dict[str, Tensor]:
    """Map the keys of a torchvision ``FeaturePyramidNetwork`` (those under ``prefix``) to ``FPN``'s.

    ``inner_blocks.i.*`` -> ``lateral.i.*``, ``layer_blocks.i.*`` -> ``output.i.*``,
    ``extra_blocks.p6/p7.*`` -> ``p6/p7.*``; old-format ``inner_blocks.i.weight`` (before
    torchvision wrapped convs in Conv2dNormActivation) -> ``lateral.i.0.weight``.
    For a detection checkpoint use ``prefix="backbone.fpn."``.
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split(".")
        block = parts[0]
        if block == "extra_blocks":
            out[".".join(parts[1:])] = value
            continue
        if block not in _TV_BLOCK or len(parts) < 3:
            raise ConfigError(f"not a torchvision FPN key: {key}", record=key)
        if re.fullmatch(r"\d+", parts[2]) is None:  # old format: no Conv2dNormActivation index
            parts.insert(2, "0")
        out[".".join([_TV_BLOCK[block], *parts[1:]])] = value
    return out
