"""BiFPN (EfficientDet): repeated bidirectional cross-scale fusion with learned per-input weights.

The node graph of one layer is data (a list of `FusionNode`), so BiFPN, repeated top-down FPN and
FPN+PANet, and the fusion kind ("fast" | "softmax" | "sum"), are a change of data, not of code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from objdet import fused
from objdet.errors import ConfigError
from objdet.layers import SeparableConv2d, make_act, make_bn

FUSIONS = ("fast", "softmax", "sum")
FAST_FUSION_EPS = 1e-4


@dataclass(frozen=True)
class FusionNode:
    """One fused feature: `level` of its output and `inputs`, indices into the layer's running list.

    Indices 0..L-1 are the layer's inputs (levels min..max); index L + i is the output of node i.
    """

    level: int
    inputs: tuple[int, ...]
    fusion: str = "fast"


def bifpn_graph(min_level: int = 3, max_level: int = 7, fusion: str = "fast") -> list[FusionNode]:
    """The EfficientDet node graph: a top-down pass, then a bottom-up pass that also takes the level's input."""
    num_levels = max_level - min_level + 1
    latest = {level: [i] for i, level in enumerate(range(min_level, max_level + 1))}
    nodes: list[FusionNode] = []
    for level in range(max_level - 1, min_level - 1, -1):
        nodes.append(FusionNode(level, (latest[level][-1], latest[level + 1][-1]), fusion))
        latest[level].append(num_levels + len(nodes) - 1)
    for level in range(min_level + 1, max_level + 1):
        # the input of this level, its top-down node (if any) and the new finer output
        inputs = tuple(latest[level]) + (latest[level - 1][-1],)
        nodes.append(FusionNode(level, inputs, fusion))
        latest[level].append(num_levels + len(nodes) - 1)
    return nodes


def topdown_graph(min_level: int = 3, max_level: int = 7, fusion: str = "sum") -> list[FusionNode]:
    """A plain FPN top-down pass (the seed's "repeated top-down FPN" when layers are stacked)."""
    num_levels = max_level - min_level + 1
    nodes = [FusionNode(max_level, (num_levels - 1,), fusion)]
    for i, level in enumerate(range(max_level - 1, min_level - 1, -1)):
        nodes.append(FusionNode(level, (level - min_level, num_levels + i), fusion))
    return nodes


def panet_graph(min_level: int = 3, max_level: int = 7, fusion: str = "sum") -> list[FusionNode]:
    """FPN+PANet: the top-down pass followed by a bottom-up pass over its outputs."""
    nodes = topdown_graph(min_level, max_level, fusion)
    num_levels = max_level - min_level + 1
    last = {node.level: num_levels + i for i, node in enumerate(nodes)}
    for level in range(min_level, max_level + 1):
        inputs = (last[level],) if level == min_level else (last[level], last[level - 1])
        nodes.append(FusionNode(level, inputs, fusion))
        last[level] = num_levels + len(nodes) - 1
    return nodes


GRAPHS = {"bifpn": bifpn_graph, "fpn": topdown_graph, "panet": panet_graph}


def max_pool(x: torch.Tensor, kernel: int, stride: int, same: bool) -> torch.Tensor:
    """Max-pool with TensorFlow "same" padding (asymmetric, -inf) or PyTorch's symmetric padding."""
    if not same:
        return F.max_pool2d(x, kernel, stride, padding=(kernel - 1 + stride - 1) // 2)
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    if pads[0] == pads[2] == 0 and max(pads) <= 1 and not torch.jit.is_tracing():
        # one cell of -inf padding at the right and bottom (even sizes) is ceil mode's clipped last window:
        # the same maxima without a padded copy of the map, when the window counts agree
        out = F.max_pool2d(x, kernel, stride, ceil_mode=True)
        if out.shape[-2:] == (math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride)):
            return out
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


class Resample(nn.Module):
    """Bring a feature to a node: 1x1 conv + BN if its width differs, then max-pool down or repeat up."""

    def __init__(self, in_channels: int, out_channels: int, level_gap: int, same_padding: bool, conv_bias: bool,
                 bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.level_gap = level_gap  # output level minus input level
        self.same_padding = same_padding
        self.conv = self.bn = None
        if in_channels != out_channels:
            self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=conv_bias)
            self.bn = make_bn(out_channels, bn_eps, bn_momentum)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        fast = fused.active(self, x)
        if self.conv is not None:
            x = fused.conv(x, self.conv, self.bn) if fast else self.bn(self.conv(x))
        if self.level_gap > 0:
            stride = 2**self.level_gap
            x = max_pool(x, stride + 1, stride, self.same_padding)
        elif self.level_gap < 0:
            x = fused.upsample_nearest(x, size) if fast else F.interpolate(x, size=size, mode="nearest")
        return x


class Fusion(nn.Module):
    """Fuse resampled inputs: fast normalised ReLU(w)/(eps + sum ReLU(w)), softmax(w), or a plain sum."""

    def __init__(self, num_inputs: int, kind: str) -> None:
        super().__init__()
        if kind not in FUSIONS:
            raise ConfigError(f"unknown BiFPN fusion {kind!r}; known: {', '.join(FUSIONS)}")
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(num_inputs)) if kind != "sum" else None

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        w = None
        if self.kind == "softmax":
            w = torch.softmax(self.weight, 0)
        elif self.weight is not None:
            w = F.relu(self.weight)
            w = w / (w.sum() + FAST_FUSION_EPS)
        if fused.active(self, inputs[0]):  # a running sum: no stacked copy of the channels-last inputs
            out = inputs[0] if w is None else inputs[0] * w[0]
            for i, x in enumerate(inputs[1:], start=1):
                out = out + x if w is None else torch.addcmul(out, x, w[i])
            return out
        if w is None:
            return torch.stack(inputs, -1).sum(-1)
        return (torch.stack(inputs, -1) * w).sum(-1)


class FusionCell(nn.Module):
    """One node of a layer: resample each input, fuse, activate, separable conv + BN."""

    def __init__(self, node: FusionNode, input_specs: list[tuple[int, int]], channels: int, act: str,
                 same_padding: bool, conv_bias: bool, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.inputs = node.inputs
        self.resample = nn.ModuleList(
            Resample(input_specs[i][1], channels, node.level - input_specs[i][0], same_padding, conv_bias,
                     bn_eps, bn_momentum)
            for i in node.inputs
        )
        self.fuse = Fusion(len(node.inputs), node.fusion)
        self.act = make_act(act)
        self.conv = SeparableConv2d(channels, channels, bias=conv_bias, bn_eps=bn_eps, bn_momentum=bn_momentum)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.fuse([r(features[i], size) for r, i in zip(self.resample, self.inputs)])
        return self.conv(self.act(x))


class BiFPNLayer(nn.Module):
    """One repeat of the node graph; returns the last node of every level, fine to coarse."""

    def __init__(self, graph: list[FusionNode], in_channels: list[int], channels: int, min_level: int,
                 act: str, same_padding: bool, conv_bias: bool, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.min_level = min_level
        self.node_levels = [node.level for node in graph]
        specs = [(min_level + i, c) for i, c in enumerate(in_channels)]  # (level, channels) per running index
        self.cells = nn.ModuleList()
        for node in graph:
            self.cells.append(FusionCell(node, specs, channels, act, same_padding, conv_bias, bn_eps, bn_momentum))
            specs.append((node.level, channels))
        num_levels = len(in_channels)
        self.outputs = [max((i for i, (lv, _) in enumerate(specs) if lv == level), default=level - min_level)
                        for level in range(min_level, min_level + num_levels)]
        if any(i < num_levels for i in self.outputs):
            raise ConfigError("every pyramid level must be the output of at least one BiFPN node")

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [f.shape[-2:] for f in features]
        features = list(features)
        for cell, level in zip(self.cells, self.node_levels):
            features.append(cell(features, sizes[level - self.min_level]))
        return [features[i] for i in self.outputs]


class BiFPN(nn.Module):
    """The EfficientDet neck: P6/P7 by downsampling C5, then `num_layers` repeats of the node graph."""

    def __init__(self, in_channels: dict[str, int], channels: int, num_layers: int,
                 graph: list[FusionNode] | None = None, min_level: int = 3, max_level: int = 7,
                 act: str = "silu", same_padding: bool = True, conv_bias: bool = False,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:
        super().__init__()
        graph = graph if graph is not None else bifpn_graph(min_level, max_level)
        names = [f"C{level}" for level in range(min_level, max_level + 1) if f"C{level}" in in_channels]
        if not names or names[0] != f"C{min_level}":
            raise ConfigError(f"BiFPN needs backbone level C{min_level}; got {sorted(in_channels)}")
        self.in_names = names
        self.min_level, self.max_level = min_level, max_level
        widths = [in_channels[n] for n in names]
        self.extra = nn.ModuleList()
        for _ in range(max_level - min_level + 1 - len(names)):
            self.extra.append(Resample(widths[-1], channels, 1, same_padding, conv_bias, bn_eps, bn_momentum))
            widths.append(channels)
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(BiFPNLayer(graph, widths, channels, min_level, act, same_padding, conv_bias,
                                          bn_eps, bn_momentum))
            widths = [channels] * len(widths)
        self.out_channels = channels

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = [features[n] for n in self.in_names]
        for extra in self.extra:
            x.append(extra(x[-1], None))
        for layer in self.layers:
            x = layer(x)
        return {f"P{self.min_level + i}": f for i, f in enumerate(x)}


def with_fusion(graph: list[FusionNode], fusion: str) -> list[FusionNode]:
    """The same graph with every node's fusion replaced (the seed's weighted/unweighted ablation)."""
    return [replace(node, fusion=fusion) for node in graph]
