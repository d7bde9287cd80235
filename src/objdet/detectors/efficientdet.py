"""EfficientDet assembled from its parts: an EfficientNet trunk, a BiFPN neck and class/box heads shared across
P3..P7, effdet's anchors and losses; and compound scaling, D0..D7 from one coefficient."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from objdet.anchors import effdet_anchor_generator
from objdet.backbones.efficientnet import EfficientNetBackbone
from objdet.boxes import BoxCoder
from objdet.detectors.base import AnchorPlan, DetectorConfig
from objdet.detectors.dense import DenseDetector, DenseLoss, DensePostprocess
from objdet.errors import ConfigError
from objdet.heads.effdet_head import EffDetHead
from objdet.necks.bifpn import GRAPHS, BiFPN, with_fusion
from objdet.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform


@dataclass
class EfficientDetConfig(DetectorConfig):
    """Everything that tells one EfficientDet from another; defaults are D0 with TF "same" padding."""

    backbone: str = "tf_efficientnet_b0"
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

    @property
    def fixed_size(self) -> int | None:
        return self.image_size

    def scratch_fields(self, image_size: int) -> dict[str, Any]:
        """Only the input size: the BatchNorm trunk, neck and heads train from random weights as they are."""
        return {"image_size": image_size}

    def input_transform(self) -> DetectionTransform:
        return DetectionTransform(image_mean=self.image_mean, image_std=self.image_std, letterbox=self.image_size)

    def anchor_plan(self) -> AnchorPlan:
        """effdet's anchors on P`min_level`..P`max_level`; foreground from `match_iou`."""
        generator = effdet_anchor_generator(self.min_level, self.max_level, self.num_scales, self.aspect_ratios,
                                            self.anchor_scale)
        strides = tuple(2**level for level in range(self.min_level, self.max_level + 1))
        return AnchorPlan(generator, strides, self.match_iou, self.input_transform())

    def scaled_anchors(self, factor: float) -> dict[str, Any]:
        return {"anchor_scale": self.anchor_scale * factor}


def build_efficientdet(cfg: EfficientDetConfig) -> DenseDetector:
    """EfficientNet C3..C5 -> BiFPN P3..P7 (`fpn_layers` layers of the `graph`) -> shared class and box heads."""
    if cfg.graph not in GRAPHS:
        raise ConfigError(f"unknown BiFPN graph {cfg.graph!r}; known: {', '.join(GRAPHS)}")
    levels = range(cfg.min_level, cfg.max_level + 1)
    backbone = EfficientNetBackbone(cfg.backbone, drop_path_rate=cfg.drop_path_rate)
    graph = with_fusion(GRAPHS[cfg.graph](cfg.min_level, cfg.max_level), cfg.fusion)
    neck = BiFPN(backbone.out_channels, cfg.fpn_channels, cfg.fpn_layers, graph, cfg.min_level, cfg.max_level,
                 cfg.act, cfg.same_padding, cfg.conv_bias)
    head_args = dict(channels=cfg.fpn_channels, num_anchors=cfg.num_scales * len(cfg.aspect_ratios),
                     depth=cfg.head_depth, num_levels=len(levels), act=cfg.act, conv_bias=cfg.conv_bias)
    coder = BoxCoder(clamp=math.inf)  # effdet decodes without clamping exp(t_w), exp(t_h)
    return DenseDetector(
        cfg, backbone, neck,
        class_head=EffDetHead(num_outputs=cfg.num_classes, prior_prob=0.01, **head_args),
        box_head=EffDetHead(num_outputs=4, **head_args),
        anchor_generator=cfg.anchor_plan().generator,
        transform=cfg.input_transform(),
        loss=DenseLoss(cfg.match_iou, cfg.match_iou, allow_low_quality=True, alpha=cfg.alpha, gamma=cfg.gamma,
                       box_loss="huber", beta=cfg.huber_delta, box_loss_weight=cfg.box_loss_weight,
                       normalizer="batch", box_coder=coder),
        postprocess=DensePostprocess(cfg.score_thresh, cfg.candidates, per_level=False, nms_thresh=cfg.nms_thresh,
                                     detections_per_img=cfg.detections_per_img, box_coder=coder),
        levels=levels,
    )


# EfficientDet's compound scaling: the seed's formulas, then the rounding the paper published in its
# Table 1 where it departs from "nearest multiple of 8": widths 112 (D2) and 224 (D4), BiFPN depth
# held at 7 for D5 and 8 beyond, R = 1280 for D5 and 1536 for D7, D7 reusing D6's trunk and width.
_PUBLISHED_ROUNDING: dict[int, dict[str, int]] = {
    2: {"fpn_channels": 112},
    4: {"fpn_channels": 224},
    5: {"fpn_layers": 7, "image_size": 1280},
    6: {"fpn_layers": 8},
    7: {"fpn_channels": 384, "fpn_layers": 8, "image_size": 1536, "trunk": 6},
}


def efficientdet_scaling(phi: int) -> dict[str, Any]:
    """EfficientDet-D{phi} config fields from one coefficient: W = 64*1.35^phi, D = 3+phi, D_class = 3+phi//3,
    R = 512+128*phi, rounded as the paper's table (channels to a multiple of 8 unless it published another)."""
    if not 0 <= phi <= 7:
        raise ConfigError(f"EfficientDet compound coefficient must be 0..7, got {phi}")
    fields = {
        "fpn_channels": 8 * round(64 * 1.35**phi / 8),
        "fpn_layers": 3 + phi,
        "head_depth": 3 + phi // 3,
        "image_size": 512 + 128 * phi,
        "trunk": phi,
    }
    fields.update(_PUBLISHED_ROUNDING.get(phi, {}))
    trunk = fields.pop("trunk")
    fields["backbone"] = f"tf_efficientnet_b{trunk}"
    if phi >= 6:
        fields["fusion"] = "sum"  # D6/D7 fuse by plain sums (the released checkpoints, for training stability)
    if phi == 7:
        fields["anchor_scale"] = 5.0
    return fields
