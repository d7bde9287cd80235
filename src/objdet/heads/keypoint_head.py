"""Keypoint R-CNN's branch: 8 convs, a 2x deconv and a 2x bilinear upsample to a 56x56 heatmap per
keypoint; trained with a softmax over positions (cross-entropy on the one-hot target position) and
decoded to (x, y, score) per keypoint."""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet.boxes import full_precision
from objdet.heads.roi_stage import RoIStage
from objdet.layers import conv_stack


class KeypointHead(nn.Module):
    """`num_convs` 3x3 conv + ReLU, a 4x4 stride-2 deconv to K heatmaps, then 2x bilinear upsampling."""

    def __init__(self, in_channels: int, num_keypoints: int, num_convs: int = 8, channels: int = 512):
        super().__init__()
        self.convs = conv_stack(in_channels, channels, num_convs)
        self.deconv = nn.ConvTranspose2d(channels if num_convs else in_channels, num_keypoints, 4, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
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


def _decode_roi(heatmap: Tensor, box: Tensor, size: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """One RoI's [K, S, S] heatmaps resized bicubically to h x w cells over `box` (`size` its clamped width,
    height): the argmax cell's centre as (x, y, 1) per keypoint [K, 3] and its logit as the score [K]."""
    up = F.interpolate(heatmap[None], size=(h, w), mode="bicubic", align_corners=False)[0].flatten(1)
    best = up.argmax(1)
    px, py = best % w, best // w
    x = (px.to(heatmap.dtype) + 0.5) * (size[0] / float(w)) + box[0]
    y = (py.to(heatmap.dtype) + 0.5) * (size[1] / float(h)) + box[1]
    score = up.gather(1, best[:, None])[:, 0]
    return torch.stack([x, y, torch.ones_like(x)], 1), score


def _decode_rois(heatmaps: Tensor, boxes: Tensor, sizes: Tensor, cells: Tensor) -> tuple[Tensor, Tensor]:
    """`_decode_roi` over every RoI, in a loop TorchScript can compile as a loop (for ONNX export, where the
    RoI count and each resize's size are data)."""
    r, k = heatmaps.shape[0], heatmaps.shape[1]
    xy = heatmaps.new_zeros((0, k, 3))
    scores = heatmaps.new_zeros((0, k))
    for i in range(r):
        roi_xy, roi_scores = _decode_roi(heatmaps[i], boxes[i], sizes[i], int(cells[i, 1]), int(cells[i, 0]))
        xy = torch.cat([xy, roi_xy[None]])
        scores = torch.cat([scores, roi_scores[None]])
    return xy, scores


@functools.cache
def _scripted_decode_rois() -> torch.jit.ScriptFunction:
    """`_decode_rois` compiled by TorchScript, once, on the first ONNX export of a keypoint model."""
    return torch.jit.script(_decode_rois)


def heatmaps_to_keypoints(heatmaps: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Decode [R, K, S, S] heatmaps: resize each RoI's maps bicubically to the box's (ceil) pixel size,
    take the argmax cell's centre as (x, y) and its logit as the score. Returns ([R, K, 3], [R, K])."""
    sizes = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
    cells = sizes.ceil().long()
    if torch.jit.is_tracing():  # ONNX export: a Python loop would freeze the RoI count and resize sizes
        return _scripted_decode_rois()(heatmaps, boxes, sizes, cells)
    xy = heatmaps.new_zeros((len(heatmaps), heatmaps.shape[1], 3))
    scores = heatmaps.new_zeros(heatmaps.shape[:2])
    for i, (w, h) in enumerate(cells.tolist()):  # one resize per RoI: the target size differs per box
        xy[i], scores[i] = _decode_roi(heatmaps[i], boxes[i], sizes[i], h, w)
    return xy, scores


class KeypointStage(RoIStage):
    """RoIAlign pooler + keypoint head: loss on the positive RoIs in training, decoded keypoints at inference."""

    def loss(self, logits: Tensor, boxes: Sequence[Tensor], labels: Tensor,
             targets: Sequence[dict[str, Tensor]], matched: Sequence[Tensor]) -> dict[str, Tensor]:
        """{"loss_keypoint"}: a softmax over heatmap positions against each matched keypoint's cell."""
        size = logits.shape[-1]
        cells = [keypoint_targets(t["keypoints"][m], b, size) for t, b, m in zip(targets, boxes, matched)]
        index = torch.cat([c[0] for c in cells])
        valid = torch.cat([c[1] for c in cells])
        return {"loss_keypoint": keypoint_loss(logits, index, valid)}

    def decode(self, logits: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """{"keypoints": [N, K, 3], "keypoints_scores": [N, K]} of each detection."""
        (logits,) = full_precision(logits)
        keypoints, scores = heatmaps_to_keypoints(logits, boxes)
        return {"keypoints": keypoints, "keypoints_scores": scores}
