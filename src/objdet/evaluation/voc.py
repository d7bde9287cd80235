"""Pascal VOC average precision per class and mAP, as the VOC devkit's `voc_eval` computes it.

Detections of a class, by descending score, are matched to the ground truth of their image with the
highest IoU; a match needs IoU strictly above the threshold, a `difficult` object makes its match
count as neither true nor false positive, and a second detection of the same object is a false
positive. AP is the VOC2007 11-point interpolation (recall 0, 0.1, ..., 1) or the VOC2010+ area under
the non-increasing precision envelope ("all"). Input is COCO form (see `records`), with VOC's flag as
`"difficult": 1` on an annotation; boxes are xywh, compared as xyxy = (x, y, x + w, y + h).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from objdet.errors import EvaluationError
from objdet.evaluation.overlap import xywh_to_xyxy, xyxy_iou_pairs
from objdet.evaluation.pairs import group_cross, key_ranges
from objdet.evaluation.records import load_detections, load_ground_truth

METHODS = ("11point", "all")


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "11point") -> float:
    """AP of a precision/recall curve (detections in score order) by VOC's 11-point or all-point rule."""
    if method == "11point":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the devkit's own recall points, float quirks included
            reached = recall >= t
            ap += (float(np.max(precision[reached])) if reached.any() else 0.0) / 11.0
        return ap
    if method != "all":
        raise EvaluationError(f"method must be one of {METHODS}, got {method!r}")
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate_voc(gt: Any, dt: Any, iou: float = 0.5, method: str = "11point", plus_one: bool = False) -> dict:
    """VOC AP per class name and their mean over classes with (non-difficult) ground truth.

    Returns {"mAP": float, "per_class": {name: AP}}; a class without ground truth has AP nan.
    `plus_one` applies the legacy devkit rule (widths and heights x2 - x1 + 1) for boxes given in
    VOC's inclusive pixel coordinates.
    """
    if method not in METHODS:
        raise EvaluationError(f"method must be one of {METHODS}, got {method!r}")
    truth = load_ground_truth(gt, "bbox")
    found = load_detections(dt, truth, "bbox")
    n_cat = len(truth.cat_ids)
    g_key = truth.img * max(n_cat, 1) + truth.cat
    g_order = np.argsort(g_key, kind="stable")  # per (image, class), file order
    d_order = np.lexsort((-found.score, found.cat))  # per class, score descending, ties in file order
    d_key = (found.img * max(n_cat, 1) + found.cat)[d_order]

    # best-overlapping ground truth of each detection (first one on ties), difficult ones included
    det, g = group_cross(*key_ranges(g_key[g_order], d_key))
    g_box = xywh_to_xyxy(truth.bbox)[g_order[g]]
    overlap = xyxy_iou_pairs(xywh_to_xyxy(found.bbox)[d_order[det]], g_box, plus_one)
    best = np.full(len(d_order), -np.inf)
    np.maximum.at(best, det, overlap)
    first = np.full(len(d_order), len(g_order))
    on_best = overlap == best[det]
    np.minimum.at(first, det[on_best], g[on_best])

    hit = best > iou
    matched = np.where(hit, first, -1)
    difficult = truth.difficult[g_order]
    skip = hit & difficult[np.maximum(matched, 0)]
    claims = np.flatnonzero(hit & ~skip)
    _, first_claim = np.unique(matched[claims], return_index=True)  # earliest detection per object wins
    tp = np.zeros(len(d_order), dtype=bool)
    tp[claims[first_claim]] = True
    fp = ~tp & ~skip

    d_cat = found.cat[d_order]
    n_pos = np.bincount(truth.cat[~truth.difficult], minlength=n_cat)
    per_class, aps = {}, []
    for k, name in enumerate(truth.cat_names):
        rows = d_cat == k
        if n_pos[k] == 0:
            per_class[name] = float("nan")
            continue
        tp_cum = np.cumsum(tp[rows]).astype(np.float64)
        fp_cum = np.cumsum(fp[rows]).astype(np.float64)
        recall = tp_cum / float(n_pos[k])
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        per_class[name] = average_precision(recall, precision, method)
        aps.append(per_class[name])
    return {"mAP": float(np.mean(aps)) if aps else float("nan"), "per_class": per_class}
