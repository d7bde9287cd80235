"""TIDE's error breakdown (Bolya et al., ECCV 2020): how much AP each kind of mistake costs.

objdet follows the paper's own package, tidecv 1.0.1, number for number (tests/evaluation/test_errors.py
runs it as the oracle). Its definitions, which other reimplementations change:
* AP is one IoU threshold (`pos_thresh`, 0.5), 101 recall points, over the top `max_dets` (100)
  detections of each image across all classes (COCO keeps 100 per image and class). Matching is greedy
  in score order; a detection takes the free same-class object of highest IoU >= pos_thresh, the first
  in file order on ties. An unmatched detection inside a same-class crowd region (intersection over
  its own area > pos_thresh) is left out of AP. A class with detections but no objects scores AP 0.
* Each detection that is not a true positive gets one error, tested in this order: Loc (same-class
  IoU in [bg_thresh, pos_thresh]), Cls (other-class IoU >= pos_thresh), Dupe (a taken same-class
  object at IoU >= pos_thresh), Bkg (every IoU <= bg_thresh; also every detection in an image without
  objects), Both (the rest). An object nobody matched is Miss unless a Cls or Loc error points at it.
* dAP of a main error is the AP after fixing every error of that kind alone, minus the AP, clipped
  at 0: Cls and Loc turn the highest-scored error per free object into a true positive (of the
  object's class) and drop the others, Dupe, Bkg and Both drop the detection, Miss drops the object.
  Fixed lists are rebuilt errors first, then true positives, which moves score ties; that is why
  tidecv clips. FalsePos scores true positives 1 and false ones 0; FalseNeg drops every unmatched
  object; these two are not clipped. A fix that leaves no class to average (no objects at all, or
  none left) counts 0, where tidecv divides by zero.
Values here are fractions (tidecv prints percent), on the scale of `evaluate_coco`. tidecv has no
per-class breakdown; objdet's is each class's AP after the fix minus its AP on the same list rebuilt
with nothing fixed, so a class without errors of a kind shows exactly 0 (not a tie artifact) and, with
no score ties, the overall dAP is the mean of the per-class ones clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from objdet.errors import EvaluationError
from objdet.evaluation.greedy import greedy_match
from objdet.evaluation.overlap import coco_box_iou_pairs
from objdet.evaluation.pairs import group_cross, key_ranges
from objdet.evaluation.records import Detections, GroundTruth, load_detections, load_ground_truth

MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
ERROR_KEYS = MAIN_ERRORS + SPECIAL_ERRORS
TRUE_POSITIVE, UNSCORED = -1, -2  # outcome codes besides 0..4, the index of a detection's error in MAIN_ERRORS
_CLS, _LOC, _BOTH, _DUPE, _BKG = range(5)
_RECALL_POINTS = np.array([i / 100 for i in range(101)])  # tidecv's, which differ from np.linspace in the last bit


@dataclass
class ErrorAnalysis:
    """TIDE's numbers and the outcome of every detection and object they come from."""

    ap: float  # TIDE's AP at pos_thresh
    errors: dict[str, float]  # dAP per error type, ERROR_KEYS
    per_class: dict[str, dict[str, float]]  # class name -> {"AP", *ERROR_KEYS}: AP, AP changes (see the module doc)
    counts: dict[str, int]  # how many errors of each main type
    outcome: np.ndarray  # int [D] per detection row: TRUE_POSITIVE, 0..4 (MAIN_ERRORS index) or UNSCORED
    ignored: np.ndarray  # bool [D]: in a same-class crowd region, left out of AP
    missed: np.ndarray  # bool [G] per ground-truth row: a Miss error
    unmatched: np.ndarray  # bool [G]: a non-crowd object no detection matched (FalseNeg's objects)


def error_breakdown(gt: Any, dt: Any, iou_type: str = "bbox", pos_thresh: float = 0.5, bg_thresh: float = 0.1,
                    max_dets: int = 100) -> dict[str, float]:
    """TIDE's eight dAPs (Cls, Loc, Both, Dupe, Bkg, Miss, FalsePos, FalseNeg) as fractions of AP.

    `gt` a COCO dict or path, `dt` a result list or path; `iou_type` "bbox" or "segm".
    """
    return analyse_errors(gt, dt, iou_type, pos_thresh, bg_thresh, max_dets).errors


def analyse_errors(gt: Any, dt: Any, iou_type: str = "bbox", pos_thresh: float = 0.5, bg_thresh: float = 0.1,
                   max_dets: int = 100) -> ErrorAnalysis:
    """The whole breakdown; `gt`/`dt` as for `error_breakdown`, or already loaded records."""
    if iou_type not in ("bbox", "segm"):
        raise EvaluationError(f"the error breakdown is for 'bbox' or 'segm', not {iou_type!r}")
    truth = gt if isinstance(gt, GroundTruth) else load_ground_truth(gt, iou_type)
    found = dt if isinstance(dt, Detections) else load_detections(dt, truth, iou_type)
    return _Tide(truth, found, iou_type, pos_thresh, bg_thresh, max_dets).run()


def _row_best(row: np.ndarray, col: np.ndarray, value: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest value and the first column holding it (numpy's argmax); -1, -1 without pairs.
    Pairs come grouped by row with columns increasing."""
    best, at = np.full(n_rows, -1.0), np.full(n_rows, -1, dtype=np.int64)
    if len(row):
        order = np.lexsort((col, -value, row))
        first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
        best[row[first]], at[row[first]] = value[first], col[first]
    return best, at


def _class_aps(cls: np.ndarray, score: np.ndarray, correct: np.ndarray, order: np.ndarray, n_pos: np.ndarray,
               touched: np.ndarray) -> np.ndarray:
    """tidecv's AP (percent) per class from its data points; nan for a class it would leave out (empty)."""
    n_cat = len(n_pos)
    o = np.lexsort((order, -score, cls))
    cls, correct = cls[o], correct[o]
    bounds = np.searchsorted(cls, np.arange(n_cat + 1), side="left")
    aps = np.full(n_cat, np.nan)
    for k in np.flatnonzero(touched):
        hits = correct[bounds[k]:bounds[k + 1]]
        if len(hits) == 0 and n_pos[k] == 0:
            continue
        if n_pos[k] == 0 or len(hits) == 0:
            aps[k] = 0.0
            continue
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, len(hits) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(tp / n_pos[k], _RECALL_POINTS, side="left")
        y = np.where(at < len(hits), precision[np.minimum(at, len(hits) - 1)], 0.0)
        aps[k] = np.cumsum(y)[-1] / len(y) * 100  # a running sum, as Python's sum() adds
    return aps


def _mean(aps: np.ndarray) -> float:
    kept = aps[~np.isnan(aps)]
    return float(np.cumsum(kept)[-1] / len(kept)) if len(kept) else 0.0


class _Tide:
    """One TIDE run: matching, error labels, then the AP of each fixed variant."""

    def __init__(self, truth: GroundTruth, found: Detections, iou_type: str, pos: float, bg: float, max_dets: int):
        self.truth, self.found, self.iou_type = truth, found, iou_type
        self.pos, self.bg = pos, bg
        self.n_cat = len(truth.cat_ids)
        # detections in tidecv's visiting order: images in file order, each by score (file order on ties), top max_dets
        d_img = truth.img_order[found.img]
        order = np.lexsort((np.arange(len(d_img)), -found.score, d_img))
        sorted_img = d_img[order]
        rank = np.arange(len(order)) - np.searchsorted(sorted_img, sorted_img, side="left")
        self.visit = order[rank < max_dets]
        self.v_img, self.v_cls = d_img[self.visit], found.cat[self.visit]
        self.v_score = found.score[self.visit]
        self.objects = self._rows_by_image(~truth.crowd)
        self.crowds = self._rows_by_image(truth.crowd)

    def _rows_by_image(self, mask: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(mask)
        return rows[np.argsort(self.truth.img_order[self.truth.img[rows]], kind="stable")]

    def _pairs(self, gt_rows: np.ndarray, crowd: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(visit index, index into gt_rows, IoU) for every detection and object of the same image."""
        g_img = self.truth.img_order[self.truth.img[gt_rows]]
        det, g = group_cross(*key_ranges(g_img, self.v_img))
        if self.iou_type == "bbox":
            iou = coco_box_iou_pairs(self.found.bbox[self.visit[det]], self.truth.bbox[gt_rows[g]], np.full(len(g), crowd))
            return det, g, iou
        segm_dt, segm_gt = self.found.segm, self.truth.segm
        assert segm_dt is not None and segm_gt is not None  # loaded with iou_type "segm"
        blocks = []
        starts = (np.flatnonzero(np.r_[True, self.v_img[1:] != self.v_img[:-1]]) if len(self.v_img)
                  else np.zeros(0, int))
        for lo, hi in zip(starts, list(starts[1:]) + [len(self.v_img)]):
            g0, g1 = np.searchsorted(g_img, self.v_img[lo], side="left"), np.searchsorted(g_img, self.v_img[lo], side="right")
            if g1 > g0:
                block = mask_utils.iou([segm_dt[i] for i in self.visit[lo:hi]],
                                       [segm_gt[i] for i in gt_rows[g0:g1]], [int(crowd)] * int(g1 - g0))
                blocks.append(np.asarray(block, dtype=np.float64).ravel())
        return det, g, np.concatenate(blocks) if blocks else np.zeros(0)

    def run(self) -> ErrorAnalysis:
        truth, n_v, n_g = self.truth, len(self.visit), len(self.objects)
        det, g, iou = self._pairs(self.objects, crowd=False)
        g_cls = truth.cat[self.objects]
        same = self.v_cls[det] == g_cls[g]

        # greedy matching per (image, class) in visiting order; reversed object indices make ties go to the first
        key = self.v_img * max(self.n_cat, 1) + self.v_cls
        by_key = np.lexsort((np.arange(n_v), key))
        sorted_key = key[by_key]
        rank = np.empty(n_v, dtype=np.int64)
        rank[by_key] = np.arange(n_v) - np.searchsorted(sorted_key, sorted_key, side="left")
        cand = same & (iou >= self.pos)
        flipped = greedy_match(rank, det[cand], n_g - 1 - g[cand], iou[cand], np.zeros(n_g, bool),
                               np.zeros((1, n_g), bool), np.array([self.pos]))[0, 0]
        match = np.where(flipped >= 0, n_g - 1 - flipped, -1)
        tp = match >= 0
        used = np.zeros(n_g, dtype=bool)
        used[match[tp]] = True

        c_det, c_g, c_iou = self._pairs(self.crowds, crowd=True)
        in_crowd = (c_iou > self.pos) & (self.v_cls[c_det] == truth.cat[self.crowds][c_g])
        ignored = np.zeros(n_v, dtype=bool)
        ignored[c_det[in_crowd]] = True
        ignored &= ~tp

        has_object = np.zeros(n_v, dtype=bool)
        has_object[det] = True
        same_best, same_at = _row_best(det, g, np.where(same, iou, 0.0), n_v)
        other_best, other_at = _row_best(det, g, np.where(same, 0.0, iou), n_v)
        taken_best, _ = _row_best(det, g, np.where(same & used[g], iou, 0.0), n_v)
        any_best, _ = _row_best(det, g, iou, n_v)
        code = np.select(
            [tp, ~has_object, (self.bg <= same_best) & (same_best <= self.pos), other_best >= self.pos,
             taken_best >= self.pos, any_best <= self.bg],
            [TRUE_POSITIVE, _BKG, _LOC, _CLS, _DUPE, _BKG], _BOTH)
        target = np.where(code == _LOC, same_at, np.where(code == _CLS, other_at, -1))

        # Cls/Loc errors at a free object: only the highest-scored one (first on ties) would become its match
        at_free = np.zeros(n_v, dtype=bool)
        at_free[target >= 0] = ~used[target[target >= 0]]
        fixable = np.flatnonzero(at_free)
        usable = np.zeros(n_g, dtype=bool)
        usable[target[fixable]] = True
        o = fixable[np.lexsort((fixable, -self.v_score[fixable], target[fixable]))]
        best = np.zeros(n_v, dtype=bool)
        best[o[np.r_[True, target[o][1:] != target[o][:-1]]] if len(o) else []] = True
        missed = ~used & ~usable
        return self._scores(code, ignored, best, target, used, missed)

    def _scores(self, code: np.ndarray, ignored: np.ndarray, best: np.ndarray, target: np.ndarray,
                used: np.ndarray, missed: np.ndarray) -> ErrorAnalysis:
        truth, n_v, n_cat = self.truth, len(self.visit), self.n_cat
        g_cls = truth.cat[self.objects]
        n_pos = np.bincount(g_cls, minlength=n_cat)
        tp, err = code == TRUE_POSITIVE, code >= 0
        fp = err & ~ignored
        touched = (n_pos > 0) | (np.bincount(self.v_cls[tp | fp], minlength=n_cat) > 0)
        idx = np.arange(n_v)

        def aps(points: np.ndarray, cls: np.ndarray, score: np.ndarray, correct: np.ndarray, pos: np.ndarray,
                rebuilt: bool = True) -> np.ndarray:
            order = np.where(tp, n_v + idx, idx) if rebuilt else idx  # rebuilt lists: errors first, then TPs
            return _class_aps(cls[points], score[points], correct[points], order[points], pos, touched)

        base = aps(tp | fp, self.v_cls, self.v_score, tp, n_pos, rebuilt=False)
        rebuilt = aps(tp | fp, self.v_cls, self.v_score, tp, n_pos)  # per-class baseline: nothing fixed
        ap = _mean(base)
        fixed_cls = self.v_cls.copy()  # a fixed Cls error counts for its object's class
        fixed_cls[code == _CLS] = g_cls[target[code == _CLS]]
        variants = {}
        for e, name in enumerate(MAIN_ERRORS):
            if name == "Miss":
                variants[name] = aps(tp | fp, self.v_cls, self.v_score, tp, n_pos - np.bincount(g_cls[missed], minlength=n_cat))
                continue
            promoted = (code == e) & best & (e in (_CLS, _LOC))
            kept = tp | (fp & (code != e)) | promoted
            variants[name] = aps(kept, fixed_cls if e == _CLS else self.v_cls, self.v_score, tp | promoted, n_pos)
        variants["FalsePos"] = aps(tp | fp, self.v_cls, tp.astype(np.float64), tp, n_pos)
        variants["FalseNeg"] = aps(tp | fp, self.v_cls, self.v_score, tp, n_pos - np.bincount(g_cls[~used], minlength=n_cat))

        errors = {}
        for name, values in variants.items():
            delta = (_mean(values) - ap) / 100
            errors[name] = max(delta, 0.0) if name in MAIN_ERRORS else delta
        per_class = {}
        for k in np.flatnonzero(~np.isnan(base)):
            row = {"AP": base[k] / 100}
            row.update({name: (np.nan_to_num(values[k]) - rebuilt[k]) / 100 for name, values in variants.items()})
            per_class[truth.cat_names[k]] = row

        n_dt, n_gt = len(self.found.score), len(truth.cat)
        outcome = np.full(n_dt, UNSCORED, dtype=np.int64)
        outcome[self.visit] = code
        ignored_rows = np.zeros(n_dt, dtype=bool)
        ignored_rows[self.visit] = ignored
        missed_rows, unmatched_rows = np.zeros(n_gt, dtype=bool), np.zeros(n_gt, dtype=bool)
        missed_rows[self.objects], unmatched_rows[self.objects] = missed, ~used
        counts = {name: int(np.count_nonzero(code == e)) for e, name in enumerate(MAIN_ERRORS[:-1])}
        counts["Miss"] = int(missed.sum())
        return ErrorAnalysis(ap / 100, errors, per_class, counts, outcome, ignored_rows, missed_rows, unmatched_rows)
