"""Precision/recall accumulation of `COCOeval.accumulate`, vectorised over area ranges and IoU thresholds.

For every category and maxDets setting, the detections of all images are ranked by score with ties
kept in (image, rank) order (pycocotools' stable mergesort over its concatenation), true and false
positives are summed cumulatively, precision is made non-increasing from the right, and it is read at
each recall threshold at the first position whose recall reaches it (`searchsorted(side='left')`).
Settings without non-ignored ground truth stay -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Accumulated:
    """precision and scores [T, R, K, A, M] and recall [T, K, A, M], -1 where undefined."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


def ranked_by_score(cat: np.ndarray, img: np.ndarray, rank: np.ndarray, score: np.ndarray, n_cat: int) -> list[np.ndarray]:
    """Per category, detection indices in pycocotools' accumulation order (score desc, then image, rank)."""
    order = np.lexsort((rank, img, -score, cat))
    bounds = np.searchsorted(cat[order], np.arange(n_cat + 1), side="left")
    return [order[bounds[k]:bounds[k + 1]] for k in range(n_cat)]


def _first_reaching(cum: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """For rows cum [B, n] (non-decreasing ints) and needed [B, R]: first index with cum >= needed, else n."""
    n_rows, n = cum.shape
    span = int(max(cum.max(initial=0), needed.max(initial=0))) + 1
    offset = np.arange(n_rows, dtype=np.int64)[:, None] * span
    flat = (cum + offset).ravel()
    return np.searchsorted(flat, (needed + offset).ravel(), side="left").reshape(needed.shape) - offset // span * n


def accumulate(cat: np.ndarray, img: np.ndarray, rank: np.ndarray, score: np.ndarray, tp: np.ndarray, fp: np.ndarray,
               npig: np.ndarray, max_dets: list[int], rec_thrs: np.ndarray, curves: bool = True) -> Accumulated:
    """Accumulate matched detections into pycocotools' precision/recall/scores arrays.

    cat, img, rank, score [N] describe the detections; tp, fp [A, T, N] say whether each counts as a
    true or false positive (neither when ignored); npig [K, A] counts non-ignored ground truth.
    Without `curves`, precision and scores are filled for the largest maxDets only (all that the
    summary stats read; recall is filled everywhere), which halves the work.
    """
    n_area, n_thr, _ = tp.shape
    n_cat = npig.shape[0]
    n_rec, n_max = len(rec_thrs), len(max_dets)
    precision = -np.ones((n_thr, n_rec, n_cat, n_area, n_max))
    recall = -np.ones((n_thr, n_cat, n_area, n_max))
    scores = -np.ones((n_thr, n_rec, n_cat, n_area, n_max))
    eps = np.spacing(1)
    for k, ranked in enumerate(ranked_by_score(cat, img, rank, score, n_cat)):
        areas = np.flatnonzero(npig[k] > 0)
        if areas.size == 0:
            continue
        n_gt = npig[k, areas]
        # smallest true-positive count whose recall (tp / n_gt, as float) reaches each recall threshold
        needed = np.stack([np.searchsorted(np.arange(g + 1) / g, rec_thrs, side="left") for g in n_gt])
        needed = np.repeat(needed[:, None, :], n_thr, axis=1).reshape(-1, n_rec)  # [A' * T, R]
        for m, max_det in enumerate(max_dets):
            sel = ranked[rank[ranked] < max_det]
            n = len(sel)
            if not curves and m < n_max - 1:  # recall only: true positives found over those to find
                recall[:, k, areas, m] = (tp[:, :, sel][areas].sum(axis=2) / n_gt[:, None]).T
                continue
            if n == 0:
                recall[:, k, areas, m] = 0.0
                precision[:, :, k, areas, m] = 0.0
                scores[:, :, k, areas, m] = 0.0
                continue
            tp_cum = np.cumsum(tp[:, :, sel][areas], axis=2)
            fp_cum = np.cumsum(fp[:, :, sel][areas], axis=2).astype(np.float64)
            tp_f = tp_cum.astype(np.float64)
            rc_last = tp_f[:, :, -1] / n_gt[:, None]
            pr = tp_f / (fp_cum + tp_f + eps)
            envelope = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1].reshape(-1, n)
            at = _first_reaching(tp_cum.reshape(-1, n), needed)  # [A' * T, R]
            inside = at < n
            at = np.minimum(at, n - 1)
            q = np.where(inside, np.take_along_axis(envelope, at, axis=1), 0.0)
            s = np.where(inside, score[sel][at], 0.0)
            recall[:, k, areas, m] = rc_last.T
            precision[:, :, k, areas, m] = q.reshape(len(areas), n_thr, n_rec).transpose(1, 2, 0)
            scores[:, :, k, areas, m] = s.reshape(len(areas), n_thr, n_rec).transpose(1, 2, 0)
    return Accumulated(precision, recall, scores)
