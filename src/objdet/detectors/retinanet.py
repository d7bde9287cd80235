"""RetinaNet: a ResNet trunk, an FPN with P6/P7 and two dense subnets trained with focal loss."""

from __future__ import annotations

from dataclasses import dataclass

from objdet.anchors import AnchorGenerator, retinanet_sizes
from objdet.backbones.resnet import ResNetBackbone
from objdet.boxes import BoxCoder
from objdet.detectors.dense import DenseDetector, DenseLoss, DensePostprocess
from objdet.errors import ConfigError
from objdet.heads.retina_head import RetinaSubnet
from objdet.necks.fpn import FPN
from objdet.transform import DetectionTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class RetinaNetConfig:
    """RetinaNet's options; defaults follow the seed (P6 from C5, smooth L1) with torchvision's anchors."""

    num_classes: int = 90
    background_channel: bool = False  # torchvision's layout: class channel 0 is background, never output
    depth: int = 50
    backbone_norm: str = "FrozenBN"
    frozen_bn_eps: float = 1e-5       # torchvision's released v1 weights run with 0
    trainable_layers: int = 3
    backbone_weights: str | None = None  # a local torchvision ImageNet .pth
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


class RetinaNet(DenseDetector):
    """RetinaNet with torchvision's calling convention (losses in train mode, detections in eval mode)."""

    def __init__(self, config: RetinaNetConfig) -> None:
        if config.extra not in ("p6p7", "p6p7_p5"):
            raise ConfigError(f"RetinaNet needs P6/P7: extra must be 'p6p7' or 'p6p7_p5', got {config.extra!r}")
        levels = range(3, 8)
        backbone = ResNetBackbone(config.depth, config.backbone_norm, config.trainable_layers,
                                  config.backbone_weights, config.frozen_bn_eps)
        neck = FPN({k: backbone.out_channels[k] for k in ("C3", "C4", "C5")}, config.fpn_channels, config.extra)
        num_anchors = config.scales_per_octave * len(config.aspect_ratios)
        channels = config.num_classes + int(config.background_channel)
        label_offset = 0 if config.background_channel else 1
        coder = BoxCoder()
        super().__init__(
            backbone, neck,
            class_head=RetinaSubnet(config.fpn_channels, num_anchors, channels, config.head_depth,
                                    config.head_norm, prior_prob=0.01),
            box_head=RetinaSubnet(config.fpn_channels, num_anchors, 4, config.head_depth, config.head_norm),
            anchor_generator=AnchorGenerator(retinanet_sizes(levels, config.scales_per_octave, config.anchor_scale, truncate=True),
                                             [config.aspect_ratios] * len(levels)),
            transform=DetectionTransform(config.min_size, config.max_size, config.image_mean, config.image_std),
            loss=DenseLoss(config.fg_iou, config.bg_iou, allow_low_quality=True, alpha=config.alpha,
                           gamma=config.gamma, box_loss=config.box_loss, beta=config.smooth_l1_beta,
                           normalizer="image", label_offset=label_offset, box_coder=coder),
            postprocess=DensePostprocess(config.score_thresh, config.candidates, per_level=True,
                                         nms_thresh=config.nms_thresh,
                                         detections_per_img=config.detections_per_img,
                                         label_offset=label_offset, box_coder=coder),
            num_classes=config.num_classes,
            levels=levels,
        )
        self.config = config


def retinanet(**overrides) -> RetinaNet:
    """Build a RetinaNet from `RetinaNetConfig` fields."""
    try:
        config = RetinaNetConfig(**overrides)
    except TypeError as err:
        raise ConfigError(f"bad RetinaNet option: {err}") from None
    return RetinaNet(config)


def retinanet_r50_fpn(**overrides) -> RetinaNet:
    """RetinaNet with a ResNet-50 FPN trunk (the seed's configuration)."""
    return retinanet(**{"depth": 50, **overrides})


def retinanet_r18_fpn(**overrides) -> RetinaNet:
    """A CPU-friendly RetinaNet: ResNet-18 trunk, 128-channel FPN and subnets, smaller images."""
    return retinanet(**{"depth": 18, "fpn_channels": 128, "min_size": 512, "max_size": 853, **overrides})
