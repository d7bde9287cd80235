"""Keypoint R-CNN's part: a keypoint stage (56x56 heatmaps, softmax over positions), added to Faster R-CNN by
`faster_rcnn.build_rcnn` when `num_keypoints` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from objdet.heads.keypoint_head import KeypointHead, KeypointStage
from objdet.roi import MultiLevelRoIPooler

if TYPE_CHECKING:
    from objdet.detectors.faster_rcnn import RCNNConfig


def keypoint_stage(cfg: RCNNConfig, channels: int) -> KeypointStage:
    """Pooler and keypoint head on the RoI features (`channels` deep) the trunk gives."""
    pooler = MultiLevelRoIPooler(cfg.keypoint_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    head = KeypointHead(channels, cfg.num_keypoints, cfg.keypoint_convs, cfg.keypoint_channels)
    return KeypointStage(pooler, head)


# Zoo defaults: torchvision's person keypoints (one class, 17 keypoints); the small variant's lighter head.
PERSON_KEYPOINTS: dict[str, Any] = dict(num_classes=1, num_keypoints=17)
SMALL_HEAD: dict[str, Any] = dict(keypoint_convs=4, keypoint_channels=128)
