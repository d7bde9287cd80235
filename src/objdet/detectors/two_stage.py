"""The two-stage detector frame shared by Fast, Faster, Mask and Keypoint R-CNN: transform -> backbone
(-> neck) -> proposals (RPN, or given per image) -> RoI box stage -> the RoI stages that follow it (masks,
keypoints), whose outputs are merged into the detections."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from objdet import fused
from objdet.detectors.base import ClassRows, Detector, check_targets
from objdet.errors import ConfigError
from objdet.heads.box_head import RoIBoxStage
from objdet.heads.mask_head import MaskStage
from objdet.heads.roi_stage import RoIStage
from objdet.heads.rpn import RegionProposalNetwork
from objdet.norm import fold_frozen_batchnorms
from objdet.tracing import image_size
from objdet.transform import DetectionTransform


class TwoStageDetector(Detector):
    """R-CNN family detector with torchvision's calling convention: `model(images, targets)` returns losses
    in train mode, `model(images)` detections in eval mode. Without an RPN, pass `proposals` (per image,
    xyxy in input-image pixels) as Fast R-CNN does."""

    def __init__(
        self,
        config: Any,
        transform: DetectionTransform,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: RegionProposalNetwork | None,
        box_stage: RoIBoxStage,
        rpn_levels: Sequence[str],
        roi_levels: Sequence[str],
        mask_stage: MaskStage | None = None,
        keypoint_stage: RoIStage | None = None,
    ):
        super().__init__()
        self.config = config  # the full config dataclass it was built from (checkpoints rebuild from it)
        self.transform = transform
        self.backbone = backbone
        self.neck = neck
        self.rpn = rpn
        self.box_stage = box_stage
        self.mask_stage = mask_stage
        self.keypoint_stage = keypoint_stage
        self.num_classes = config.num_classes
        self.rpn_levels = list(rpn_levels)
        self.roi_levels = list(roi_levels)
        self.channels_last = False

    def fuse_for_inference(self) -> TwoStageDetector:
        """Fold frozen batch norms into the conv modules for good (eval mode already runs folded copies, see
        `objdet.fused`). Changes the state dict's keys, so save checkpoints before calling it."""
        fold_frozen_batchnorms(self)
        self.channels_last = True
        return self.to(memory_format=torch.channels_last).eval()

    def class_rows(self) -> dict[str, ClassRows | None]:
        """The class-specific tensors (state-dict names) and how they hold their classes: the box predictor's
        K+1 scores and 4(K+1) deltas, the mask logits, and the keypoint deconv (specific to the keypoint set)."""
        modules = {"box_stage.predictor.cls_score": 1, "box_stage.predictor.bbox_pred": 4}
        if self.mask_stage is not None:
            modules["mask_stage.head.logits"] = self.mask_stage.head.rows_per_class
        rows: dict[str, ClassRows | None] = {f"{m}.{p}": ClassRows(per_class=n, background=True)
                                             for m, n in modules.items() for p in ("weight", "bias")}
        if self.keypoint_stage is not None:
            rows.update({"keypoint_stage.head.deconv.weight": None, "keypoint_stage.head.deconv.bias": None})
        return rows

    def train(self, mode: bool = True) -> TwoStageDetector:
        if mode:
            fused.clear(self)  # the eval path's folded weights go stale in training
        return super().train(mode)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Backbone (and neck) feature maps by level name; channels-last in eval mode (faster convolutions)."""
        if self.channels_last or fused.active(self, x):
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats

    def roi_stages(self) -> list[RoIStage]:
        """The stages after the box stage, in the order they run."""
        return [s for s in (self.mask_stage, self.keypoint_stage) if s is not None]

    def _needs(self) -> list[str]:
        return (["masks"] if self.mask_stage is not None else []) + (
            ["keypoints"] if self.keypoint_stage is not None else []
        )

    def _check(self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None,
               proposals: Sequence[Tensor] | None) -> None:
        if self.training:
            if targets is None:
                raise ConfigError("a detector in train mode needs targets; call model.eval() to predict")
            check_targets(targets, self.num_classes, self._needs())
        if self.rpn is not None:
            return
        if proposals is None or len(proposals) != len(images):
            raise ConfigError("this detector has no RPN: pass `proposals`, one [N, 4] tensor per image")
        for i, p in enumerate(proposals):
            if p.ndim != 2 or p.shape[-1] != 4:
                raise ConfigError(f"proposals of image {i} have shape {tuple(p.shape)}, expected [N, 4] xyxy")

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
        proposals: Sequence[Tensor] | None = None,
    ):
        """Losses (train mode, targets required) or a list of detections per image (eval mode)."""
        self._check(images, targets, proposals)
        original_sizes = [image_size(im) for im in images]
        batch, targets = self.transform(list(images), targets if self.training else None)
        feats = self.features(batch.tensors)
        losses: dict[str, Tensor] = {}
        if self.rpn is not None:
            rois, losses = self.rpn(batch.tensors, batch.image_sizes, [feats[k] for k in self.rpn_levels], targets)
        else:
            assert proposals is not None  # _check refuses a detector without an RPN and without proposals
            rois = [
                p.to(batch.tensors.dtype) * p.new_tensor([r[1] / o[1], r[0] / o[0]] * 2)
                for p, r, o in zip(proposals, batch.image_sizes, original_sizes)
            ]
        roi_feats = [feats[k] for k in self.roi_levels]
        if fused.active(self, batch.tensors):  # RoIAlign reads NCHW: convert each map once, not once per stage
            roi_feats = [f.contiguous() for f in roi_feats]
        if self.training:
            box_losses, samples = self.box_stage.losses(roi_feats, rois, batch.image_sizes, targets)
            losses.update(box_losses)
            boxes, matched = samples.positives()
            labels = [t["labels"][m] for t, m in zip(targets, matched)]
            for stage in self.roi_stages():
                losses.update(stage(roi_feats, batch.image_sizes, boxes, labels, targets, matched))
            return losses
        detections = self.box_stage(roi_feats, rois, batch.image_sizes)
        boxes, labels = [d["boxes"] for d in detections], [d["labels"] for d in detections]
        for stage in self.roi_stages():
            for det, extra in zip(detections, stage(roi_feats, batch.image_sizes, boxes, labels)):
                det.update(extra)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)
