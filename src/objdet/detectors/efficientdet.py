"""EfficientDet: an EfficientNet trunk, a BiFPN neck and class/box heads shared across P3..P7."""

from __future__ import annotations

import math
from dataclasses import dataclass

from objdet.backbones.efficientnet import EfficientNetBackbone
from objdet.boxes import BoxCoder
from objdet.detectors.dense import DenseDetector, DenseLoss, DensePostprocess, effdet_anchor_generator
from objdet.heads.effdet_head import EffDetHead
from objdet.errors import ConfigError
from objdet.necks.bifpn import GRAPHS, BiFPN, with_fusion
from objdet.transform import DetectionTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EfficientDetConfig:
    """Everything that tells one EfficientDet from another; defaults are D0 with TF "same" padding."""

    num_classes: int = 90
    backbone: str = "tf_efficientnet_b0"
    pretrained_backbone: bool = False
    drop_path_rate: float = 0.2
    image_size: int = 512
    fpn_channels: int = 64
    fpn_layers: int = 3
    head_depth: int = 3
    graph: str = "bifpn"           # "bifpn" | "fpn" (repeated top-down) | "panet"
    fusion: str = "fast"           # "fast" | "softmax" | "sum"
    same_padding: bool = True      # TensorFlow "same" max-pool padding (the tf_ checkpoints)
    conv_bias: bool = True         # the TF checkpoints' redundant conv bias before BN
    act: str = "silu"
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))  # (w, h) factors
    anchor_scale: float = 4.0
    # training (effdet's defaults)
    match_iou: float = 0.5
    alpha: float = 0.25
    gamma: float = 1.5
    huber_delta: float = 0.1
    box_loss_weight: float = 50.0
    # inference (effdet's DetBenchPredict)
    score_thresh: float = 0.0
    candidates: int = 5000         # top-k over all levels and classes before NMS
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD


class EfficientDet(DenseDetector):
    """EfficientDet with torchvision's calling convention (losses in train mode, detections in eval mode)."""

    def __init__(self, config: EfficientDetConfig) -> None:
        if config.graph not in GRAPHS:
            raise ConfigError(f"unknown BiFPN graph {config.graph!r}; known: {', '.join(GRAPHS)}")
        levels = range(config.min_level, config.max_level + 1)
        backbone = EfficientNetBackbone(config.backbone, config.pretrained_backbone, config.drop_path_rate)
        graph = with_fusion(GRAPHS[config.graph](config.min_level, config.max_level), config.fusion)
        neck = BiFPN(backbone.out_channels, config.fpn_channels, config.fpn_layers, graph, config.min_level,
                     config.max_level, config.act, config.same_padding, config.conv_bias)
        num_anchors = config.num_scales * len(config.aspect_ratios)
        head_args = dict(channels=config.fpn_channels, num_anchors=num_anchors, depth=config.head_depth,
                         num_levels=len(levels), act=config.act, conv_bias=config.conv_bias)
        coder = BoxCoder(clamp=math.inf)  # effdet decodes without clamping exp(t_w), exp(t_h)
        super().__init__(
            backbone, neck,
            class_head=EffDetHead(num_outputs=config.num_classes, prior_prob=0.01, **head_args),
            box_head=EffDetHead(num_outputs=4, **head_args),
            anchor_generator=effdet_anchor_generator(config.min_level, config.max_level, config.num_scales,
                                                     config.aspect_ratios, config.anchor_scale),
            transform=DetectionTransform(image_mean=config.image_mean, image_std=config.image_std,
                                         letterbox=config.image_size),
            loss=DenseLoss(config.match_iou, config.match_iou, allow_low_quality=True, alpha=config.alpha,
                           gamma=config.gamma, box_loss="huber", beta=config.huber_delta,
                           box_loss_weight=config.box_loss_weight, normalizer="batch", box_coder=coder),
            postprocess=DensePostprocess(config.score_thresh, config.candidates, per_level=False,
                                         nms_thresh=config.nms_thresh,
                                         detections_per_img=config.detections_per_img, box_coder=coder),
            num_classes=config.num_classes,
            levels=levels,
        )
        self.config = config


def efficientdet(**overrides) -> EfficientDet:
    """Build an EfficientDet from `EfficientDetConfig` fields."""
    try:
        config = EfficientDetConfig(**overrides)
    except TypeError as err:
        raise ConfigError(f"bad EfficientDet option: {err}") from None
    return EfficientDet(config)
