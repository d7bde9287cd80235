"""Faster R-CNN: a ResNet trunk with FPN (or the C4 variant: RPN and RoI pooling on res4, res5 as the
RoI head), a Region Proposal Network and the RoI box stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from objdet.detectors.two_stage import (
    RCNNConfig, TwoStageDetector, make_backbone, make_box_stage, make_config, make_rpn, make_transform,
)


@dataclass
class FasterRCNNConfig(RCNNConfig):
    """Faster R-CNN uses the shared R-CNN fields as they are."""


class Res5Head(nn.Module):
    """The C4 detector's RoI head: the trunk's res5 stage (stride 2) on 14x14 RoIs, then global average pooling."""

    def __init__(self, res5: nn.Module, out_features: int):
        super().__init__()
        self.res5 = res5
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.res5(x).mean((2, 3))


def build_faster_rcnn(cfg: FasterRCNNConfig) -> TwoStageDetector:
    """Assemble transform, backbone (+ FPN), RPN and box stage from `cfg`."""
    backbone, neck, rpn_levels, roi_levels, channels = make_backbone(cfg)
    head = None
    if not cfg.fpn:
        head = Res5Head(backbone.body.layer4, channels * 2)
        backbone.body.layer4 = nn.Identity()  # res5 runs on the RoIs, not on the whole image
    return TwoStageDetector(
        make_transform(cfg), backbone, neck, make_rpn(cfg, channels), make_box_stage(cfg, channels, head),
        cfg.num_classes, rpn_levels, roi_levels, channels, config=cfg,
    )


# CPU-friendly defaults of the small variants: ResNet-18, a 128-channel FPN, small images, fewer RoIs.
SMALL: dict[str, Any] = dict(
    depth=18, fpn_channels=128, min_size=256, max_size=256, anchor_sizes=(16, 32, 64, 128, 256),
    rpn_pre_nms_top_n=(600, 300), rpn_post_nms_top_n=(300, 300), box_batch_size=128, trainable_layers=5,
)


def faster_rcnn_r50_fpn(**overrides: Any) -> TwoStageDetector:
    """torchvision's fasterrcnn_resnet50_fpn."""
    return build_faster_rcnn(make_config(FasterRCNNConfig, overrides))


def faster_rcnn_r50_fpn_v2(**overrides: Any) -> TwoStageDetector:
    """torchvision's fasterrcnn_resnet50_fpn_v2: BN in trunk and FPN, a 2-conv RPN head, 4conv1fc (BN) box head."""
    defaults = dict(backbone_norm="BN", fpn_norm="BN", rpn_convs=2, box_head="4conv1fc", box_head_norm="BN",
                    trainable_layers=5)
    return build_faster_rcnn(make_config(FasterRCNNConfig, {**defaults, **overrides}))


def faster_rcnn_r50_c4(**overrides: Any) -> TwoStageDetector:
    """The seed's C4 baseline: RPN (15 anchors) and 14x14 RoIAlign on res4, res5 + average pooling as the head."""
    defaults = dict(fpn=False, box_resolution=14, rpn_pre_nms_top_n=(12000, 6000), rpn_post_nms_top_n=(2000, 1000))
    return build_faster_rcnn(make_config(FasterRCNNConfig, {**defaults, **overrides}))


def faster_rcnn_r18_fpn(**overrides: Any) -> TwoStageDetector:
    """A CPU-sized Faster R-CNN: ResNet-18, 128-channel FPN, small inputs (trains on `shapes` in minutes)."""
    return build_faster_rcnn(make_config(FasterRCNNConfig, {**SMALL, **overrides}))
