"""Load torchvision detection checkpoints into objdet models: a table `arch -> converter`, each
building the matching zoo model and renaming the state-dict keys onto it."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from objdet.errors import CheckpointError, ConfigError

# One rename rule: a regular expression on the torchvision key and a function of its match
# giving the objdet key.
Rule = tuple[str, Callable[[re.Match], str]]


# torchvision's R-CNN head modules -> objdet's. Conv towers are blocks on both sides (torchvision's
# Conv2dNormActivation, objdet's ConvNormAct: conv at 0, norm at 1), so a block maps to a block; the
# v1 layouts with bare convs name each conv (`conv`, `mask_fcn{k}`) or number them flat with their
# ReLUs between (the keypoint head), and each such conv is block k's conv.
_RCNN_RULES: list[Rule] = [
    (r"rpn\.head\.conv\.(weight|bias)$", lambda m: f"rpn.head.convs.0.0.{m[1]}"),
    (r"rpn\.head\.conv\.(\d+)\.(\d+)\.(.+)$", lambda m: f"rpn.head.convs.{m[1]}.{m[2]}.{m[3]}"),
    (r"rpn\.head\.cls_logits\.(.+)$", lambda m: f"rpn.head.objectness.{m[1]}"),
    (r"rpn\.head\.bbox_pred\.(.+)$", lambda m: f"rpn.head.deltas.{m[1]}"),
    (r"roi_heads\.box_head\.(fc6|fc7)\.(.+)$", lambda m: f"box_stage.head.{m[1]}.{m[2]}"),
    (r"roi_heads\.box_head\.([0-3])\.(\d+)\.(.+)$", lambda m: f"box_stage.head.convs.{m[1]}.{m[2]}.{m[3]}"),
    (r"roi_heads\.box_head\.5\.(.+)$", lambda m: f"box_stage.head.fcs.0.{m[1]}"),
    (r"roi_heads\.box_predictor\.(.+)$", lambda m: f"box_stage.predictor.{m[1]}"),
    (r"roi_heads\.mask_head\.mask_fcn(\d)\.(.+)$", lambda m: f"mask_stage.head.convs.{int(m[1]) - 1}.0.{m[2]}"),
    (r"roi_heads\.mask_head\.(\d)\.(\d+)\.(.+)$", lambda m: f"mask_stage.head.convs.{m[1]}.{m[2]}.{m[3]}"),
    (r"roi_heads\.mask_predictor\.conv5_mask\.(.+)$", lambda m: f"mask_stage.head.deconv.{m[1]}"),
    (r"roi_heads\.mask_predictor\.mask_fcn_logits\.(.+)$", lambda m: f"mask_stage.head.logits.{m[1]}"),
    (r"roi_heads\.keypoint_head\.(\d+)\.(.+)$", lambda m: f"keypoint_stage.head.convs.{int(m[1]) // 2}.0.{m[2]}"),
    (r"roi_heads\.keypoint_predictor\.kps_score_lowres\.(.+)$", lambda m: f"keypoint_stage.head.deconv.{m[1]}"),
]


def rename(state_dict: Mapping[str, Tensor], rules: list[Rule]) -> dict[str, Tensor]:
    """Apply the first matching rule to every key; a key no rule matches is kept as it is."""
    compiled = [(re.compile(p), f) for p, f in rules]
    out = {}
    for key, value in state_dict.items():
        for pattern, fn in compiled:
            m = pattern.match(key)
            if m:
                key = fn(m)
                break
        out[key] = value
    return out


def _fpn_renamed(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict with torchvision's `backbone.fpn.*` keys replaced by objdet's `neck.*` ones."""
    from objdet.necks.fpn import fpn_state_dict_from_torchvision

    sd = {k: v for k, v in state_dict.items() if not k.startswith("backbone.fpn.")}
    sd.update({f"neck.{k}": v for k, v in fpn_state_dict_from_torchvision(state_dict, "backbone.fpn.").items()})
    return sd


def rcnn_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision R-CNN state dict (ResNet-FPN, v1 or v2) under objdet's names. The trunk keeps
    torchvision's names (backbone.body.*); the FPN and the heads are renamed."""
    return rename(_fpn_renamed(state_dict), _RCNN_RULES)


def load_into(model: nn.Module, state_dict: Mapping[str, Tensor], arch: str) -> nn.Module:
    """Load a renamed state dict strictly; a missing, unexpected or mis-shaped key is a CheckpointError."""
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked") or k in model.state_dict()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(
            f"{what}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
            if keys
        )
        raise CheckpointError(f"checkpoint does not fit {arch}: {detail}", record=arch)
    model.load_state_dict(state_dict)
    return model


def _num_classes(state_dict: Mapping[str, Tensor], arch: str) -> int:
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state_dict:
        raise CheckpointError(f"not a torchvision R-CNN checkpoint: no {key!r}", record=arch)
    return int(state_dict[key].shape[0]) - 1


def _rcnn_converter(zoo_name: str) -> Callable[..., nn.Module]:
    def convert(state_dict: Mapping[str, Tensor], **overrides: Any) -> nn.Module:
        from objdet import zoo

        overrides.setdefault("num_classes", _num_classes(state_dict, zoo_name))
        if "roi_heads.keypoint_predictor.kps_score_lowres.weight" in state_dict:
            overrides.setdefault("num_keypoints", int(state_dict["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1]))
        model = zoo.build(zoo_name, **overrides)
        return load_into(model, rcnn_state_dict(state_dict), zoo_name)

    return convert


# torchvision architecture name -> (objdet zoo name, converter)
CONVERTERS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "fasterrcnn_resnet50_fpn": ("faster_rcnn_r50_fpn", _rcnn_converter("faster_rcnn_r50_fpn")),
    "fasterrcnn_resnet50_fpn_v2": ("faster_rcnn_r50_fpn_v2", _rcnn_converter("faster_rcnn_r50_fpn_v2")),
    "maskrcnn_resnet50_fpn": ("mask_rcnn_r50_fpn", _rcnn_converter("mask_rcnn_r50_fpn")),
    "maskrcnn_resnet50_fpn_v2": ("mask_rcnn_r50_fpn_v2", _rcnn_converter("mask_rcnn_r50_fpn_v2")),
    "keypointrcnn_resnet50_fpn": ("keypoint_rcnn_r50_fpn", _rcnn_converter("keypoint_rcnn_r50_fpn")),
    # --- one-stage converters (retinanet) ---
    "retinanet_resnet50_fpn": ("retinanet_r50_fpn", lambda sd, **kw: _retinanet_converter(sd, v2=False, **kw)),
    "retinanet_resnet50_fpn_v2": ("retinanet_r50_fpn", lambda sd, **kw: _retinanet_converter(sd, v2=True, **kw)),
}


_RETINA_RULES: list[Rule] = [
    # before torchvision 0.13 the subnet convs were bare (conv.0, conv.2, ... between ReLUs)
    (r"head\.(classification|regression)_head\.conv\.(\d+)\.(weight|bias)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.convs.{int(m[2]) // 2}.0.{m[3]}"),
    (r"head\.(classification|regression)_head\.conv\.(\d+)\.(\d+)\.(.+)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.convs.{m[2]}.{m[3]}.{m[4]}"),
    (r"head\.(classification|regression)_head\.(cls_logits|bbox_reg)\.(.+)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.predict.{m[3]}"),
]
_RETINA_HEAD = {"classification": "class_head", "regression": "box_head"}


def _retinanet_converter(state_dict: Mapping[str, Tensor], v2: bool, **overrides: Any) -> nn.Module:
    """torchvision's RetinaNet (v1: P6 from P5, L1 box loss; v2: P6 from C5, GroupNorm subnets, GIoU loss)."""
    from objdet import zoo

    key = "head.classification_head.cls_logits.weight"
    if key not in state_dict:
        raise CheckpointError(f"not a torchvision RetinaNet checkpoint: no {key!r}", record="retinanet")
    num_anchors = state_dict["head.regression_head.bbox_reg.weight"].shape[0] // 4
    # torchvision's class channel 0 is background: keep it, never output it
    overrides.setdefault("num_classes", int(state_dict[key].shape[0]) // num_anchors - 1)
    overrides.update(background_channel=True)
    if v2:
        overrides.update(extra="p6p7", head_norm="GN", box_loss="giou", backbone_norm="BN")
    else:
        overrides.update(extra="p6p7_p5", box_loss="l1")
    model = zoo.build("retinanet_r50_fpn", **overrides)
    return load_into(model, retinanet_state_dict(state_dict), "retinanet_r50_fpn")


def retinanet_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision RetinaNet state dict (ResNet-FPN) under objdet's names: trunk as it is, FPN and subnets
    renamed. The objdet model must keep torchvision's background channel (``background_channel=True``)."""
    return rename(_fpn_renamed(state_dict), _RETINA_RULES)


# torchvision runs its released COCO v1 weights of these with FrozenBatchNorm2d eps 0 (`overwrite_eps`)
_ZERO_EPS_ARCHS = frozenset({"fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
                             "retinanet_resnet50_fpn"})


def from_torchvision(arch: str, state_dict: Mapping[str, Tensor], frozen_bn_eps: float | None = None,
                     **overrides: Any) -> nn.Module:
    """The objdet model equivalent to torchvision's `arch` with `state_dict` loaded; `overrides` change
    config fields that do not touch the weights (min_size, score_thresh, ...).

    `frozen_bn_eps` is the eps of the trunk's FrozenBatchNorm2d layers (a config field, so converted
    checkpoints keep it): by default 0.0 for the four v1 archs, as torchvision runs their released COCO
    weights, and 1e-5 otherwise. Pass 1e-5
    for a v1 state dict of a model that was not built from those weights (e.g. a random-init one).
    """
    if arch not in CONVERTERS:
        raise CheckpointError(f"no converter for torchvision architecture {arch!r}; known: {sorted(CONVERTERS)}")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of names to tensors), got {type(state_dict).__name__}",
                              record=arch)
    if frozen_bn_eps is None:
        frozen_bn_eps = 0.0 if arch in _ZERO_EPS_ARCHS else 1e-5
    if frozen_bn_eps < 0:
        raise ConfigError(f"frozen_bn_eps must be >= 0, got {frozen_bn_eps}", record=arch)
    # a config field, so a checkpoint written by `objdet convert` rebuilds with the same eps
    return CONVERTERS[arch][1](state_dict, frozen_bn_eps=frozen_bn_eps, **overrides)
