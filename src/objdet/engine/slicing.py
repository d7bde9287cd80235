"""Sliced inference for small objects in large images (SAHI's idea): predict overlapping tiles, each resized by
the model's transform as a whole image would be, and the whole image too, then merge.

The merge is class-wise NMS over all detections, after dropping tile detections that touch a tile edge
inside the image (an object cut by the tile border; with enough overlap another tile holds it whole).
BENCHMARKS.md ("Sliced inference") compares it with plain NMS on the generated set.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from objdet.nms import batched_nms

EDGE_MARGIN = 2.0  # pixels: a tile detection this close to an inner tile edge is taken as cut by it


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of tiles of `size` covering `length` pixels with `overlap` (fraction) between neighbours."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1.0 - overlap)))
    starts = list(range(0, length - size, step))
    return starts + [length - size]


def tiles(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of every tile of an image, row by row."""
    return [(y, x, min(y + size, height), min(x + size, width))
            for y in tile_starts(height, size, overlap) for x in tile_starts(width, size, overlap)]


def _shift(det: dict[str, Tensor], tile: tuple[int, int, int, int], image_size: tuple[int, int],
           drop_cut: bool) -> dict[str, Tensor]:
    """One tile's detections in image pixels (masks pasted into an image-sized canvas)."""
    y0, x0, y1, x1 = tile
    height, width = image_size
    boxes = det["boxes"] + det["boxes"].new_tensor([x0, y0, x0, y0])
    keep = torch.ones(len(boxes), dtype=torch.bool)
    if drop_cut:
        inner = [(0, x0, x0 > 0), (1, y0, y0 > 0), (2, x1, x1 < width), (3, y1, y1 < height)]
        for column, edge, is_inner in inner:
            if is_inner:
                keep &= (boxes[:, column] - edge).abs() > EDGE_MARGIN
    out = {"boxes": boxes[keep], "scores": det["scores"][keep], "labels": det["labels"][keep]}
    if "masks" in det:
        masks = det["masks"][keep]
        canvas = masks.new_zeros((len(masks), 1, height, width))
        canvas[:, :, y0:y1, x0:x1] = masks
        out["masks"] = canvas
    if "keypoints" in det:
        keypoints = det["keypoints"][keep].clone()
        keypoints[..., 0] += x0
        keypoints[..., 1] += y0
        out["keypoints"] = keypoints
        out["keypoints_scores"] = det["keypoints_scores"][keep]
    return out


def merge(parts: Sequence[dict[str, Tensor]], iou: float, limit: int) -> dict[str, Tensor]:
    """Class-wise NMS over the detections of every part (tiles and whole image), the best `limit` kept."""
    keys = parts[0].keys()
    joined = {k: torch.cat([p[k] for p in parts]) for k in keys}
    keep = batched_nms(joined["boxes"], joined["scores"], joined["labels"], iou)[:limit]
    return {k: v[keep] for k, v in joined.items()}


@torch.no_grad()
def sliced_predict(model: Callable[[list[Tensor]], list[dict[str, Tensor]]], images: Sequence[Tensor], size: int,
                   overlap: float = 0.2, batch_size: int = 4, iou: float = 0.5, limit: int = 100,
                   whole: bool = True, drop_cut: bool = True) -> list[dict[str, Tensor]]:
    """Detections of each image from its tiles (`size` px, `overlap` fraction) and, with `whole`, the whole image,
    merged by class-wise NMS at `iou`; tile detections cut by an inner tile edge are dropped with `drop_cut`."""
    jobs: list[tuple[int, tuple[int, int, int, int] | None, Tensor]] = []
    for i, image in enumerate(images):
        height, width = image.shape[-2:]
        jobs += [(i, t, image[:, t[0]:t[2], t[1]:t[3]]) for t in tiles(height, width, size, overlap)]
        if whole:
            jobs.append((i, None, image))
    parts: list[list[dict[str, Tensor]]] = [[] for _ in images]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        outputs = model([crop for _, _, crop in chunk])
        for (i, tile, _), det in zip(chunk, outputs):
            det = {k: v.cpu() for k, v in det.items()}
            image_size = tuple(images[i].shape[-2:])
            parts[i].append(det if tile is None else _shift(det, tile, image_size, drop_cut))
    return [merge(p, iou, limit) for p in parts]
