"""Region Proposal Network: a small conv head sliding over each pyramid level, predicting per anchor
an objectness logit and box deltas, trained on sampled anchors and decoded into proposals."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet.anchors import AnchorGenerator
from objdet.layers import conv_stack
from objdet.boxes import BoxCoder, box_iou, clip_boxes, full_precision, remove_small_boxes
from objdet.losses import smooth_l1_loss
from objdet.matching import FgBgSampler, Matcher
from objdet.nms import batched_nms, topk_per_level


class RPNHead(nn.Module):
    """`num_convs` 3x3 conv + ReLU shared by all levels, then 1x1 convs for A objectness logits and 4A deltas."""

    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 1):
        super().__init__()
        self.convs = conv_stack(in_channels, in_channels, num_convs)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Return logits [B, sum_l H_l*W_l*A] and deltas [B, sum_l H_l*W_l*A, 4], ordered (level, y, x, anchor)."""
        logits, deltas = [], []
        for x in features:
            t = self.convs(x)
            n, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            deltas.append(self.deltas(t).view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)


class RegionProposalNetwork(nn.Module):
    """Anchors + head + assignment (IoU >= fg positive, best anchor per object positive, < bg negative,
    `batch_size_per_image` sampled with `positive_fraction` positives) + top-k / NMS proposal filter."""

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou: float = 0.7,
        bg_iou: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: tuple[int, int] = (2000, 1000),
        post_nms_top_n: tuple[int, int] = (2000, 1000),
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
    ):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)
        self.sampler = FgBgSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = pre_nms_top_n  # (training, testing)
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size

    def forward(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        features: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per image (in resized-image pixels) and, when targets are given, the RPN losses."""
        logits, deltas = full_precision(*self.head(features))
        shapes = [(f.shape[-2], f.shape[-1]) for f in features]
        image_size = (images.shape[-2], images.shape[-1])
        anchors = self.anchor_generator(image_size, shapes, device=logits.device).to(logits.dtype)
        level_sizes = [h * w * self.head.objectness.out_channels for h, w in shapes]
        proposals = self.propose(logits.detach(), deltas.detach(), anchors, level_sizes, image_sizes)
        losses: dict[str, Tensor] = {}
        if targets is not None:
            losses = self.loss(logits, deltas, anchors, [t["boxes"] for t in targets])
        return proposals, losses

    def propose(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        level_sizes: list[int],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[Tensor]:
        """Top-k per level, decode, clip, drop tiny and low-scoring boxes, NMS per level, keep the best N."""
        mode = 0 if self.training else 1
        counts = (torch.stack(level_sizes) if torch.jit.is_tracing()  # graph values in an export (objdet.tracing)
                  else torch.tensor(level_sizes)).to(logits.device)
        levels = torch.repeat_interleave(torch.arange(len(level_sizes), device=logits.device), counts)
        out = []
        for lg, dl, size in zip(logits, deltas, image_sizes):
            idx = topk_per_level(lg, level_sizes, self.pre_nms_top_n[mode])
            boxes = clip_boxes(self.box_coder.decode(dl[idx], anchors[idx]), size)
            scores, lvl = torch.sigmoid(lg[idx]), levels[idx]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n[mode]]
            out.append(boxes[keep])
        return out

    def loss(self, logits: Tensor, deltas: Tensor, anchors: Tensor, gt_boxes: Sequence[Tensor]) -> dict[str, Tensor]:
        """Binary cross-entropy on sampled anchors + smooth L1 (beta 1/9) on positives, both over the sample count."""
        matched = [
            self.matcher(box_iou(g, anchors)) if len(g) else torch.full_like(anchors[:, 0], -1, dtype=torch.long)
            for g in gt_boxes
        ]
        labels = [torch.where(m >= 0, 1, torch.where(m == Matcher.BETWEEN, -1, 0)) for m in matched]
        pos_masks, neg_masks = self.sampler(labels)
        pos, neg = torch.stack(pos_masks), torch.stack(neg_masks)
        sampled = pos | neg
        targets = [
            self.box_coder.encode(g[m[p]], anchors[p]) for g, m, p in zip(gt_boxes, matched, pos_masks)
        ]
        box_loss = smooth_l1_loss(deltas[pos], torch.cat(targets), beta=1 / 9, reduction="sum")
        num = sampled.sum().clamp(min=1)
        obj_loss = F.binary_cross_entropy_with_logits(logits[sampled], pos[sampled].to(logits.dtype), reduction="sum")
        return {"loss_objectness": obj_loss / num, "loss_rpn_box_reg": box_loss / num}
