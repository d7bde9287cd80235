"""Mask R-CNN's mask branch: an FCN (4 convs, a 2x deconv, 28x28 per-class logits) or an MLP head on
14x14 RoIAlign features, trained with per-class sigmoid (or softmax-across-classes) loss on the RoI's
crop of the ground-truth mask, and pasted back into the image at inference."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet import fused
from objdet.heads.roi_stage import RoIStage
from objdet.layers import conv_stack
from objdet.roi import roi_align


class FCNMaskHead(nn.Module):
    """`num_convs` 3x3 convs (+ norm) + ReLU, a 2x2 stride-2 deconv + ReLU, and 1x1 logits for K+1 classes."""

    def __init__(
        self, in_channels: int, num_classes: int, num_convs: int = 4, channels: int = 256, norm: str | None = None
    ):
        super().__init__()
        self.convs = conv_stack(in_channels, channels, num_convs, norm)
        self.deconv = nn.ConvTranspose2d(channels if num_convs else in_channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes + 1, 1)
        self.rows_per_class = 1  # rows of `logits` per class (fine-tuning keeps known classes' rows)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(F.relu(self.deconv(self.convs(x))))

    def class_logits(self, x: Tensor, labels: Tensor) -> Tensor | None:
        """[N, 1, 2S, 2S] logits of each RoI's class `labels[i]` only, on the eval fast path (None elsewhere).
        The 2x2 stride-2 deconv is one matmul per input cell (each output cell has a single input cell), run with
        its bias and ReLU as one oneDNN call; the 1x1 logits conv is then a dot product with one class's row,
        not all K+1 (at 100 detections and 91 classes that conv was 10% of a Mask R-CNN call)."""
        d = self.deconv
        if not (fused.active(self, x) and d.kernel_size == d.stride == (2, 2) and d.padding == (0, 0)
                and d.output_padding == (0, 0) and d.groups == 1 and d.dilation == (1, 1)):
            return None
        x = self.convs(x)
        n, c, h, w = x.shape
        cells = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view of a channels-last map
        weight = d.weight.permute(2, 3, 1, 0).reshape(-1, c)  # rows (i, j, out channel) of output cell (2y+i, 2x+j)
        bias = None if d.bias is None else d.bias.repeat(4)
        y = fused.linear(cells, weight, bias, relu=True).view(n, h * w * 4, d.out_channels)
        rows = self.logits.weight[labels].flatten(1)  # [N, channels]
        out = torch.bmm(y, rows[:, :, None]).view(n, h, w, 2, 2)
        if self.logits.bias is not None:
            out = out + self.logits.bias[labels].view(n, 1, 1, 1, 1)
        return out.permute(0, 1, 3, 2, 4).reshape(n, 1, 2 * h, 2 * w)


class MLPMaskHead(nn.Module):
    """The seed's FCN-vs-MLP ablation: flatten the pooled RoI, two fc layers, one fc to (K+1) x out x out logits."""

    def __init__(self, in_channels: int, resolution: int, num_classes: int, out_size: int = 28, hidden: int = 1024):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * resolution * resolution, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.logits = nn.Linear(hidden, (num_classes + 1) * out_size * out_size)
        self.out_size = out_size
        self.rows_per_class = out_size * out_size  # rows of `logits` per class

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
        return self.logits(x).view(len(x), -1, self.out_size, self.out_size)


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int) -> Tensor:
    """Crop-and-resize each RoI's matched ground-truth mask to `size` x `size` (soft values in 0..1)."""
    rois = torch.cat([matched[:, None].to(boxes.dtype), boxes], 1)
    return roi_align(gt_masks[:, None].to(boxes.dtype), rois, (size, size), 1.0)[:, 0]


def mask_loss(logits: Tensor, targets: Tensor, labels: Tensor, softmax: bool = False) -> Tensor:
    """Per-class sigmoid: binary cross-entropy on the true class's mask only (no competition between classes).
    `softmax=True`: per-pixel multinomial loss over K+1 channels, target the class inside the mask, else 0."""
    if len(labels) == 0:
        return logits.sum() * 0
    if softmax:
        pixel_labels = torch.where(targets >= 0.5, labels[:, None, None], torch.zeros_like(labels)[:, None, None])
        return F.cross_entropy(logits, pixel_labels)
    return F.binary_cross_entropy_with_logits(logits[torch.arange(len(labels), device=labels.device), labels], targets)


def mask_probs(logits: Tensor, labels: Tensor, softmax: bool = False) -> Tensor:
    """The predicted class's mask probability, [N, 1, M, M] (sigmoid, or softmax across classes)."""
    probs = logits.softmax(1) if softmax else logits.sigmoid()
    # gather, not fancy indexing with arange(len(labels)): ONNX tracing would freeze the count
    return probs.gather(1, labels.view(-1, 1, 1, 1).expand(-1, 1, *probs.shape[2:]))


def _axis_weights(start: Tensor, end: Tensor, in_size: int, out_size: int) -> Tensor:
    """[N, out_size, in_size] bilinear (align_corners=False) weights that stretch `in_size` samples over the
    integer pixels start..end (inclusive) of an axis of length `out_size`; rows outside are zero."""
    u = torch.arange(out_size, device=start.device, dtype=torch.float32)[None] - start[:, None].float()
    length = (end - start + 1).clamp(min=1).float()[:, None]
    src = ((u + 0.5) * (in_size / length) - 0.5).clamp(min=0)
    i0 = src.floor().clamp(max=in_size - 1)
    lam = src - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=in_size - 1)
    valid = ((u >= 0) & (u <= (end - start)[:, None].float())).float()
    weights = torch.zeros_like(u)[..., None].repeat(1, 1, in_size)  # sized from a tensor: traceable
    weights.scatter_add_(2, i0[..., None], ((1 - lam) * valid)[..., None])
    weights.scatter_add_(2, i1[..., None], (lam * valid)[..., None])
    return weights


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1) -> Tensor:
    """Paste [N, 1, M, M] RoI masks into [N, 1, H, W] image masks: pad by `padding`, enlarge the box to
    match, round it to integer pixels and resize bilinearly into it (torchvision's rule). Bilinear
    resizing is separable, so each image mask is one product Wy @ mask @ Wx^T for all boxes at once."""
    h, w = image_size
    if not torch.jit.is_tracing() and len(masks) == 0:  # an export keeps the count dynamic
        return masks.new_zeros((0, 1, h, w))
    m = F.pad(masks[:, 0].float(), (padding,) * 4)
    scale = m.shape[-1] / masks.shape[-1]
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    b = torch.cat([centre - half, centre + half], 1).long()
    wx = _axis_weights(b[:, 0], b[:, 2], m.shape[-1], w)
    wy = _axis_weights(b[:, 1], b[:, 3], m.shape[-2], h)
    return torch.bmm(wy, torch.bmm(m, wx.transpose(1, 2)))[:, None].to(masks.dtype)


class MaskStage(RoIStage):
    """RoIAlign pooler + mask head: loss on the positive RoIs in training, pasted-ready probabilities at inference."""

    head: FCNMaskHead | MLPMaskHead

    def __init__(self, pooler: nn.Module, head: FCNMaskHead | MLPMaskHead, softmax: bool = False):
        super().__init__(pooler, head)
        self.softmax = softmax

    def loss(self, logits: Tensor, boxes: Sequence[Tensor], labels: Tensor,
             targets: Sequence[dict[str, Tensor]], matched: Sequence[Tensor]) -> dict[str, Tensor]:
        """{"loss_mask"}: each RoI's logits against its crop of the matched ground-truth mask."""
        size = logits.shape[-1]
        crops = [mask_targets(t["masks"], b, m, size) for t, b, m in zip(targets, boxes, matched)]
        return {"loss_mask": mask_loss(logits, torch.cat(crops), labels, self.softmax)}

    def infer(self, pooled: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """On the eval fast path an FCN head with sigmoid masks computes the detections' own classes only."""
        if not self.softmax and isinstance(self.head, FCNMaskHead):
            logits = self.head.class_logits(pooled, labels)
            if logits is not None:
                return {"masks": logits.sigmoid()}
        return super().infer(pooled, boxes, labels)

    def decode(self, logits: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """{"masks": [N, 1, M, M]} probabilities of each detection's class (pasted into the image later)."""
        return {"masks": mask_probs(logits, labels, self.softmax)}
