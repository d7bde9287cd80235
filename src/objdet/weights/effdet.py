"""Load effdet (rwightman/efficientdet-pytorch) checkpoints into objdet's EfficientDet."""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from torch import nn

from objdet import zoo
from objdet.detectors.efficientdet import efficientdet_scaling
from objdet.errors import CheckpointError, ConfigError
from objdet.necks.bifpn import BiFPNLayer, FusionCell


def effdet_config(name: str) -> dict[str, Any]:
    """objdet EfficientDet fields reproducing effdet's model `name` (tf_efficientdet_d0..d7, efficientdet_d0/d1)."""
    match = re.fullmatch(r"(tf_)?efficientdet_d([0-7])", name)
    if match is None or (match.group(1) is None and int(match.group(2)) > 1):
        raise ConfigError(f"unsupported effdet model {name!r}: use tf_efficientdet_d0..d7 or efficientdet_d0/d1")
    phi = int(match.group(2))
    fields = efficientdet_scaling(phi)
    if match.group(1) is None:  # effdet's PyTorch-padded models: timm trunk, no redundant conv bias
        fields.update(backbone=f"efficientnet_b{phi}", same_padding=False, conv_bias=False,
                      drop_path_rate=0.1 if phi == 0 else 0.2)
    return fields


def effdet_zoo_name(name: str) -> str:
    """The objdet zoo entry an effdet model name maps to (tf_efficientdet_dN and efficientdet_dN: efficientdet_dN)."""
    return re.sub(r"^tf_", "", name)


def _neck_key(key: str, graph_inputs: list[tuple[int, ...]]) -> str:
    """Map one effdet `fpn.*` key to objdet's `neck.*` name."""
    m = re.fullmatch(r"fpn\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)", key)
    if m:  # P6/P7 made from C5: effdet numbers them by level index (3, 4, ...)
        return f"neck.extra.{int(m.group(1)) - 3}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.(.+)", key)
    if m is None:
        raise CheckpointError(f"unexpected effdet key {key!r}")
    layer, node, rest = m.group(1), int(m.group(2)), m.group(3)
    prefix = f"neck.layers.{layer}.cells.{node}"
    m = re.fullmatch(r"combine\.resample\.(\d+)\.conv\.(conv|bn)\.(.+)", rest)
    if m:
        position = graph_inputs[node].index(int(m.group(1)))
        return f"{prefix}.resample.{position}.{m.group(2)}.{m.group(3)}"
    if rest == "combine.edge_weights":
        return f"{prefix}.fuse.weight"
    m = re.fullmatch(r"after_combine\.conv\.(conv_dw|conv_pw|bn)\.(.+)", rest)
    if m:
        return f"{prefix}.conv.{_SEPARABLE[m.group(1)]}.{m.group(2)}"
    raise CheckpointError(f"unexpected effdet key {key!r}")


_SEPARABLE = {"conv_dw": "depthwise", "conv_pw": "pointwise", "bn": "bn"}


def _head_key(key: str) -> str:
    """Map one effdet `class_net.*`/`box_net.*` key to objdet's head names."""
    m = re.fullmatch(r"(class|box)_net\.(.+)", key)
    if m is None:
        raise CheckpointError(f"unexpected effdet key {key!r}")
    head, rest = f"{m.group(1)}_head", m.group(2)
    m = re.fullmatch(r"conv_rep\.(\d+)\.(conv_dw|conv_pw)\.(.+)", rest)
    if m:
        return f"{head}.convs.{m.group(1)}.{_SEPARABLE[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"bn_rep\.(\d+)\.(\d+)\.bn\.(.+)", rest)
    if m:
        return f"{head}.norms.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"predict\.(conv_dw|conv_pw)\.(.+)", rest)
    if m:
        return f"{head}.predict.{_SEPARABLE[m.group(1)]}.{m.group(2)}"
    raise CheckpointError(f"unexpected effdet key {key!r}")


def convert_effdet_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """effdet's EfficientDet state dict renamed for `model`; box outputs reordered from (y, x, h, w) to (x, y, w, h)."""
    first = model.get_submodule("neck.layers.0")  # every BiFPN layer has the same node graph
    if not isinstance(first, BiFPNLayer):
        raise CheckpointError(f"effdet weights fit an EfficientDet (a BiFPN neck), not a {type(model).__name__}")
    graph_inputs = [cell.inputs for cell in first.cells if isinstance(cell, FusionCell)]
    out = {}
    for key, value in state_dict.items():
        if key.startswith("model."):  # a DetBench wrapper's state dict
            key = key[len("model."):]
        if key.startswith("anchors."):
            continue
        if key.startswith("backbone."):
            out["backbone.body." + key[len("backbone."):]] = value
        elif key.startswith("fpn."):
            out[_neck_key(key, graph_inputs)] = value
        elif key.startswith(("class_net.", "box_net.")):
            new = _head_key(key)
            if new.startswith("box_head.predict.pointwise"):
                value = value.reshape(-1, 4, *value.shape[1:])[:, [1, 0, 3, 2]].reshape(value.shape)
            out[new] = value
        else:
            raise CheckpointError(f"unexpected effdet key {key!r}")
    return out


EFFDET_MODELS = tuple(f"tf_efficientdet_d{phi}" for phi in range(8)) + ("efficientdet_d0", "efficientdet_d1")


def _class_bias(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    bias = state_dict.get("class_net.predict.conv_pw.bias", state_dict.get("model.class_net.predict.conv_pw.bias"))
    if bias is None:
        raise CheckpointError("not an effdet state dict: no class_net.predict.conv_pw.bias")
    return bias


def num_classes_of(state_dict: Mapping[str, torch.Tensor], fields: Mapping[str, Any]) -> int:
    """The class count of an effdet state dict (its class logits per anchor)."""
    anchors = fields.get("num_scales", 3) * len(fields.get("aspect_ratios", (None,) * 3))
    return _class_bias(state_dict).numel() // anchors


def effdet_name_of(state_dict: Mapping[str, torch.Tensor], origin: str) -> str:
    """The effdet model a state dict belongs to, from its head width, BiFPN depth and whether its separable convs
    carry the TF checkpoints' bias."""
    keys = [k.removeprefix("model.") for k in state_dict]
    weight = next((v for k, v in state_dict.items() if k.endswith("class_net.predict.conv_pw.weight")), None)
    if weight is None:
        raise CheckpointError("not an effdet state dict: no class_net.predict.conv_pw.weight", path=origin)
    width = int(weight.shape[1])
    layers = len({k.split(".")[2] for k in keys if k.startswith("fpn.cell.")})
    bias = any(k.endswith("after_combine.conv.conv_pw.bias") for k in keys)
    for name in EFFDET_MODELS:
        cfg = zoo.config(effdet_zoo_name(name), **effdet_config(name))
        if (cfg.fpn_channels, cfg.fpn_layers, cfg.conv_bias) == (width, layers, bias):
            return name
    raise CheckpointError(f"an effdet state dict of no known model ({width} channels, {layers} BiFPN layers)",
                          path=origin)


def from_effdet(name: str, state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> nn.Module:
    """objdet's EfficientDet with the weights of effdet's model `name`; eval-mode detections equal effdet's.
    `classes=[...]` or `num_classes=K` give it a new class set (see `objdet.build(..., weights=...)`)."""
    from objdet.weights.pretrained import build_pretrained
    from objdet.weights.sources import effdet_source

    same_classes = "classes" not in overrides and "num_classes" not in overrides
    return build_pretrained(effdet_zoo_name(name), effdet_source(state_dict, f"effdet {name} state dict", name),
                            strict=same_classes, **overrides)
