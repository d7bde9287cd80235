"""Instance masks in COCO's forms (polygons and RLE decoded to N x H x W uint8 masks, masks encoded back)
and keypoint lists as N x K x 3 arrays: the per-object arrays every reader builds its targets from.

Every reader keeps an object's segmentation in COCO form (a list of flat [x1, y1, x2, y2, ...] polygons
in pixels, or an RLE dict) and decodes it only when a target is asked for, with pycocotools.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

SNAP = 1e-3  # pixels: box corners this close to a pixel edge are on it


def decode_segmentation(segm: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as an H x W uint8 mask."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_utils.decode(rle)


def encode_mask(mask: np.ndarray) -> dict:
    """An H x W binary mask as a json-ready compressed RLE."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def instance_masks(segmentations: Sequence[list | dict | None], boxes: Sequence[Sequence[float]], height: int,
                   width: int) -> np.ndarray:
    """N x H x W uint8 masks: each segmentation decoded, or its box filled where it has none (an object
    drawn as a box in a data set whose other objects have masks)."""
    masks = np.zeros((len(boxes), height, width), dtype=np.uint8)
    for k, (segm, (x1, y1, x2, y2)) in enumerate(zip(segmentations, boxes)):
        if segm is not None:
            masks[k] = decode_segmentation(segm, height, width)
        else:
            y1, x1 = (int(np.floor(v + SNAP)) for v in (y1, x1))  # a box written as 12 and read back as
            y2, x2 = (int(np.ceil(v - SNAP)) for v in (y2, x2))  # 11.99995 covers the same pixels
            masks[k, y1:y2, x1:x2] = 1
    return masks


def polygons_box(polygons: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The xyxy extent of flat [x1, y1, x2, y2, ...] polygons."""
    xs = [v for poly in polygons for v in poly[0::2]]
    ys = [v for poly in polygons for v in poly[1::2]]
    return min(xs), min(ys), max(xs), max(ys)


def polygon_area(polygons: list[list[float]], height: int, width: int) -> float:
    """Pixels covered by COCO polygons as pycocotools rasterises them (COCO's `area` of a polygon object)."""
    return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))))


def keypoint_array(keypoints: Sequence[Sequence[float] | None], count: int) -> np.ndarray:
    """N x K x 3 float32 keypoints from each object's flat or K x 3 list; zeros (unlabelled) where it has none."""
    out = np.zeros((len(keypoints), count, 3), dtype=np.float32)
    for k, kps in enumerate(keypoints):
        if kps is not None:
            out[k] = np.asarray(kps, dtype=np.float32).reshape(-1, 3)
    return out
