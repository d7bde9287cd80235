"""Mask R-CNN: Faster R-CNN plus a mask branch on 14x14 RoIAlign features (FCN or MLP head,
per-class sigmoid or softmax-across-classes masks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from objdet.detectors.faster_rcnn import SMALL, FasterRCNNConfig, build_faster_rcnn
from objdet.detectors.two_stage import TwoStageDetector, make_config
from objdet.errors import ConfigError
from objdet.heads.mask_head import FCNMaskHead, MaskStage, MLPMaskHead
from objdet.roi import MultiLevelRoIPooler


@dataclass
class MaskRCNNConfig(FasterRCNNConfig):
    """Faster R-CNN's fields plus the mask branch's."""

    mask_resolution: int = 14
    mask_head: str = "fcn"
    mask_head_norm: str | None = None
    mask_softmax: bool = False


def build_mask_rcnn(cfg: MaskRCNNConfig) -> TwoStageDetector:
    """Faster R-CNN with a mask stage on the same RoI feature levels."""
    model = build_faster_rcnn(cfg)
    channels = model.roi_channels
    if cfg.mask_head == "fcn":
        head = FCNMaskHead(channels, cfg.num_classes, norm=cfg.mask_head_norm)
    elif cfg.mask_head == "mlp":
        head = MLPMaskHead(channels, cfg.mask_resolution, cfg.num_classes)
    else:
        raise ConfigError(f"unknown mask_head {cfg.mask_head!r}; choose 'fcn' or 'mlp'")
    pooler = MultiLevelRoIPooler(cfg.mask_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    model.mask_stage = MaskStage(pooler, head, cfg.mask_softmax)
    return model


def mask_rcnn_r50_fpn(**overrides: Any) -> TwoStageDetector:
    """torchvision's maskrcnn_resnet50_fpn."""
    return build_mask_rcnn(make_config(MaskRCNNConfig, overrides))


def mask_rcnn_r50_fpn_v2(**overrides: Any) -> TwoStageDetector:
    """torchvision's maskrcnn_resnet50_fpn_v2: BN everywhere, 2-conv RPN, 4conv1fc box head, BN mask head."""
    defaults = dict(backbone_norm="BN", fpn_norm="BN", rpn_convs=2, box_head="4conv1fc", box_head_norm="BN",
                    mask_head_norm="BN", trainable_layers=5)
    return build_mask_rcnn(make_config(MaskRCNNConfig, {**defaults, **overrides}))


def mask_rcnn_r18_fpn(**overrides: Any) -> TwoStageDetector:
    """A CPU-sized Mask R-CNN: ResNet-18, 128-channel FPN, small inputs (trains on `shapes` in minutes)."""
    return build_mask_rcnn(make_config(MaskRCNNConfig, {**SMALL, **overrides}))

