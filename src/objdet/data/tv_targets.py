"""Run a torchvision transforms v2 pipeline on an objdet (image, target) pair and tidy what it returns.

The target goes in as tv_tensors (BoundingBoxes, Mask, KeyPoints), so boxes, masks and keypoints move with
the image; what comes out keeps objdet's format and rules: boxes are clipped to the image, a box the
crop cut is tightened to its mask's visible part, objects left with a side under `min_size` pixels or an
empty mask are dropped with every per-object field, keypoints outside the image become unlabeled
(0, 0, 0), and `area` scales with its box.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision import tv_tensors

from objdet.data.base import Target

PER_OBJECT = ("boxes", "labels", "masks", "keypoints", "iscrowd", "area", "difficult")  # one row per object


class TvTransform:
    """Apply a transforms v2 callable to (image, target) in objdet's format; see the module docstring."""

    def __init__(self, transform: Callable, min_size: float = 1.0):
        self.transform, self.min_size = transform, min_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        out = self.transform(to_tv(image, target))
        return out["image"].as_subclass(torch.Tensor), from_tv(out, target, self.min_size)

    def __repr__(self) -> str:
        return f"TvTransform({self.transform})"


def to_tv(image: torch.Tensor, target: Target) -> dict:
    """The sample as tv_tensors; keypoint visibility rides along as a plain tensor the transforms pass by."""
    size = tuple(image.shape[-2:])
    sample = {"image": tv_tensors.Image(image), "target": dict(target)}
    t = sample["target"]
    if "boxes" in t:
        t["boxes"] = tv_tensors.BoundingBoxes(t["boxes"], format="XYXY", canvas_size=size, clamping_mode=None)
    if "masks" in t:
        t["masks"] = tv_tensors.Mask(t["masks"])
    if "keypoints" in t:
        t["visibility"] = t["keypoints"][..., 2]
        t["keypoints"] = tv_tensors.KeyPoints(t["keypoints"][..., :2], canvas_size=size)
    return sample


def from_tv(sample: dict, before: Target, min_size: float = 1.0) -> Target:
    """The transformed sample back in objdet's format, clipped and cleaned (`before` is the input target)."""
    t = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in sample["target"].items()}
    height, width = sample["image"].shape[-2:]
    if "keypoints" in t:
        xy, visible = t["keypoints"], t.pop("visibility")
        inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
        keep = (inside & (visible > 0)).unsqueeze(-1)
        t["keypoints"] = torch.cat([xy, visible.unsqueeze(-1).to(xy.dtype)], -1) * keep
    if "boxes" not in t:
        return t
    moved = t["boxes"]
    boxes = torch.stack([moved[:, 0].clamp(0, width), moved[:, 1].clamp(0, height),
                         moved[:, 2].clamp(0, width), moved[:, 3].clamp(0, height)], 1)
    keep = ((boxes[:, 2:] - boxes[:, :2]) >= min_size).all(1)
    if "masks" in t:
        extent, filled = mask_extent(t["masks"])
        cut = (boxes != moved).any(1)
        boxes[cut] = torch.cat([torch.maximum(boxes[cut, :2], extent[cut, :2]),
                                torch.minimum(boxes[cut, 2:], extent[cut, 2:])], 1)
        keep &= filled & ((boxes[:, 2:] - boxes[:, :2]) >= min_size).all(1)
    t["boxes"] = boxes
    if "area" in t:
        old = before["boxes"]
        ratio = _box_area(boxes) / _box_area(old).clamp_min(1e-6)
        t["area"] = t["area"] * ratio
    return {k: v[keep] if k in PER_OBJECT and isinstance(v, torch.Tensor) else v for k, v in t.items()}


def mask_extent(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight xyxy boxes [N, 4] around each mask's pixels (pixel i spans i..i+1) and whether it has any."""
    cols, rows = masks.bool().any(1), masks.bool().any(2)
    xs = torch.arange(masks.shape[-1], dtype=torch.float32)
    ys = torch.arange(masks.shape[-2], dtype=torch.float32)
    inf = torch.tensor(float("inf"))
    x1, x2 = torch.where(cols, xs, inf).amin(1), torch.where(cols, xs + 1, -inf).amax(1)
    y1, y2 = torch.where(rows, ys, inf).amin(1), torch.where(rows, ys + 1, -inf).amax(1)
    return torch.stack([x1, y1, x2, y2], 1), cols.any(1)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(x2 - x1) * (y2 - y1), zero for inverted boxes."""
    return (boxes[:, 2:] - boxes[:, :2]).clamp_min(0).prod(1)
