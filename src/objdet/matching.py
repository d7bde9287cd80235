"""Training assignment: which anchors or RoIs are foreground, background or ignored, and which to sample.

``Matcher`` follows the seed's rules (IoU >= high is positive, < low negative, in between ignored,
and optionally the highest-IoU anchor of each object is positive); ``FgBgSampler`` draws a fixed
fraction of positives per image, optionally only from hard negatives (IoU in [floor, low)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from objdet.errors import ConfigError


class Matcher:
    """Assigns each anchor (column of an IoU matrix ``[G, A]``) the index of its ground truth, or -1 / -2.

    An anchor whose best IoU is ``>= high`` gets that ground truth; ``< low`` gets ``BELOW_LOW``
    (background); in between gets ``BETWEEN`` (ignored). With ``allow_low_quality_matches``, each
    ground truth's highest-IoU anchors (all tied ones) are positive too, matched to their own best
    ground truth, as in torchvision and detectron2.
    """

    BELOW_LOW = -1
    BETWEEN = -2

    def __init__(self, high: float, low: float, allow_low_quality_matches: bool = False):
        if low > high:
            raise ConfigError(f"matcher low threshold {low} is above its high threshold {high}")
        self.high = high
        self.low = low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        """Matched ground-truth index per anchor (LongTensor ``[A]``); all -1 when there is no ground truth."""
        if iou.dim() != 2:
            raise ValueError(f"matcher needs an IoU matrix [G, A], got shape {tuple(iou.shape)}")
        if iou.shape[0] == 0:
            return torch.full((iou.shape[1],), self.BELOW_LOW, dtype=torch.int64, device=iou.device)
        best_iou, best_gt = iou.max(dim=0)
        matches = best_gt.clone()
        matches[best_iou < self.low] = self.BELOW_LOW
        matches[(best_iou >= self.low) & (best_iou < self.high)] = self.BETWEEN
        if self.allow_low_quality_matches and iou.shape[1] > 0:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            forced = (iou == best_per_gt).any(dim=0)
            matches[forced] = best_gt[forced]
        return matches


class FgBgSampler:
    """Draws up to ``batch_size_per_image`` candidates per image, at most ``positive_fraction`` of them positive.

    Labels follow torchvision: ``>= 1`` foreground, ``0`` background, ``< 0`` ignored. Negatives
    whose IoU is below ``bg_iou_floor`` are never drawn (Fast R-CNN's hard examples: [0.1, 0.5)).
    Draws use ``torch.randperm`` in torchvision's order, so with a zero floor and the same seed the
    samples equal torchvision's ``BalancedPositiveNegativeSampler``.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, bg_iou_floor: float = 0.0):
        if batch_size_per_image < 0 or not 0.0 <= positive_fraction <= 1.0:
            raise ConfigError(
                f"sampler needs batch_size_per_image >= 0 and 0 <= positive_fraction <= 1, "
                f"got {batch_size_per_image} and {positive_fraction}"
            )
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.bg_iou_floor = bg_iou_floor

    def __call__(self, matched_idxs: list[Tensor], ious: list[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Boolean masks ``(positives, negatives)`` per image; ``ious`` are each candidate's best IoU."""
        if self.bg_iou_floor > 0 and ious is None:
            raise ConfigError(f"a background IoU floor of {self.bg_iou_floor} needs the candidates' IoUs")
        pos_masks, neg_masks = [], []
        for i, labels in enumerate(matched_idxs):
            positive = torch.where(labels >= 1)[0]
            is_negative = labels == 0
            if self.bg_iou_floor > 0 and ious is not None:
                is_negative &= ious[i] >= self.bg_iou_floor
            negative = torch.where(is_negative)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            chosen_pos = positive[torch.randperm(positive.numel(), device=labels.device)[:num_pos]]
            chosen_neg = negative[torch.randperm(negative.numel(), device=labels.device)[:num_neg]]
            pos_mask = torch.zeros_like(labels, dtype=torch.bool)
            neg_mask = torch.zeros_like(labels, dtype=torch.bool)
            pos_mask[chosen_pos] = True
            neg_mask[chosen_neg] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
