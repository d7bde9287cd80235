"""Training augmentations on (image [3,H,W], target) pairs: horizontal flip, resize, and the presets.

Each transform is a callable `(image, target) -> (image, target)` that updates boxes (xyxy pixels),
masks (N x H x W), keypoints (N x K x 3, continuous pixel coordinates) and area together;
`Compose` chains them. Randomness comes from torch's generator (pass one for reproducibility).
`presets(name, keypoint_names)` builds what `objdet train --aug NAME` applies (see `PRESETS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from objdet.data.base import Target, Transform
from objdet.data.scale_jitter import ScaleJitterCrop
from objdet.data.tv_targets import TvTransform
from objdet.errors import ConfigError

PRESETS = {
    "none": "no augmentation",
    "flip": "horizontal flip with probability 0.5 (keypoints swap left and right)",
    "standard": "flip, scale jitter 0.8-1.25 on the image's canvas (multi-scale training), colour jitter",
    "strong": "flip, large-scale jitter 0.1-2.0 (zooms in by cropping, out by padding), colour jitter",
}
SCALE_RANGES = {"standard": (0.8, 1.25), "strong": (0.1, 2.0)}


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def flip_permutation(names: Sequence[str]) -> list[int]:
    """Keypoint order after a mirror: each name with `left` swaps with its `right` twin."""
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for n in names:
        twin = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        perm.append(index.get(twin, index[n]))
    return perm


def hflip(image: torch.Tensor, target: Target, keypoint_perm: Sequence[int] | None = None
          ) -> tuple[torch.Tensor, Target]:
    """Mirror an image and its target left-right (x -> W - x); keypoints are re-ordered by perm."""
    width = image.shape[-1]
    out = dict(target)
    if "boxes" in target:
        b = target["boxes"]
        out["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)
    if "masks" in target:
        out["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        kps = target["keypoints"].clone()
        kps[..., 0] = width - kps[..., 0]
        kps[kps[..., 2] == 0] = 0  # unlabeled points stay (0, 0, 0) as in COCO files
        if keypoint_perm is not None:
            kps = kps[:, list(keypoint_perm)]
        out["keypoints"] = kps
    return image.flip(-1), out


class HorizontalFlip:
    """Flip with probability p; keypoints swap left/right by `keypoint_names` or a permutation."""

    def __init__(self, p: float = 0.5, keypoint_names: Sequence[str] | None = None,
                 keypoint_perm: Sequence[int] | None = None,
                 generator: torch.Generator | None = None):
        self.p, self.generator = p, generator
        self.perm = keypoint_perm if keypoint_perm is not None else (
            flip_permutation(keypoint_names) if keypoint_names else None)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if torch.rand(1, generator=self.generator).item() < self.p:
            return hflip(image, target, self.perm)
        return image, target


def resize(image: torch.Tensor, target: Target, size: tuple[int, int]
           ) -> tuple[torch.Tensor, Target]:
    """Resize an image (bilinear) and its target (masks nearest) to size = (H, W)."""
    h, w = image.shape[-2:]
    new_h, new_w = size
    sx, sy = new_w / w, new_h / h
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                          align_corners=False)[0]
    out = dict(target)
    if "boxes" in target:
        out["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy])
    if "masks" in target:
        m = target["masks"]
        out["masks"] = F.interpolate(m[None].float(), size=(new_h, new_w), mode="nearest")[0].to(
            m.dtype) if len(m) else m.new_zeros((0, new_h, new_w))
    if "keypoints" in target:
        out["keypoints"] = target["keypoints"] * torch.tensor([sx, sy, 1.0])
    if "area" in target:
        out["area"] = target["area"] * (sx * sy)
    return image, out


class Resize:
    """Scale so the short side is `short_side` times a jitter factor in `scale_range`,
    keeping the long side at most `max_size`; `short_side` may be a list to pick from."""

    def __init__(self, short_side: int | Sequence[int], max_size: int | None = None,
                 scale_range: tuple[float, float] = (1.0, 1.0),
                 generator: torch.Generator | None = None):
        self.sides = [short_side] if isinstance(short_side, int) else list(short_side)
        self.max_size, self.scale_range, self.generator = max_size, scale_range, generator

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        r = torch.rand(2, generator=self.generator).tolist()
        side = self.sides[min(int(r[0] * len(self.sides)), len(self.sides) - 1)]
        lo, hi = self.scale_range
        h, w = image.shape[-2:]
        scale = side * (lo + (hi - lo) * r[1]) / min(h, w)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(h, w))
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return resize(image, target, size)


def presets(name: str, keypoint_names: Sequence[str] | None = None) -> Transform | None:
    """The training augmentation named `name` (a key of PRESETS); None for "none". Objects a crop removes
    or leaves degenerate are dropped with their masks and keypoints (objdet.data.tv_targets)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}")
    if name == "none":
        return None
    flip = HorizontalFlip(keypoint_names=keypoint_names or None)
    if name == "flip":
        return flip
    colour = v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02)
    return Compose([flip, TvTransform(v2.Compose([ScaleJitterCrop(SCALE_RANGES[name]), colour]))])
