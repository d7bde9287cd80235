"""RetinaNet assembled from its parts: a ResNet trunk, an FPN with P6/P7, two dense subnets (class and box)
trained with focal loss, torchvision's anchors (three octave scales x three aspect ratios per level)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from objdet.anchors import AnchorGenerator, retinanet_sizes
from objdet.backbones.resnet import ResNetBackbone
from objdet.boxes import BoxCoder
from objdet.detectors.base import AnchorPlan, DetectorConfig
from objdet.detectors.dense import DenseDetector, DenseLoss, DensePostprocess
from objdet.errors import ConfigError
from objdet.heads.retina_head import RetinaSubnet
from objdet.necks.fpn import FPN
from objdet.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform

LEVELS = range(3, 8)  # P3..P7


@dataclass
class RetinaNetConfig(DetectorConfig):
    """RetinaNet's options; defaults follow the seed (P6 from C5, smooth L1) with torchvision's anchors."""

    background_channel: bool = False  # torchvision's layout: class channel 0 is background, never output
    depth: int = 50
    backbone_norm: str = "FrozenBN"
    frozen_bn_eps: float = 1e-5       # torchvision's released v1 weights run with 0
    trainable_layers: int = 3
    extra: str = "p6p7"              # "p6p7": P6 from C5 (the seed); "p6p7_p5": from P5 (torchvision v1)
    fpn_channels: int = 256
    head_depth: int = 4
    head_norm: str | None = None      # "GN" for GroupNorm in the subnets
    scales_per_octave: int = 3
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_scale: float = 4.0         # anchor side at level l is anchor_scale * 2^l (32 px at P3); smaller for small images
    # training
    fg_iou: float = 0.5
    bg_iou: float = 0.4
    alpha: float = 0.25
    gamma: float = 2.0
    box_loss: str = "smooth_l1"       # "smooth_l1" | "l1" | "giou"
    smooth_l1_beta: float = 1.0 / 9
    # inference
    score_thresh: float = 0.05
    candidates: int = 1000            # per level
    nms_thresh: float = 0.5
    detections_per_img: int = 300
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def scratch_fields(self, image_size: int) -> dict[str, Any]:
        """GroupNorm in trunk and subnets (the focal loss's early gradients need a normalised trunk from random
        weights), every layer trainable, images kept at their size."""
        return {"min_size": image_size, "max_size": image_size, "backbone_norm": "GN", "head_norm": "GN",
                "trainable_layers": 5}

    def input_transform(self) -> DetectionTransform:
        return DetectionTransform(self.min_size, self.max_size, self.image_mean, self.image_std)

    def anchor_plan(self) -> AnchorPlan:
        """torchvision's anchors on P3..P7 (integer octave sizes x aspect ratios); foreground from `fg_iou`."""
        sizes = retinanet_sizes(LEVELS, self.scales_per_octave, self.anchor_scale, truncate=True)
        generator = AnchorGenerator(sizes, [self.aspect_ratios] * len(LEVELS))
        return AnchorPlan(generator, tuple(2**level for level in LEVELS), self.fg_iou, self.input_transform())

    def scaled_anchors(self, factor: float) -> dict[str, Any]:
        return {"anchor_scale": self.anchor_scale * factor}


def build_retinanet(cfg: RetinaNetConfig) -> DenseDetector:
    """ResNet C3..C5 -> FPN P3..P7 -> class and box subnets on every level, focal loss, per-level decoding."""
    if cfg.extra not in ("p6p7", "p6p7_p5"):
        raise ConfigError(f"RetinaNet needs P6/P7: extra must be 'p6p7' or 'p6p7_p5', got {cfg.extra!r}")
    levels = LEVELS
    backbone = ResNetBackbone(cfg.depth, cfg.backbone_norm, cfg.trainable_layers, frozen_bn_eps=cfg.frozen_bn_eps)
    neck = FPN({k: backbone.out_channels[k] for k in ("C3", "C4", "C5")}, cfg.fpn_channels, cfg.extra)
    num_anchors = cfg.scales_per_octave * len(cfg.aspect_ratios)
    label_offset = 0 if cfg.background_channel else 1
    coder = BoxCoder()
    return DenseDetector(
        cfg, backbone, neck,
        class_head=RetinaSubnet(cfg.fpn_channels, num_anchors, cfg.num_classes + int(cfg.background_channel),
                                cfg.head_depth, cfg.head_norm, prior_prob=0.01),
        box_head=RetinaSubnet(cfg.fpn_channels, num_anchors, 4, cfg.head_depth, cfg.head_norm),
        anchor_generator=cfg.anchor_plan().generator,
        transform=cfg.input_transform(),
        loss=DenseLoss(cfg.fg_iou, cfg.bg_iou, allow_low_quality=True, alpha=cfg.alpha, gamma=cfg.gamma,
                       box_loss=cfg.box_loss, beta=cfg.smooth_l1_beta, normalizer="image",
                       label_offset=label_offset, box_coder=coder),
        postprocess=DensePostprocess(cfg.score_thresh, cfg.candidates, per_level=True, nms_thresh=cfg.nms_thresh,
                                     detections_per_img=cfg.detections_per_img, label_offset=label_offset,
                                     box_coder=coder),
        levels=levels,
    )


# Zoo defaults of torchvision's retinanet_resnet50_fpn_v2: P6 from C5, GroupNorm subnets, GIoU box loss, BN trunk.
V2: dict[str, Any] = dict(extra="p6p7", head_norm="GN", box_loss="giou", backbone_norm="BN")
# Zoo defaults of the CPU-friendly variant: ResNet-18 trunk, 128-channel FPN and subnets, smaller images.
SMALL: dict[str, Any] = dict(depth=18, fpn_channels=128, min_size=512, max_size=853)
