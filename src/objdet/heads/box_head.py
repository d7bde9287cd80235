"""The RoI box stage shared by Fast/Faster/Mask R-CNN: sample RoIs against the ground truth, pool
their features, a 2fc (or conv+fc) head, a (K+1)-way classifier with class-specific box regression,
and per-class NMS at inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet import fused
from objdet.boxes import BoxCoder, box_iou, clip_boxes, full_precision, remove_small_boxes
from objdet.losses import smooth_l1_loss
from objdet.matching import FgBgSampler, Matcher
from objdet.nms import batched_nms
from objdet.layers import conv_stack
from objdet.roi import split_per_image


class TwoFCHead(nn.Module):
    """Flatten the pooled RoI and apply two fully connected layers with ReLU (the FPN paper's 2fc head)."""

    def __init__(self, in_channels: int, resolution: int, hidden: int = 1024):
        super().__init__()
        self.fc6 = nn.Linear(in_channels * resolution * resolution, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        if fused.active(self, x):
            x = fused.linear(x.flatten(1), self.fc6.weight, self.fc6.bias, relu=True)
            return fused.linear(x, self.fc7.weight, self.fc7.bias, relu=True)
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class ConvFCHead(nn.Module):
    """`num_convs` 3x3 conv (+ norm) + ReLU, then fully connected layers (the 4conv1fc head, GN or BN)."""

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        num_convs: int = 4,
        conv_channels: int = 256,
        fc: Sequence[int] = (1024,),
        norm: str | None = "GN",
    ):
        super().__init__()
        self.convs = conv_stack(in_channels, conv_channels, num_convs, norm)
        c = conv_channels if num_convs else in_channels
        dims = [c * resolution * resolution, *fc]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_features = dims[-1]
        for m in self.convs.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(1)
        fast = fused.active(self, x)
        for fc in self.fcs:
            x = fused.linear(x, fc.weight, fc.bias, relu=True) if fast else F.relu(fc(x))
        return x


class BoxPredictor(nn.Module):
    """Class scores over K+1 classes (0 is background) and class-specific box deltas (4 per class)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, (num_classes + 1) * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


@dataclass
class RoISamples:
    """The RoIs kept for training, per image: boxes, label (0 = background), matched ground-truth index."""

    boxes: list[Tensor]
    labels: list[Tensor]
    matched: list[Tensor]

    def positives(self) -> tuple[list[Tensor], list[Tensor]]:
        """Boxes and matched ground-truth indices of the foreground RoIs (for the mask and keypoint heads)."""
        keep = [lb > 0 for lb in self.labels]
        return [b[k] for b, k in zip(self.boxes, keep)], [m[k] for m, k in zip(self.matched, keep)]


class RoIBoxStage(nn.Module):
    """Pooler + head + predictor, with the training sampler and loss and the inference post-processing."""

    def __init__(
        self,
        pooler: nn.Module,
        head: nn.Module,
        predictor: BoxPredictor,
        fg_iou: float = 0.5,
        bg_iou: float = 0.5,
        bg_iou_floor: float = 0.0,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        smooth_l1_beta: float = 1 / 9,
        box_loss_weight: float = 1.0,
    ):
        super().__init__()
        self.pooler = pooler
        self.head = head
        self.predictor = predictor
        self.box_coder = BoxCoder(box_weights)
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=False)
        self.sampler = FgBgSampler(batch_size_per_image, positive_fraction, bg_iou_floor=bg_iou_floor)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.smooth_l1_beta = smooth_l1_beta
        self.box_loss_weight = box_loss_weight

    def sample(self, proposals: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]) -> RoISamples:
        """Add the ground-truth boxes to the proposals, match by IoU and sample fg/bg RoIs per image."""
        boxes, matched, labels, ious = [], [], [], []
        for p, t in zip(proposals, targets):
            p = torch.cat([p, t["boxes"].to(p.dtype)])
            iou = box_iou(t["boxes"].to(p.dtype), p)
            m = self.matcher(iou)
            lb = t["labels"][m.clamp(min=0)] if len(t["labels"]) else torch.zeros_like(m)
            labels.append(torch.where(m >= 0, lb, torch.where(m == Matcher.BETWEEN, -1, 0)))
            ious.append(iou.max(0).values if len(iou) else p.new_zeros(len(p)))
            boxes.append(p)
            matched.append(m.clamp(min=0))
        pos, neg = self.sampler(labels, ious)
        keep = [torch.where(ps | ng)[0] for ps, ng in zip(pos, neg)]
        return RoISamples(
            [b[k] for b, k in zip(boxes, keep)], [lb[k] for lb, k in zip(labels, keep)], [m[k] for m, k in zip(matched, keep)]
        )

    def predict(
        self, features: Sequence[Tensor], boxes: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """Class logits [R, K+1] and box deltas [R, 4(K+1)] (float32) for the RoIs `boxes` (one tensor per image)."""
        logits, deltas = full_precision(*self.predictor(self.head(self.pooler(features, boxes, image_sizes))))
        return logits, deltas

    def loss_terms(
        self, samples: RoISamples, logits: Tensor, deltas: Tensor, targets: Sequence[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """L_cls + lambda * [c >= 1] * smooth L1 on the true class's deltas, both averaged over the sampled RoIs."""
        labels = torch.cat(samples.labels)
        cls_loss = F.cross_entropy(logits, labels)
        pos = torch.where(labels > 0)[0]
        # an image without objects has only background RoIs: its RoIs stand in for the (unused) gt boxes
        gt = torch.cat([t["boxes"][m] if len(t["boxes"]) else b for t, m, b in
                        zip(targets, samples.matched, samples.boxes)])
        reg_targets = self.box_coder.encode(gt[pos].to(deltas.dtype), torch.cat(samples.boxes)[pos])
        pred = deltas.view(len(labels), -1, 4)[pos, labels[pos]]
        box_loss = smooth_l1_loss(pred, reg_targets, beta=self.smooth_l1_beta, reduction="sum") / max(len(labels), 1)
        return {"loss_classifier": cls_loss, "loss_box_reg": self.box_loss_weight * box_loss}

    def postprocess(
        self, logits: Tensor, deltas: Tensor, proposals: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Decode every class's box, drop background, low scores and empty boxes, per-class NMS, keep the top N."""
        num_classes = logits.shape[1]
        boxes_all = self.box_coder.decode(deltas, torch.cat(list(proposals))).view(-1, num_classes, 4)
        scores_all = F.softmax(logits, -1)
        out = []
        for boxes, scores, size in zip(split_per_image(boxes_all, proposals), split_per_image(scores_all, proposals),
                                      image_sizes):
            boxes = clip_boxes(boxes[:, 1:], size).reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=logits.device).expand_as(scores[:, 1:]).reshape(-1)
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

    def losses(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]],
    ) -> tuple[dict[str, Tensor], RoISamples]:
        """Training: sample RoIs among the proposals, and return the losses and the samples (whose positives
        the mask and keypoint stages train on)."""
        samples = self.sample(proposals, targets)
        logits, deltas = self.predict(features, samples.boxes, image_sizes)
        return self.loss_terms(samples, logits, deltas, targets), samples

    def forward(
        self, features: Sequence[Tensor], proposals: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Inference: per image, the detections {boxes, scores, labels} (in resized-image pixels)."""
        logits, deltas = self.predict(features, proposals, image_sizes)
        return self.postprocess(logits, deltas, proposals, image_sizes)
