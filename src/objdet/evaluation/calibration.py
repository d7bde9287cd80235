"""Are the scores probabilities? Expected calibration error, a reliability table, best-F1 thresholds.

A detection is correct when COCO's matching makes it a true positive at the chosen IoU (area "all",
largest maxDets); detections COCO ignores (matched to a crowd) are left out. Scores are binned into
equal-width bins over [0, 1]; in each bin the mean score (confidence) is set against the fraction
correct (precision). ECE = sum over bins of (detections in bin / all) x |precision - confidence|,
the detection-calibration error of Kuppers et al. (2020) without box-position bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from objdet.evaluation.accumulate import ranked_by_score
from objdet.evaluation.coco import CocoEvaluation


@dataclass
class Calibration:
    """Reliability table (one row per non-empty bin) and the expected calibration error."""

    ece: float
    bin_edges: np.ndarray  # [bins + 1]
    count: np.ndarray  # [bins] detections per bin
    confidence: np.ndarray  # [bins] mean score, nan where empty
    precision: np.ndarray  # [bins] fraction correct, nan where empty


def threshold_index(ev: CocoEvaluation, iou: float) -> int:
    """Index of `iou` among the evaluation's IoU thresholds (ValueError if it was not evaluated)."""
    found = np.flatnonzero(np.isclose(ev.params.iou_thrs, iou))
    if found.size == 0:
        raise ValueError(f"IoU {iou} is not one of the evaluated thresholds {ev.params.iou_thrs.tolist()}")
    return int(found[0])


def calibration(ev: CocoEvaluation, iou: float = 0.5, bins: int = 10) -> Calibration:
    """ECE and reliability table of an evaluation's detections at one IoU threshold."""
    t = threshold_index(ev, iou)
    tp, fp = ev.tp[0, t], ev.fp[0, t]
    scored = tp | fp
    score = np.clip(ev.dt.score[ev.kept][scored], 0.0, 1.0)
    correct = tp[scored].astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, bins - 1)  # a score of 1 goes in the last bin
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=score, minlength=bins) / count
        precision = np.bincount(which, weights=correct, minlength=bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(precision[filled] - confidence[filled])) / max(count.sum(), 1))
    return Calibration(ece, edges, count, confidence, precision)


def best_f1(ev: CocoEvaluation, iou: float = 0.5) -> dict[str, dict[str, float]]:
    """Per category name: the score threshold (keep scores >= it) maximising F1, with F1, precision, recall.

    Only thresholds at the end of a run of equal scores are candidates, since a threshold keeps all
    of them. A category without ground truth or detections is left out.
    """
    t = threshold_index(ev, iou)
    cat, img, score = ev.dt.cat[ev.kept], ev.dt.img[ev.kept], ev.dt.score[ev.kept]
    out = {}
    for k, ranked in enumerate(ranked_by_score(cat, img, ev.rank, score, len(ev.gt.cat_ids))):
        ranked = ranked[ev.rank[ranked] < max(ev.params.max_dets)]
        n_gt = ev.npig[k, 0]
        if n_gt == 0 or len(ranked) == 0:
            continue
        tp = np.cumsum(ev.tp[0, t, ranked]).astype(np.float64)
        fp = np.cumsum(ev.fp[0, t, ranked]).astype(np.float64)
        s = score[ranked]
        ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
        tp, fp = tp[ends], fp[ends]
        f1 = 2 * tp / np.maximum(tp + fp + n_gt, 1e-12)
        i = int(np.argmax(f1))
        out[ev.gt.cat_names[k]] = {
            "score": float(s[ends[i]]), "f1": float(f1[i]),
            "precision": float(tp[i] / max(tp[i] + fp[i], 1.0)), "recall": float(tp[i] / n_gt),
        }
    return out
