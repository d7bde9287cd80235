"""COCO stats of resampled image sets, from one evaluation, for the bootstrap.

COCO matching happens inside each (image, category), so a detection's true/false-positive outcome does
not depend on which other images are in the set. A resampled set, image i drawn w_i times, is then
the original detections with weight w_i: cumulative true/false positives become weighted sums, the
non-ignored ground truth a weighted count, and the rest is pycocotools' accumulation (envelope,
101 recall points, means over defined categories). With all weights 1 the stats are the evaluation's;
with integer weights they are pycocotools' on the image set written out with copies (test_compare.py),
up to the order of equal scores across copies, which pycocotools leaves to image ids.
"""

from __future__ import annotations

import numpy as np

from objdet.evaluation.accumulate import ranked_by_score
from objdet.evaluation.coco import CocoEvaluation, ignored_gt

_CHUNK = 1 << 21  # weighted-cumsum elements per step (replicates x thresholds x detections), bounds memory


def draw_weights(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """int32 [n_boot, n_images]: how often each image is drawn in each bootstrap replicate (fixed seed)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_boot, n_images))
    weights = np.zeros((n_boot, n_images), dtype=np.int32)
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_images), draws.ravel()), 1)
    return weights


def _needed(n_gt: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """[B, R] smallest true-positive count c with c / n_gt >= each recall threshold, in float arithmetic
    (what `searchsorted(arange(g + 1) / g, rec_thrs)` gives in `accumulate`)."""
    g = np.maximum(n_gt, 1).astype(np.float64)[:, None]
    c = np.ceil(rec_thrs[None, :] * g)
    c = np.where((c - 1) / g >= rec_thrs, c - 1, c)
    return np.where(c / g < rec_thrs, c + 1, c).astype(np.int64)


def _first_reaching(cum: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Per row of cum [B, n] (non-decreasing): first index with cum >= needed [B, R], n where none."""
    rows, n = cum.shape
    span = int(max(cum.max(initial=0), needed.max(initial=0))) + 1
    offset = np.arange(rows, dtype=np.int64)[:, None] * span
    at = np.searchsorted((cum + offset).ravel(), (needed + offset).ravel(), side="left")
    return at.reshape(needed.shape) - np.arange(rows)[:, None] * n


def _category_curves(tp: np.ndarray, fp: np.ndarray, weights: np.ndarray, img: np.ndarray, n_gt: np.ndarray,
                     rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One category: (mean interpolated precision over recall points [B, T], final recall [B, T]).

    tp, fp [T, n] in accumulation order, img [n] their images; weights [B, I] per image; n_gt [B] (> 0)
    weighted non-ignored ground truth. Precision falls at every false positive, so the envelope and the
    first point reaching a recall are read at true positives only; false positives enter as the
    weighted count before each.
    """
    n_boot, n_thr = len(weights), tp.shape[0]
    needed = _needed(n_gt, rec_thrs)  # [B, R]
    precision, recall = np.zeros((n_boot, n_thr)), np.zeros((n_boot, n_thr))
    step = max(1, _CHUNK // max(tp.shape[1], 1))
    for lo in range(0, n_boot, step):
        w = weights[lo:lo + step][:, img]  # [b, n]
        for t in range(n_thr):
            hit, miss = np.flatnonzero(tp[t]), np.flatnonzero(fp[t])
            if hit.size == 0:
                continue
            tp_cum = np.cumsum(w[:, hit], axis=1)
            fp_before = np.searchsorted(miss, hit)  # false positives ranked before each true positive
            fp_cum = np.cumsum(w[:, miss], axis=1)
            fp_at = np.where(fp_before > 0, fp_cum[:, np.maximum(fp_before - 1, 0)] if miss.size else 0, 0)
            tp_f = tp_cum.astype(np.float64)
            recall[lo:lo + step, t] = tp_f[:, -1] / n_gt[lo:lo + step]
            pr = tp_f / (fp_at + tp_f + np.spacing(1))
            envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            at = _first_reaching(tp_cum, needed[lo:lo + step])
            q = np.where(at < hit.size, np.take_along_axis(envelope, np.minimum(at, hit.size - 1), axis=1), 0.0)
            precision[lo:lo + step, t] = q.mean(axis=1)
    return precision, recall


def resampled_curves(ev: CocoEvaluation, weights: np.ndarray, area: int, max_det: int,
                     curves: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For image weights [B, I]: mean interpolated precision and recall [B, K, T] in one area range and
    maxDets setting, nan where a category has no (weighted) non-ignored ground truth. Without `curves`,
    recall only (precision stays nan), which needs no per-replicate cumulative sums.

    Ignored detections (neither true nor false positive) are dropped first: they repeat the precision
    before them, so neither the envelope nor the first point reaching a recall changes.
    """
    n_boot, n_cat, n_thr = len(weights), len(ev.gt.cat_ids), len(ev.params.iou_thrs)
    precision, recall = np.full((n_boot, n_cat, n_thr), np.nan), np.full((n_boot, n_cat, n_thr), np.nan)
    counted = ~ignored_gt(ev.gt, ev.params)[area]
    n_img = len(ev.gt.img_ids)
    img, cat, score = ev.dt.img[ev.kept], ev.dt.cat[ev.kept], ev.dt.score[ev.kept]
    tp, fp = ev.tp[area], ev.fp[area]
    for k, ranked in enumerate(ranked_by_score(cat, img, ev.rank, score, n_cat)):
        n_gt = weights @ np.bincount(ev.gt.img[counted & (ev.gt.cat == k)], minlength=n_img)
        defined = n_gt > 0
        if not defined.any():
            continue
        sel = ranked[ev.rank[ranked] < max_det]
        sel = sel[(tp[:, sel] | fp[:, sel]).any(axis=0)]
        if not curves:
            hits = np.stack([np.bincount(img[sel], weights=tp[t, sel], minlength=n_img) for t in range(n_thr)], axis=1)
            recall[defined, k] = (weights[defined] @ hits) / n_gt[defined, None]
            continue
        p, r = _category_curves(tp[:, sel], fp[:, sel], weights[defined], img[sel], n_gt[defined], ev.params.rec_thrs)
        precision[defined, k], recall[defined, k] = p, r
    return precision, recall


def resampled_stats(ev: CocoEvaluation, weights: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The evaluation's summary stats for each replicate ({name: [B]}, -1 where undefined) and the
    per-category AP [B, K] (area all, largest maxDets; nan without ground truth)."""
    p = ev.params
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    need_curves = {(p.area_labels.index(a), p.max_dets[mi]) for _, is_ap, _, a, mi in ev._spec() if is_ap}
    main = (0, p.max_dets[-1])
    need_curves.add(main)
    stats = {}
    for name, is_ap, thr, area_label, mi in ev._spec():
        key = (p.area_labels.index(area_label), p.max_dets[mi])
        if key not in cache:
            cache[key] = resampled_curves(ev, weights, *key, curves=key in need_curves)
        values = cache[key][0 if is_ap else 1]
        if thr is not None:
            values = values[:, :, np.flatnonzero(np.isclose(p.iou_thrs, thr))]
        flat = values.reshape(len(weights), -1)
        defined = ~np.isnan(flat)
        total = np.where(defined, flat, 0.0).sum(axis=1)
        stats[name] = np.where(defined.any(axis=1), total / np.maximum(defined.sum(axis=1), 1), -1.0)
    if main not in cache:
        cache[main] = resampled_curves(ev, weights, *main)
    return stats, cache[main][0].mean(axis=2)
