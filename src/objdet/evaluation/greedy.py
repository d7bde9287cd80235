"""pycocotools' greedy detection-to-ground-truth matching, for all images, categories, area ranges and
IoU thresholds at once.

Each detection, in score order within its (image, category), takes the still-free ground truth of
highest IoU at or above the threshold (crowd ground truth never becomes taken); a non-ignored ground
truth beats any ignored one, and among equal IoUs the later ground truth in file order wins, exactly
as `COCOeval.evaluateImg` walks its sorted lists. Detections of one rank never compete with each
other (they belong to different (image, category) pairs), so the only loop is over the rank, at most
`maxDets` steps; everything inside a step is array work over the sparse (detection, gt) overlaps.
"""

from __future__ import annotations

import numpy as np


def greedy_match(rank: np.ndarray, e_det: np.ndarray, e_gt: np.ndarray, e_iou: np.ndarray, gt_crowd: np.ndarray,
                 gt_ignore: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Matched gt index per (area range, threshold, detection), -1 where unmatched.

    rank [N]: the detection's position in score order within its (image, category).
    e_det, e_gt, e_iou [E]: the overlaps worth considering (IoU >= the lowest threshold), gt indices
    increasing in file order within a pair. gt_crowd [G]; gt_ignore [A, G]; thresholds [T].
    """
    n_area, n_gt = gt_ignore.shape
    n_thr = len(thresholds)
    match = np.full((n_area, n_thr, len(rank)), -1, dtype=np.int64)
    if len(e_det) == 0:
        return match
    # Group overlaps by rank, then detection, then ascending (IoU, gt index): the last candidate of a
    # detection's group is the one pycocotools keeps.
    order = np.lexsort((e_gt, e_iou, e_det, rank[e_det]))
    e_det, e_gt, e_iou = e_det[order], e_gt[order], e_iou[order]
    e_rank = rank[e_det]
    bounds = np.searchsorted(e_rank, np.arange(e_rank[-1] + 2), side="left")
    taken = np.zeros((n_area, n_thr, n_gt), dtype=bool)
    above = e_iou[None, :] >= thresholds[:, None]  # [T, E]
    a_idx = np.arange(n_area)[:, None, None]
    t_idx = np.arange(n_thr)[None, :, None]
    for r in range(len(bounds) - 1):
        lo, hi = bounds[r], bounds[r + 1]
        if lo == hi:
            continue
        det, gt = e_det[lo:hi], e_gt[lo:hi]
        free = gt_crowd[gt][None, None, :] | ~taken[:, :, gt]  # [A, T, e]
        cand = free & above[None, :, lo:hi]
        ignored = gt_ignore[:, gt][:, None, :]  # [A, 1, e]
        pos = np.arange(hi - lo)
        starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
        best_kept = np.maximum.reduceat(np.where(cand & ~ignored, pos, -1), starts, axis=2)
        best_ignored = np.maximum.reduceat(np.where(cand & ignored, pos, -1), starts, axis=2)
        best = np.where(best_kept >= 0, best_kept, best_ignored)  # [A, T, detections of this rank]
        hit = best >= 0
        chosen = gt[best[hit]]
        taken[np.broadcast_to(a_idx, best.shape)[hit], np.broadcast_to(t_idx, best.shape)[hit], chosen] = True
        det_of = np.broadcast_to(det[starts][None, None, :], best.shape)
        match[np.broadcast_to(a_idx, best.shape)[hit], np.broadcast_to(t_idx, best.shape)[hit], det_of[hit]] = chosen
    return match
