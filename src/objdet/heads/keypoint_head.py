"""Keypoint R-CNN's branch: 8 convs, a 2x deconv and a 2x bilinear upsample to a 56x56 heatmap per
keypoint; trained with a softmax over positions (cross-entropy on the one-hot target position) and
decoded to (x, y, score) per keypoint."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet.heads.box_head import RoISamples


class KeypointHead(nn.Module):
    """`num_convs` 3x3 conv + ReLU, a 4x4 stride-2 deconv to K heatmaps, then 2x bilinear upsampling."""

    def __init__(self, in_channels: int, num_keypoints: int, num_convs: int = 8, channels: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c = channels
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(c, num_keypoints, 4, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.deconv(self.convs(x))
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def keypoint_targets(keypoints: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Flat heatmap index y*size + x of each keypoint inside its RoI ([R, K] long) and whether it is a
    valid target (visible and inside the RoI). A keypoint on the RoI's right/bottom edge goes to the last cell."""
    x0, y0, x1, y1 = (boxes[:, i : i + 1] for i in range(4))
    kx, ky = keypoints[..., 0], keypoints[..., 1]
    x = ((kx - x0) * (size / (x1 - x0))).floor().long()
    y = ((ky - y0) * (size / (y1 - y0))).floor().long()
    x = torch.where(kx == x1, torch.full_like(x, size - 1), x)
    y = torch.where(ky == y1, torch.full_like(y, size - 1), y)
    valid = (x >= 0) & (y >= 0) & (x < size) & (y < size) & (keypoints[..., 2] > 0)
    return torch.where(valid, y * size + x, torch.zeros_like(x)), valid


def keypoint_loss(logits: Tensor, target_index: Tensor, valid: Tensor) -> Tensor:
    """Cross-entropy of a softmax over the H*W positions of each keypoint's heatmap, over valid keypoints."""
    if not bool(valid.any()):
        return logits.sum() * 0
    flat = logits.flatten(2)[valid]
    return F.cross_entropy(flat, target_index[valid])


def heatmaps_to_keypoints(heatmaps: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Decode [R, K, S, S] heatmaps: resize each RoI's maps bicubically to the box's (ceil) pixel size,
    take the argmax cell's centre as (x, y) and its logit as the score. Returns ([R, K, 3], [R, K])."""
    r, k = heatmaps.shape[:2]
    xy = heatmaps.new_zeros((r, k, 3))
    scores = heatmaps.new_zeros((r, k))
    sizes = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
    cells = sizes.ceil()
    for i, (w, h) in enumerate(cells.long().tolist()):  # one resize per RoI: the target size differs per box
        up = F.interpolate(heatmaps[i : i + 1], size=(h, w), mode="bicubic", align_corners=False)[0]
        best = up.flatten(1).argmax(1)
        px, py = best % w, best // w
        xy[i, :, 0] = (px.to(xy.dtype) + 0.5) * (sizes[i, 0] / w) + boxes[i, 0]
        xy[i, :, 1] = (py.to(xy.dtype) + 0.5) * (sizes[i, 1] / h) + boxes[i, 1]
        scores[i] = up[torch.arange(k, device=up.device), py, px]
    xy[..., 2] = 1
    return xy, scores


class KeypointStage(nn.Module):
    """RoIAlign pooler + keypoint head: loss on the positive RoIs in training, decoded keypoints at inference."""

    def __init__(self, pooler: nn.Module, head: KeypointHead):
        super().__init__()
        self.pooler = pooler
        self.head = head

    def forward(
        self,
        features: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        detections: list[dict[str, Tensor]],
        samples: RoISamples | None = None,
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        """Training (samples given): {"loss_keypoint"}; else adds `keypoints` and `keypoints_scores`."""
        if samples is not None and targets is not None:
            boxes, matched = samples.positives()
            logits = self.head(self.pooler(features, boxes, image_sizes))
            size = logits.shape[-1]
            tgt = [keypoint_targets(t["keypoints"][i], b, size) for t, b, i in zip(targets, boxes, matched)]
            index = torch.cat([t[0] for t in tgt])
            valid = torch.cat([t[1] for t in tgt])
            return {"loss_keypoint": keypoint_loss(logits, index, valid)}
        boxes = [d["boxes"] for d in detections]
        logits = self.head(self.pooler(features, boxes, image_sizes))
        for d, lg, b in zip(detections, logits.split([len(b) for b in boxes]), boxes):
            d["keypoints"], d["keypoints_scores"] = heatmaps_to_keypoints(lg, b)
        return {}
