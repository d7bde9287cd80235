"""The model zoo: every named model, its config class, build function and defaults, in one table.

`config(name, **overrides)` is the full config dataclass of a zoo model; `build(name_or_config, ...)` makes
the model; `load(path)` rebuilds a checkpoint; `describe(model)` is what a checkpoint stores to rebuild it
(the zoo name, the full config and the class names). Detector modules are imported on first use, so
`import objdet` stays light.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from torch import nn

from objdet.errors import ConfigError

if TYPE_CHECKING:
    from objdet.detectors.base import Detector


@dataclass(frozen=True)
class Entry:
    """One zoo model: its config class, the function that builds it from a config, and its defaults."""

    name: str
    config: type
    build: Callable[[Any], Detector]
    defaults: Mapping[str, Any]
    summary: str = ""


_ENTRIES: dict[str, Entry] = {}


def register(name: str, config: type, build: Callable[[Any], Detector], defaults: Mapping[str, Any] | None = None,
             summary: str = "") -> None:
    """Add (or replace) a zoo model: `build(config(**defaults, **overrides))` makes it."""
    _load_entries()
    _ENTRIES[name] = Entry(name, config, build, dict(defaults or {}), summary)


def _load_entries() -> None:
    """Fill the table on first use."""
    if _ENTRIES:
        return
    from objdet.detectors import efficientdet as ed, fast_rcnn as fast, faster_rcnn as rcnn, keypoint_rcnn as kp
    from objdet.detectors import mask_rcnn as mask, retinanet as retina

    R = (rcnn.RCNNConfig, rcnn.build_rcnn)
    table: list[tuple[str, tuple, dict[str, Any], str]] = [
        ("fast_rcnn_r50_fpn", R, fast.FAST, "Fast R-CNN on ResNet-50 + FPN with RoIPool; proposals given"),
        ("fast_rcnn_r18_fpn", R, {**fast.FAST, **fast.SMALL_FAST}, "CPU-sized Fast R-CNN (ResNet-18)"),
        ("faster_rcnn_r50_fpn", R, {}, "torchvision's fasterrcnn_resnet50_fpn"),
        ("faster_rcnn_r50_fpn_v2", R, rcnn.V2, "torchvision's fasterrcnn_resnet50_fpn_v2"),
        ("faster_rcnn_r50_c4", R, rcnn.C4, "the seed's C4 baseline: RPN and RoIs on res4, res5 as RoI head"),
        ("faster_rcnn_r18_fpn", R, rcnn.SMALL, "CPU-sized Faster R-CNN: ResNet-18, 128-channel FPN"),
        ("mask_rcnn_r50_fpn", R, mask.MASK, "torchvision's maskrcnn_resnet50_fpn"),
        ("mask_rcnn_r50_fpn_v2", R, {**rcnn.V2, **mask.V2_MASK}, "torchvision's maskrcnn_resnet50_fpn_v2"),
        ("mask_rcnn_r18_fpn", R, {**rcnn.SMALL, **mask.MASK}, "CPU-sized Mask R-CNN (ResNet-18)"),
        ("keypoint_rcnn_r50_fpn", R, kp.PERSON_KEYPOINTS, "torchvision's keypointrcnn_resnet50_fpn"),
        ("keypoint_rcnn_r18_fpn", R, {**rcnn.SMALL, **kp.PERSON_KEYPOINTS, **kp.SMALL_HEAD},
         "CPU-sized Keypoint R-CNN (ResNet-18, 4-conv 128-channel keypoint head)"),
        ("retinanet_r50_fpn", (retina.RetinaNetConfig, retina.build_retinanet), {}, "RetinaNet, ResNet-50 FPN"),
        ("retinanet_r50_fpn_v2", (retina.RetinaNetConfig, retina.build_retinanet), retina.V2,
         "torchvision's retinanet_resnet50_fpn_v2"),
        ("retinanet_r18_fpn", (retina.RetinaNetConfig, retina.build_retinanet), retina.SMALL,
         "CPU-sized RetinaNet (ResNet-18, 128-channel FPN and subnets)"),
    ]
    table += [(f"efficientdet_d{phi}", (ed.EfficientDetConfig, ed.build_efficientdet), ed.efficientdet_scaling(phi),
               f"EfficientDet-D{phi} by compound scaling") for phi in range(8)]
    for name, (config_class, build_fn), defaults, summary in table:
        _ENTRIES[name] = Entry(name, config_class, build_fn, defaults, summary)


def list_models() -> list[str]:
    """Names accepted by `build`, sorted."""
    _load_entries()
    return sorted(_ENTRIES)


def entry(name: str) -> Entry:
    """The zoo entry `name`; an unknown name is a ConfigError listing the known ones."""
    _load_entries()
    if name not in _ENTRIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_ENTRIES))}")
    return _ENTRIES[name]


def config(name: str, **overrides: Any) -> Any:
    """The full config dataclass of zoo model `name`: its defaults, then `overrides` (unknown fields name
    themselves in a ConfigError)."""
    from objdet.detectors.base import make_config

    e = entry(name)
    return make_config(e.config, {**e.defaults, **overrides})


def _entry_of(cfg: Any) -> Entry:
    _load_entries()
    for e in _ENTRIES.values():
        if type(cfg) is e.config:
            return e
    raise ConfigError(f"no zoo model is built from a {type(cfg).__name__}")


def build(model: str | Any, *, weights: str | os.PathLike | None = None, backbone_weights: str | None = None,
          classes: Sequence[str] | None = None, **overrides: Any) -> Detector:
    """Build a zoo model from its name (with config `overrides`) or from a config dataclass.

    `classes` names the classes (labels 1..K in that order) and sets `num_classes`; the model keeps them
    as `model.class_names` (None when not given). The model's `config` is the full config and `arch` the
    zoo name, which is what checkpoints store to rebuild it.

    `weights` is a weight source (`objdet.weights.sources`: a checkpoint or state-dict path,
    `torchvision:COCO_V1`, `effdet:tf_efficientdet_d0`); with another class set, what fits is loaded and class
    rows are kept for matching names. `backbone_weights` ("imagenet" or a path) initialises the trunk only."""
    if weights is not None:
        from objdet.weights.pretrained import build_pretrained

        if not isinstance(model, str):
            raise ConfigError("weights= needs the zoo name of the model, not a config")
        return build_pretrained(model, weights, classes=classes, **overrides)
    net = _build(model, classes, overrides)
    if backbone_weights is not None:
        from objdet.weights.backbones import load_backbone_weights

        net.weights_report = load_backbone_weights(net, backbone_weights)
    return net


def _build(model: str | Any, classes: Sequence[str] | None, overrides: dict[str, Any]) -> Detector:
    if classes is not None:
        classes = [str(c) for c in classes]
        if not classes:
            raise ConfigError("classes must name at least one class")
        overrides["num_classes"] = len(classes)
    if isinstance(model, str):
        e, cfg = entry(model), config(model, **overrides)
    else:
        if not dataclasses.is_dataclass(model) or isinstance(model, type):
            raise ConfigError(f"build takes a zoo name or a config, got {type(model).__name__}")
        e = _entry_of(model)
        cfg = dataclasses.replace(model, **overrides) if overrides else model
    net = e.build(cfg)
    net.config, net.arch, net.class_names = cfg, e.name, classes
    return net


def describe(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint stores to rebuild `model` alone: {"arch", "config" (plain types), "class_names"}."""
    cfg = getattr(model, "config", None)
    arch = getattr(model, "arch", None)
    if cfg is None or not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(f"{type(model).__name__} was not built by objdet.build: it has no config to save")
    if arch is None:
        arch = _entry_of(cfg).name
    plain = {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}
    names = getattr(model, "class_names", None)
    return {"arch": arch, "config": plain, "class_names": list(names) if names else None}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def load(source: str | os.PathLike, map_location: str = "cpu") -> nn.Module:
    """The model a checkpoint or a self-describing weight source holds, in eval mode with its class names
    (`model.class_names`): an objdet checkpoint is rebuilt from its zoo name and config (a training
    checkpoint's EMA weights when it kept an average); a torchvision or effdet state-dict file becomes the zoo
    model it fits, with the same outputs as in its library."""
    from objdet.engine.checkpoint import load_model
    from objdet.weights.pretrained import build_pretrained
    from objdet.weights.sources import read_source

    src = read_source(source)
    if src.kind == "objdet":
        return load_model(source, map_location)[0]
    return build_pretrained(None, src, strict=True).to(map_location).eval()
