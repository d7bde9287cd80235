"""Overlap measures of the evaluators, in float64 and in the reference tools' exact arithmetic.

The COCO box IoU repeats pycocotools' `bbIou` operation for operation (so IoU values, and therefore
every threshold decision, are bit-identical); a crowd ground truth is scored by intersection over the
detection's area. OKS follows `COCOeval.computeOks`. The VOC IoU optionally adds 1 to widths and
heights as the legacy devkit did.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def coco_box_iou_pairs(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of aligned xywh box pairs `dt[i]`, `gt[i]` ([E, 4] each); crowd pairs use the detection's area."""
    w = np.minimum(dt[:, 2] + dt[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(dt[:, 0], gt[:, 0])
    h = np.minimum(dt[:, 3] + dt[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(dt[:, 1], gt[:, 1])
    inter = w * h
    dt_area = dt[:, 2] * dt[:, 3]
    union = np.where(crowd, dt_area, dt_area + gt[:, 2] * gt[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def mask_iou(dt_rles: list, gt_rles: list, crowd: np.ndarray) -> np.ndarray:
    """[D, G] IoU of compressed RLE masks (pycocotools' C kernel); crowd columns use the detection's area."""
    return np.asarray(mask_utils.iou(dt_rles, gt_rles, crowd.astype(np.uint8).tolist()), dtype=np.float64)


def oks(dt_kpts: np.ndarray, gt_kpts: np.ndarray, gt_bbox: np.ndarray, gt_area: np.ndarray,
        sigmas: np.ndarray) -> np.ndarray:
    """[D, G] object keypoint similarity; a gt without labelled keypoints scores distance to its doubled box."""
    variances = (sigmas * 2) ** 2
    xd, yd = dt_kpts[:, 0::3], dt_kpts[:, 1::3]
    out = np.zeros((len(dt_kpts), len(gt_kpts)))
    for j, (g, bb, area) in enumerate(zip(gt_kpts, gt_bbox, gt_area)):
        visible = g[2::3] > 0
        if visible.any():
            dx, dy = xd - g[0::3], yd - g[1::3]
        else:
            x0, x1 = bb[0] - bb[2], bb[0] + bb[2] * 2
            y0, y1 = bb[1] - bb[3], bb[1] + bb[3] * 2
            dx = np.maximum(0.0, x0 - xd) + np.maximum(0.0, xd - x1)
            dy = np.maximum(0.0, y0 - yd) + np.maximum(0.0, yd - y1)
        e = (dx**2 + dy**2) / variances / (area + np.spacing(1)) / 2
        if visible.any():
            e = e[:, visible]
        out[:, j] = np.sum(np.exp(-e), axis=1) / e.shape[1]
    return out


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] COCO (x, y, w, h) boxes as (x1, y1, x2, y2)."""
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_iou_pairs(dt: np.ndarray, gt: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of aligned xyxy box pairs ([E, 4] each), as the VOC devkit computes it; `plus_one` counts
    pixels inclusively (the legacy devkit rule: widths x2 - x1 + 1)."""
    one = 1.0 if plus_one else 0.0
    iw = np.maximum(np.minimum(dt[:, 2], gt[:, 2]) - np.maximum(dt[:, 0], gt[:, 0]) + one, 0.0)
    ih = np.maximum(np.minimum(dt[:, 3], gt[:, 3]) - np.maximum(dt[:, 1], gt[:, 1]) + one, 0.0)
    inter = iw * ih
    union = (dt[:, 2] - dt[:, 0] + one) * (dt[:, 3] - dt[:, 1] + one) + (gt[:, 2] - gt[:, 0] + one) * (
        gt[:, 3] - gt[:, 1] + one) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
