"""The R-CNN family assembled from its parts: a ResNet trunk with FPN (or the C4 variant: RPN and RoI pooling
on res4, res5 as the RoI head), a Region Proposal Network (or proposals given with the images, Fast R-CNN),
the RoI box stage, and the mask and keypoint stages the config asks for (Mask / Keypoint R-CNN).

One config, `RCNNConfig`, describes every member; its fields say what the model has (`rpn`, `masks`,
`num_keypoints`), and `build_rcnn` composes the parts in one pass from what the trunk reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from objdet.anchors import AnchorGenerator
from objdet.backbones.resnet import ResNetBackbone, res5_stage
from objdet.detectors.base import AnchorPlan, DetectorConfig
from objdet.detectors.keypoint_rcnn import keypoint_stage
from objdet.detectors.mask_rcnn import mask_stage
from objdet.detectors.two_stage import TwoStageDetector
from objdet.errors import ConfigError
from objdet.heads.box_head import BoxPredictor, ConvFCHead, RoIBoxStage, TwoFCHead
from objdet.heads.rpn import RegionProposalNetwork, RPNHead
from objdet.necks.fpn import FPN
from objdet.roi import MultiLevelRoIPooler
from objdet.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform


@dataclass
class RCNNConfig(DetectorConfig):
    """Every R-CNN's fields; defaults are torchvision's ResNet-50-FPN Faster R-CNN (COCO, 90 classes)."""

    depth: int = 50
    backbone_norm: str = "FrozenBN"
    frozen_bn_eps: float = 1e-5       # torchvision's released v1 weights run with 0
    trainable_layers: int = 3
    fpn: bool = True                  # False: the C4 detector (RPN and RoIs on res4, res5 as the RoI head)
    fpn_channels: int = 256
    fpn_norm: str | None = None
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    # proposals
    rpn: bool = True                  # False: Fast R-CNN, proposals come with the images
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_convs: int = 1
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)
    rpn_nms: float = 0.7
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    # box stage
    roi_pooler: str = "align"
    box_resolution: int = 7
    sampling_ratio: int = 2
    box_head: str = "2fc"
    box_head_norm: str | None = None
    box_head_dim: int = 1024          # width of the box head's fully connected layers
    box_fg_iou: float = 0.5
    box_bg_iou: float = 0.5
    box_bg_iou_floor: float = 0.0
    box_batch_size: int = 512
    box_positive_fraction: float = 0.25
    score_thresh: float = 0.05
    nms: float = 0.5
    detections_per_img: int = 100
    # mask stage (Mask R-CNN)
    masks: bool = False
    mask_resolution: int = 14
    mask_head: str = "fcn"            # "fcn" | "mlp"
    mask_head_norm: str | None = None
    mask_softmax: bool = False
    # keypoint stage (Keypoint R-CNN): 0 keypoints means none
    num_keypoints: int = 0
    keypoint_resolution: int = 14
    keypoint_convs: int = 8
    keypoint_channels: int = 512

    @property
    def has_masks(self) -> bool:
        return self.masks

    @property
    def keypoint_count(self) -> int:
        return self.num_keypoints

    def scratch_fields(self, image_size: int) -> dict[str, Any]:
        """BatchNorm trunk (cheaper than GroupNorm on the CPU; batch 4 of 128 px images gives it enough
        statistics), every layer trainable, images kept at their size, anchors scaled to it (8..128 px at
        128), as `objdet demo` trains (BENCHMARKS.md, "objdet demo")."""
        anchors = tuple(max(1, image_size // 16) * 2**i for i in range(5))
        return {"min_size": image_size, "max_size": image_size, "backbone_norm": "BN", "trainable_layers": 5,
                "anchor_sizes": anchors}

    def input_transform(self) -> DetectionTransform:
        return DetectionTransform(self.min_size, self.max_size, list(self.image_mean), list(self.image_std))

    def anchor_plan(self) -> AnchorPlan | None:
        """The RPN's anchors: one size per level with FPN (the seed's 32..512 over P2..P6, strides 4..64),
        all sizes on the single C4 map (stride 16); foreground from `rpn_fg_iou`."""
        if not self.rpn:
            return None
        sizes = [[s] for s in self.anchor_sizes] if self.fpn else [list(self.anchor_sizes)]
        generator = AnchorGenerator(sizes, [list(self.aspect_ratios)] * len(sizes))
        strides = tuple(2 ** (k + 2) for k in range(len(sizes))) if self.fpn else (16,)
        return AnchorPlan(generator, strides, self.rpn_fg_iou, self.input_transform())

    def scaled_anchors(self, factor: float) -> dict[str, Any]:
        return {"anchor_sizes": tuple(max(1, round(s * factor)) for s in self.anchor_sizes)} if self.rpn else {}


class Res5Head(nn.Module):
    """The C4 detector's RoI head: res5 (stride 2) on 14x14 RoIs, then global average pooling."""

    def __init__(self, res5: nn.Module, out_features: int):
        super().__init__()
        self.res5 = res5
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.res5(x).mean((2, 3))


def trunk(cfg: RCNNConfig) -> tuple[ResNetBackbone, FPN | None, list[str], list[str], int]:
    """ResNet trunk and FPN neck (or, for C4, the trunk up to res4): (backbone, neck, RPN levels, RoI levels,
    RoI feature channels)."""
    backbone = ResNetBackbone(cfg.depth, norm=cfg.backbone_norm, trainable_layers=cfg.trainable_layers,
                              frozen_bn_eps=cfg.frozen_bn_eps, top_level=5 if cfg.fpn else 4)
    if not cfg.fpn:
        return backbone, None, ["C4"], ["C4"], backbone.out_channels["C4"]
    neck = FPN(backbone.out_channels, cfg.fpn_channels, extra="maxpool", norm=cfg.fpn_norm)
    return backbone, neck, neck.out_keys, neck.out_keys[:-1], cfg.fpn_channels


def region_proposals(cfg: RCNNConfig, channels: int) -> RegionProposalNetwork:
    """The RPN on the config's anchors (`RCNNConfig.anchor_plan`)."""
    plan = cfg.anchor_plan()
    assert plan is not None  # built only when cfg.rpn, which is when the config has an anchor plan
    anchors = plan.generator
    head = RPNHead(channels, anchors.num_anchors_per_location()[0], cfg.rpn_convs)
    return RegionProposalNetwork(
        anchors, head, cfg.rpn_fg_iou, cfg.rpn_bg_iou, cfg.rpn_batch_size,
        cfg.rpn_positive_fraction, cfg.rpn_pre_nms_top_n, cfg.rpn_post_nms_top_n, cfg.rpn_nms,
    )


def box_stage(cfg: RCNNConfig, channels: int) -> RoIBoxStage:
    """RoI pooler, box head (2fc, 4conv1fc with `box_head_norm`, or C4's res5) and predictor."""
    pooler = MultiLevelRoIPooler(cfg.box_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    head: nn.Module
    if not cfg.fpn:
        res5 = res5_stage(cfg.depth, cfg.backbone_norm, cfg.frozen_bn_eps, trainable=cfg.trainable_layers >= 1)
        head = Res5Head(res5, channels * 2)
    elif cfg.box_head == "2fc":
        head = TwoFCHead(channels, cfg.box_resolution, cfg.box_head_dim)
    elif cfg.box_head == "4conv1fc":
        head = ConvFCHead(channels, cfg.box_resolution, fc=(cfg.box_head_dim,), norm=cfg.box_head_norm)
    else:
        raise ConfigError(f"unknown box_head {cfg.box_head!r}; choose '2fc' or '4conv1fc'")
    return RoIBoxStage(
        pooler, head, BoxPredictor(head.out_features, cfg.num_classes),
        cfg.box_fg_iou, cfg.box_bg_iou, cfg.box_bg_iou_floor, cfg.box_batch_size, cfg.box_positive_fraction,
        score_thresh=cfg.score_thresh, nms_thresh=cfg.nms, detections_per_img=cfg.detections_per_img,
    )


def build_rcnn(cfg: RCNNConfig) -> TwoStageDetector:
    """Transform, trunk (+ FPN), RPN (unless proposals are given), box stage, and the mask and keypoint stages
    `cfg` asks for, all on the RoI levels the trunk reports."""
    backbone, neck, rpn_levels, roi_levels, channels = trunk(cfg)
    return TwoStageDetector(
        cfg, cfg.input_transform(), backbone, neck,
        rpn=region_proposals(cfg, channels) if cfg.rpn else None,
        box_stage=box_stage(cfg, channels),
        rpn_levels=rpn_levels if cfg.rpn else [],
        roi_levels=roi_levels,
        mask_stage=mask_stage(cfg, channels) if cfg.masks else None,
        keypoint_stage=keypoint_stage(cfg, channels) if cfg.num_keypoints else None,
    )


# Zoo defaults of the Faster R-CNN entries (objdet.zoo names them).
V2: dict[str, Any] = dict(  # torchvision's *_v2: BN in trunk and FPN, a 2-conv RPN head, 4conv1fc (BN) box head
    backbone_norm="BN", fpn_norm="BN", rpn_convs=2, box_head="4conv1fc", box_head_norm="BN", trainable_layers=5,
)
C4: dict[str, Any] = dict(  # the seed's C4 baseline: 15 anchors on res4, 14x14 RoIAlign, res5 + average pooling
    fpn=False, box_resolution=14, rpn_pre_nms_top_n=(12000, 6000), rpn_post_nms_top_n=(2000, 1000),
)
SMALL: dict[str, Any] = dict(  # CPU-sized: ResNet-18, a 128-channel FPN, small images, fewer RoIs
    depth=18, fpn_channels=128, min_size=256, max_size=256, anchor_sizes=(16, 32, 64, 128, 256),
    rpn_pre_nms_top_n=(600, 300), rpn_post_nms_top_n=(300, 300), box_batch_size=128, trainable_layers=5,
)
