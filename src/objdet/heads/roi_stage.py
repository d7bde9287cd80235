"""The RoI stages that follow the box stage (Mask R-CNN's masks, Keypoint R-CNN's keypoints) share one
algorithm: pool the RoIs' features, run the head, then in training compare with the matched ground truth
of the positive RoIs, and at inference decode one output per detection. A stage returns what it made;
the detector merges it into the detections."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from objdet.roi import split_per_image


class RoIStage(nn.Module):
    """Pooler + head; subclasses say how logits become a loss (`loss`) and outputs (`decode`)."""

    def __init__(self, pooler: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.pooler = pooler
        self.head = head

    def forward(
        self,
        features: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        boxes: Sequence[Tensor],
        labels: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
        matched: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training (`targets` and `matched` given): the losses on `boxes`, the positive RoIs per image, whose
        ground truth is `targets[i]`'s objects `matched[i]`. Inference: per image, a dict of outputs, one row
        per box (`boxes`, `labels`: the detections)."""
        pooled = self.pooler(features, boxes, image_sizes)
        if targets is not None and matched is not None:
            return self.loss(self.head(pooled), boxes, torch.cat(list(labels)), targets, matched)
        outputs = self.infer(pooled, torch.cat(list(boxes)), torch.cat(list(labels)))
        per_image = {k: split_per_image(v, boxes) for k, v in outputs.items()}
        return [{k: v[i] for k, v in per_image.items()} for i in range(len(boxes))]

    def infer(self, pooled: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Outputs for every RoI from its pooled features: the head, then `decode` (a stage may take a shortcut)."""
        return self.decode(self.head(pooled), boxes, labels)

    def loss(self, logits: Tensor, boxes: Sequence[Tensor], labels: Tensor,
             targets: Sequence[dict[str, Tensor]], matched: Sequence[Tensor]) -> dict[str, Tensor]:
        """The stage's loss terms from the head's logits on the positive RoIs (labels: their classes)."""
        raise NotImplementedError

    def decode(self, logits: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Outputs for every RoI (rows in the order of `boxes`) from the head's logits."""
        raise NotImplementedError
