"""The one-stage (dense) detector frame shared by RetinaNet and EfficientDet.

transform -> backbone -> neck -> class/box heads on every pyramid level -> per-anchor logits and
deltas; training matches anchors to objects and applies focal + box losses, inference decodes,
keeps top-scoring candidates, runs per-class NMS and maps boxes back to the input image.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from objdet import fused
from objdet.anchors import AnchorGenerator
from objdet.boxes import BoxCoder, box_iou, clip_boxes, full_precision
from objdet.detectors.base import ClassRows, check_targets
from objdet.errors import ConfigError
from objdet.losses import giou_loss, huber_loss, sigmoid_focal_loss, smooth_l1_loss
from objdet.matching import Matcher
from objdet.nms import batched_nms, clamped_k
from objdet.norm import fold_frozen_batchnorms
from objdet.transform import DetectionTransform

BOX_LOSSES = ("l1", "smooth_l1", "huber", "giou")


def flatten_levels(maps: Sequence[Tensor], num_outputs: int) -> Tensor:
    """Per-level head maps [B, A*K, H, W] as one tensor [B, sum_l H*W*A, K], ordered (level, y, x, anchor)."""
    flat = []
    for m in maps:
        b, _, h, w = m.shape
        flat.append(m.view(b, -1, num_outputs, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, num_outputs))
    return torch.cat(flat, dim=1)


class DenseLoss:
    """Anchor assignment by IoU (>= fg_iou positive, < bg_iou negative, ignored between), focal loss on all
    non-ignored anchors, a box loss on positives.

    `normalizer="image"`: each image's losses divided by its positives (at least 1), then averaged
    (torchvision); `"batch"`: summed over the batch and divided by all positives + 1, the box loss also
    by 4 (effdet). `label_offset` is the label of class channel 0.
    """

    def __init__(self, fg_iou: float = 0.5, bg_iou: float = 0.4, allow_low_quality: bool = True,
                 alpha: float = 0.25, gamma: float = 2.0, box_loss: str = "l1", beta: float = 1.0 / 9,
                 box_loss_weight: float = 1.0, normalizer: str = "image", label_offset: int = 1,
                 box_coder: BoxCoder | None = None) -> None:
        if box_loss not in BOX_LOSSES:
            raise ConfigError(f"unknown box loss {box_loss!r}; known: {', '.join(BOX_LOSSES)}")
        if normalizer not in ("image", "batch"):
            raise ConfigError(f"unknown loss normalizer {normalizer!r}; known: image, batch")
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=allow_low_quality)
        self.alpha, self.gamma = alpha, gamma
        self.box_loss, self.beta, self.box_loss_weight = box_loss, beta, box_loss_weight
        self.normalizer, self.label_offset = normalizer, label_offset
        self.box_coder = box_coder or BoxCoder()

    def __call__(self, logits: Tensor, deltas: Tensor, anchors: Tensor,
                 targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        cls_terms, box_terms, positives = [], [], []
        for logit, delta, target in zip(logits, deltas, targets):
            boxes, labels = target["boxes"], target["labels"]
            if len(boxes) == 0:
                matched = torch.full((len(anchors),), Matcher.BELOW_LOW, dtype=torch.long, device=anchors.device)
            else:
                matched = self.matcher(box_iou(boxes, anchors))
            fg = torch.where(matched >= 0)[0]
            cls_target = torch.zeros_like(logit)
            cls_target[fg, labels[matched[fg]] - self.label_offset] = 1.0
            valid = matched != Matcher.BETWEEN
            cls_terms.append(sigmoid_focal_loss(logit[valid], cls_target[valid], self.alpha, self.gamma,
                                                reduction="sum"))
            box_terms.append(self._box_loss(delta[fg], anchors[fg], boxes[matched[fg]]))
            positives.append(len(fg))
        if self.normalizer == "image":
            cls = sum(c / max(1, n) for c, n in zip(cls_terms, positives)) / len(targets)
            box = sum(b / max(1, n) for b, n in zip(box_terms, positives)) / len(targets)
        else:
            total = sum(positives) + 1.0
            cls = sum(cls_terms) / total
            box = sum(box_terms) / (4.0 * total)
        return {"classification": cls, "bbox_regression": self.box_loss_weight * box}

    def _box_loss(self, deltas: Tensor, anchors: Tensor, boxes: Tensor) -> Tensor:
        if self.box_loss == "giou":
            return giou_loss(self.box_coder.decode(deltas, anchors), boxes)
        target = self.box_coder.encode(boxes, anchors)
        if self.box_loss == "huber":
            return huber_loss(deltas, target, delta=self.beta, reduction="sum")
        beta = 0.0 if self.box_loss == "l1" else self.beta
        return smooth_l1_loss(deltas, target, beta=beta, reduction="sum")


class DensePostprocess:
    """Detections from per-anchor logits and deltas.

    `per_level=True` (torchvision, the seed): per level, scores above `score_thresh`, the best
    `candidates`; `per_level=False` (effdet): the best `candidates` logits over all levels. Then
    decode, clip to the image, per-class NMS, keep `detections_per_img`.
    """

    def __init__(self, score_thresh: float = 0.05, candidates: int = 1000, per_level: bool = True,
                 nms_thresh: float = 0.5, detections_per_img: int = 300, label_offset: int = 1,
                 box_coder: BoxCoder | None = None) -> None:
        self.score_thresh, self.candidates, self.per_level = score_thresh, candidates, per_level
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img
        self.label_offset = label_offset
        self.box_coder = box_coder or BoxCoder()

    def __call__(self, logits: Tensor, deltas: Tensor, anchors: Tensor, level_sizes: Sequence[int],
                 image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        num_classes = logits.shape[-1]
        results = []
        for logit, delta, size in zip(logits, deltas, image_sizes):
            flat = logit.flatten()
            if self.per_level:
                picked, start = [], 0
                for n in level_sizes:
                    scores = torch.sigmoid(flat[start:start + n * num_classes])
                    idx = torch.where(scores > self.score_thresh)[0]
                    picked.append(idx[scores[idx].topk(clamped_k(idx, self.candidates)).indices] + start)
                    start += n * num_classes
                idx = torch.cat(picked)
            else:
                idx = top_logits(logit, self.candidates)
                idx = idx[torch.sigmoid(flat[idx]) > self.score_thresh]
            scores = torch.sigmoid(flat[idx])
            if not torch.jit.is_tracing():  # the prefix NMS in `_nms` needs candidates by decreasing score
                scores, order = scores.sort(descending=True, stable=True)
                idx = idx[order]
            anchor_idx, labels = idx // num_classes, idx % num_classes + self.label_offset
            boxes = clip_boxes(self.box_coder.decode(delta[anchor_idx], anchors[anchor_idx]), size)
            keep = self._nms(boxes, scores, labels)
            keep = keep[labels[keep] > 0]  # a background channel (torchvision's layout) is never a detection
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results

    def _nms(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
        """Per-class NMS of the candidates (score-sorted in eager mode), keeping `detections_per_img`.

        Greedy NMS keeps a box or not from higher-scored boxes alone, so NMS over the best m
        candidates gives the same first detections as over all; m grows until the cap is filled.
        """
        cap, m = self.detections_per_img, 4 * self.detections_per_img
        if torch.jit.is_tracing():  # one NMS over all candidates: the loop's sizes would be frozen into an export
            return batched_nms(boxes, scores, labels, self.nms_thresh)[:cap]
        while True:
            keep = batched_nms(boxes[:m], scores[:m], labels[:m], self.nms_thresh)
            if len(keep) >= cap or m >= len(scores):
                return keep[:cap]
            m *= 4


def top_logits(logits: Tensor, k: int) -> Tensor:
    """Flat indices into `logits [N, K]` of its k largest entries, largest first.

    The k-th largest entry is at least the k-th largest per-anchor maximum t, so only anchors whose
    maximum reaches t can hold a winner: top-k runs on those rows instead of all N * K entries.
    """
    n, num_classes = logits.shape
    k = min(k, n * num_classes)
    best = logits.max(dim=1).values
    rows = torch.where(best >= best.topk(k).values[-1])[0] if n > k else torch.arange(n, device=logits.device)
    top = logits[rows].flatten().topk(k).indices
    return rows[top // num_classes] * num_classes + top % num_classes


class DenseDetector(nn.Module):
    """A one-stage detector with torchvision's calling convention: `model(images, targets)` returns the
    loss dict in train mode, `model(images)` a list of {boxes, scores, labels} in eval mode."""

    def __init__(self, config: Any, backbone: nn.Module, neck: nn.Module, class_head: nn.Module,
                 box_head: nn.Module, anchor_generator: AnchorGenerator, transform: DetectionTransform,
                 loss: DenseLoss, postprocess: DensePostprocess, levels: Sequence[int]) -> None:
        super().__init__()
        self.config = config  # the full config dataclass it was built from (checkpoints rebuild from it)
        self.transform = transform
        self.backbone, self.neck = backbone, neck
        self.class_head, self.box_head = class_head, box_head
        self.anchor_generator = anchor_generator
        self.loss, self.postprocess = loss, postprocess
        self.num_classes = config.num_classes
        self.levels = [f"P{lv}" for lv in levels]
        self._anchors: tuple[tuple, Tensor] | None = None
        # channels-last convolutions run 1.4-1.8x faster on CPU (oneDNN), training and inference alike
        self.to(memory_format=torch.channels_last)

    def fuse_for_inference(self) -> DenseDetector:
        """Fold frozen batch norms into the conv modules for good (eval mode already runs folded copies, see
        `objdet.fused`); changes the state dict's keys, so save checkpoints before calling it."""
        fold_frozen_batchnorms(self)
        return self.eval()

    def class_rows(self) -> dict[str, ClassRows | None]:
        """The class head's output tensors (state-dict names) and how they hold the classes: per anchor, a
        background channel (torchvision's layout) when `label_offset` is 0, then the K classes."""
        layout = ClassRows(anchors=self.anchor_generator.num_anchors_per_location()[0],
                           background=self.postprocess.label_offset == 0)
        return {f"class_head.{name}": layout for name in self.class_head.output_params}

    def train(self, mode: bool = True) -> DenseDetector:
        if mode:
            fused.clear(self)  # the eval path's folded weights go stale in training
        return super().train(mode)

    def anchors(self, image_size: tuple[int, int], shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """Anchors of a padded batch, remembered for the last batch size seen (fixed in letterbox mode)."""
        key = (image_size, tuple(shapes), device)
        if torch.jit.is_tracing():  # an export computes them from the input's size, never from a cached size
            return self.anchor_generator(image_size, shapes, device)
        if self._anchors is None or self._anchors[0] != key:
            self._anchors = (key, self.anchor_generator(image_size, shapes, device))
        return self._anchors[1]

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        if self.training:
            if targets is None:
                raise ConfigError("a detector in train mode needs targets; call model.eval() to predict")
            check_targets(targets, self.num_classes)
        batch, targets = self.transform(images, targets)
        features = self.neck(self.backbone(batch.tensors.contiguous(memory_format=torch.channels_last)))
        levels = [features[name] for name in self.levels]
        class_maps, box_maps = self.class_head(levels), self.box_head(levels)
        num_outputs = class_maps[0].shape[1] // (box_maps[0].shape[1] // 4)
        logits, deltas = full_precision(flatten_levels(class_maps, num_outputs), flatten_levels(box_maps, 4))
        shapes = [tuple(f.shape[-2:]) for f in levels]
        anchors = self.anchors(tuple(batch.tensors.shape[-2:]), shapes, logits.device)
        if self.training:
            return self.loss(logits, deltas, anchors, targets)
        per_level = [h * w * (m.shape[1] // 4) for (h, w), m in zip(shapes, box_maps)]
        detections = self.postprocess(logits, deltas, anchors, per_level, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)
