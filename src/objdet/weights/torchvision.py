"""torchvision detection weights in objdet: `ARCHS` names, for each torchvision architecture, the zoo model it
is, the config fields its weights imply and how its state-dict keys map onto objdet's; `from_torchvision` is
the one-call conversion (same detections as torchvision)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


_RETINA_HEAD = {"classification": "class_head", "regression": "box_head"}
_RETINA_RULES: list[Rule] = [
    # before torchvision 0.13 the subnet convs were bare (conv.0, conv.2, ... between ReLUs)
    (r"head\.(classification|regression)_head\.conv\.(\d+)\.(weight|bias)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.convs.{int(m[2]) // 2}.0.{m[3]}"),
    (r"head\.(classification|regression)_head\.conv\.(\d+)\.(\d+)\.(.+)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.convs.{m[2]}.{m[3]}.{m[4]}"),
    (r"head\.(classification|regression)_head\.(cls_logits|bbox_reg)\.(.+)$",
     lambda m: f"{_RETINA_HEAD[m[1]]}.predict.{m[3]}"),
]


def retinanet_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision RetinaNet state dict (ResNet-FPN) under objdet's names: trunk as it is, FPN and subnets
    renamed. The objdet model must keep torchvision's background channel (``background_channel=True``)."""
    return rename(_fpn_renamed(state_dict), _RETINA_RULES)


@dataclass(frozen=True)
class TorchvisionArch:
    """One torchvision detector: its objdet zoo model, the key renaming, and the config fields its weights imply."""

    zoo: str
    rename: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
    fields: Mapping[str, Any]


_RETINA_V1 = {"extra": "p6p7_p5", "box_loss": "l1", "background_channel": True}  # P6 from P5, L1 box loss
ARCHS: dict[str, TorchvisionArch] = {
    "fasterrcnn_resnet50_fpn": TorchvisionArch("faster_rcnn_r50_fpn", rcnn_state_dict, {}),
    "fasterrcnn_resnet50_fpn_v2": TorchvisionArch("faster_rcnn_r50_fpn_v2", rcnn_state_dict, {}),
    "maskrcnn_resnet50_fpn": TorchvisionArch("mask_rcnn_r50_fpn", rcnn_state_dict, {}),
    "maskrcnn_resnet50_fpn_v2": TorchvisionArch("mask_rcnn_r50_fpn_v2", rcnn_state_dict, {}),
    "keypointrcnn_resnet50_fpn": TorchvisionArch("keypoint_rcnn_r50_fpn", rcnn_state_dict, {}),
    "retinanet_resnet50_fpn": TorchvisionArch("retinanet_r50_fpn", retinanet_state_dict, _RETINA_V1),
    "retinanet_resnet50_fpn_v2": TorchvisionArch("retinanet_r50_fpn_v2", retinanet_state_dict,
                                                 {"background_channel": True}),
}
# torchvision runs its released COCO v1 weights of these with FrozenBatchNorm2d eps 0 (`overwrite_eps`)
_ZERO_EPS_ARCHS = frozenset({"fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
                             "retinanet_resnet50_fpn"})


def arch_of_zoo_name(name: str) -> str:
    """The torchvision architecture whose weights objdet's zoo model `name` takes."""
    for arch, spec in ARCHS.items():
        if spec.zoo == name:
            return arch
    known = ", ".join(sorted(spec.zoo for spec in ARCHS.values()))
    raise ConfigError(f"torchvision publishes no weights for {name!r}; it does for {known}")


def detect_arch(state_dict: Mapping[str, Tensor]) -> str:
    """The torchvision architecture a detection state dict belongs to, read from its keys."""
    keys = set(state_dict)
    if "head.classification_head.cls_logits.weight" in keys:
        norm = any(re.fullmatch(r"head\.classification_head\.conv\.\d+\.1\.weight", k) for k in keys)
        return "retinanet_resnet50_fpn_v2" if norm else "retinanet_resnet50_fpn"
    if "roi_heads.box_predictor.cls_score.weight" not in keys:
        raise CheckpointError("not a torchvision detection state dict: no box predictor or RetinaNet head")
    if "roi_heads.keypoint_predictor.kps_score_lowres.weight" in keys:
        return "keypointrcnn_resnet50_fpn"
    v2 = "_v2" if "roi_heads.box_head.0.0.weight" in keys else ""
    kind = "maskrcnn" if "roi_heads.mask_predictor.mask_fcn_logits.weight" in keys else "fasterrcnn"
    return f"{kind}_resnet50_fpn{v2}"


def num_classes_of(state_dict: Mapping[str, Tensor], arch: str) -> int:
    """objdet's class count (background not counted) of a torchvision state dict of `arch`."""
    retina = ARCHS[arch].rename is retinanet_state_dict
    needed = (["head.regression_head.bbox_reg.weight", "head.classification_head.cls_logits.weight"] if retina
              else ["roi_heads.box_predictor.cls_score.weight"])
    absent = [k for k in needed if k not in state_dict]
    if absent:
        kind = "RetinaNet" if retina else "R-CNN"
        raise CheckpointError(f"not a torchvision {kind} state dict ({arch}): no {absent[0]!r}", record=arch)
    if retina:
        anchors = state_dict[needed[0]].shape[0] // 4
        return int(state_dict[needed[1]].shape[0]) // anchors - 1
    return int(state_dict[needed[0]].shape[0]) - 1


def implied_fields(arch: str, state_dict: Mapping[str, Tensor], frozen_bn_eps: float | None = None) -> dict[str, Any]:
    """Config fields the weights of `arch` need: the architecture's own, the keypoint count, and the eps of the
    frozen trunk norms. That eps is read from the state dict: a trunk saved with `num_batches_tracked` was plain
    BatchNorm2d (eps 1e-5, what torchvision builds without detection weights); without, the frozen layout of the
    released weights, which torchvision runs with eps 0 for the v1 models. An explicit `frozen_bn_eps` wins."""
    if frozen_bn_eps is None:
        trained_bn = any(k.startswith("backbone.body.") and k.endswith("num_batches_tracked") for k in state_dict)
        frozen_bn_eps = 0.0 if arch in _ZERO_EPS_ARCHS and not trained_bn else 1e-5
    if frozen_bn_eps < 0:
        raise ConfigError(f"frozen_bn_eps must be >= 0, got {frozen_bn_eps}", record=arch)
    fields = {**ARCHS[arch].fields, "frozen_bn_eps": frozen_bn_eps}
    keypoints = state_dict.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
    if keypoints is not None:
        fields["num_keypoints"] = int(keypoints.shape[1])
    return fields


def from_torchvision(arch: str, state_dict: Mapping[str, Tensor], frozen_bn_eps: float | None = None,
                     **overrides: Any) -> nn.Module:
    """The objdet model equivalent to torchvision's `arch` with `state_dict` loaded; `overrides` change
    config fields that do not touch the weights (min_size, score_thresh, ...) or, with `classes=[...]` or
    `num_classes=K`, give it a new class set (see `objdet.build(..., weights=...)`).

    `frozen_bn_eps` is the eps of the trunk's FrozenBatchNorm2d layers (a config field, so checkpoints keep
    it): by default read from the state dict (`implied_fields`).
    """
    from objdet.weights.pretrained import build_pretrained
    from objdet.weights.sources import torchvision_source

    if arch not in ARCHS:
        raise CheckpointError(f"no converter for torchvision architecture {arch!r}; known: {sorted(ARCHS)}")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of names to tensors), got {type(state_dict).__name__}",
                              record=arch)
    source = torchvision_source(state_dict, f"torchvision {arch} state dict", arch, frozen_bn_eps=frozen_bn_eps)
    same_classes = "classes" not in overrides and "num_classes" not in overrides
    return build_pretrained(ARCHS[arch].zoo, source, strict=same_classes, **overrides)
