"""`shapes`: the built-in data set, drawn from a seed (no download) with boxes, masks and keypoints.

Each image shows 1..`max_objects` filled shapes (rectangle, ellipse, triangle, star, cross) at
random rotation, colour and size (small < 32^2 to large > 96^2 box area) on a textured, noisy
background. Later shapes occlude earlier ones: masks are the visible pixels, boxes their tight
extent, and an object left with less than `min_visible` of its area is dropped and not painted.
Every class has the same K = 4 keypoints, the extremal points of the outline (top, right, bottom,
left; ties averaged); visibility is 2 where the object's visible mask reaches the point and 1
where another shape covers it. Image i of a split depends only on (seed, split, i), so items are
reproducible in any order and the train/val/test splits differ.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from objdet.data.base import DetectionDataset, Target, Transform


CLASSES = ("rectangle", "ellipse", "triangle", "star", "cross")
KEYPOINT_NAMES = ("top", "right", "bottom", "left")
SKELETON = [[1, 2], [2, 3], [3, 4], [4, 1]]
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 512, "val": 128, "test": 128}
# (weight, smallest, largest) box side of the small / medium / large size bands
_SIZE_BANDS = ((0.3, 10.0, 30.0), (0.4, 34.0, 90.0), (0.3, 120.0, 10_000.0))


def _outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices [V, 2] of a shape of unit radius centred at the origin (before rotation)."""
    if kind == "rectangle":
        a = rng.uniform(0.45, 1.0)
        return np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64)
    if kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), rng.uniform(0.45, 1.0) * np.sin(t)], 1)
    if kind == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "star":
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.35, 0.5))
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    w = rng.uniform(0.25, 0.4)  # cross: a plus sign with arm half-width w
    return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                     [-w, w], [-1, w], [-1, -w], [-w, -w]], dtype=np.float64)


def extremal_points(vertices: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Top, right, bottom, left points [4, 2] of a polygon; tied vertices are averaged."""
    x, y = vertices[:, 0], vertices[:, 1]
    picks = (y <= y.min() + eps, x >= x.max() - eps, y >= y.max() - eps, x <= x.min() + eps)
    return np.stack([vertices[p].mean(0) for p in picks])


def _texture(rng: np.random.Generator, h: int, w: int, cells: int, amplitude: float) -> np.ndarray:
    """Smooth random field [h, w, 3]: a coarse random grid upsampled bilinearly."""
    coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR), np.float32)
    return (smooth / 255.0 - 0.5) * amplitude


def _side(rng: np.random.Generator, size: int, allow_large: bool) -> float:
    """A box side drawn from one of the size bands, log-uniform inside it."""
    bands = [b for b in _SIZE_BANDS if allow_large or b[1] < 120]
    p = np.array([b[0] for b in bands])
    _, lo, hi = bands[rng.choice(len(bands), p=p / p.sum())]
    hi = min(hi, 0.95 * size)
    lo = min(lo, hi)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _raster(vertices: np.ndarray, h: int, w: int) -> np.ndarray:
    """Binary mask [h, w] of the pixels whose centres fall inside the polygon."""
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(v) for v in vertices - 0.5], fill=1)
    return np.asarray(canvas, dtype=bool)


def occlude(masks: list[np.ndarray], min_visible: float, min_pixels: int = 4
            ) -> list[np.ndarray | None]:
    """Visible part of each mask when later masks lie on top; None for an object that keeps less
    than `min_visible` of its area (or `min_pixels`), which is dropped and so hides nothing."""
    if not masks:
        return []
    occupied = np.zeros_like(masks[0])
    out: list[np.ndarray | None] = [None] * len(masks)
    for k in reversed(range(len(masks))):
        visible = masks[k] & ~occupied
        area = visible.sum()
        if area >= max(min_visible * masks[k].sum(), min_pixels):
            out[k] = visible
            occupied |= visible
    return out


def generate(rng: np.random.Generator, size: int = 160, max_objects: int = 6, min_visible: float = 0.3,
             classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One image [H, W, 3] float32 in 0..1 and its numpy target (boxes, labels, masks, keypoints); objects are
    drawn from `classes` (a subset of CLASSES; label k is classes[k - 1])."""
    h = w = size
    shapes = []
    large_used = False
    for _ in range(rng.integers(1, max_objects + 1)):
        label = int(rng.integers(len(classes)))
        side = _side(rng, size, allow_large=not large_used)
        large_used |= side >= 120
        angle = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        v = _outline(classes[label], rng) @ rot.T
        v = v * (side / (v.max(0) - v.min(0)).max())
        lo, hi = v.min(0), v.max(0)
        v = v + rng.uniform(-lo, [w, h] - hi)
        shapes.append((label + 1, v, _raster(v, h, w)))

    visible_parts = occlude([full for _, _, full in shapes], min_visible)
    kept = [(*shape, vis) for shape, vis in zip(shapes, visible_parts) if vis is not None]

    image = rng.uniform(0.2, 0.8, 3).astype(np.float32) + _texture(rng, h, w, 5, 0.4)
    for label, v, full, _ in kept:
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        image[full] = colour + _texture(rng, h, w, 8, 0.15)[full]
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)

    n = len(kept)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    boxes = np.zeros((n, 4), dtype=np.float32)
    keypoints = np.zeros((n, len(KEYPOINT_NAMES), 3), dtype=np.float32)
    for k, (label, v, full, visible) in enumerate(kept):
        masks[k] = visible
        ys, xs = np.nonzero(visible)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        points = extremal_points(v)
        cols = np.clip(np.floor(points[:, 0]).astype(int), 0, w - 1)
        rows = np.clip(np.floor(points[:, 1]).astype(int), 0, h - 1)
        near = [visible[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any() for r, c in zip(rows, cols)]
        keypoints[k, :, :2] = points
        keypoints[k, :, 2] = np.where(near, 2, 1)
    target = {
        "boxes": boxes,
        "labels": np.array([s[0] for s in kept], dtype=np.int64),
        "masks": masks,
        "keypoints": keypoints,
        "area": masks.reshape(n, -1).sum(1).astype(np.float32),
        "iscrowd": np.zeros(n, dtype=np.int64),
    }
    return np.clip(image, 0.0, 1.0), target


def _categories(classes: Sequence[str]) -> list[dict]:
    return [{"id": i + 1, "name": name, "supercategory": "shape", "keypoints": list(KEYPOINT_NAMES),
             "skeleton": SKELETON} for i, name in enumerate(classes)]


class ShapesDataset(DetectionDataset):
    """The generated `shapes` data set: (image [3,H,W] in 0..1, target) with masks and keypoints.

    `classes` draws only some of the shapes (labels 1..K in that order): a source and a target with other
    classes, for fine-tuning experiments."""

    categories = _categories(CLASSES)
    label_to_category_id = {i + 1: i + 1 for i in range(len(CLASSES))}
    keypoint_names = list(KEYPOINT_NAMES)

    def __init__(self, split: str = "train", length: int | None = None, image_size: int = 160,
                 seed: int = 0, max_objects: int = 6, min_visible: float = 0.3,
                 transforms: Transform | None = None, classes: Sequence[str] | None = None):
        from objdet.errors import ConfigError

        if classes is not None:
            unknown = [c for c in classes if c not in CLASSES]
            if unknown or not classes:
                raise ConfigError(f"shapes classes must be some of {list(CLASSES)}, got {list(classes)}")
            self.classes = tuple(classes)
            self.categories = _categories(self.classes)
            self.label_to_category_id = {i + 1: i + 1 for i in range(len(self.classes))}
        else:
            self.classes = CLASSES

        if split not in SPLITS:
            raise ConfigError(f"unknown shapes split {split!r}; choose from {sorted(SPLITS)}")
        if image_size < 32 or max_objects < 1 or (length is not None and length < 0):
            raise ConfigError("shapes needs image_size >= 32, max_objects >= 1, length >= 0")
        self.split, self.seed = split, seed
        self.length = DEFAULT_LENGTHS[split] if length is None else length
        self.image_size, self.max_objects, self.min_visible = image_size, max_objects, min_visible
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        """Number of shape classes (labels run 1..num_classes)."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.length

    def image_info(self, i: int) -> dict:
        """The image record: id, file_name, width, height."""
        return {"id": i + 1, "file_name": f"{self.split}_{i:06d}.png",
                "width": self.image_size, "height": self.image_size}

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        """Image i and its target, before transforms."""
        if not 0 <= i < self.length:
            raise IndexError(f"shapes {self.split} has {self.length} images, not index {i}")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], i])
        image, target = generate(rng, self.image_size, self.max_objects, self.min_visible, self.classes)
        out: Target = {k: torch.from_numpy(v) for k, v in target.items()}
        out["image_id"] = i + 1
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), out

    def target(self, i: int) -> Target:
        """Target of image i (generating it draws the image too)."""
        return self.load(i)[1]
