"""Keypoint R-CNN: Faster R-CNN plus a keypoint branch (56x56 heatmaps, softmax over positions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from objdet.detectors.faster_rcnn import SMALL, FasterRCNNConfig, build_faster_rcnn
from objdet.detectors.two_stage import TwoStageDetector, make_config
from objdet.heads.keypoint_head import KeypointHead, KeypointStage
from objdet.roi import MultiLevelRoIPooler


@dataclass
class KeypointRCNNConfig(FasterRCNNConfig):
    """Faster R-CNN's fields plus the keypoint branch's; defaults are torchvision's person keypoints (17)."""

    num_classes: int = 1
    num_keypoints: int = 17
    keypoint_resolution: int = 14
    keypoint_convs: int = 8
    keypoint_channels: int = 512


def build_keypoint_rcnn(cfg: KeypointRCNNConfig) -> TwoStageDetector:
    """Faster R-CNN with a keypoint stage on the same RoI feature levels."""
    model = build_faster_rcnn(cfg)
    pooler = MultiLevelRoIPooler(cfg.keypoint_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    head = KeypointHead(model.roi_channels, cfg.num_keypoints, cfg.keypoint_convs, cfg.keypoint_channels)
    model.keypoint_stage = KeypointStage(pooler, head)
    return model


def keypoint_rcnn_r50_fpn(**overrides: Any) -> TwoStageDetector:
    """torchvision's keypointrcnn_resnet50_fpn."""
    return build_keypoint_rcnn(make_config(KeypointRCNNConfig, overrides))


def keypoint_rcnn_r18_fpn(**overrides: Any) -> TwoStageDetector:
    """A CPU-sized Keypoint R-CNN: ResNet-18, 128-channel FPN, a 4-conv 128-channel keypoint head."""
    small = {**SMALL, "keypoint_convs": 4, "keypoint_channels": 128}
    return build_keypoint_rcnn(make_config(KeypointRCNNConfig, {**small, **overrides}))
