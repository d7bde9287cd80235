"""COCO evaluation (bbox, segm, keypoints) with pycocotools' semantics, vectorised with numpy.

The stats equal `COCOeval.evaluate(); accumulate(); summarize()` (to float rounding of the final
means): same reading of the files (see `records`), same IoU/OKS arithmetic (`overlap`), same greedy
matching and tie-breaks (`greedy`), same accumulation (`accumulate`). An empty detection list is
scored as pycocotools would score a result set without detections (AP 0 wherever there is ground
truth) instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from objdet.errors import EvaluationError
from objdet.evaluation.accumulate import Accumulated, accumulate
from objdet.evaluation.greedy import greedy_match
from objdet.evaluation.overlap import coco_box_iou_pairs, mask_iou, oks
from objdet.evaluation.pairs import group_cross, key_ranges
from objdet.evaluation.records import (
    COCO_KEYPOINT_SIGMAS, Detections, GroundTruth, check_keypoint_count, load_detections, load_ground_truth,
)

# (name, average precision?, IoU threshold or None for all, area label, maxDets index) per summary line
_DETECTION_STATS = [
    ("AP", True, None, "all", -1), ("AP50", True, 0.5, "all", -1), ("AP75", True, 0.75, "all", -1),
    ("APs", True, None, "small", -1), ("APm", True, None, "medium", -1), ("APl", True, None, "large", -1),
    ("AR1", False, None, "all", 0), ("AR10", False, None, "all", 1), ("AR100", False, None, "all", 2),
    ("ARs", False, None, "small", -1), ("ARm", False, None, "medium", -1), ("ARl", False, None, "large", -1),
]
_KEYPOINT_STATS = [
    ("AP", True, None, "all", -1), ("AP50", True, 0.5, "all", -1), ("AP75", True, 0.75, "all", -1),
    ("APm", True, None, "medium", -1), ("APl", True, None, "large", -1),
    ("AR", False, None, "all", -1), ("AR50", False, 0.5, "all", -1), ("AR75", False, 0.75, "all", -1),
    ("ARm", False, None, "medium", -1), ("ARl", False, None, "large", -1),
]
_PAIR_CHUNK = 1 << 19  # (detection, gt) box pairs per vectorised IoU pass, bounds peak memory


@dataclass
class CocoParams:
    """Evaluation settings; the defaults are pycocotools' for the chosen `iou_type`."""

    iou_type: str = "bbox"
    iou_thrs: np.ndarray = field(default_factory=lambda: np.linspace(0.5, 0.95, 10))
    rec_thrs: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 1.0, 101))
    max_dets: list[int] = field(default_factory=lambda: [1, 10, 100])
    area_rngs: list[tuple[float, float]] = field(
        default_factory=lambda: [(0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2)]
    )
    area_labels: list[str] = field(default_factory=lambda: ["all", "small", "medium", "large"])
    kpt_sigmas: np.ndarray | None = None  # None: COCO's 17 person sigmas, or 1/K each for K != 17 keypoints

    @classmethod
    def for_type(cls, iou_type: str) -> CocoParams:
        """pycocotools' `Params(iouType)`."""
        if iou_type == "keypoints":
            return cls(iou_type, max_dets=[20], area_rngs=[(0.0, 1e5**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2)],
                       area_labels=["all", "medium", "large"])
        return cls(iou_type)


@dataclass
class CocoEvaluation:
    """Everything one evaluation computed: stats, pycocotools' arrays, and per-detection outcomes."""

    params: CocoParams
    gt: GroundTruth
    dt: Detections
    kept: np.ndarray  # rows of `dt` within maxDets of their (image, category), in (pair, rank) order
    rank: np.ndarray  # score rank of each kept detection within its (image, category)
    tp: np.ndarray  # bool [A, T, len(kept)]
    fp: np.ndarray  # bool [A, T, len(kept)]
    npig: np.ndarray  # int [K, A] non-ignored ground truth per category and area range
    curves: Accumulated  # precision and scores of the largest maxDets, recall of all: what the stats read
    stats: dict[str, float]
    _arrays: Accumulated | None = None

    @property
    def arrays(self) -> Accumulated:
        """pycocotools' full `eval` arrays (precision and scores for every maxDets too), made on first use."""
        if self._arrays is None:
            p, kept = self.params, self.kept
            self._arrays = accumulate(self.dt.cat[kept], self.dt.img[kept], self.rank, self.dt.score[kept], self.tp,
                                      self.fp, self.npig, p.max_dets, p.rec_thrs)
        return self._arrays

    def summary_lines(self) -> list[str]:
        """The summary exactly as pycocotools' `COCOeval.summarize()` prints it."""
        p = self.params
        lines = []
        for name, is_ap, thr, area, mi in self._spec():
            title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
            iou = f"{p.iou_thrs[0]:0.2f}:{p.iou_thrs[-1]:0.2f}" if thr is None else f"{thr:0.2f}"
            lines.append(
                f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={p.max_dets[mi]:>3d} ] = "
                f"{self.stats[name]:0.3f}"
            )
        return lines

    def per_class(self) -> dict[str, dict[str, float]]:
        """Per category name: AP, AP50, AP75 (area all, largest maxDets), -1 without ground truth."""
        out = {}
        for k, name in enumerate(self.gt.cat_names):
            row = {}
            for key, thr in (("AP", None), ("AP50", 0.5), ("AP75", 0.75)):
                row[key] = _mean_defined(self._select(True, thr, "all", -1)[:, :, k])
            out[name] = row
        return out

    def per_class_table(self) -> str:
        """`per_class()` as a fixed-width text table."""
        width = max([8] + [len(n) for n in self.gt.cat_names])
        rows = [f"{'category':<{width}}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}"]
        for name, row in self.per_class().items():
            rows.append(f"{name:<{width}}  " + "  ".join(f"{row[k]:>6.3f}" for k in ("AP", "AP50", "AP75")))
        return "\n".join(rows)

    def _spec(self) -> list:
        return _KEYPOINT_STATS if self.params.iou_type == "keypoints" else _DETECTION_STATS

    def _select(self, is_ap: bool, thr: float | None, area: str, max_index: int) -> np.ndarray:
        p = self.params
        a = p.area_labels.index(area)
        m = max_index % len(p.max_dets)
        arr = self.curves.precision if is_ap else self.curves.recall
        if thr is not None:
            arr = arr[np.where(thr == p.iou_thrs)[0]]
        return arr[..., a, m]


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def _pairs(gt: GroundTruth, dt: Detections, max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """gt rows ordered by (image, category) then file order; kept detection rows by pair then score rank."""
    n_cat = max(len(gt.cat_ids), 1)
    gt_order = np.argsort(gt.img * n_cat + gt.cat, kind="stable")
    d_key = dt.img * n_cat + dt.cat
    d_order = np.lexsort((-dt.score, d_key))
    sorted_key = d_key[d_order]
    rank = np.arange(len(d_order)) - np.searchsorted(sorted_key, sorted_key, side="left")
    keep = rank < max_det
    return gt_order, d_order[keep], rank[keep], sorted_key[keep]


def _overlaps(gt: GroundTruth, dt: Detections, gt_order: np.ndarray, kept: np.ndarray, kept_key: np.ndarray,
              params: CocoParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept detection index, sorted gt index, IoU) for every same-pair overlap >= the lowest threshold."""
    n_cat = max(len(gt.cat_ids), 1)
    g_start, g_count = key_ranges((gt.img * n_cat + gt.cat)[gt_order], kept_key)
    floor = params.iou_thrs.min()
    crowd = gt.crowd[gt_order]
    parts = []
    if params.iou_type == "bbox":
        gt_box, dt_box = gt.bbox[gt_order], dt.bbox[kept]
        ends = np.cumsum(g_count)
        lo = 0
        while lo < len(kept):
            hi = max(int(np.searchsorted(ends, ends[lo] - g_count[lo] + _PAIR_CHUNK, side="right")), lo + 1)
            det, g = group_cross(g_start[lo:hi], g_count[lo:hi])
            det += lo
            iou = coco_box_iou_pairs(dt_box[det], gt_box[g], crowd[g])
            hit = iou >= floor
            parts.append((det[hit], g[hit], iou[hit]))
            lo = hi
    else:
        starts = np.flatnonzero(np.r_[True, kept_key[1:] != kept_key[:-1]]) if len(kept) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(kept)]
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            g0, g1 = int(g_start[lo]), int(g_start[lo] + g_count[lo])
            if g0 == g1:
                continue
            rows, g_rows = kept[lo:hi], gt_order[g0:g1]
            if params.iou_type == "segm":
                assert dt.segm is not None and gt.segm is not None  # loaded with iou_type "segm"
                block = mask_iou([dt.segm[i] for i in rows], [gt.segm[i] for i in g_rows], crowd[g0:g1])
            else:  # keypoints, loaded as such, with the sigmas `evaluate` fills in
                assert dt.keypoints is not None and gt.keypoints is not None and params.kpt_sigmas is not None
                block = oks(dt.keypoints[rows], gt.keypoints[g_rows], gt.bbox[g_rows], gt.area[g_rows], params.kpt_sigmas)
            d_idx, g_idx = np.nonzero(block >= floor)
            parts.append((d_idx + lo, g_idx + g0, block[d_idx, g_idx]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    det_index, gt_index, overlap = (np.concatenate(column) for column in zip(*parts))
    return det_index, gt_index, overlap


def _area_bounds(params: CocoParams) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r[0] for r in params.area_rngs])[:, None], np.array([r[1] for r in params.area_rngs])[:, None])


def ignored_gt(truth: GroundTruth, params: CocoParams) -> np.ndarray:
    """bool [A, G]: ground truth (file order) each area range ignores (crowd, unlabelled keypoints, area outside)."""
    lo, hi = _area_bounds(params)
    return truth.ignore[None, :] | (truth.area[None, :] < lo) | (truth.area[None, :] > hi)


def evaluate(gt: Any, dt: Any, iou_type: str = "bbox", params: CocoParams | None = None) -> CocoEvaluation:
    """Run the whole COCO evaluation; `gt` a COCO dict, path or loaded `GroundTruth`, `dt` a result list or path.

    Nothing given is modified (params, the ground-truth dict, the result list)."""
    params = replace(params) if params is not None else CocoParams.for_type(iou_type)  # the caller's stays as it was
    if params.iou_type != iou_type:
        raise EvaluationError(f"params are for {params.iou_type!r}, not {iou_type!r}")
    truth = gt if isinstance(gt, GroundTruth) else load_ground_truth(gt, iou_type)
    found = load_detections(dt, truth, iou_type)
    if iou_type == "keypoints":
        if truth.keypoints is None or found.keypoints is None:
            raise EvaluationError("keypoint evaluation needs ground truth loaded for keypoints", path=truth.path)
        if params.kpt_sigmas is None:
            k = (truth.keypoints.shape[1] or found.keypoints.shape[1]) // 3
            params.kpt_sigmas = COCO_KEYPOINT_SIGMAS.copy() if k in (0, 17) else np.full(k, 1.0 / k)
        check_keypoint_count(truth, found, params.kpt_sigmas)
    params.max_dets = max_dets = sorted(params.max_dets)  # as pycocotools' evaluate()
    gt_order, kept, rank, kept_key = _pairs(truth, found, max_dets[-1])
    e_det, e_gt, e_iou = _overlaps(truth, found, gt_order, kept, kept_key, params)

    lo, hi = _area_bounds(params)
    g_ignore = ignored_gt(truth, params)[:, gt_order]  # [A, G]
    d_area = found.area[kept][None, :]
    d_outside = (d_area < lo) | (d_area > hi)  # [A, N]
    match = greedy_match(rank, e_det, e_gt, e_iou, truth.crowd[gt_order], g_ignore, params.iou_thrs)

    matched = match >= 0
    g_idx = np.where(matched, match, 0)
    a_idx = np.arange(len(params.area_rngs))[:, None, None]
    on_ignored = matched & g_ignore[a_idx, g_idx] if g_ignore.size else np.zeros_like(matched)
    hit = matched & truth.id_nonzero[gt_order][g_idx] if g_ignore.size else np.zeros_like(matched)
    dt_ignore = on_ignored | (~hit & d_outside[:, None, :])
    tp, fp = hit & ~dt_ignore, ~hit & ~dt_ignore

    n_cat = len(truth.cat_ids)
    g_cat = truth.cat[gt_order]
    npig = np.stack([np.bincount(g_cat[~ig], minlength=n_cat) for ig in g_ignore], axis=1) if n_cat else np.zeros((0, len(lo)), int)
    curves = accumulate(found.cat[kept], found.img[kept], rank, found.score[kept], tp, fp, npig, max_dets,
                        params.rec_thrs, curves=False)
    result = CocoEvaluation(params, truth, found, kept, rank, tp, fp, npig, curves, {})
    for name, is_ap, thr, area, mi in result._spec():
        result.stats[name] = _mean_defined(result._select(is_ap, thr, area, mi))
    return result


def evaluate_coco(gt: Any, dt: Any, iou_type: str = "bbox", kpt_sigmas: Any = None) -> dict[str, float]:
    """COCO summary stats by name ("AP", "AP50", ... as pycocotools' `stats`); gt/dt paths or loaded json.

    `kpt_sigmas` are the per-keypoint OKS sigmas (default: COCO's for 17 keypoints, else 1/K each).
    """
    params = CocoParams.for_type(iou_type)
    if kpt_sigmas is not None:
        params.kpt_sigmas = np.asarray(kpt_sigmas, dtype=np.float64)
    return dict(evaluate(gt, dt, iou_type, params).stats)
