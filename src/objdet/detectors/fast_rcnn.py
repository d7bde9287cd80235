"""Fast R-CNN: no RPN; external proposals per image (e.g. selective search from a file), RoIPool 7x7,
64 RoIs per image (25% with IoU >= 0.5, the rest with IoU in [0.1, 0.5)), a K+1 softmax classifier
with class-specific box regression, per-class NMS 0.3 at inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from objdet.detectors.faster_rcnn import SMALL
from objdet.detectors.two_stage import (
    RCNNConfig, TwoStageDetector, make_backbone, make_box_stage, make_config, make_transform,
)


@dataclass
class FastRCNNConfig(RCNNConfig):
    """The seed's Fast R-CNN settings on a ResNet-FPN trunk."""

    roi_pooler: str = "pool"
    box_batch_size: int = 64
    box_positive_fraction: float = 0.25
    box_bg_iou_floor: float = 0.1
    nms: float = 0.3


def build_fast_rcnn(cfg: FastRCNNConfig) -> TwoStageDetector:
    """Transform, backbone (+ FPN) and the box stage; proposals come with the images."""
    backbone, neck, _, roi_levels, channels = make_backbone(cfg)
    return TwoStageDetector(
        make_transform(cfg), backbone, neck, None, make_box_stage(cfg, channels),
        cfg.num_classes, [], roi_levels, channels, config=cfg,
    )


def fast_rcnn_r50_fpn(**overrides: Any) -> TwoStageDetector:
    """Fast R-CNN on ResNet-50 + FPN with RoIPool."""
    return build_fast_rcnn(make_config(FastRCNNConfig, overrides))


def fast_rcnn_r18_fpn(**overrides: Any) -> TwoStageDetector:
    """A CPU-sized Fast R-CNN: ResNet-18, 128-channel FPN, small inputs."""
    small = {k: v for k, v in SMALL.items() if not k.startswith("rpn") and k != "anchor_sizes"}
    return build_fast_rcnn(make_config(FastRCNNConfig, {**small, **overrides}))
