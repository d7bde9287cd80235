"""Non-maximum suppression (torchvision's compiled kernels) and per-level top-k candidate selection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import Tensor

from objdet.errors import ConfigError


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the xyxy boxes kept by greedy NMS, by decreasing score.

    A box is dropped when its IoU with a higher-scoring kept box exceeds ``iou_threshold``.
    """
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Per-class NMS: boxes only suppress boxes of the same ``idxs`` value; kept indices by decreasing score."""
    if torch.jit.is_tracing():
        # an export: each class's boxes moved beyond the previous class's (non-negative) coordinates, one NMS. No
        # branch for the empty case, which torchvision's version exports as an ONNX `If` whose empty output
        # OpenVINO returns as one row of uninitialised memory.
        span = torch.nn.functional.pad(boxes.flatten(), (0, 1)).max() + 1  # the padded 0: defined when empty
        return nms(boxes + (idxs * span)[:, None], scores, iou_threshold)
    return torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)


def clamped_k(values: Tensor, k: int, dim: int = 0) -> int | Tensor:
    """``min(k, values.shape[dim])``, the largest valid top-k count; while tracing (ONNX export) a graph
    value rather than a Python int, so a data-dependent size is not frozen into the exported graph."""
    if not torch.jit.is_tracing():
        return min(k, values.shape[dim])
    return torch._shape_as_tensor(values)[dim].clamp(max=k)


def topk_per_level(scores: Tensor, level_sizes: Sequence[int], k: int) -> Tensor:
    """Indices into the last axis of ``scores [..., N]`` of the ``k`` best scores of each pyramid level.

    ``level_sizes`` splits ``N`` into consecutive levels; a level with fewer than ``k`` entries keeps
    all of them. Within a level the indices are by decreasing score; levels are concatenated in order.
    """
    if not torch.jit.is_tracing() and sum(level_sizes) != scores.shape[-1]:
        raise ConfigError(f"level sizes {list(level_sizes)} do not add up to the {scores.shape[-1]} scores")
    if k < 0:
        raise ConfigError(f"top-k needs k >= 0, got {k}")
    picked = []
    offset = 0
    for level_scores in scores.split(list(level_sizes), dim=-1):
        n = level_scores.shape[-1]
        picked.append(level_scores.topk(clamped_k(level_scores, k, dim=-1), dim=-1).indices + offset)
        offset += n
    return torch.cat(picked, dim=-1)
