"""The two-stage detector frame shared by Fast, Faster, Mask and Keypoint R-CNN: transform -> backbone
(-> neck) -> proposals (RPN, or given per image) -> RoI box stage (-> mask / keypoint stages)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from objdet.anchors import AnchorGenerator
from objdet.backbones.resnet import ResNetBackbone
from objdet.errors import AnnotationError, ConfigError
from objdet.heads.box_head import BoxPredictor, ConvFCHead, RoIBoxStage, TwoFCHead
from objdet.heads.rpn import RegionProposalNetwork, RPNHead
from objdet.necks.fpn import FPN
from objdet.norm import fold_frozen_batchnorms
from objdet.roi import MultiLevelRoIPooler
from objdet.transform import DetectionTransform


def check_targets(targets: Sequence[dict[str, Tensor]], num_classes: int, needs: Sequence[str] = ()) -> None:
    """Reject targets the losses cannot use (bad box shape, empty boxes, labels out of 1..num_classes,
    missing masks/keypoints) with an AnnotationError naming the image."""
    for i, t in enumerate(targets):
        record = f"image {int(t['image_id']) if 'image_id' in t else i}"
        for key in ("boxes", "labels", *needs):
            if key not in t:
                raise AnnotationError(f"target has no {key!r}", record=record)
        boxes, labels = t["boxes"], t["labels"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or len(labels) != len(boxes):
            raise AnnotationError(f"boxes of shape {tuple(boxes.shape)} for {len(labels)} labels", record=record)
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(1) | ~torch.isfinite(boxes).all(1)
        if bad.any():
            raise AnnotationError(f"box {boxes[bad][0].tolist()} has no positive width and height", record=record)
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise AnnotationError(f"labels must lie in 1..{num_classes}, got {labels.tolist()}", record=record)
        for key, dims in (("masks", 3), ("keypoints", 3)):
            if key in needs and (t[key].ndim != dims or len(t[key]) != len(boxes)):
                raise AnnotationError(f"{key} of shape {tuple(t[key].shape)} for {len(boxes)} boxes", record=record)


class TwoStageDetector(nn.Module):
    """R-CNN family detector with torchvision's calling convention: `model(images, targets)` returns losses
    in train mode, `model(images)` detections in eval mode. Without an RPN, pass `proposals` (per image,
    xyxy in input-image pixels) as Fast R-CNN does."""

    def __init__(
        self,
        transform: DetectionTransform,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RegionProposalNetwork | None,
        box_stage: RoIBoxStage,
        num_classes: int,
        rpn_levels: Sequence[str],
        roi_levels: Sequence[str],
        roi_channels: int,
        mask_stage: nn.Module | None = None,
        keypoint_stage: nn.Module | None = None,
        config: RCNNConfig | None = None,
    ):
        super().__init__()
        self.config = config  # the dataclass it was built from (saved in checkpoints to rebuild it)
        self.transform = transform
        self.backbone = backbone
        self.neck = neck
        self.rpn = rpn
        self.box_stage = box_stage
        self.mask_stage = mask_stage
        self.keypoint_stage = keypoint_stage
        self.num_classes = num_classes
        self.rpn_levels = list(rpn_levels)
        self.roi_levels = list(roi_levels)
        self.roi_channels = roi_channels
        self.channels_last = False

    def fuse_for_inference(self) -> TwoStageDetector:
        """Fold frozen batch norms into their convs and run the convs channels-last: same outputs, faster
        inference. Changes the state dict's keys, so save checkpoints before calling it."""
        fold_frozen_batchnorms(self)
        self.channels_last = True
        return self.to(memory_format=torch.channels_last).eval()

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Backbone (and neck) feature maps by level name."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats

    def _needs(self) -> list[str]:
        return (["masks"] if self.mask_stage is not None else []) + (
            ["keypoints"] if self.keypoint_stage is not None else []
        )

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
        proposals: Sequence[Tensor] | None = None,
    ):
        """Losses (train mode, targets required) or a list of detections per image (eval mode)."""
        if self.training:
            if targets is None:
                raise ConfigError("a detector in train mode needs targets; call model.eval() to predict")
            check_targets(targets, self.num_classes, self._needs())
        if self.rpn is None and (proposals is None or len(proposals) != len(images)):
            raise ConfigError("this detector has no RPN: pass `proposals`, one [N, 4] tensor per image")
        for i, p in enumerate(proposals if self.rpn is None else []):
            if p.ndim != 2 or p.shape[-1] != 4:
                raise ConfigError(f"proposals of image {i} have shape {tuple(p.shape)}, expected [N, 4] xyxy")
        original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch, targets = self.transform(list(images), [dict(t) for t in targets] if self.training else None)
        feats = self.features(batch.tensors)
        losses: dict[str, Tensor] = {}
        if self.rpn is not None:
            rois, losses = self.rpn(batch.tensors, batch.image_sizes, [feats[k] for k in self.rpn_levels], targets)
        else:
            rois = [
                p.to(batch.tensors.dtype) * p.new_tensor([r[1] / o[1], r[0] / o[0]] * 2)
                for p, r, o in zip(proposals, batch.image_sizes, original_sizes)
            ]
        roi_feats = [feats[k] for k in self.roi_levels]
        detections, box_losses, samples = self.box_stage(roi_feats, rois, batch.image_sizes, targets)
        losses.update(box_losses)
        for stage in (self.mask_stage, self.keypoint_stage):
            if stage is not None:
                losses.update(stage(roi_feats, batch.image_sizes, detections, samples, targets))
        if self.training:
            return losses
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


@dataclass
class RCNNConfig:
    """Fields shared by the R-CNN family; defaults are torchvision's ResNet-50-FPN detectors (COCO, 90 classes)."""

    num_classes: int = 90
    depth: int = 50
    backbone_norm: str = "FrozenBN"
    frozen_bn_eps: float = 1e-5       # torchvision's released v1 weights run with 0
    trainable_layers: int = 3
    fpn: bool = True
    fpn_channels: int = 256
    fpn_norm: str | None = None
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
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


def make_config(cls: type, overrides: dict[str, Any]):
    """Instantiate the config dataclass `cls` with `overrides`, naming any unknown field."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return cls(**overrides)


def make_transform(cfg: RCNNConfig) -> DetectionTransform:
    return DetectionTransform(cfg.min_size, cfg.max_size, list(cfg.image_mean), list(cfg.image_std))


def make_backbone(cfg: RCNNConfig) -> tuple[nn.Module, nn.Module | None, list[str], list[str], int]:
    """ResNet trunk and FPN neck (or, for C4, the trunk up to res4): (backbone, neck, rpn levels, RoI levels, channels)."""
    backbone = ResNetBackbone(cfg.depth, norm=cfg.backbone_norm, trainable_layers=cfg.trainable_layers,
                              frozen_bn_eps=cfg.frozen_bn_eps)
    if cfg.fpn:
        neck = FPN(backbone.out_channels, cfg.fpn_channels, extra="maxpool", norm=cfg.fpn_norm)
        return backbone, neck, ["P2", "P3", "P4", "P5", "P6"], ["P2", "P3", "P4", "P5"], cfg.fpn_channels
    return backbone, None, ["C4"], ["C4"], backbone.out_channels["C4"]


def make_rpn(cfg: RCNNConfig, channels: int) -> RegionProposalNetwork:
    """One anchor size per level with FPN (the seed's 32..512 over P2..P6); all sizes on the single C4 map."""
    if cfg.fpn:
        sizes = [[s] for s in cfg.anchor_sizes]
    else:
        sizes = [list(cfg.anchor_sizes)]
    ratios = [list(cfg.aspect_ratios)] * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    head = RPNHead(channels, len(sizes[0]) * len(ratios[0]), cfg.rpn_convs)
    return RegionProposalNetwork(
        anchors, head, cfg.rpn_fg_iou, cfg.rpn_bg_iou, cfg.rpn_batch_size, cfg.rpn_positive_fraction,
        cfg.rpn_pre_nms_top_n, cfg.rpn_post_nms_top_n, cfg.rpn_nms,
    )


def make_box_stage(cfg: RCNNConfig, channels: int, head: nn.Module | None = None) -> RoIBoxStage:
    """RoI pooler, box head (2fc, 4conv1fc with `box_head_norm`, or a given module) and predictor."""
    pooler = MultiLevelRoIPooler(cfg.box_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    if head is None and cfg.box_head == "2fc":
        head = TwoFCHead(channels, cfg.box_resolution, cfg.box_head_dim)
    elif head is None and cfg.box_head == "4conv1fc":
        head = ConvFCHead(channels, cfg.box_resolution, fc=(cfg.box_head_dim,), norm=cfg.box_head_norm)
    elif head is None:
        raise ConfigError(f"unknown box_head {cfg.box_head!r}; choose '2fc' or '4conv1fc'")
    return RoIBoxStage(
        pooler, head, BoxPredictor(head.out_features, cfg.num_classes),
        cfg.box_fg_iou, cfg.box_bg_iou, cfg.box_bg_iou_floor, cfg.box_batch_size, cfg.box_positive_fraction,
        score_thresh=cfg.score_thresh, nms_thresh=cfg.nms, detections_per_img=cfg.detections_per_img,
    )
